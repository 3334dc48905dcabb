"""bench/bench_query.py's building blocks at 3,000 faces: synthetic identities whose
distances follow the real ones, and recall@10 through a real Chroma server with the
configuration the project creates collections with. Behaviour only, no timings.

The real photos' vectors are read cache-first from the session's embedding cache: these
tests are about the index and the synthetic faces, not about detection or embedding."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_query as bq  # noqa: E402

# A slice of the shared photos, so the test embeds a few hundred photos, not 6,000: the
# first 400 CelebA photos (its 75 identities, a handful of photos each) and the first 200
# LFW photos (some people with several photos, many with one).
LIMIT = {"celeba": 400, "lfw": 200}


@pytest.fixture(scope="module")
def data(data_dir, settings):
    parts = [bq.load_real(data_dir, settings.cache_path, datasets=(name,), limit=n) for name, n in LIMIT.items()]
    real = bq.RealFaces(np.concatenate([p.x for p in parts]), np.concatenate([p.identity for p in parts]),
                        sum((p.path for p in parts), []), sum((p.sha1 for p in parts), []),
                        sum((p.box for p in parts), []), sum(p.no_face for p in parts))
    return bq.make_data(real, 3000, 200, seed=0)


@pytest.mark.timeout(600)
def test_synthetic_distances_follow_the_real_ones(data):
    assert len(data.gallery) == 3000 and data.n_real > 400
    assert np.allclose(np.linalg.norm(data.gallery, axis=1), 1.0, atol=1e-5)
    for real, synth, what in zip(data.real_pairs, data.synth_pairs, ("same person", "different people")):
        r, s = np.percentile(real, bq.QUANTILES), np.percentile(synth, bq.QUANTILES)
        # A few hundred real photos: 0.06 in cosine distance is about a tenth of the gap
        # between the two distributions' medians.
        assert np.abs(r - s).max() < 0.06, (what, r.round(3), s.round(3))
    # Different people are much further apart than one person's photos, in both.
    assert np.median(data.synth_pairs[1]) - np.median(data.synth_pairs[0]) > 0.3


@pytest.mark.timeout(600)
def test_recall_at_10_through_a_server_with_the_project_configuration(data, tmp_path):
    from store.gallery import HNSW_CONFIG

    truth_idx, truth_dist = bq.exact_topk(data.gallery, data.probes)
    srv = bq.start_chroma(tmp_path / "home")
    try:
        client = bq.http_client(srv.url)
        col = client.create_collection(**bq.collection_args(bq.hnsw_config(), data.gallery.shape[1]))
        _, step = bq.write_gallery(col, client, data)
        assert col.count() == len(data.gallery)
        got = col.configuration["hnsw"]
        assert {k: got[k] for k in HNSW_CONFIG} == HNSW_CONFIG
        run = bq.run_queries(col, data.probes)
    finally:
        srv.stop()
    row_of = {i: r for r, i in enumerate(data.ids)}
    assert bq.recall_at_k(run.found, data.gallery, row_of, data.probes, truth_dist) >= 0.99
    # Real held-out photos of people with photos in the gallery find them first.
    in_gallery = {m["identity"] for m in data.metadatas if m["dataset"] != "synthetic"}
    first = [data.metadatas[row_of[f[0]]]["identity"] for f in run.found[:len(data.held)]]
    truth = [data.real.identity[i].split(":", 1)[1] for i in data.held]
    mated = [(f, t) for f, t in zip(first, truth) if t in in_gallery]
    assert len(mated) >= 10
    assert np.mean([f == t for f, t in mated]) > 0.8


def test_recall_counts_ties_and_misses():
    g = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 3]]  # faces 3 and 4 are the same vector
    row_of = {str(i): i for i in range(5)}
    probes = g[[3]]
    _, td = bq.exact_topk(g, probes, 2)
    assert bq.recall_at_k([["4", "3"]], g, row_of, probes, td) == 1.0
    assert bq.recall_at_k([["3", "0"]], g, row_of, probes, td) == 0.5


@pytest.mark.timeout(300)
def test_a_gallery_created_before_keeps_its_index_and_works(tmp_path):
    """A collection made with Chroma's default HNSW settings (the project's configuration
    before HNSW_CONFIG) opens, answers and keeps its own settings."""
    from facesearch.settings import Settings
    from store.gallery import FaceGallery, collection_name

    x = np.random.default_rng(0).standard_normal((50, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    srv = bq.start_chroma(tmp_path / "home")
    try:
        client = bq.http_client(srv.url)
        old = client.create_collection(collection_name("sface", "yunet"), embedding_function=None,
                                       metadata={"model": "sface", "dim": 128, "metric": "cosine", "detector": "yunet"},
                                       configuration={"hnsw": {"space": "cosine"}})
        old.add(ids=[f"f{i}" for i in range(50)], embeddings=x, metadatas=[{"identity": f"p{i}"} for i in range(50)])
        # Reached as the data folder's own server (its relay wants the folder's token).
        g = FaceGallery("sface", 128, "yunet", Settings(home=tmp_path / "home"))
        assert g.count() == 50
        assert [h.identity for h in g.query(x[7:8], k=1)[0]] == ["p7"]
        kept = g.col.configuration["hnsw"]
        assert (kept["max_neighbors"], kept["ef_construction"]) == (16, 100)
    finally:
        srv.stop()
