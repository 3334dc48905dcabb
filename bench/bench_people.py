"""Grouping a photo library into people at scale: time to group N faces (default
200,000) and to add 1,000 new faces to them without regrouping.

    .venv/bin/python -m bench.bench_people [--faces N] [--new 1000] [--seed 0]

The faces are SYNTHETIC, drawn as ``bench.bench_query`` draws them: a Gaussian model of
identity centres and within-identity spread fitted (Nelder-Mead on the quantiles) so that
same-person and different-person cosine distances follow those of the real faces of the
shared CelebA and LFW photos (sface + yunet, cache-first under ``--cache``), identity
sizes drawn from the real ones; printed: the real against the synthetic quantiles. The
library is shuffled (photos do not come sorted by person), and a tenth of the photos
hold two or three faces of different people, so the one-face-per-photo rule is at work.

Timed: :func:`facesearch.people.grouping.group` over the N faces with the project's
parameters (``grouping.DEFAULT``, or ``--threshold/--merge/--attach``; an exact first block, the rest placed block by block),
then :func:`~facesearch.people.grouping.place` of ``--new`` faces (half new photos of
people in the library, half new people) among the people found. Also printed: how well the
synthetic people were recovered (pairwise precision/recall, BCubed F: the synthetic
identities are only as separable as the fit makes them, so this is a sanity check, not a
measure of the real grouping, which is in tests/test_people.py and docs/BENCHMARKS.md),
peak memory, the load average before and after (``uptime``; the machine may be shared).
Last line: ``N faces: grouped in A s (P people); +M faces placed in B s``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_query import DEFAULT_CACHE, SyntheticModel, load_real, log, pair_distances, quantile_table  # noqa: E402
from facesearch.people.grouping import DEFAULT, group, place  # noqa: E402


def scores(pred: np.ndarray, true: np.ndarray) -> dict:
    """Pairwise precision/recall and BCubed F of ``pred`` (-1: a face of its own) against ``true``."""
    pred = pred.copy()
    neg = pred < 0
    pred[neg] = pred.max(initial=0) + 1 + np.arange(neg.sum())
    pt, pc, tc = Counter(zip(pred.tolist(), true.tolist())), Counter(pred.tolist()), Counter(true.tolist())
    pairs = lambda c: sum(v * (v - 1) / 2 for v in c.values())  # noqa: E731
    tp = pairs(pt)
    p, r = tp / max(pairs(pc), 1), tp / max(pairs(tc), 1)
    n = len(pred)
    bp = sum(c * c / pc[a] for (a, _), c in pt.items()) / n
    br = sum(c * c / tc[b] for (_, b), c in pt.items()) / n
    return {"precision": p, "recall": r, "bcubed_f": 2 * bp * br / (bp + br), "people": len(set(pred[~neg].tolist())),
            "true": len(tc), "waiting": int(neg.sum())}


def photos_for(n: int, rng: np.random.Generator, share: float = 0.1) -> np.ndarray:
    """(n,) photo keys: most faces alone in their photo, ``share`` of the photos with 2-3 faces."""
    keys = np.arange(n)
    i = 0
    order = rng.permutation(n)
    while i < n:
        k = 1 if rng.uniform() > share else int(rng.integers(2, 4))
        keys[order[i:i + k]] = order[i]
        i += k
    return keys


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except OSError:
        return os.getloadavg().__repr__()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=200_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--threshold", type=float, help="override grouping.DEFAULT's threshold")
    ap.add_argument("--merge", type=float, help="override grouping.DEFAULT's merge")
    ap.add_argument("--attach", type=float, help="override grouping.DEFAULT's attach")
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    params = replace(DEFAULT, **{k: getattr(a, k) for k in ("threshold", "merge", "attach")
                                 if getattr(a, k) is not None})
    print(f"load before: {load()}")
    real = load_real(cache_dir=a.cache, datasets=("celeba", "lfw"))
    log(f"{len(real)} real faces; fitting the synthetic model")
    model = SyntheticModel.fit(real.x, real.identity, rng)
    x, lab, dr = model.identities(a.faces, rng)
    perm = rng.permutation(len(x))
    x, lab = x[perm], lab[perm]
    photos = photos_for(len(x), rng)
    # Faces of one photo are different people: the photo keys came from a random pairing,
    # so a photo holding one person twice is renamed apart.
    seen: dict = {}
    for i, (p, t) in enumerate(zip(photos.tolist(), lab.tolist())):
        if (p, t) in seen:
            photos[i] = -1 - i
        seen[(p, t)] = i
    print(f"synthetic: {len(x):,} faces of {lab.max() + 1:,} identities, {len(set(photos.tolist())):,} photos; "
          f"fit RMS error {model.fit_error:.4f}")
    print(quantile_table(pair_distances(real.x, real.identity, rng), pair_distances(x, lab, rng)))
    print(f"parameters: {params}")

    t0 = time.perf_counter()
    labels = group(x, photos, None, params)
    t_group = time.perf_counter() - t0
    s = scores(labels, lab)
    print(f"group: {t_group:.1f} s; {s}")

    n_new = a.new
    mated = n_new // 2
    known = np.unique(lab)
    ids = rng.choice(known, mated)
    fresh, fresh_lab, _ = model.identities(n_new - mated, rng)  # new people, some with several photos
    nx = np.concatenate([model.more_faces(dr, ids, rng), fresh]).astype(np.float32)
    nlab = np.concatenate([ids, lab.max() + 1 + fresh_lab])
    xa = np.concatenate([x, nx])
    pa = np.concatenate([photos, photos.max() + 1 + np.arange(n_new)])
    la = np.concatenate([labels, np.full(n_new, -1)])
    t0 = time.perf_counter()
    out = place(xa, pa, np.ones(len(xa), bool), la, np.arange(len(x), len(xa)), params)
    t_place = time.perf_counter() - t0
    moved = int((out[: len(x)] != labels).sum())
    joined = int((out[len(x):] >= 0).sum())
    print(f"place {n_new} new faces: {t_place:.2f} s; {joined} placed in a person, {moved} old faces moved "
          f"(waiting faces that founded a person with a new one)")
    s2 = scores(out, np.concatenate([lab, nlab]))
    print(f"after placing: {s2}")
    print(f"peak memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"load after: {load()}")
    print(f"{len(x):,} faces: grouped in {t_group:.1f} s ({s['people']:,} people); +{n_new:,} faces placed in "
          f"{t_place:.2f} s")


if __name__ == "__main__":
    main()
