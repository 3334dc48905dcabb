"""Open-set identification (1:N search): how a gallery search does on people who are
in the gallery and on people who are not.

The protocol (``facesearch evaluate --open-set``, the Evaluate page's "Open-set" box):

* **Split** (:func:`split_identities`, seeded): an identity can be enrolled when it has
  at least ``enroll + 1`` usable photos (a detected face). Half of those identities
  (rounded up) are enrolled; each puts ``enroll`` randomly chosen photos in the gallery
  and its other photos are the *mated* probes. Every photo of every other identity (the
  other half, and all identities with too few photos) is a *non-mated* probe.
* **Search**, exactly as the Match page does it: the gallery holds one unit embedding
  per enrolled photo (its largest face); a probe's best identity is the identity of its
  nearest gallery face by cosine distance (``1 - dot``); it is called a "match" when that
  distance is at most the threshold.
* **Rates** at a threshold ``t``: FPIR, the share of non-mated probes called a match;
  FNIR, the share of mated probes *not* called a match with their own identity (the
  rank-1 identity is wrong, or its distance is above ``t``). :func:`det_curve` sweeps
  ``t`` over the probes' best-match distances; :func:`fnir_at_fpir` reads the curve at
  a target FPIR. Rank-1/rank-5: the share of mated probes whose identity is among the
  1/5 nearest gallery identities (ranked by their nearest face, ties counted against).
* **FPIR against gallery size** (:func:`fpir_vs_size`): for gallery sizes from one
  enrolled identity to all of them, the FPIR measured at fixed thresholds (averaged over
  seeded nested random subsets of the enrolled identities) next to the independence
  model ``FPIR(N) = 1 - (1 - FMR(t)) ** N`` (N gallery faces), with FMR from the model's
  impostor calibration and from the impostor pairs of the evaluated data itself.

Everything here is numpy on embeddings already computed; :func:`facesearch.evaluation.identification.
evaluate_open_set` embeds the photos and calls :func:`score_open_set` per model.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from facesearch.errors import ConfigError, DatasetError
from facesearch.models.base import l2_normalise
from facesearch.search.calibration import fpir_from_fmr

__all__ = ["Split", "ProbeScores", "OpenSetResult", "split_identities", "search", "det_curve",
           "fpir_at", "fnir_at", "fnir_at_fpir", "fpir_vs_size", "impostor_fmr", "score_open_set",
           "FPIR_TARGETS"]

# The FPIR operating points reported as FNIR@FPIR (JSON keys ``fnir_at_fpir_1pct`` ...).
FPIR_TARGETS = {"1pct": 0.01, "01pct": 0.001}
# Nested random subsets averaged per gallery size in :func:`fpir_vs_size`.
SIZE_REPEATS = 50


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """Indices into the photo list given to :func:`split_identities` (each sorted)."""

    gallery: np.ndarray  # (g,) enrolled photos, ``enroll`` per enrolled identity
    mated: np.ndarray  # (m,) the enrolled identities' other photos
    nonmated: np.ndarray  # (n,) every photo of the identities not enrolled
    enrolled: list[str]  # sorted
    not_enrolled: list[str]  # sorted
    n_eligible: int  # identities with at least enroll + 1 photos


def split_identities(identities: Sequence[str], enroll: int = 1, seed: int = 0) -> Split:
    """Seeded open-set split of photos labelled ``identities`` (one label per photo).

    The result does not depend on the order of the photos' identities beyond their
    positions: identities are sorted before the seeded shuffle and each identity's
    photos keep their order before the seeded pick.
    """
    if isinstance(enroll, bool) or not isinstance(enroll, (int, np.integer)) or enroll < 1:
        raise ConfigError(f"photos enrolled per identity must be an integer >= 1, got {enroll!r}")
    enroll = int(enroll)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ident in enumerate(identities):
        groups[str(ident)].append(i)
    names = sorted(groups)
    eligible = [n for n in names if len(groups[n]) >= enroll + 1]
    rng = np.random.default_rng(seed)
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    enrolled = sorted(order[: (len(order) + 1) // 2])
    enrolled_set = set(enrolled)
    gallery: list[int] = []
    mated: list[int] = []
    nonmated: list[int] = []
    for n in names:
        idx = groups[n]
        if n in enrolled_set:
            pick = set(rng.choice(len(idx), size=enroll, replace=False).tolist())
            gallery += [idx[j] for j in pick]
            mated += [idx[j] for j in range(len(idx)) if j not in pick]
        else:
            nonmated += idx
    as_idx = lambda xs: np.asarray(sorted(xs), dtype=np.int64)  # noqa: E731
    return Split(as_idx(gallery), as_idx(mated), as_idx(nonmated), enrolled,
                 [n for n in names if n not in enrolled_set], len(eligible))


# --------------------------------------------------------------------------- search


def _identity_distances(gallery: np.ndarray, gallery_ids: Sequence[str], probes: np.ndarray,
                        chunk: int = 2048) -> tuple[list[str], np.ndarray]:
    """(gallery identities sorted ``(u,)``, each probe's distance to each identity's
    nearest face ``(m, u)``), cosine distance ``1 - dot`` clipped to [0, 2]."""
    g = l2_normalise(gallery)
    p = l2_normalise(probes)
    if g.ndim != 2 or p.ndim != 2 or g.shape[0] == 0 or (p.shape[0] and g.shape[1] != p.shape[1]):
        raise ConfigError(f"gallery and probes must be non-empty 2-d arrays of one width, got {g.shape}, {p.shape}")
    ids = np.asarray([str(x) for x in gallery_ids])
    uniq, inv = np.unique(ids, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.r_[0, np.cumsum(np.bincount(inv, minlength=len(uniq)))[:-1]]
    out = np.empty((p.shape[0], len(uniq)), np.float32)
    gs = g[order]
    for i in range(0, p.shape[0], chunk):
        d = np.clip(1.0 - p[i:i + chunk] @ gs.T, 0.0, 2.0)
        out[i:i + chunk] = np.minimum.reduceat(d, starts, axis=1)
    return [str(u) for u in uniq], out


@dataclass
class ProbeScores:
    """What a search of the probes found: ``mated_distance`` ``(m,)`` the best-match
    (rank-1) distance of each mated probe, ``mated_rank`` ``(m,)`` the rank of its own
    identity (1 = the search names it), ``nonmated_distance`` ``(n,)`` the best-match
    distance of each non-mated probe."""

    mated_distance: np.ndarray
    mated_rank: np.ndarray
    nonmated_distance: np.ndarray

    @property
    def n_mated(self) -> int:
        return int(self.mated_distance.shape[0])

    @property
    def n_nonmated(self) -> int:
        return int(self.nonmated_distance.shape[0])

    @property
    def hit_distance(self) -> np.ndarray:
        """Best-match distances of the mated probes whose rank-1 identity is right, sorted."""
        return np.sort(self.mated_distance[self.mated_rank == 1])

    def rank(self, k: int) -> float:
        return float(np.mean(self.mated_rank <= k)) if self.n_mated else float("nan")


def search_probes(index, probes: np.ndarray, rule, hits: int = 15) -> list:
    """Each probe vector ``(m, d)`` searched in ``index`` (an :class:`store.ArrayGallery`
    or any gallery) exactly as the Match page searches a face
    (:func:`facesearch.search.identify.search_faces`): m :class:`FaceMatches` with the
    probe's ``hits`` nearest gallery faces grouped into identities and judged by ``rule``."""
    from facesearch.embedding.pipeline import FaceResult
    from facesearch.imaging.detection import Face
    from facesearch.search.identify import search_faces

    whole = Face((0, 0, 0, 0), 0.0)  # evaluation keeps vectors, not boxes
    p = l2_normalise(probes)
    return search_faces([FaceResult(i, whole, v) for i, v in enumerate(p)], index, hits, rule, hits)


