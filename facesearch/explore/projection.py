"""Maps of the embedding space: PCA, t-SNE, k-means, group similarity, barcodes.

UI-free (the Explore page draws what these return). Every function is deterministic for
a given ``seed``: the same gallery and parameters always give the same picture, which is
what lets the page cache results by their parameters.

Speed: a perplexity change must answer in seconds on a 5,000-face gallery. What does
not depend on the perplexity (the PCA pre-reduction, the exact nearest-neighbour graph
for the largest perplexity the page offers, and the PCA initialisation) is computed once
per (data, pca_components, seed) and kept in a small in-process cache; a new perplexity
then only recomputes the affinities from the cached neighbours (milliseconds) and runs
the FFT-accelerated gradient descent of openTSNE. See docs/BENCHMARKS.md.

A slider move on a map already drawn goes further: :func:`retune` starts from the map on
screen (its coordinates as the initialisation, no early exaggeration, whose job of
pulling clusters together is done) and stops when the map has settled, so a new
perplexity, learning rate or iteration count costs a fraction of a cold map. Its result
depends on the map it started from, not only on the parameters.

UMAP is not offered: ``umap-learn`` is not installed in this project's environment.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facesearch.errors import ConfigError

# The Explore page's perplexity slider tops out here; the cached kNN graph holds
# 3 * this many neighbours so any slider value reuses it.
MAX_PERPLEXITY = 100
N_JOBS = 2


def _n_jobs(n: int) -> int:
    """Threads for openTSNE/sklearn: ``N_JOBS`` on big maps, 1 on small maps or a busy machine.

    openTSNE's workers busy-wait: on an oversubscribed machine (load above the core
    count) 2 threads ran a 120-point map 18x slower than 1 (13.9 s vs 0.75 s) and a
    5,000-point one 2x slower. Small maps gain nothing from threads anyway.
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] + 1 > cores
    except OSError:
        busy = False
    return 1 if n < 2000 or busy else max(1, min(N_JOBS, cores))


@dataclass
class Projection:
    """Coordinates of n faces in 2 or 3 dimensions, plus what is needed to place new faces.

    ``coords``: (n, n_components) float32. ``transform(new (m, d)) -> (m, n_components)``
    places faces on this map without recomputing it.
    """

    coords: np.ndarray
    method: str  # "pca" | "tsne"
    params: dict
    seconds: float = 0.0
    explained_variance: np.ndarray | None = None  # PCA only: (n_components,) ratios
    transform_note: str = ""  # how transform() places a new point, for the UI
    _pca: object | None = field(default=None, repr=False)  # fitted sklearn PCA (PCA maps)
    _X: np.ndarray | None = field(default=None, repr=False)  # (n, d) the mapped faces, for placing by neighbours

    @property
    def n_components(self) -> int:
        return int(self.coords.shape[1])

    def transform(self, new: np.ndarray) -> np.ndarray:
        """Place faces ``new (m, d)`` (or one ``(d,)``) on the map: ``(m, n_components)`` float32."""
        new = _as_matrix(new, "transform")
        if self.method == "pca":
            z = self._pca.transform(new)  # fewer components than the map when it had fewer faces
            return np.pad(z, ((0, 0), (0, self.n_components - z.shape[1]))).astype(np.float32)
        return knn_place(self._X, self.coords, new)


# -- helpers ----------------------------------------------------------------------------

