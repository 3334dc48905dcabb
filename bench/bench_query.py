"""Top-10 search at N faces (default 200,000) through a Chroma server: latency p50/p99,
recall@10 against exact search, write throughput and bytes per face on disk.

    .venv/bin/python -m bench.bench_query [--faces N] [--queries Q]
        [--ef-construction 100[,200]] [--max-neighbors 16[,32]] [--ef-search 50,100,200]

The gallery. Real faces: the largest face of every photo of ``../shared/data`` (CelebA,
LFW, FIW), embedded by the project's own pipeline (``sface`` + ``yunet``; FIW's crops with
the whole-frame fallback, as ``facesearch evaluate`` does), cached under ``--cache``
(default ``/tmp/bench_query_cache``), so a rerun embeds nothing. A random part of them is
held out as probes; the rest go into the gallery. The remaining N - real faces are
SYNTHETIC identities, drawn so that their same-person and different-person cosine distances
have the real distributions:

* identity centres: a Gaussian fitted to the real identity centres (mean ``mu``, Ledoit-Wolf
  covariance of the centres minus the part the within-identity noise puts into a mean of k
  photos), scaled by ``a``;
* faces: centre + ``s_id`` x a Gaussian fitted to the within-identity residuals, where the
  identity's spread ``s_id = exp(b + tau z)`` (some people vary more across photos than
  others); with probability ``pi`` a face is built on an unrelated centre (a wrong face or
  a wrong label, which the real data has: about 3% of same-person pairs are as far apart as
  strangers);
* every vector normalised to unit length, as the model's are; identity sizes drawn from the
  real identities' sizes.

``a, b, tau, pi`` are fitted together by Nelder-Mead (common random numbers, identities of
the real sizes) so that the 5%, 10%, ..., 95% quantiles of same-person (every pair within an
identity) and different-person (random pairs across identities) distances match the real
ones. Both histograms' quantiles, real against the synthetic gallery actually written, are
printed. Matching distance histograms does not by itself make the data as hard for a graph
index as real faces, so the bench also builds one small in-process index over the real
faces and one over as many synthetic faces and compares their recall (``index difficulty``).

Probes: the held-out real photos (mostly of people who have other photos in the gallery),
plus synthetic probes, half new photos of synthetic gallery identities, half new people.
Truth: exact top-10 by numpy (cosine on the same float32 vectors). Recall@10 counts a
returned face as right when its exact distance is within 1e-5 of the 10th exact neighbour
(duplicate photos tie); it is also given per kind of probe and for the neighbours closer
than 0.55 (the ones a search could call a match). "exact p50" times that brute force one
probe at a time on one BLAS thread.

The collection is created as the project creates it (``store.gallery.HNSW_CONFIG``,
overridden by the flags), in a fresh data folder served by ``chroma run`` on loopback
(``store.server.start_server``), written through ``HttpClient`` in batches of the server's
``get_max_batch_size()`` with the project's metadata fields. Queries go one at a time
through ``HttpClient``, top-10 with metadatas and distances, as the dashboard asks. The
server is restarted before each ``ef_search`` is measured: ``collection.modify`` stores a
new ``ef_search`` but the running server keeps the index it loaded (Chroma 1.5.9), so the
restart is also what an existing gallery needs to take a new value. Where the time goes:
the same requests as ready-made JSON POSTs (no chromadb client library), a heartbeat's round
trip, and, after the server stops, the same queries in-process through ``PersistentClient``
(same index, no HTTP), with and without metadatas and distances. Also printed: the server's
resident memory before and after the index is loaded, and the data folder's size.

With lists of values, every (max_neighbors, ef_construction) pair is built and every
``ef_search`` measured on it; the last line reports the last combination measured (the
project's ``HNSW_CONFIG`` when no flag is given). Last line:
``N faces: recall@10 R, p50 A ms, p99 B ms; exact p50 C ms``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_CACHE = Path("/tmp/bench_query_cache")
DATASETS = ("celeba", "lfw", "fiw")
QUANTILES = (5, 25, 50, 75, 95)
# Fitted on 5%, 10%, ..., 95%: the five printed quantiles alone would let the tails drift.
FIT_QUANTILES = np.arange(5, 96, 5)
K = 10
# Neighbours closer than this could be called "possible" or "match" (sface's 10% FPIR
# threshold for one face is 0.556 and shrinks as the gallery grows): the ones a user sees.
CLOSE = 0.55


def log(msg: str) -> None:
    # Progress goes to stderr: stdout holds the figures and the fixed last line.
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- real faces

@dataclass
class RealFaces:
    """Unit embeddings of real photos, one (the largest face) per photo."""

    x: np.ndarray  # (n, dim) float32, unit rows
    identity: np.ndarray  # (n,) str, "dataset:identity"
    path: list[str]
    sha1: list[str]
    box: list[str]  # "x,y,w,h" of the face in its photo
    no_face: int = 0  # photos where the detector found nothing (left out)

    def __len__(self) -> int:
        return len(self.x)


def load_real(data_dir: Path = DATA, cache_dir: Path = DEFAULT_CACHE, datasets: Sequence[str] = DATASETS,
              limit: int | None = None, model: str = "sface", detector: str = "yunet") -> RealFaces:
    """Embed (cache-first) the photos of ``datasets`` under ``data_dir``; ``limit``: the
    first ``limit`` photos of each dataset by path."""
    from facesearch.datasets.registry import load_images
    from facesearch.embedding.pipeline import get_pipeline
    from facesearch.settings import Settings

    settings = Settings(home=Path(cache_dir), cache_dir=Path(cache_dir), model=model, detector=detector)
    pipe = get_pipeline(model, detector, settings)
    xs, ids, paths, shas, boxes, none = [], [], [], [], [], 0
    for name in datasets:
        images = load_images(Path(data_dir) / name, name, limit=limit)
        t0 = time.perf_counter()
        for i, im in enumerate(images, 1):
            # FIW's photos are tight crops where a detector often finds nothing; evaluate
            # embeds those whole, and so does this.
            e = pipe.embed_file(im.path, whole_frame_fallback=name == "fiw")
            if len(e.faces) == 0:
                none += 1
                continue
            xs.append(e.embeddings[0])
            ids.append(f"{name}:{im.identity}")
            paths.append(str(im.path))
            shas.append(e.sha1)
            boxes.append(",".join(str(int(v)) for v in e.faces[0].box))
            if i % 500 == 0 and time.perf_counter() - t0 > 10:
                log(f"  {name}: {i}/{len(images)} photos embedded ({time.perf_counter() - t0:.0f} s)")
    x = np.asarray(xs, np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return RealFaces(x, np.asarray(ids), paths, shas, boxes, none)


# --------------------------------------------------------------------------- distances

def pair_index(lab: np.ndarray, rng: np.random.Generator, max_pairs: int = 50_000):
    """Same-person pairs (every pair within an identity; a random ``max_pairs`` of them
    when there are more) and ``max_pairs`` random different-person pairs, for integer
    identity labels ``lab`` (n,). Returns index arrays (same_a, same_b, diff_a, diff_b)."""
    order = np.argsort(lab, kind="stable")
    bounds = np.flatnonzero(np.diff(lab[order])) + 1
    pa, pb = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for grp in np.split(order, bounds):
        if len(grp) > 1:
            i, j = np.triu_indices(len(grp), 1)
            pa.append(grp[i])
            pb.append(grp[j])
    pa, pb = np.concatenate(pa), np.concatenate(pb)
    if len(pa) > max_pairs:
        keep = rng.choice(len(pa), max_pairs, replace=False)
        pa, pb = pa[keep], pb[keep]
    ia = rng.integers(0, len(lab), 2 * max_pairs)
    ib = rng.integers(0, len(lab), 2 * max_pairs)
    ok = lab[ia] != lab[ib]
    return pa, pb, ia[ok][:max_pairs], ib[ok][:max_pairs]


def pair_distances(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                   max_pairs: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of same-person and different-person pairs (:func:`pair_index`) of
    unit faces ``x`` (n, dim) with identity ``labels`` (n,). Returns two 1-d arrays."""
    _, lab = np.unique(labels, return_inverse=True)
    pa, pb, ia, ib = pair_index(lab, rng, max_pairs)
    return (1.0 - np.einsum("ij,ij->i", x[pa], x[pb], dtype=np.float64),
            1.0 - np.einsum("ij,ij->i", x[ia], x[ib], dtype=np.float64))