def search(gallery: np.ndarray, gallery_ids: Sequence[str], mated: np.ndarray, mated_ids: Sequence[str],
           nonmated: np.ndarray) -> ProbeScores:
    """Search mated probes ``(m, d)`` (labelled ``mated_ids``) and non-mated probes
    ``(n, d)`` in a gallery ``(g, d)`` labelled ``gallery_ids``, through the Match page's
    own search (:func:`facesearch.search.identify.search_faces` on an exact in-memory
    gallery): a probe's best match and the identities ranked as the page ranks them."""
    from facesearch.search.verdicts import Rule
    from store import ArrayGallery

    g = l2_normalise(gallery)
    if g.ndim != 2 or g.shape[0] == 0:
        raise ConfigError(f"the gallery must be a non-empty 2-d array, got {g.shape}")
    width = g.shape[1]
    gids = [str(x) for x in gallery_ids]
    if set(map(str, mated_ids)) - set(gids):
        missing = sorted(set(map(str, mated_ids)) - set(gids))[0]
        raise ConfigError(f"mated probe of identity {missing!r}, which is not in the gallery")
    index = ArrayGallery(g, gids)
    # Ranks up to 5 are reported: the nearest 5 x (most faces of one identity) gallery
    # faces hold at least 5 identities, so an identity left out of them ranks 6th or worse.
    n_hits = min(len(gids), 5 * max(Counter(gids).values()))

    def best_and_ranks(probes: np.ndarray, own: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        # Distances only: the rule's thresholds play no part in the scores.
        found = search_probes(index, np.asarray(probes, np.float32).reshape(-1, width), Rule(0.0, 0.0), n_hits)
        best = np.asarray([fm.best.distance for fm in found], np.float64)
        if own is None:
            return best, np.zeros(0, np.int64)
        ranks = []
        for fm, me in zip(found, own):
            mine = next((s.distance for s in fm.identities if s.identity == me), None)
            # Pessimistic ties: another identity exactly as close counts as ahead.
            ranks.append(len(fm.identities) + 1 if mine is None else
                         1 + sum(s.distance <= mine for s in fm.identities if s.identity != me))
        return best, np.asarray(ranks, np.int64)

    best, rank = best_and_ranks(mated, [str(x) for x in mated_ids])
    nbest, _ = best_and_ranks(nonmated, None)
    return ProbeScores(best, rank, nbest)


# --------------------------------------------------------------------------- rates


def fpir_at(s: ProbeScores, threshold: float | np.ndarray) -> np.ndarray | float:
    """Share of non-mated probes whose best match is at distance <= ``threshold``."""
    if not s.n_nonmated:
        return float("nan")
    r = np.searchsorted(np.sort(s.nonmated_distance), threshold, side="right") / s.n_nonmated
    return float(r) if np.ndim(r) == 0 else r


def fnir_at(s: ProbeScores, threshold: float | np.ndarray) -> np.ndarray | float:
    """Share of mated probes not called a match with their own identity at ``threshold``."""
    if not s.n_mated:
        return float("nan")
    r = 1.0 - np.searchsorted(s.hit_distance, threshold, side="right") / s.n_mated
    return float(r) if np.ndim(r) == 0 else r


def det_curve(s: ProbeScores) -> dict[str, np.ndarray]:
    """FPIR and FNIR at every distinct best-match distance of the probes (ascending
    thresholds, so FPIR rises and FNIR falls): ``{"threshold", "fpir", "fnir"}``, each
    ``(k,)``, starting at threshold 0."""
    t = np.unique(np.r_[0.0, s.hit_distance, s.nonmated_distance])
    return {"threshold": t, "fpir": np.asarray(fpir_at(s, t)), "fnir": np.asarray(fnir_at(s, t))}


def fnir_at_fpir(s: ProbeScores, target: float) -> dict[str, Any]:
    """The FNIR at the largest threshold whose FPIR is at most ``target`` (threshold-free:
    the threshold comes from the non-mated distances themselves). ``resolved`` is False
    when there are too few non-mated probes for one false positive to fit under the
    target (fewer than ``1 / target``): the figure is then FNIR at FPIR 0, an upper bound."""
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target FPIR must lie in (0, 1), got {target}")
    n = s.n_nonmated
    if not n or not s.n_mated:
        return {"target": target, "threshold": None, "fpir": None, "fnir": None, "resolved": False}
    nm = np.sort(s.nonmated_distance)
    k = int(math.floor(target * n + 1e-9))  # false positives allowed
    if k >= n:
        t = float(max(nm[-1], s.mated_distance.max(initial=0.0)))
    else:
        # Just below the (k+1)-th smallest non-mated distance: at most k are at or below it.
        t = float(np.nextafter(nm[k], -np.inf))
    return {"target": target, "threshold": t, "fpir": fpir_at(s, t), "fnir": fnir_at(s, t), "resolved": k >= 1}


# --------------------------------------------------------------------------- gallery size


def impostor_fmr(embeddings: np.ndarray, identities: Sequence[str]) -> Callable[[float | np.ndarray], np.ndarray]:
    """FMR(t) from every pair of photos of different people in ``embeddings`` ``(n, d)``:
    the share of those pairs at cosine distance <= t. Returns the function; its
    ``n_pairs`` attribute says how many pairs it counts."""
    from facesearch.search.calibration import impostor_distances

    d = np.sort(impostor_distances(l2_normalise(embeddings), [str(x) for x in identities]).astype(np.float64))
    n = d.shape[0]

    def fmr(t):
        if not n:
            return np.full(np.shape(t), np.nan)
        return np.searchsorted(d, t, side="right") / n

    fmr.n_pairs = n  # type: ignore[attr-defined]
    return fmr


def size_grid(n: int, points: int = 12) -> list[int]:
    """Gallery sizes 1 .. n, about evenly spaced on a log scale (always 1 and n)."""
    if n < 1:
        return []
    return sorted({1, n, *np.unique(np.round(np.geomspace(1, n, min(n, points))).astype(int)).tolist()})


def fpir_vs_size(gallery: np.ndarray, gallery_ids: Sequence[str], nonmated: np.ndarray,
                 thresholds: dict[str, float | Callable[[int], float]],
                 fmr_models: dict[str, Callable[[Any], Any]] | None = None, sizes: Sequence[int] | None = None,
                 repeats: int = SIZE_REPEATS, seed: int = 0) -> list[dict[str, Any]]:
    """Measured FPIR against the number of enrolled identities, with predictions.

    For each of ``repeats`` seeded random orders of the gallery's identities, the gallery
    of size ``s`` is the first ``s`` identities (so galleries nest and, at a fixed
    threshold, each order's FPIR can only grow with ``s``); the measured FPIR is averaged
    over the orders. ``thresholds``: name -> a fixed distance, or a function of the
    numbers of gallery faces and identities ``(n_faces, n_identities)`` (e.g. the search
    threshold for that gallery). ``fmr_models``:
    name -> FMR(t), each giving a ``predicted_fpir_<name>`` = ``1 - (1 - FMR(t)) ** N``.
    Returns one row per (threshold name, size): ``threshold_name, threshold,
    identities, faces, subsets, measured_fpir, predicted_fpir_<name>...``.
    """
    fmr_models = fmr_models or {}
    width = np.shape(gallery)[1]
    names, dn = _identity_distances(gallery, gallery_ids, np.asarray(nonmated, np.float32).reshape(-1, width))
    u = len(names)
    if dn.shape[0] == 0:
        return []
    faces_per = np.bincount(np.unique(np.asarray([str(x) for x in gallery_ids]), return_inverse=True)[1], minlength=u)
    sizes = size_grid(u) if sizes is None else sorted({int(s) for s in sizes if 1 <= int(s) <= u})
    rng = np.random.default_rng(seed)
    perms = [np.arange(u)] if u == 1 else [rng.permutation(u) for _ in range(max(1, int(repeats)))]
    # cum[r][:, s-1]: each non-mated probe's nearest distance in the first s identities of order r.
    cums = [np.minimum.accumulate(dn[:, p], axis=1) for p in perms]
    faces = [np.cumsum(faces_per[p]) for p in perms]
    rows = []
    for tname, thr in thresholds.items():
        for s in sizes:
            meas, ts, ns = [], [], []
            for cum, fc in zip(cums, faces):
                n_faces = int(fc[s - 1])
                t = float(thr(n_faces, s)) if callable(thr) else float(thr)
                meas.append(float(np.mean(cum[:, s - 1] <= t)))
                ts.append(t)
                ns.append(n_faces)
            # Every identity has the same number of faces in an --enroll K split, so N
            # and t are the same for every order; averaged anyway for uneven galleries.
            n_faces = int(round(float(np.mean(ns))))
            t = ts[0] if max(ts) == min(ts) else float(np.mean(ts))
            row = {"threshold_name": tname, "threshold": t, "identities": s, "faces": n_faces,
                   "subsets": len(perms) if s < u else 1, "measured_fpir": float(np.mean(meas))}
            for fname, fmr in fmr_models.items():
                row[f"predicted_fpir_{fname}"] = fpir_from_fmr(float(np.asarray(fmr(t))), n_faces)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- one model


@dataclass
class OpenSetResult:
    """One model's open-set figures (see the module docstring); ``to_dict`` is its entry
    under ``open_set`` in the evaluation JSON."""

    model: str
    threshold: float | None = None  # the "match" threshold for this gallery size
    threshold_source: str = ""  # "calibration (target FPIR 1%)" or "verify threshold (uncalibrated)"
    target_fpir: float | None = None
    verify_threshold: float | None = None
    calibration: str | None = None  # the calibration's source line
    fpir: float | None = None
    fnir: float | None = None
    predicted_fpir: float | None = None  # from the calibration the threshold came from
    calibration_kind: str = ""  # "gallery" (measured on the enrolled gallery), "shipped" or "" (none)
    gallery_calibration: dict[str, Any] = field(default_factory=dict)  # what the gallery's measurement holds
    # Non-mated probes closer to a gallery identity than that identity's median mated
    # probe: duplicates across identities, mislabelled photos, look-alikes, relatives.
    n_extremes: int = 0
    extremes: list[dict[str, Any]] = field(default_factory=list)
    gallery_cal: Any = field(default=None, repr=False)  # the GalleryCalibration of the enrolled gallery
    predicted_fpir_data: float | None = None  # from this data's impostor pairs
    rank1: float | None = None
    rank5: float | None = None
    fnir_at_fpir: dict[str, dict[str, Any]] = field(default_factory=dict)  # "1pct" -> fnir_at_fpir()
    gallery_identities: int = 0
    gallery_faces: int = 0
    enroll: int = 1
    nonenrolled_identities: int = 0
    eligible_identities: int = 0
    n_mated: int = 0
    n_nonmated: int = 0
    n_images: int = 0
    n_no_face: int = 0  # photos left out: no face detected (or unreadable)
    n_impostor_pairs: int = 0
    det: dict[str, list[float]] = field(default_factory=dict)
    fpir_vs_size: list[dict[str, Any]] = field(default_factory=list)
    scores: ProbeScores | None = field(default=None, repr=False)
    seconds: float = 0.0
    n_computed: int = 0
    n_cached: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.fpir is not None

    def at(self, threshold: float) -> tuple[float, float]:
        """(FPIR, FNIR) when calling ``distance <= threshold`` a match."""
        if self.scores is None:
            raise ConfigError(f"{self.model}: no probe scores")
        return float(fpir_at(self.scores, threshold)), float(fnir_at(self.scores, threshold))

    def row(self) -> dict[str, Any]:
        f1, f01 = (self.fnir_at_fpir.get(k) or {} for k in ("1pct", "01pct"))
        return {"model": self.model, "fpir": self.fpir, "fnir": self.fnir, "threshold": self.threshold,
                "predicted_fpir": self.predicted_fpir, "gallery_identities": self.gallery_identities,
                "gallery_faces": self.gallery_faces, "fnir_at_fpir_1pct": f1.get("fnir"),
                "fnir_at_fpir_01pct": f01.get("fnir"), "rank1": self.rank1, "rank5": self.rank5,
                "n_mated": self.n_mated, "n_nonmated": self.n_nonmated, "no_face": self.n_no_face,
                "calibration_kind": self.calibration_kind, "extremes": self.n_extremes, "error": self.error or ""}

    def to_dict(self) -> dict[str, Any]:
        d = self.row()
        f1, f01 = (self.fnir_at_fpir.get(k) or {} for k in ("1pct", "01pct"))
        d.update(threshold_source=self.threshold_source, target_fpir=self.target_fpir,
                 verify_threshold=self.verify_threshold, calibration=self.calibration,
                 predicted_fpir_data=self.predicted_fpir_data,
                 threshold_at_fpir_1pct=f1.get("threshold"), threshold_at_fpir_01pct=f01.get("threshold"),
                 fnir_at_fpir_01pct_resolved=f01.get("resolved"), fnir_at_fpir_points=self.fnir_at_fpir,
                 enroll=self.enroll, nonenrolled_identities=self.nonenrolled_identities,
                 eligible_identities=self.eligible_identities, n_images=self.n_images,
                 n_impostor_pairs=self.n_impostor_pairs, det=self.det, fpir_vs_size=self.fpir_vs_size,
                 gallery_calibration=self.gallery_calibration, extreme_probes=self.extremes,
                 seconds=self.seconds, n_computed=self.n_computed, n_cached=self.n_cached)
        return d


def extreme_probes(gallery: np.ndarray, gallery_ids: Sequence[str], mated: np.ndarray, mated_ids: Sequence[str],
                   nonmated: np.ndarray, keep: int = 20) -> tuple[int, list[dict[str, Any]]]:
    """Non-mated probes ``(n, d)`` whose best gallery identity is closer than that
    identity's median mated probe (its own photos' median distance to it): how many, and
    the ``keep`` most extreme as ``{"probe": index into nonmated, "identity", "distance",
    "own_median"}``, most extreme first. Such a stranger scores like the same person: a
    duplicate under two names, a mislabelled photo, a twin, a close relative."""
    width = np.shape(gallery)[1]
    mated = np.asarray(mated, np.float32).reshape(-1, width)
    nonmated = np.asarray(nonmated, np.float32).reshape(-1, width)
    if not mated.shape[0] or not nonmated.shape[0]:
        return 0, []
    names, dm = _identity_distances(gallery, gallery_ids, mated)
    own = np.searchsorted(names, [str(i) for i in mated_ids])
    mine = dm[np.arange(len(own)), own]
    median = np.full(len(names), -np.inf)
    for j in np.unique(own):
        median[j] = float(np.median(mine[own == j]))
    _, dn = _identity_distances(gallery, gallery_ids, nonmated)
    j = dn.argmin(1)
    d = dn[np.arange(len(j)), j]
    hit = np.flatnonzero(d < median[j])
    hit = hit[np.argsort(d[hit] - median[j[hit]])]
    return int(hit.size), [{"probe": int(i), "identity": names[j[i]], "distance": float(d[i]),
                            "own_median": float(median[j[i]])} for i in hit[:keep]]


def score_open_set(embeddings: np.ndarray, identities: Sequence[str], *, enroll: int = 1, seed: int = 0,
                   threshold: float | Callable[..., float], model: str = "", verify_threshold: float | None = None,
                   calibration: Any = None, size_repeats: int = SIZE_REPEATS,
                   families: Sequence[str | None] | None = None, own_calibration: bool = False) -> OpenSetResult:
    """Split, search and score one model's embeddings ``(n, d)`` (unit rows, one per usable
    photo) labelled ``identities`` (and ``families``, None where unknown).

    ``threshold``: the "match" distance, or a function giving it for a gallery:
    ``threshold(n_faces)``, or ``threshold(n_faces, gallery_calibration)`` with
    ``own_calibration``, which measures the enrolled gallery as the Match page measures a
    live one (:func:`facesearch.search.gallery_calibration.estimate`) and passes the
    measurement, scaled to the gallery searched. ``calibration``: the model's shipped
    :class:`~facesearch.search.calibration.Calibration` (predicted FPIR), or None.
    Raises DatasetError when no identity can be enrolled or nobody is left out.
    """
    x = np.asarray(embeddings, np.float32)
    ids = [str(i) for i in identities]
    if x.ndim != 2 or x.shape[0] != len(ids):
        raise ConfigError(f"embeddings {x.shape} and {len(ids)} identities do not match")
    sp = split_identities(ids, enroll, seed)
    if not sp.enrolled:
        raise DatasetError(f"no identity has the {enroll + 1} photos with a detected face needed to enrol "
                           f"{enroll} and probe with one")
    if not sp.nonmated.size:
        raise DatasetError("every identity is enrolled, so there are no non-mated probes: the open-set "
                           "evaluation needs at least 2 identities with enough photos, or some with fewer")
    gid = [ids[i] for i in sp.gallery]
    g = x[sp.gallery]
    n_faces = int(sp.gallery.size)
    gc = None
    if own_calibration:
        from facesearch.search.gallery_calibration import estimate

        gfam = [families[i] for i in sp.gallery] if families is not None else None
        gc = estimate(g, gid, gfam, model=model, seed=seed)
    if not callable(threshold):
        def thr_fn(_n, _s=None, _t=float(threshold)):
            return _t
    elif gc is None:
        def thr_fn(n, _s=None):
            return threshold(n)
    else:
        def thr_fn(n, s=None):
            return threshold(n, gc if s is None else gc.at(s))
    thr = float(thr_fn(n_faces))
    sc = search(g, gid, x[sp.mated], [ids[i] for i in sp.mated], x[sp.nonmated])
    r = OpenSetResult(model=model, threshold=thr, verify_threshold=verify_threshold, scores=sc, enroll=int(enroll),
                      gallery_identities=len(sp.enrolled), gallery_faces=n_faces,
                      nonenrolled_identities=len(sp.not_enrolled), eligible_identities=sp.n_eligible,
                      n_mated=sc.n_mated, n_nonmated=sc.n_nonmated)
    r.fpir, r.fnir = float(fpir_at(sc, thr)), (float(fnir_at(sc, thr)) if sc.n_mated else None)
    r.rank1 = sc.rank(1) if sc.n_mated else None
    r.rank5 = sc.rank(5) if sc.n_mated else None
    r.fnir_at_fpir = {k: fnir_at_fpir(sc, v) for k, v in FPIR_TARGETS.items()}
    det = det_curve(sc)
    r.det = {k: [float(v) for v in a] for k, a in det.items()}
    data_fmr = impostor_fmr(x, ids)
    r.n_impostor_pairs = int(data_fmr.n_pairs)
    r.predicted_fpir_data = fpir_from_fmr(float(data_fmr(thr)), n_faces) if r.n_impostor_pairs else None
    fmr_models: dict[str, Callable] = {"data": data_fmr}
    if calibration is not None:
        r.predicted_fpir = float(calibration.fpir(thr, n_faces))
        r.calibration = getattr(calibration, "source", None)
        r.calibration_kind = "shipped"
        fmr_models = {"calibration": calibration.fmr, **fmr_models}
    if gc is not None:
        r.gallery_cal = gc
        r.gallery_calibration = {"probes": gc.n_probes, "identities": gc.n_identities, "scores": gc.n_scores,
                                 "families": gc.n_families, "relatives_scores": int(gc.relatives.shape[0]),
                                 "doubles": [vars(d) for d in gc.doubles[:20]], "source": gc.source}
    r.n_extremes, r.extremes = extreme_probes(g, gid, x[sp.mated], [ids[i] for i in sp.mated], x[sp.nonmated])
    for e in r.extremes:
        i = int(sp.nonmated[e.pop("probe")])
        e.update(index=i, probe_identity=ids[i])
    thresholds: dict[str, float | Callable[[int], float]] = {"search": thr}
    if verify_threshold is not None and abs(float(verify_threshold) - thr) > 1e-12:
        thresholds["verify"] = float(verify_threshold)
    if callable(threshold):
        thresholds["search_at_size"] = thr_fn
    r.fpir_vs_size = fpir_vs_size(g, gid, x[sp.nonmated], thresholds, fmr_models, repeats=size_repeats, seed=seed)
    return r
