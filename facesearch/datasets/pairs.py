"""Verification pairs and enrolment splits sampled from any labelled image list.

:func:`identity_pairs` samples genuine/impostor :class:`Pair` records;
:func:`gallery_probe_split` splits images into an enrolment gallery and probe queries.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from facesearch.datasets.base import LabeledImage, Pair, _check_count, _rng, _sort_key
from facesearch.errors import ConfigError

log = logging.getLogger(__name__)


def _unrank_pairs(ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode pair ranks ``(q,)`` into index pairs ``i < j``, both ``(q,)``.

    Colexicographic order: rank ``k = j*(j-1)/2 + i``, so every ``k`` in
    ``[0, n*(n-1)/2)`` is exactly one pair of ``n`` items, and sampling ranks without
    replacement samples distinct pairs without ever listing them all.
    """
    k = np.asarray(ks, dtype=np.int64)
    j = np.floor((1.0 + np.sqrt(1.0 + 8.0 * k)) / 2.0).astype(np.int64)
    # Float sqrt can be off by one for large k; fix it exactly in integers.
    j -= (j * (j - 1) // 2 > k).astype(np.int64)
    j += ((j + 1) * j // 2 <= k).astype(np.int64)
    return k - j * (j - 1) // 2, j


def _water_fill(caps: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` into per-group quotas ``(g,)`` as evenly as ``caps`` ``(g,)`` allow.

    Every group gets ``min(cap, L)`` for the largest level ``L`` that fits, and the
    remainder goes one each to randomly chosen groups that still have room.
    """
    lo, hi = 0, int(caps.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(caps, mid).sum()) <= total:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(caps, lo)
    rest = total - int(quota.sum())
    if rest > 0:
        room = np.nonzero(caps > lo)[0]
        quota[rng.choice(room, size=rest, replace=False)] += 1
    return quota


def _group_by_identity(images: Iterable[LabeledImage]) -> tuple[list[str], list[list[LabeledImage]]]:
    """Identities (sorted) and their images (sorted by path, duplicates removed)."""
    groups: dict[str, dict[Path, LabeledImage]] = defaultdict(dict)
    for im in images:
        groups[im.identity].setdefault(im.path, im)
    names = sorted(groups)
    return names, [sorted(groups[n].values(), key=_sort_key) for n in names]


def identity_pairs(
    images: Sequence[LabeledImage], n_genuine: int, n_impostor: int, seed: int = 0
) -> list[Pair]:
    """Sample same-identity (genuine) and different-identity (impostor) image pairs.

    Deterministic for a given seed and image set (input order does not matter), no
    pair appears twice (in either order) and no image is paired with itself.

    Genuine pairs are spread as evenly as possible over identities (an identity with
    500 photos would otherwise supply most of them), uniformly among each identity's
    photo pairs. Impostor pairs draw two different identities uniformly, then one photo
    of each. Returns at most the requested counts: fewer when the images do not have
    that many distinct pairs. Genuine pairs come first; ``kind`` is ``"same"`` or
    ``"different"``.
    """
    n_genuine = _check_count(n_genuine, "n_genuine")
    n_impostor = _check_count(n_impostor, "n_impostor")
    rng = _rng(seed)
    _, groups = _group_by_identity(images)
    out: list[Pair] = []

    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    caps = sizes * (sizes - 1) // 2
    if n_genuine and caps.sum() > 0:
        quota = _water_fill(caps, min(n_genuine, int(caps.sum())), rng)
        for g, cap, q in zip(groups, caps, quota):
            if q == 0:
                continue
            i, j = _unrank_pairs(np.sort(rng.choice(int(cap), size=int(q), replace=False)))
            out.extend(Pair(a=g[a].path, b=g[b].path, same=True, kind="same") for a, b in zip(i, j))
    if n_genuine > caps.sum():
        log.info("identity_pairs: only %d genuine pairs exist (asked for %d)", caps.sum(), n_genuine)

    n_ids = len(groups)
    # Distinct impostor pairs: all image pairs minus the same-identity ones.
    n_total = int(sizes.sum())
    available = (n_total * n_total - int((sizes * sizes).sum())) // 2
    want = min(n_impostor, available)
    if want == 0 or n_ids < 2:
        return out
    flat = [im.path for g in groups for im in g]
    offsets = np.r_[0, np.cumsum(sizes)]
    if 2 * want > available:
        # Asked for most of them: listing all (at most 2x the output) beats rejection.
        owner = np.repeat(np.arange(n_ids), sizes)
        i, j = np.triu_indices(n_total, 1)
        keep = owner[i] != owner[j]
        i, j = i[keep], j[keep]
        pick = np.sort(rng.choice(i.shape[0], size=want, replace=False))
        out.extend(
            Pair(a=flat[a], b=flat[b], same=False, kind="different") for a, b in zip(i[pick], j[pick])
        )
        return out
    seen: set[tuple[int, int]] = set()
    while len(seen) < want:
        # Fewer than half the impostor pairs are taken, so each draw is new with
        # probability > 1/2; drawing in batches keeps the Python loop short.
        m = 2 * (want - len(seen)) + 8
        ga = rng.integers(0, n_ids, size=m)
        gb = (ga + rng.integers(1, n_ids, size=m)) % n_ids  # uniform over the other identities
        ia = offsets[ga] + (rng.random(m) * sizes[ga]).astype(np.int64)
        ib = offsets[gb] + (rng.random(m) * sizes[gb]).astype(np.int64)
        for a, b in zip(ia.tolist(), ib.tolist()):
            key = (a, b) if a < b else (b, a)
            if key in seen:
                continue
            seen.add(key)
            out.append(Pair(a=flat[a], b=flat[b], same=False, kind="different"))
            if len(seen) == want:
                break
    return out


def gallery_probe_split(
    images: Sequence[LabeledImage], n_gallery_per_identity: int | float = 1, seed: int = 0
) -> tuple[list[LabeledImage], list[LabeledImage]]:
    """Split images into an enrolment gallery and probe queries, per identity.

    ``n_gallery_per_identity``: an int ``>= 1`` puts that many randomly chosen photos
    of each identity in the gallery; a float in ``(0, 1)`` puts that fraction (at least
    one, and at most all but one, so every identity with two or more photos has a
    probe). Identities with no more photos than the gallery share (in particular those
    with a single photo) go to the gallery only: a probe whose identity is not enrolled
    cannot be identified. Both lists are sorted by path; deterministic for a seed.
    """
    share = n_gallery_per_identity
    bad = f"n_gallery_per_identity must be an int >= 1 or a float in (0, 1), got {share!r}"
    if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating)):
        raise ConfigError(bad)
    is_fraction = isinstance(share, (float, np.floating))
    if (is_fraction and not 0.0 < share < 1.0) or (not is_fraction and share < 1):
        raise ConfigError(bad)
    rng = _rng(seed)
    _, groups = _group_by_identity(images)
    gallery: list[LabeledImage] = []
    probes: list[LabeledImage] = []
    for g in groups:
        n = len(g)
        if is_fraction:
            k = min(max(1, int(round(float(share) * n))), max(1, n - 1))
        else:
            k = int(share)
        if n <= k:
            gallery.extend(g)
            continue
        order = rng.permutation(n)
        gallery.extend(g[i] for i in order[:k])
        probes.extend(g[i] for i in order[k:])
    gallery.sort(key=_sort_key)
    probes.sort(key=_sort_key)
    return gallery, probes