def quantile_table(real: tuple[np.ndarray, np.ndarray], synth: tuple[np.ndarray, np.ndarray]) -> str:
    """Markdown table of the QUANTILES of same- and different-person distances."""
    head = "| pairs | source | n | " + " | ".join(f"{q}%" for q in QUANTILES) + " |"
    rows = [head, "|---|---|---:|" + "---:|" * len(QUANTILES)]
    for kind, i in (("same person", 0), ("different people", 1)):
        for src, d in (("real", real[i]), ("synthetic", synth[i])):
            qs = np.percentile(d, QUANTILES)
            rows.append(f"| {kind} | {src} | {len(d):,} | " + " | ".join(f"{v:.3f}" for v in qs) + " |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- synthetic faces

def _sqrt_cov(c: np.ndarray) -> np.ndarray:
    """L with L @ L.T = c (c symmetric, negative eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return v * np.sqrt(np.clip(w, 0.0, None))


@dataclass
class SyntheticModel:
    """Identities and faces whose distances follow the real ones (module docstring)."""

    mu: np.ndarray  # (dim,)
    lb: np.ndarray  # (dim, dim): centre covariance = lb @ lb.T
    lw: np.ndarray  # (dim, dim): within-identity covariance = lw @ lw.T
    sizes: np.ndarray  # (n_ids,) real identity sizes to draw from
    a: float = 1.0
    b: float = 0.0
    tau: float = 0.0
    pi: float = 0.0
    fit_error: float = float("nan")  # RMS quantile error of the fit (cosine distance)

    @property
    def dim(self) -> int:
        return len(self.mu)

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
            replicate_faces: int = 25_000) -> "SyntheticModel":
        """Fit to real faces ``x`` (n, dim) unit rows with identity ``labels`` (n,)."""
        from scipy.optimize import minimize
        from sklearn.covariance import LedoitWolf

        x = np.asarray(x, np.float64)
        _, inv, cnt = np.unique(labels, return_inverse=True, return_counts=True)
        if (cnt >= 2).sum() < 2:
            raise ValueError("the synthetic model needs at least two real identities with two photos or more")
        centres = np.zeros((len(cnt), x.shape[1]))
        np.add.at(centres, inv, x)
        centres /= cnt[:, None]
        k = cnt[inv]
        multi = k >= 2
        # (x - mean of its k photos) has (k-1)/k of the noise's variance: scaled back.
        resid = (x[multi] - centres[inv[multi]]) * np.sqrt(k[multi] / (k[multi] - 1))[:, None]
        sw = LedoitWolf().fit(resid).covariance_
        m = cnt >= 2
        # A mean of k photos carries sw / k of noise on top of the true centre spread.
        sb = LedoitWolf().fit(centres[m]).covariance_ - sw * np.mean(1.0 / cnt[m])
        model = cls(mu=x.mean(0), lb=_sqrt_cov(sb), lw=_sqrt_cov(sw), sizes=cnt.copy())

        real_g, real_i = pair_distances(x, labels, rng, max_pairs=50_000)
        rq = np.concatenate([np.percentile(real_g, FIT_QUANTILES), np.percentile(real_i, FIT_QUANTILES)])
        # Synthetic identities of the real sizes, so that pairs are weighted alike; several
        # copies, since a few large identities hold most same-person pairs. Common random
        # numbers: the same draws for every parameter value keep the objective smooth
        # enough for Nelder-Mead.
        sizes = np.tile(cnt, max(1, -(-replicate_faces // len(x))))
        draws = model._draws(sizes, np.random.default_rng(rng.integers(1 << 31)))
        lab = np.repeat(np.arange(len(sizes)), sizes)
        prs = pair_index(lab, np.random.default_rng(rng.integers(1 << 31)), 50_000)

        def err(p: np.ndarray) -> float:
            xs = model._faces(draws, lab, np.exp(p[0]), p[1], p[2], float(np.clip(p[3], 0.0, 0.25)))
            g = 1.0 - np.einsum("ij,ij->i", xs[prs[0]], xs[prs[1]])
            i = 1.0 - np.einsum("ij,ij->i", xs[prs[2]], xs[prs[3]])
            q = np.concatenate([np.percentile(g, FIT_QUANTILES), np.percentile(i, FIT_QUANTILES)])
            return float(np.mean((q - rq) ** 2))

        p = np.array([0.0, 0.0, 0.3, 0.02])
        for _ in range(2):  # a restart from the first optimum gets it out of a collapsed simplex
            simplex = np.vstack([p, p + np.diag([0.1, 0.1, 0.1, 0.01])])
            r = minimize(err, p, method="Nelder-Mead",
                         options={"initial_simplex": simplex, "xatol": 1e-4, "fatol": 1e-9, "maxiter": 600})
            p = r.x
        model.a, model.b, model.tau = float(np.exp(p[0])), float(p[1]), abs(float(p[2]))
        model.pi, model.fit_error = float(np.clip(p[3], 0.0, 0.25)), float(np.sqrt(r.fun))
        return model

    def _draws(self, sizes: np.ndarray, rng: np.random.Generator) -> dict:
        """Standard-normal draws for identities of ``sizes`` (n_ids,), already multiplied
        by the covariance factors: centres ``c`` (n_ids, dim), unrelated centres ``o`` and
        residuals ``r`` (n, dim), spreads ``zs`` (n_ids,), uniforms ``uo`` (n,)."""
        n, d = int(sizes.sum()), self.dim
        return {"c": rng.standard_normal((len(sizes), d)) @ self.lb.T, "zs": rng.standard_normal(len(sizes)),
                "r": rng.standard_normal((n, d)) @ self.lw.T, "o": rng.standard_normal((n, d)) @ self.lb.T,
                "uo": rng.uniform(size=n)}

    def _faces(self, dr: dict, lab: np.ndarray, a: float, b: float, tau: float, pi: float) -> np.ndarray:
        """Unit faces (n, dim) from the draws ``dr``; ``lab`` (n,): each face's identity."""
        cen = self.mu + a * dr["c"][lab]
        stray = dr["uo"] < pi
        cen[stray] = self.mu + a * dr["o"][stray]
        f = cen + np.exp(b + tau * dr["zs"][lab])[:, None] * dr["r"]
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    def identities(self, n_faces: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        """About ``n_faces`` faces of new identities, sizes drawn from the real ones.
        Returns (faces (n_faces, dim) float32 unit rows, identity index (n_faces,), draws)."""
        sizes = rng.choice(self.sizes, n_faces // max(1, int(self.sizes.min())) + 1)
        sizes = sizes[:int(np.searchsorted(np.cumsum(sizes), n_faces)) + 1]
        sizes[-1] -= int(sizes.sum()) - n_faces  # the last identity takes what is left
        lab = np.repeat(np.arange(len(sizes)), sizes)
        dr = self._draws(sizes, rng)
        return self._faces(dr, lab, self.a, self.b, self.tau, self.pi).astype(np.float32), lab, dr

    def more_faces(self, dr: dict, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """New photos (len(ids), dim) of identities made by :meth:`identities` (its ``dr``)."""
        n = len(ids)
        d2 = {"c": dr["c"], "zs": dr["zs"], "r": rng.standard_normal((n, self.dim)) @ self.lw.T,
              "o": rng.standard_normal((n, self.dim)) @ self.lb.T, "uo": rng.uniform(size=n)}
        return self._faces(d2, ids, self.a, self.b, self.tau, self.pi).astype(np.float32)


# --------------------------------------------------------------------------- the data set

@dataclass
class BenchData:
    gallery: np.ndarray  # (N, dim) float32 unit rows
    ids: list[str]
    metadatas: list[dict]
    probes: np.ndarray  # (Q, dim) float32 unit rows
    probe_kind: np.ndarray  # (Q,) "real" | "synthetic mated" | "synthetic new"
    held: np.ndarray  # (n real probes,) rows of ``real`` held out as the first probes
    n_real: int
    n_synth_ids: int
    real_pairs: tuple[np.ndarray, np.ndarray]
    synth_pairs: tuple[np.ndarray, np.ndarray]
    model: SyntheticModel
    real: RealFaces


def make_data(real: RealFaces, n_faces: int, n_queries: int, seed: int = 0) -> BenchData:
    """Gallery of ``n_faces``: the real faces not held out, then synthetic identities;
    ``n_queries`` probes: half real held-out photos (at most a tenth of the real ones), the
    rest synthetic, half mated, half new people."""
    rng = np.random.default_rng(seed)
    n_real_probe = min(n_queries // 2, len(real) // 10)
    perm = rng.permutation(len(real))
    held, kept = perm[:n_real_probe], np.sort(perm[n_real_probe:])
    if len(kept) > n_faces:
        kept = kept[:n_faces]
    # Fitted on the gallery's real faces only: held-out probes stay unseen.
    model = SyntheticModel.fit(real.x[kept], real.identity[kept], rng)
    n_syn = n_faces - len(kept)
    n_syn_probe = n_queries - n_real_probe
    if n_syn > 0:
        sx, slab, dr = model.identities(n_syn, rng)
    else:
        sx, slab, dr = np.zeros((0, real.x.shape[1]), np.float32), np.zeros(0, int), None
    n_ids = int(slab.max()) + 1 if len(slab) else 0
    probes = [real.x[held]]
    kinds = ["real"] * len(held)
    if n_syn_probe > 0:
        n_mated = n_syn_probe // 2 if n_ids else 0
        if n_mated:
            probes.append(model.more_faces(dr, rng.choice(n_ids, n_mated), rng))
            kinds += ["synthetic mated"] * n_mated
        nx, _, _ = model.identities(n_syn_probe - n_mated, rng)
        probes.append(nx)
        kinds += ["synthetic new"] * (n_syn_probe - n_mated)
    gallery = np.concatenate([real.x[kept], sx]).astype(np.float32)
    ids, mds = [], []
    for j in kept:
        sha = real.sha1[j]
        ids.append(f"{sha[:20]}-0")
        mds.append(_metadata(real.identity[j].split(":", 1)[1], real.path[j], sha, real.box[j],
                             real.identity[j].split(":", 1)[0]))
    for j, lab in enumerate(slab):
        sha = hashlib.sha1(f"synthetic {seed} {j}".encode()).hexdigest()
        ids.append(f"{sha[:20]}-0")
        mds.append(_metadata(f"synthetic_{lab:06d}", f"synthetic/{lab:06d}/{j:07d}.jpg", sha, "40,52,96,118",
                             "synthetic"))
    real_pairs = pair_distances(real.x[kept], real.identity[kept], rng)
    synth_pairs = pair_distances(sx, slab, rng) if n_syn else (np.zeros(0), np.zeros(0))
    return BenchData(gallery, ids, mds, np.concatenate(probes).astype(np.float32), np.asarray(kinds), held,
                     len(kept), n_ids, real_pairs, synth_pairs, model, real)


def _metadata(identity: str, path: str, sha1: str, box: str, dataset: str) -> dict:
    # The fields facesearch.ingest.run writes, so bytes per face on disk are the real ones.
    return {"identity": identity, "path": path, "image_sha1": sha1, "face_index": 0, "box": box,
            "det_confidence": 0.93, "dataset": dataset}


def index_difficulty(real: RealFaces, model: SyntheticModel, cfg: dict, n_queries: int = 500,
                     seed: int = 0) -> tuple[float, float]:
    """Recall@10 of one small in-process HNSW index over the real faces and one over as
    many synthetic faces in identities of the same sizes, each queried by its own members
    (self excluded). Equal recall means the synthetic faces are as easy, or as hard, for the
    index as real ones; ``cfg``: a weak configuration, so that recall is below 1.
    Returns (real recall, synthetic recall)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    rng = np.random.default_rng(seed)
    _, inv, cnt = np.unique(real.identity, return_inverse=True, return_counts=True)
    lab = np.repeat(np.arange(len(cnt)), cnt)
    synth = model._faces(model._draws(cnt, rng), lab, model.a, model.b, model.tau, model.pi).astype(np.float32)
    q = rng.choice(len(real), min(n_queries, len(real)), replace=False)
    out = []
    for g in (real.x, synth):
        with tempfile.TemporaryDirectory() as tmp:
            client = chromadb.PersistentClient(path=tmp, settings=ChromaSettings(anonymized_telemetry=False))
            try:
                col = client.create_collection("difficulty", embedding_function=None,
                                               configuration={"hnsw": {"space": "cosine", **cfg}})
                ids = [str(i) for i in range(len(g))]
                step = int(client.get_max_batch_size())
                for s in range(0, len(g), step):
                    col.add(ids=ids[s:s + step], embeddings=g[s:s + step])
                truth, _ = exact_topk(g, g[q], K + 1)
                found = col.query(query_embeddings=g[q], n_results=K + 1, include=[])["ids"]
            finally:
                with contextlib.suppress(Exception):
                    client.clear_system_cache()
        hits = 0
        for qi, f, t in zip(q, found, truth):
            hits += len({int(v) for v in f if int(v) != qi} & {int(v) for v in t if v != qi})
        out.append(hits / (K * len(q)))
    return out[0], out[1]


# --------------------------------------------------------------------------- exact search

def exact_topk(gallery: np.ndarray, probes: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of unit ``probes`` (q, dim) in unit ``gallery`` (n, dim):
    (indices (q, k), distances (q, k)), nearest first."""
    idx = np.zeros((len(probes), k), np.int64)
    dist = np.zeros((len(probes), k), np.float64)
    for s in range(0, len(probes), 256):
        sim = probes[s:s + 256] @ gallery.T
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        ps = np.take_along_axis(sim, part, 1)
        o = np.argsort(-ps, axis=1)
        idx[s:s + 256] = np.take_along_axis(part, o, 1)
        dist[s:s + 256] = 1.0 - np.take_along_axis(ps, o, 1)
    return idx, dist


def time_exact(gallery: np.ndarray, probes: np.ndarray, n: int = 200, k: int = K,
               threads: int | None = 1) -> np.ndarray:
    """Seconds per single-probe brute-force top-k (numpy matvec + argpartition), (n,).

    ``threads``: BLAS threads (None: numpy's default). One by default, like one Chroma
    query; on this shared machine two BLAS threads also wait for each other whenever
    another job holds a core (a steady 8 ms per probe at any N under load)."""
    limit = contextlib.nullcontext()
    if threads is not None:
        with contextlib.suppress(ImportError):
            from threadpoolctl import threadpool_limits  # scikit-learn's dependency

            limit = threadpool_limits(threads, user_api="blas")
    out = []
    with limit:
        for q in probes[:n]:
            t0 = time.perf_counter()
            sim = gallery @ q
            top = np.argpartition(-sim, k - 1)[:k]
            top = top[np.argsort(-sim[top])]
            out.append(time.perf_counter() - t0)
    return np.asarray(out)


def recall_at_k(found_ids: list[list[str]], gallery: np.ndarray, row_of: dict[str, int], probes: np.ndarray,
                truth_dist: np.ndarray) -> float:
    """Mean share of each probe's ``k`` results that are true top-k neighbours; a result
    whose exact distance ties the k-th neighbour's (within 1e-5) counts as right."""
    k = truth_dist.shape[1]
    hits = 0
    for q, ids, td in zip(probes, found_ids, truth_dist):
        rows = [row_of[i] for i in ids]
        d = 1.0 - gallery[rows] @ q if rows else np.zeros(0)
        hits += int(np.sum(d <= td[-1] + 1e-5))
    return hits / (k * len(probes))


def recall_within(found_ids: list[list[str]], ids: list[str], truth_idx: np.ndarray, truth_dist: np.ndarray,
                  radius: float) -> tuple[float, int]:
    """Share of the exact top-k neighbours closer than ``radius`` that were returned (the
    faces a search could call a match or possible), and how many there were."""
    want = hit = 0
    for f, ti, td in zip(found_ids, truth_idx, truth_dist):
        close = {ids[i] for i, d in zip(ti, td) if d <= radius}
        want += len(close)
        hit += len(close & set(f))
    return (hit / want if want else float("nan")), want


# --------------------------------------------------------------------------- the server

class _OwnServer:
    """``chroma run`` on loopback, for when ``store.server`` is not there."""

    def __init__(self, home: Path, timeout: float = 120.0):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        (home / "chroma").mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("chroma")
        self._log = open(home / "chroma-server.log", "ab")
        self.proc = subprocess.Popen([str(exe), "run", "--path", str(home / "chroma"), "--host", "127.0.0.1",
                                      "--port", str(port)], stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log)
        self.pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception), \
                    urllib.request.urlopen(self.url + "/api/v2/heartbeat", timeout=1) as r:
                if r.status == 200:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chroma run did not start on {self.url}; see {home / 'chroma-server.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start_chroma(home: Path):
    """A Chroma server for ``home``'s database (``home/chroma``): an object with ``.url``
    and ``.stop()``."""
    try:
        from store.server import start_server
    except ImportError:
        return _OwnServer(home)
    from facesearch.settings import Settings

    srv = start_server(Settings(home=home))
    # The data folder's server wants its token (store/relay.py) where namespaces work.
    if getattr(srv, "token", None):
        _TOKENS[srv.url] = srv.token
    return srv


_TOKENS: dict[str, str] = {}  # server URL -> the token its relay wants


def _auth(url: str) -> dict:
    return {"X-Facesearch-Token": _TOKENS[url]} if url in _TOKENS else {}


def http_client(url: str):
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from urllib.parse import urlparse

    u = urlparse(url)
    return chromadb.HttpClient(host=u.hostname, port=u.port, settings=ChromaSettings(anonymized_telemetry=False),
                               headers=_auth(url) or None)


def hnsw_config(**overrides) -> dict:
    """The project's collection configuration (``store.gallery.HNSW_CONFIG``) with overrides."""
    from store.gallery import HNSW_CONFIG

    return {**HNSW_CONFIG, **{k: v for k, v in overrides.items() if v is not None}}


def collection_args(cfg: dict, dim: int) -> dict:
    from store.gallery import METRIC, collection_name

    return {"name": collection_name("sface", "yunet"),
            "metadata": {"model": "sface", "dim": dim, "metric": METRIC, "detector": "yunet",
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
            "embedding_function": None, "configuration": {"hnsw": dict(cfg)}}


def write_gallery(col, client, data: BenchData, progress: Callable[[int], None] | None = None) -> tuple[float, int]:
    """Upsert the whole gallery in batches of the server's maximum; (seconds, batch)."""
    step = int(client.get_max_batch_size())
    t0 = time.perf_counter()
    for s in range(0, len(data.ids), step):
        col.upsert(ids=data.ids[s:s + step], embeddings=data.gallery[s:s + step],
                   metadatas=data.metadatas[s:s + step])
        if progress:
            progress(min(s + step, len(data.ids)))
    return time.perf_counter() - t0, step


@dataclass
class QueryRun:
    seconds: np.ndarray  # (Q,) per query
    found: list[list[str]]
    first: float  # the first query after (re)start: loads the index

    def p(self, q: float) -> float:
        return float(np.percentile(self.seconds, q) * 1000)


def run_queries(col, probes: np.ndarray, k: int = K, warmup: int = 20,
                include: Sequence[str] = ("metadatas", "distances")) -> QueryRun:
    """One query at a time, top-k with metadatas and distances (what the Match page asks)."""
    inc = list(include)
    t0 = time.perf_counter()
    col.query(query_embeddings=probes[:1], n_results=k, include=inc)
    first = time.perf_counter() - t0
    for q in probes[:warmup]:
        col.query(query_embeddings=q[None], n_results=k, include=inc)
    secs, found = [], []
    for q in probes:
        t0 = time.perf_counter()
        r = col.query(query_embeddings=q[None], n_results=k, include=inc)
        secs.append(time.perf_counter() - t0)
        found.append(r["ids"][0])
    return QueryRun(np.asarray(secs), found, first)


def raw_http_queries(url: str, collection_id, probes: np.ndarray, k: int = K, warmup: int = 20) -> np.ndarray:
    """Seconds per query (Q,) of the same top-k request POSTed as ready-made JSON on a
    kept-alive connection: the server's side and the transport, without the chromadb
    client library (its argument checks, numpy conversion, response parsing)."""
    import json

    import httpx

    path = f"{url}/api/v2/tenants/default_tenant/databases/default_database/collections/{collection_id}/query"
    bodies = [json.dumps({"query_embeddings": [q.tolist()], "n_results": k,
                          "include": ["metadatas", "distances"]}).encode() for q in probes]
    headers = {"content-type": "application/json", **_auth(url)}
    out = []
    with httpx.Client(timeout=30) as http:
        for b in bodies[:warmup]:
            http.post(path, content=b, headers=headers).raise_for_status()
        for b in bodies:
            t0 = time.perf_counter()
            r = http.post(path, content=b, headers=headers)
            r.content
            out.append(time.perf_counter() - t0)
            r.raise_for_status()
    return np.asarray(out)


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (0 when it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    """Bytes the folder takes on disk (allocated blocks, as ``du``)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


# --------------------------------------------------------------------------- main

def _holds(home: Path, cfg: dict, n: int) -> bool:
    """Does ``home`` (kept by an earlier run) hold the gallery of ``n`` faces?"""
    if not (home / "chroma" / "chroma.sqlite3").is_file():
        return False
    srv = start_chroma(home)
    try:
        col = http_client(srv.url).get_collection(collection_args(cfg, 0)["name"], embedding_function=None)
        return col.count() == n
    except Exception:
        return False
    finally:
        srv.stop()


def _build(home: Path, cfg: dict, data: BenchData, n: int) -> float:
    """Write the gallery into a fresh data folder ``home`` through a server; vectors/s."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    srv = start_chroma(home)
    try:
        client = http_client(srv.url)
        col = client.create_collection(**collection_args(cfg, data.gallery.shape[1]))
        t_log = [time.perf_counter()]

        def progress(done: int) -> None:
            if time.perf_counter() - t_log[0] > 30:
                t_log[0] = time.perf_counter()
                log(f"  written {done:,}/{n:,}")

        log(f"building max_neighbors={cfg['max_neighbors']} ef_construction={cfg['ef_construction']} ...")
        secs, step = write_gallery(col, client, data, progress)
        t0 = time.perf_counter()
        count = col.count()
        col.query(query_embeddings=data.probes[:1], n_results=K, include=["distances"])
        settle = time.perf_counter() - t0
        if count != n:
            raise SystemExit(f"the collection holds {count:,} faces, {n:,} were written")
        wps = n / secs
        print(f"build max_neighbors={cfg['max_neighbors']} ef_construction={cfg['ef_construction']}: "
              f"{n:,} faces upserted through HTTP in batches of {step:,} in {secs:.1f} s = {wps:,.0f} "
              f"vectors/s (count + first query after: {settle:.2f} s)")
    finally:
        srv.stop()
    return wps


@dataclass
class PathRun:
    recall: float
    p50: float
    p99: float
    load_s: float
    rss_mb: float


def project_path(home: Path, data: BenchData, truth_dist: np.ndarray, row_of: dict, memory: bool) -> PathRun:
    """The queries as the project makes them: ``FaceGallery.query`` (top-10, one probe at a
    time) through the data folder's server; with ``memory``, as the dashboard does, exact
    search over the process's copy of the vectors (store/memindex.py) once it is loaded."""
    from facesearch.settings import Settings
    from store.gallery import FaceGallery, close_client

    settings = Settings(home=home)
    srv = start_chroma(home)
    try:
        g = FaceGallery("sface", data.gallery.shape[1], "yunet", settings, create=False, memory_index=memory)
        rss0 = rss_bytes(os.getpid())
        t0 = time.perf_counter()
        g.query(data.probes[:1], k=K)
        load = 0.0
        if memory:
            if not g.memory.wait(600) or g.memory.error:
                raise SystemExit(f"the memory index did not load: {g.memory.error}")
            load = time.perf_counter() - t0
        for q in data.probes[:20]:
            g.query(q[None], k=K)
        secs, found = [], []
        for q in data.probes:
            t0 = time.perf_counter()
            hits = g.query(q[None], k=K)[0]
            secs.append(time.perf_counter() - t0)
            found.append([h.id for h in hits])
        rss = rss_bytes(os.getpid())
    finally:
        srv.stop()
        close_client(settings)
    secs = np.asarray(secs)
    return PathRun(recall_at_k(found, data.gallery, row_of, data.probes, truth_dist),
                   float(np.percentile(secs, 50) * 1000), float(np.percentile(secs, 99) * 1000), load,
                   (rss - rss0) / 1e6)


@dataclass
class Row:
    max_neighbors: int
    ef_construction: int
    ef_search: int
    write_per_s: float
    bytes_per_face: float
    recall: float
    p50: float
    p99: float
    first_ms: float


def _ints(s: str | None) -> list[int | None]:
    return [None] if s is None else [int(v) for v in s.split(",") if v.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_query", description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=200_000, help="gallery size N (default 200,000)")
    ap.add_argument("--queries", type=int, default=1000, help="probes Q (default 1,000)")
    ap.add_argument("--ef-construction", help="comma list; default HNSW_CONFIG's")
    ap.add_argument("--max-neighbors", help="comma list; default HNSW_CONFIG's")
    ap.add_argument("--ef-search", help="comma list; default HNSW_CONFIG's")
    ap.add_argument("--data", type=Path, default=DATA, help="shared data folder (default ../shared/data)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("BENCH_QUERY_CACHE", DEFAULT_CACHE)),
                    help="embedding cache folder (default /tmp/bench_query_cache)")
    ap.add_argument("--work", type=Path, default=None, help="where the Chroma data folders go (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the Chroma data folders")
    ap.add_argument("--reuse", action="store_true",
                    help="with --work: use a data folder kept by an earlier run (--keep) when it holds the same "
                         "N faces, instead of writing it again")
    ap.add_argument("--no-embedded", dest="embedded", action="store_false",
                    help="skip the in-process (PersistentClient) comparison")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t_all = time.perf_counter()
    log("embedding the shared photos (cache-first) ...")
    real = load_real(args.data, args.cache)
    data = make_data(real, args.faces, args.queries, args.seed)
    m = data.model
    n = len(data.gallery)
    n_ids_real = len(np.unique(real.identity))
    print(f"real faces: {len(real):,} photos with a face ({real.no_face} without) of {n_ids_real:,} identities "
          f"({', '.join(DATASETS)}), sface + yunet; {int((data.probe_kind == 'real').sum()):,} held out as probes")
    print(f"synthetic model: centre scale a={m.a:.3f}, residual scale exp(b)={np.exp(m.b):.3f}, "
          f"per-identity spread tau={m.tau:.3f}, unrelated-face share pi={m.pi:.3f}; RMS error of the "
          f"fitted quantiles {m.fit_error:.4f}")
    print("cosine-distance quantiles, real gallery faces against the synthetic faces written:")
    print(quantile_table(data.real_pairs, data.synth_pairs))
    weak = {"max_neighbors": 16, "ef_construction": 100, "ef_search": 10}
    r_real, r_syn = index_difficulty(real, m, weak)
    print(f"index difficulty at equal size ({len(real):,} faces each, members as queries, max_neighbors 16, "
          f"ef_construction 100, ef_search 10): recall@10 real {r_real:.3f}, synthetic {r_syn:.3f}")
    kinds = {k: int((data.probe_kind == k).sum()) for k in ("real", "synthetic mated", "synthetic new")}
    print(f"gallery: {n:,} faces = {data.n_real:,} real + {n - data.n_real:,} synthetic "
          f"({data.n_synth_ids:,} identities); probes: " + ", ".join(f"{v:,} {k}" for k, v in kinds.items()))

    truth_idx, truth_dist = exact_topk(data.gallery, data.probes)
    ex = time_exact(data.gallery, data.probes)
    ex2 = time_exact(data.gallery, data.probes, threads=None)
    exact_p50 = float(np.median(ex) * 1000)
    print(f"exact search (numpy matvec + argpartition, {n:,} x {data.gallery.shape[1]} float32, one probe at a "
          f"time, one BLAS thread): p50 {exact_p50:.1f} ms, p99 {np.percentile(ex, 99) * 1000:.1f} ms "
          f"(numpy's default threads: p50 {np.median(ex2) * 1000:.1f} ms)")
    row_of = {i: r for r, i in enumerate(data.ids)}
    if len(row_of) != n:
        raise SystemExit("duplicate face ids in the gallery")

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_query_"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    last: tuple[Row, QueryRun] | None = None
    try:
        for mn, efc in itertools.product(_ints(args.max_neighbors), _ints(args.ef_construction)):
            base = hnsw_config(max_neighbors=mn, ef_construction=efc)
            efs_list = [v if v is not None else base["ef_search"] for v in _ints(args.ef_search)]
            cfg = {**base, "ef_search": efs_list[0]}
            home = work / f"m{cfg['max_neighbors']}_efc{cfg['ef_construction']}"
            if args.reuse and _holds(home, cfg, n):
                wps = float("nan")
                print(f"reusing {home}: {n:,} faces written by an earlier run (no write rate measured)")
            else:
                wps = _build(home, cfg, data, n)
            for efs in efs_list:
                srv = start_chroma(home)
                try:
                    client = http_client(srv.url)
                    col = client.get_collection(collection_args(cfg, 0)["name"], embedding_function=None)
                    if col.configuration["hnsw"]["ef_search"] != efs:
                        col.modify(configuration={"hnsw": {"ef_search": efs}})
                        # The running server keeps the ef it loaded the index with: restart.
                        srv.stop()
                        srv = start_chroma(home)
                        client = http_client(srv.url)
                        col = client.get_collection(collection_args(cfg, 0)["name"], embedding_function=None)
                    got = col.configuration["hnsw"]
                    rss0 = rss_bytes(srv.pid)
                    run = run_queries(col, data.probes)
                    rss = rss_bytes(srv.pid)
                    raw = raw_http_queries(srv.url, col.id, data.probes)
                    hb = []
                    for _ in range(200):
                        t0 = time.perf_counter()
                        client.heartbeat()
                        hb.append(time.perf_counter() - t0)
                finally:
                    srv.stop()
                rec = recall_at_k(run.found, data.gallery, row_of, data.probes, truth_dist)
                size = dir_bytes(home / "chroma")
                row = Row(got["max_neighbors"], got["ef_construction"], got["ef_search"], wps, size / n, rec,
                          run.p(50), run.p(99), run.first * 1000)
                rows.append(row)
                parts = []
                for k in (k for k in kinds if kinds[k]):
                    sel = data.probe_kind == k
                    found_k = [f for f, s in zip(run.found, sel) if s]
                    parts.append(f"{k} {recall_at_k(found_k, data.gallery, row_of, data.probes[sel], truth_dist[sel]):.3f}")
                close, n_close = recall_within(run.found, data.ids, truth_idx, truth_dist, CLOSE)
                parts.append(f"of the {n_close:,} top-10 neighbours closer than {CLOSE}: {close:.4f}")
                print(f"  ef_search={got['ef_search']}: recall@10 {rec:.4f} ({'; '.join(parts)}), HTTP p50 {row.p50:.2f} ms, "
                      f"p99 {row.p99:.2f} ms; first query after start {row.first_ms:.0f} ms; the same requests as "
                      f"raw JSON POSTs p50 {np.median(raw) * 1000:.2f} ms; heartbeat p50 {np.median(hb) * 1000:.2f} ms; data folder {size / 1e6:,.0f} MB = {size / n:,.0f} bytes/face; server "
                      f"RSS {rss / 1e6:,.0f} MB ({rss0 / 1e6:,.0f} MB before the first query)")
                last = (row, run)
            if args.embedded:
                _embedded(home, cfg, data, truth_dist, row_of)
            hnsw_run = project_path(home, data, truth_dist, row_of, memory=False)
            print(f"  FaceGallery.query through the server, HNSW (the CLI's path): recall@10 {hnsw_run.recall:.4f}, "
                  f"p50 {hnsw_run.p50:.2f} ms, p99 {hnsw_run.p99:.2f} ms")
            mem_run = project_path(home, data, truth_dist, row_of, memory=True)
            print(f"  FaceGallery.query with the memory index (the dashboard's path): recall@10 {mem_run.recall:.4f}, "
                  f"p50 {mem_run.p50:.2f} ms, p99 {mem_run.p99:.2f} ms; copy loaded in {mem_run.load_s:.1f} s, "
                  f"process memory +{mem_run.rss_mb:,.0f} MB")
            if not args.keep:
                shutil.rmtree(home, ignore_errors=True)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)

    print("| max_neighbors | ef_construction | ef_search | recall@10 | p50 ms | p99 ms | writes/s | bytes/face |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.max_neighbors} | {r.ef_construction} | {r.ef_search} | {r.recall:.4f} | {r.p50:.2f} | "
              f"{r.p99:.2f} | {r.write_per_s:,.0f} | {r.bytes_per_face:,.0f} |")
    print(f"total {time.perf_counter() - t_all:.0f} s; load now: {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    row = last[0]
    # Rounded down: 0.9899 must not print as 0.990.
    print(f"HNSW through the server (last configuration): recall@10 {np.floor(row.recall * 1000) / 1000:.3f}, "
          f"p50 {row.p50:.1f} ms, p99 {row.p99:.1f} ms")
    # The last line: what a search on the dashboard costs (FaceGallery.query, memory index).
    print(f"{n:,} faces: recall@10 {np.floor(mem_run.recall * 1000) / 1000:.3f}, p50 {mem_run.p50:.1f} ms, "
          f"p99 {mem_run.p99:.1f} ms; exact p50 {exact_p50:.1f} ms")


def _embedded(home: Path, cfg: dict, data: BenchData, truth_dist: np.ndarray, row_of: dict) -> None:
    """The same queries in-process through ``PersistentClient`` (same index files, no HTTP)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(home / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    try:
        col = client.get_collection(collection_args(cfg, 0)["name"], embedding_function=None)
        run = run_queries(col, data.probes)
        rec = recall_at_k(run.found, data.gallery, row_of, data.probes, truth_dist)
        bare = run_queries(col, data.probes, include=())
        print(f"  in-process PersistentClient, same index (ef_search={col.configuration['hnsw']['ef_search']}): "
              f"recall@10 {rec:.4f}, p50 {run.p(50):.2f} ms, p99 {run.p(99):.2f} ms; ids only (no metadata, "
              f"no distances) p50 {bare.p(50):.2f} ms")
    finally:
        with contextlib.suppress(Exception):
            client.clear_system_cache()


if __name__ == "__main__":
    main()
