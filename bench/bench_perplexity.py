"""What a perplexity change on the Explore page costs, against scikit-learn's t-SNE.

    .venv/bin/python -m bench.bench_perplexity [GALLERY_HOME] [--n 5000] [--skip-baseline]

Data: 5,000 x 128 unit vectors, 500 identities x 10 faces (identity centres on the
sphere plus noise, the spread of real dlib embeddings of one person: mean within-
identity cosine ~0.8), or the first ``--n`` faces of a real gallery when a data folder
(FACESEARCH_HOME) is given. Times, in one process on the same data:

1. ours at perplexity 30, first call (PCA to 50 dims, exact kNN graph, then optimise);
2. ours at perplexity 50 with the cache warm: a cold map at the new perplexity (what
   moving the slider cost before the warm start);
3. ours from the perplexity-30 map to 50 (``projection.retune``: the map on screen as
   the initialisation, no early exaggeration, stops when settled): what moving the
   slider costs now;
4. baseline: ``sklearn.manifold.TSNE`` with default settings at perplexity 50 on the
   raw 128-d vectors (a perplexity change there is a full re-run).

Prints seconds, the ratio baseline / ours, the machine's load average (other work on
the machine slows every figure alike), and a 5-NN label agreement per map as a check
that the faster map is not a worse one (the warm map's should be within 0.01 of the cold
map's at the same perplexity). The last line compares 3 with 2, measured in the same run:
``perplexity change: X s warm, Y s cold, ratio Z``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def synthetic(n_ids: int = 500, per_id: int = 10, dim: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X (n_ids * per_id, dim) float32 unit rows, labels (n,))."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # Noise of 0.045 per dimension: two faces of one identity are at cosine ~0.8.
    X = np.repeat(centres, per_id, axis=0) + rng.normal(scale=0.045, size=(n_ids * per_id, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.repeat(np.arange(n_ids), per_id)


def from_gallery(home: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from facesearch.settings import Settings
    from store import FaceGallery, list_galleries

    s = Settings.from_env().with_(home=__import__("pathlib").Path(home))
    gals = list_galleries(s)
    if not gals:
        raise SystemExit(f"no gallery under {home}")
    g = max(gals, key=lambda d: d["count"])
    ids, X, mds = FaceGallery(g["model"], g["dim"], g["detector"], s).all_embeddings(limit=n)
    _, labels = np.unique([str(m.get("identity")) for m in mds], return_inverse=True)
    return X, labels


def label_agreement(Y: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    from facesearch.explore.projection import exact_knn

    idx, _ = exact_knn(Y, None, k)
    return float((labels[idx] == labels[:, None]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gallery_home", nargs="?", help="a FACESEARCH_HOME with a gallery (default: synthetic data)")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args(argv)

    from facesearch.explore import projection

    X, labels = from_gallery(args.gallery_home, args.n) if args.gallery_home else synthetic(n_ids=args.n // 10)
    print(f"data: {X.shape[0]} x {X.shape[1]} ({'gallery ' + args.gallery_home if args.gallery_home else 'synthetic'}), "
          f"{len(np.unique(labels))} identities; {os.cpu_count()} CPUs; {platform.processor() or platform.machine()}")
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    t = time.perf_counter()
    first = projection.tsne(X, perplexity=30)
    t_first = time.perf_counter() - t
    t = time.perf_counter()
    change = projection.tsne(X, perplexity=50)
    t_change = time.perf_counter() - t
    t = time.perf_counter()
    change.transform(X[:1])
    t_place = time.perf_counter() - t
    print(f"ours, perplexity 30, cold cache:      {t_first:7.2f} s   5-NN label agreement {label_agreement(first.coords, labels):.3f}")
    print(f"ours, perplexity 30 -> 50 (slider):   {t_change:7.2f} s   5-NN label agreement {label_agreement(change.coords, labels):.3f}")
    print(f"ours, place one query face:           {t_place:7.2f} s")
    t = time.perf_counter()
    warm = projection.retune(first, perplexity=50)
    t_warm = time.perf_counter() - t
    print(f"ours, perplexity 30 -> 50 (warm start): {t_warm:5.2f} s   5-NN label agreement {label_agreement(warm.coords, labels):.3f}"
          f"   ({warm.params['iterations_run']} iterations, {'settled' if warm.params['settled'] else 'not settled'})")
    if not args.skip_baseline:
        from sklearn.manifold import TSNE

        t = time.perf_counter()
        base = TSNE(perplexity=50, random_state=0).fit_transform(X)
        t_base = time.perf_counter() - t
        print(f"baseline sklearn TSNE(perplexity=50): {t_base:7.2f} s   5-NN label agreement {label_agreement(base, labels):.3f}")
        print(f"ratio baseline / ours (slider change): {t_base / t_change:.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"perplexity change: {t_warm:.2f} s warm, {t_change:.2f} s cold, ratio {t_change / t_warm:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