def _as_matrix(X, what: str) -> np.ndarray:
    x = np.asarray(X, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ConfigError(f"{what}: expected an (n, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ConfigError(f"{what}: the embeddings contain NaN or infinity")
    return x


def _check_components(n_components: int) -> int:
    if n_components not in (2, 3):
        raise ConfigError(f"n_components must be 2 or 3, got {n_components}")
    return int(n_components)


def _fingerprint(X: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(X).view(np.uint8)).hexdigest()


def exact_knn(X: np.ndarray, Q: np.ndarray | None, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact euclidean k nearest neighbours of each row of ``Q (m, d)`` among ``X (n, d)``
    (``Q=None``: of X itself, excluding each point). Returns ``(idx (m, k) int64,
    dist (m, k) float64)``, nearest first; ties broken by index so results are stable."""
    X = np.asarray(X, dtype=np.float64)
    self_query = Q is None
    Q = X if self_query else np.asarray(Q, dtype=np.float64)
    k = int(min(k, len(X) - (1 if self_query else 0)))
    xx = np.einsum("ij,ij->i", X, X)
    idx_out = np.empty((len(Q), k), np.int64)
    d_out = np.empty((len(Q), k), np.float64)
    for s in range(0, len(Q), chunk):
        q = Q[s:s + chunk]
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + xx[None, :] - 2.0 * (q @ X.T)
        np.maximum(d2, 0.0, out=d2)
        if self_query:
            d2[np.arange(len(q)), np.arange(s, s + len(q))] = np.inf
        # argpartition then a stable sort of the k survivors: O(n) per row instead of O(n log n).
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else np.tile(np.arange(d2.shape[1]), (len(q), 1))
        pd = np.take_along_axis(d2, part, axis=1)
        order = np.lexsort((part, pd), axis=1)
        idx_out[s:s + len(q)] = np.take_along_axis(part, order, axis=1)
        d_out[s:s + len(q)] = np.sqrt(np.take_along_axis(pd, order, axis=1))
    return idx_out, d_out


def neighbours(X: np.ndarray, new: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k unit rows of ``X (n, d)`` most similar to each unit row of ``new (m, d)`` (or one
    ``(d,)``): ``(idx (m, k) int64, cos (m, k) float64)``, most similar first."""
    idx, dist = exact_knn(X, _as_matrix(new, "neighbours"), k)
    return idx, 1.0 - dist ** 2 / 2.0  # unit rows: squared distance = 2 - 2 cos


# Chosen on held-out CelebA photos of the 65 identities not among tests/test_explore_placement.py's ten,
# on maps with all or 1-3 of their other photos: any k in 5-40 with a temperature of 0.02-0.05 placed them about as
# near their own as their embedding neighbours allow (mean of neighbours, openTSNE: not). Judged on the ten.
PLACE_K = 10
PLACE_TEMPERATURE = 0.05  # a neighbour 0.05 less cosine-similar weighs e^-1 as much


def knn_place(X: np.ndarray, coords: np.ndarray, new: np.ndarray, k: int = PLACE_K,
              temperature: float = PLACE_TEMPERATURE) -> np.ndarray:
    """Place ``new (m, d)`` on the map ``coords (n, c)`` of ``X (n, d)``: ``(m, c)`` float32.

    Not at its k neighbours' mean (nor openTSNE's median of 25), which falls between them,
    in the map's central clutter, when they lie in two places (a hard photo; two faces of
    one person among strangers). Neighbour i weighs w_i = exp(cos_i / temperature); the face
    goes by the neighbour j with the most weight around it, sum_i w_i / (1 + |y_i - y_j|^2)
    (t-SNE's kernel): at the neighbours' mean weighted by w_i times that kernel around j."""
    idx, cos = neighbours(X, new, k)
    w = np.exp((cos - cos[:, :1]) / temperature)
    Y = coords[idx].astype(np.float64)  # (m, k, c)
    near = 1.0 / (1.0 + ((Y[:, :, None, :] - Y[:, None, :, :]) ** 2).sum(axis=-1))  # (m, k, k)
    j = np.einsum("mi,mij->mj", w, near).argmax(axis=1)
    w = w * near[np.arange(len(j)), :, j]
    return (np.einsum("mk,mkc->mc", w, Y) / w.sum(axis=1, keepdims=True)).astype(np.float32)


# -- PCA --------------------------------------------------------------------------------

def pca(X: np.ndarray, n_components: int = 2, seed: int = 0) -> Projection:
    """PCA of ``X (n, d)`` to ``(n, n_components)``; ``transform`` reuses the fitted model."""
    from sklearn.decomposition import PCA

    n_components = _check_components(n_components)
    X = _as_matrix(X, "pca")
    if len(X) < 2:
        raise ConfigError("PCA needs at least 2 faces")
    t0 = time.perf_counter()
    k = min(n_components, X.shape[1], len(X))
    model = PCA(n_components=k, svd_solver="full", random_state=seed).fit(X)
    coords = model.transform(X).astype(np.float32)
    if k < n_components:  # fewer faces than dimensions: pad so the caller always gets n_components
        coords = np.pad(coords, ((0, 0), (0, n_components - k)))
    return Projection(coords, "pca", {"n_components": n_components}, time.perf_counter() - t0,
                      explained_variance=model.explained_variance_ratio_.astype(np.float32),
                      transform_note="projected with the fitted PCA", _pca=model, _X=X)


# -- t-SNE ------------------------------------------------------------------------------

class _CachedKNN:
    """openTSNE ``KNNIndex`` over a precomputed exact kNN graph, truncated to ``k``.

    openTSNE's fit asks its index for ``build() -> (idx, dist)``; serving it from the cached
    graph is what makes a perplexity change skip the kNN search.
    """

    def __init__(self, idx: np.ndarray, dist: np.ndarray, k: int):
        self._idx, self._dist, self.n_samples, self.k = idx, dist, len(idx), int(k)

    def build(self):
        return self._idx[:, :self.k], self._dist[:, :self.k]


@dataclass
class _Prepared:
    Z: np.ndarray  # (n, p) float64: the t-SNE input after the PCA pre-reduction
    idx: np.ndarray  # (n, K) exact neighbours in Z, K = 3 * MAX_PERPLEXITY (or n - 1)
    dist: np.ndarray
    init: dict  # n_components -> (n, c) PCA initialisation, std 1e-4


_prepared: "OrderedDict[tuple, _Prepared]" = OrderedDict()
_prepared_lock = threading.Lock()
_PREPARED_MAX = 4


def _prepare(X: np.ndarray, pca_components: int, seed: int) -> _Prepared:
    """The perplexity-independent part of t-SNE, cached by (data, pca_components, seed)."""
    from sklearn.decomposition import PCA

    key = (_fingerprint(X), X.shape, int(pca_components), int(seed))
    with _prepared_lock:
        hit = _prepared.get(key)
        if hit is not None:
            _prepared.move_to_end(key)
            return hit
    Z = X.astype(np.float64)
    if 0 < pca_components < min(X.shape):
        Z = PCA(int(pca_components), svd_solver="full", random_state=seed).fit(X).transform(X).astype(np.float64)
    idx, dist = exact_knn(Z, None, min(len(Z) - 1, 3 * MAX_PERPLEXITY))
    prep = _Prepared(Z, idx, dist, {})
    with _prepared_lock:
        _prepared[key] = prep
        while len(_prepared) > _PREPARED_MAX:
            _prepared.popitem(last=False)
    return prep


def _pca_init(prep: _Prepared, n_components: int, seed: int) -> np.ndarray:
    from openTSNE import initialization

    init = prep.init.get(n_components)
    if init is None:
        # openTSNE's own "pca" initialisation (scaled to std 1e-4), computed once per map.
        init = prep.init[n_components] = initialization.pca(prep.Z, n_components=n_components, random_state=seed)
    return init


# ints_in_interval=4: the FFT grid's cost grows with the map's extent (~100 units for 500
# identities); a 4x coarser grid made each iteration 4x cheaper here (4.8 s -> 1.2 s per 30
# on 5,000 faces) with the same 5-NN label agreement.
FFT_INTS_IN_INTERVAL = 4


def _gradient_method(n: int, n_components: int) -> str:
    """openTSNE's repulsive-force method for ``n`` points. Its "auto" picks Barnes-Hut below
    10,000 points, yet FFT gradients were 1.5-2x faster per iteration on 5,000 faces here;
    BH stays for small maps, and for 3-D (openTSNE's FFT gradients are 1-D and 2-D only)."""
    return "fft" if n >= 1000 and n_components == 2 else "bh"


def _check_tsne(n: int, perplexity: float, learning_rate, n_iter: int) -> float:
    """Raise ConfigError on bad t-SNE arguments; return the perplexity used for ``n`` faces."""
    if n < 4:
        raise ConfigError(f"t-SNE needs at least 4 faces, the selection has {n}")
    if not 0 < perplexity <= MAX_PERPLEXITY:
        raise ConfigError(f"perplexity must be in (0, {MAX_PERPLEXITY}], got {perplexity}")
    if learning_rate != "auto" and not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ConfigError(f"learning_rate must be 'auto' or a positive number, got {learning_rate!r}")
    if int(n_iter) < 2:
        raise ConfigError(f"n_iter must be at least 2, got {n_iter}")
    # A perplexity near n makes every point everyone's neighbour; cap as openTSNE would.
    return float(min(perplexity, (n - 1) / 3.0))


def tsne(X: np.ndarray, n_components: int = 2, perplexity: float = 30.0, learning_rate: str | float = "auto",
         n_iter: int = 500, pca_components: int = 50, seed: int = 0,
         early_exaggeration_iter: int | None = None) -> Projection:
    """t-SNE of ``X (n, d)`` to ``(n, n_components)``.

    ``pca_components``: reduce to this many dimensions with PCA first (0 = no reduction).
    ``n_iter``: iterations in all, the first ``early_exaggeration_iter`` of them
    exaggerated (default a quarter: 125 of 500, which on 5,000 faces gives the same
    neighbourhoods as openTSNE's 250 + 500 in two thirds of the time; docs/BENCHMARKS.md).
    2-D uses openTSNE (FFT gradients), 3-D scikit-learn (openTSNE's FFT gradients are 2-D
    only and its 3-D Barnes-Hut is slow). ``transform`` places new faces among their most
    similar faces on the fixed map (:func:`knn_place`).
    """
    n_components = _check_components(n_components)
    X = _as_matrix(X, "t-SNE")
    n = len(X)
    eff_perp = _check_tsne(n, perplexity, learning_rate, n_iter)
    n_iter = int(n_iter)
    ee_iter = n_iter // 4 if early_exaggeration_iter is None else int(min(early_exaggeration_iter, n_iter - 1))
    params = {"n_components": n_components, "perplexity": float(perplexity), "effective_perplexity": eff_perp,
              "learning_rate": learning_rate, "n_iter": int(n_iter), "pca_components": int(pca_components),
              "seed": int(seed), "early_exaggeration_iter": ee_iter}
    t0 = time.perf_counter()
    prep = _prepare(X, pca_components, seed)
    if n_components == 2:
        from openTSNE import TSNE
        from openTSNE.affinity import PerplexityBasedNN

        k = min(n - 1, max(1, int(3 * eff_perp)))
        aff = PerplexityBasedNN(perplexity=eff_perp, knn_index=_CachedKNN(prep.idx, prep.dist, k),
                                n_jobs=_n_jobs(n))
        est = TSNE(n_components=2, learning_rate=learning_rate, n_iter=n_iter - ee_iter,
                   early_exaggeration_iter=ee_iter, n_jobs=_n_jobs(n), ints_in_interval=FFT_INTS_IN_INTERVAL,
                   negative_gradient_method=_gradient_method(n, 2), random_state=seed)
        emb = est.fit(affinities=aff, initialization=_pca_init(prep, 2, seed))
        coords = np.asarray(emb, dtype=np.float32)
    else:
        from sklearn.manifold import TSNE as SkTSNE

        lr = learning_rate if learning_rate == "auto" else float(learning_rate)
        est = SkTSNE(n_components=3, perplexity=eff_perp, learning_rate=lr, max_iter=max(250, n_iter),
                     early_exaggeration=12.0, init=_pca_init(prep, 3, seed), method="barnes_hut",
                     random_state=seed, n_jobs=_n_jobs(n))
        coords = est.fit_transform(prep.Z).astype(np.float32)
    return Projection(coords, "tsne", params, time.perf_counter() - t0,
                      transform_note=f"placed among its {PLACE_K} nearest faces, where most of their "
                                     "similarity lies on the map", _X=X)


# A warm start checks the KL divergence every WARM_CHECK_EVERY iterations and stops once it
# fell by less than WARM_SETTLED (relative) since the last check: on the shared CelebA
# (1,529 faces) a move from perplexity 30 to 50 or 100 settles within 50-75 iterations, one
# to 5 within about 175 (the map tightens), against 375 after the exaggeration of a cold map;
# the 5-NN label agreement stayed within 0.003 of the cold map's throughout. Chosen there;
# judged on the synthetic 5,000 of bench/bench_perplexity.py (docs/BENCHMARKS.md).
WARM_CHECK_EVERY = 25
WARM_SETTLED = 0.01


def retune(previous: Projection, perplexity: float = 30.0, learning_rate: str | float = "auto",
           n_iter: int = 500) -> Projection:
    """The t-SNE map ``previous`` for new parameters, started from its coordinates.

    The same faces (``previous``'s, ``(n, d)``), PCA pre-reduction and seed; affinities for
    the new ``perplexity`` from the cached neighbour graph; then gradient descent from
    ``previous.coords (n, c)`` as they are (no rescaling, no early exaggeration: the
    clusters are already formed) until the map has settled (see ``WARM_SETTLED``), at
    most the ``n_iter - n_iter // 4`` iterations a cold map runs after its exaggeration.
    openTSNE in 2-D and 3-D (Barnes-Hut in 3-D: ~17 ms an iteration on 1,529 faces, where
    a cold 3-D map by scikit-learn takes 25 s). Returns a Projection of ``(n, c)`` whose
    ``params`` add ``warm_start`` (the previous map's parameters), ``iterations_run`` and
    ``settled``.
    """
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import PerplexityBasedNN

    if previous.method != "tsne" or previous._X is None:
        raise ConfigError("only a t-SNE map can be re-tuned from its coordinates")
    X = previous._X
    n, c = previous.coords.shape
    if len(X) != n:
        raise ConfigError(f"retune: the map has {n} points for {len(X)} faces")
    eff_perp = _check_tsne(n, perplexity, learning_rate, n_iter)
    old = previous.params
    pca_components, seed = int(old["pca_components"]), int(old["seed"])
    max_iter = max(2 * WARM_CHECK_EVERY, int(n_iter) - int(n_iter) // 4)
    t0 = time.perf_counter()
    prep = _prepare(X, pca_components, seed)  # cached when ``previous`` was made in this process
    aff = PerplexityBasedNN(perplexity=eff_perp, knn_index=_CachedKNN(prep.idx, prep.dist, min(n - 1, max(1, int(3 * eff_perp)))),
                            n_jobs=_n_jobs(n))
    emb = TSNEEmbedding(np.asarray(previous.coords, np.float64), aff, learning_rate=learning_rate, momentum=0.8,
                        negative_gradient_method=_gradient_method(n, c), ints_in_interval=FFT_INTS_IN_INTERVAL,
                        n_jobs=_n_jobs(n), random_state=seed)
    kl: list[float] = []

    def settled(iteration: int, error: float, embedding) -> bool:
        kl.append(float(error))
        return len(kl) >= 2 and kl[-2] - kl[-1] < WARM_SETTLED * abs(kl[-2])

    # openTSNE stops at the first callback that returns True (the embedding is kept as it is).
    emb = emb.optimize(max_iter, inplace=True, callbacks=[settled], callbacks_every_iters=WARM_CHECK_EVERY)
    ran = len(kl) * WARM_CHECK_EVERY if len(kl) * WARM_CHECK_EVERY < max_iter else max_iter
    params = {"n_components": c, "perplexity": float(perplexity), "effective_perplexity": eff_perp,
              "learning_rate": learning_rate, "n_iter": int(n_iter), "pca_components": pca_components,
              "seed": seed, "early_exaggeration_iter": 0, "iterations_run": int(ran),
              "settled": bool(ran < max_iter),
              "warm_start": {k: old[k] for k in ("perplexity", "learning_rate", "n_iter") if k in old}}
    return Projection(np.asarray(emb, dtype=np.float32), "tsne", params, time.perf_counter() - t0,
                      transform_note=previous.transform_note, _X=X)

# -- clusters, similarity, barcodes, sampling ---------------------------------------------

def kmeans(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """K-means cluster of each row of ``X (n, d)``: ``(n,)`` int labels in [0, k)."""
    from sklearn.cluster import KMeans

    X = _as_matrix(X, "kmeans")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    k = int(min(k, len(X)))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(X).astype(np.int64)


def similarity_matrix(X: np.ndarray, groups: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Mean cosine similarity between groups of rows of ``X (n, d)`` (unit rows).

    Returns ``(labels (g,), M (g, g))`` with labels sorted; ``M[a, b]`` is the mean of
    ``x . y`` over faces x in a, y in b; the diagonal excludes self-pairs (NaN for a
    group of one face). Symmetric.
    """
    X = _as_matrix(X, "similarity_matrix")
    groups = [str(g) for g in groups]
    if len(groups) != len(X):
        raise ConfigError(f"similarity_matrix: {len(groups)} group labels for {len(X)} faces")
    labels = sorted(set(groups))
    pos = {g: i for i, g in enumerate(labels)}
    onehot = np.zeros((len(X), len(labels)), np.float64)
    onehot[np.arange(len(X)), [pos[g] for g in groups]] = 1.0
    # Group sums S = onehot^T X, so sum over pairs = S S^T: O(n d) instead of O(n^2 d).
    S = onehot.T @ X.astype(np.float64)
    sums = S @ S.T
    counts = onehot.sum(axis=0)
    pairs = np.outer(counts, counts)
    self_sq = onehot.T @ np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    diag_pairs = counts * (counts - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        M = sums / pairs
        M[np.diag_indices_from(M)] = np.where(diag_pairs > 0, (np.diag(sums) - self_sq) / np.maximum(diag_pairs, 1), np.nan)
    return labels, M


def barcode(query: np.ndarray, matches: np.ndarray) -> np.ndarray:
    """Stack a query ``(d,)`` over its matches ``(m, d)``: ``(m + 1, d)`` float32 rows, drawn
    as a heatmap strip where shared dark/light bands show agreeing dimensions."""
    q = np.asarray(query, dtype=np.float32).reshape(1, -1)
    m = _as_matrix(matches, "barcode") if np.size(matches) else np.zeros((0, q.shape[1]), np.float32)
    if m.shape[1] != q.shape[1]:
        raise ConfigError(f"barcode: query has {q.shape[1]} dimensions, matches have {m.shape[1]}")
    return np.vstack([q, m])


def sample(ids: Sequence[str], X: np.ndarray, metadatas: Sequence[dict], n: int | None,
           identities: Sequence[str] | None = None, seed: int = 0) -> tuple[list[str], np.ndarray, list[dict]]:
    """At most ``n`` faces (``None``: all), only of ``identities`` when given.

    Deterministic: rows are ordered by id before drawing, so the same gallery and seed
    give the same subset whatever order the store returned them in. Returns the chosen
    ``(ids, X (m, d), metadatas)`` in id order.
    """
    X = np.asarray(X, dtype=np.float32)
    if not (len(ids) == len(X) == len(metadatas)):
        raise ConfigError(f"sample: {len(ids)} ids, {len(X)} vectors and {len(metadatas)} metadatas differ")
    keep = np.arange(len(ids))
    if identities:
        want = set(identities)
        keep = np.array([i for i in keep if str((metadatas[i] or {}).get("identity")) in want], dtype=np.int64)
    keep = keep[np.argsort(np.asarray([ids[i] for i in keep], dtype=object), kind="stable")] if len(keep) else keep
    if n is not None and 0 <= n < len(keep):
        chosen = np.random.default_rng(seed).choice(len(keep), size=int(n), replace=False)
        keep = keep[np.sort(chosen)]
    return [ids[i] for i in keep], X[keep].reshape(len(keep), X.shape[1] if X.ndim == 2 else 0), [metadatas[i] for i in keep]
