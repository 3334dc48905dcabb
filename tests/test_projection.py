"""facesearch.explore.projection on synthetic clustered data: shapes, determinism, placement."""

from __future__ import annotations

import numpy as np
import pytest

from facesearch.explore import projection as P
from facesearch.errors import ConfigError


def clusters(n_clusters: int = 4, per: int = 30, dim: int = 32, noise: float = 0.08, seed: int = 0):
    """(X (n_clusters * per, dim) unit rows, labels (n,)), well separated clusters."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n_clusters, dim))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    X = np.repeat(c, per, axis=0) + rng.normal(scale=noise, size=(n_clusters * per, dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.repeat(np.arange(n_clusters), per)


def _nearest_cluster(coords, labels, point):
    centres = np.stack([coords[labels == c].mean(axis=0) for c in np.unique(labels)])
    return int(np.argmin(np.linalg.norm(centres - point, axis=1)))


@pytest.mark.parametrize("dims", [2, 3])
def test_pca_shapes_transform_and_determinism(dims):
    X, y = clusters()
    a, b = P.pca(X, dims), P.pca(X, dims)
    assert a.coords.shape == (len(X), dims) and a.coords.dtype == np.float32
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.explained_variance.shape == (dims,)
    # transform of a training row gives its own coordinates: the model was not refitted.
    np.testing.assert_allclose(a.transform(X[5]), a.coords[5:6], atol=1e-5)
    q = X[y == 2][0] + 0.01
    assert _nearest_cluster(a.coords, y, a.transform(q / np.linalg.norm(q))[0]) == 2


def test_pca_3d_of_two_faces_places_a_query():
    """PCA of two faces has at most two components: the third axis is padded with zeros,
    and a query is placed the same way instead of crashing."""
    X, _ = clusters(n_clusters=2, per=1)
    p = P.pca(X, 3)
    assert p.coords.shape == (2, 3) and np.all(p.coords[:, 2] == 0)
    np.testing.assert_allclose(p.transform(X), p.coords, atol=1e-5)
    mid = p.transform((X[0] + X[1]) / 2)
    assert mid.shape == (1, 3) and mid[0, 0] == pytest.approx(p.coords[:, 0].mean(), abs=1e-5)


def test_tsne_2d_deterministic_and_transform_lands_in_cluster():
    X, y = clusters()
    a = P.tsne(X, 2, perplexity=10, n_iter=300, pca_components=10, seed=3)
    b = P.tsne(X, 2, perplexity=10, n_iter=300, pca_components=10, seed=3)
    assert a.coords.shape == (len(X), 2)
    np.testing.assert_allclose(a.coords, b.coords)
    # Clusters stay clusters on the map: every point's map neighbour is from its cluster.
    idx, _ = P.exact_knn(a.coords, None, 1)
    assert (y[idx[:, 0]] == y).mean() > 0.95
    rng = np.random.default_rng(9)
    for c in range(4):
        q = X[y == c].mean(axis=0) + rng.normal(scale=0.05, size=X.shape[1])
        assert _nearest_cluster(a.coords, y, a.transform(q / np.linalg.norm(q))[0]) == c


def test_tsne_perplexity_change_reuses_cache_and_changes_map():
    X, y = clusters(seed=1)
    a = P.tsne(X, 2, perplexity=10, n_iter=250, pca_components=0, seed=0)
    n_cached = len(P._prepared)
    b = P.tsne(X, 2, perplexity=30, n_iter=250, pca_components=0, seed=0)
    assert len(P._prepared) == n_cached  # same data, pca and seed: the kNN graph was reused
    assert b.params["perplexity"] == 30 and not np.allclose(a.coords, b.coords)


def test_tsne_3d_and_knn_placement():
    X, y = clusters(per=20)
    a = P.tsne(X, 3, perplexity=10, n_iter=250, pca_components=10, seed=0)
    assert a.coords.shape == (len(X), 3)
    np.testing.assert_allclose(a.coords, P.tsne(X, 3, perplexity=10, n_iter=250, pca_components=10, seed=0).coords)
    assert _nearest_cluster(a.coords, y, a.transform(X[y == 1][3])[0]) == 1
    assert "nearest" in a.transform_note


@pytest.mark.parametrize("dims", [2, 3])
def test_tsne_places_a_face_by_its_two_own_not_among_strangers(dims):
    """A fifth identity with two faces beside four clusters of 30: a third face of it has
    two own faces and eight strangers among its ten nearest, and lands by its own two
    (the old median of 25 neighbours put it among the strangers)."""
    X, y = clusters(n_clusters=5, per=30, seed=4)
    keep = np.flatnonzero(y < 4).tolist() + np.flatnonzero(y == 4)[:2].tolist()
    a = P.tsne(X[keep], dims, perplexity=10, n_iter=300, pca_components=10, seed=0)
    idx, _ = P.exact_knn(a.coords, a.transform(X[y == 4][2:5]), 1)
    assert (y[keep][idx[:, 0]] == 4).all()


def test_tsne_small_sets_and_bad_arguments():
    X, _ = clusters(n_clusters=2, per=5)
    p = P.tsne(X, 2, perplexity=50, n_iter=250, pca_components=0)
    assert p.coords.shape == (10, 2) and p.params["effective_perplexity"] == pytest.approx(3.0)
    with pytest.raises(ConfigError):
        P.tsne(X[:3], 2)
    with pytest.raises(ConfigError):
        P.tsne(X, 4)
    with pytest.raises(ConfigError):
        P.pca(np.full((5, 4), np.nan))


def test_kmeans_recovers_clusters():
    X, y = clusters(n_clusters=5)
    lab = P.kmeans(X, 5, seed=0)
    np.testing.assert_array_equal(lab, P.kmeans(X, 5, seed=0))
    # Each true cluster maps to exactly one k-means label and vice versa.
    pairs = set(zip(y.tolist(), lab.tolist()))
    assert len(pairs) == 5 and len({a for a, _ in pairs}) == 5 and len({b for _, b in pairs}) == 5


def test_similarity_matrix():
    X, y = clusters(n_clusters=3, per=10)
    groups = [f"g{c}" for c in y]
    labels, M = P.similarity_matrix(X, groups)
    assert labels == ["g0", "g1", "g2"] and M.shape == (3, 3)
    np.testing.assert_allclose(M, M.T, atol=1e-9)
    off = M[~np.eye(3, dtype=bool)]
    assert np.diag(M).min() > off.max()
    # Diagonal excludes self-pairs: check one against a brute-force mean.
    A = X[y == 0].astype(np.float64)
    S = A @ A.T
    assert M[0, 0] == pytest.approx((S.sum() - np.trace(S)) / (len(A) * (len(A) - 1)))
    assert M[0, 1] == pytest.approx((A @ X[y == 1].T).mean())
    _, M1 = P.similarity_matrix(X[:11], groups[:11])  # g1 has one face: no pairs
    assert np.isnan(M1[1, 1])


def test_barcode_and_sample():
    X, y = clusters()
    rows = P.barcode(X[0], X[1:4])
    assert rows.shape == (4, X.shape[1])
    np.testing.assert_array_equal(rows[0], X[0])
    ids = [f"id{i:03d}" for i in range(len(X))]
    mds = [{"identity": f"p{c}"} for c in y]
    a = P.sample(ids, X, mds, 20, seed=1)
    # Same result whatever order the store returned the rows in.
    perm = np.random.default_rng(0).permutation(len(X))
    b = P.sample([ids[i] for i in perm], X[perm], [mds[i] for i in perm], 20, seed=1)
    assert a[0] == b[0] and len(a[0]) == 20 and a[1].shape == (20, X.shape[1])
    np.testing.assert_array_equal(a[1], b[1])
    only = P.sample(ids, X, mds, None, identities=["p1"])
    assert len(only[0]) == 30 and {m["identity"] for m in only[2]} == {"p1"}


def test_retune_starts_from_the_map_on_screen_and_keeps_the_cold_maps_quality():
    """A perplexity change re-tunes the map on screen: 1,000 faces of 100 noisy identities
    (the FFT path of 5,000), the perplexity-30 map mirrored (x and y swapped: an orientation
    a cold run has no reason to take) re-tuned to perplexity 10. The result keeps that
    orientation (it started there) and its 5-NN label agreement is no worse than a cold map's
    at perplexity 10 by more than 0.01; it settled before the cold map's 375 iterations."""
    import dataclasses

    X, y = clusters(n_clusters=100, per=10, dim=64, noise=0.18, seed=5)
    first = P.tsne(X, 2, perplexity=30)
    on_screen = dataclasses.replace(first, coords=np.ascontiguousarray(first.coords[:, ::-1]))
    warm = P.retune(on_screen, perplexity=10)
    cold = P.tsne(X, 2, perplexity=10)
    assert warm.coords.shape == (len(X), 2) and warm.params["perplexity"] == 10
    assert warm.params["settled"] and warm.params["iterations_run"] < 375
    assert warm.params["warm_start"]["perplexity"] == 30 and warm.params["early_exaggeration_iter"] == 0

    def corr(a, b):
        return min(np.corrcoef(a[:, i], b[:, i])[0, 1] for i in range(2))

    assert corr(warm.coords, on_screen.coords) > 0.9, "the warm map starts from the one on screen"
    assert abs(corr(cold.coords, on_screen.coords)) < 0.5, "a cold map does not (else the check above proves nothing)"

    def agreement(Y):
        idx, _ = P.exact_knn(Y, None, 5)
        return float((y[idx] == y[:, None]).mean())

    assert 0.6 < agreement(cold.coords) < 0.95, "noisy enough for the agreement to tell maps apart"
    assert agreement(warm.coords) >= agreement(cold.coords) - 0.01
    # Deterministic for the same map and parameters (the page may cache it).
    np.testing.assert_allclose(warm.coords, P.retune(on_screen, perplexity=10).coords)


def test_retune_3d_learning_rate_and_bad_maps():
    X, y = clusters(per=20)
    first = P.tsne(X, 3, perplexity=10, n_iter=250, pca_components=10, seed=0)
    warm = P.retune(first, perplexity=20, learning_rate=100, n_iter=300)
    assert warm.coords.shape == (len(X), 3) and warm.params["learning_rate"] == 100
    assert warm.params["pca_components"] == 10 and warm.params["iterations_run"] <= 300 - 75
    assert _nearest_cluster(warm.coords, y, warm.transform(X[y == 1][3])[0]) == 1
    with pytest.raises(ConfigError):
        P.retune(P.pca(X, 2), perplexity=20)
    with pytest.raises(ConfigError):
        P.retune(first, perplexity=0)
