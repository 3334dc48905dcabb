"""The Explore page through Streamlit's AppTest on a small CelebA gallery."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT, celeba_split

PAGE = str(ROOT / "pages" / "2_Explore.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def small_gallery(settings):
    """8 CelebA identities x 4 photos in the session gallery (the default model and detector)."""
    from facesearch.ingest import ingest

    imgs, _ = celeba_split(8, 4, 0)
    ingest(None, items=imgs, settings=settings)
    return settings


@pytest.fixture
def app(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(ROOT))
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT)


def _charts(at):
    return at.get("plotly_chart")


def _captions(at):
    return " | ".join(c.value for c in at.caption)


def test_map_draws_and_perplexity_slider_redraws(small_gallery, app):
    at = app.run()
    assert not at.exception, at.exception
    assert _charts(at), "no plotly chart"
    assert "perplexity 30" in _captions(at)
    at.slider(key="perplexity").set_value(10).run()
    assert not at.exception, at.exception
    assert _charts(at)
    assert "perplexity 10" in _captions(at)
    assert "perplexity 30" not in _captions(at)
    # The similarity heatmap is drawn below the map.
    assert len(_charts(at)) >= 2


def test_similarity_matrix_names_are_categories(small_gallery, app):
    """CelebA's identities are numbers ("7201"): the heatmap must show one even cell per
    name, not place them on a numeric axis (7200, 7220, ...)."""
    import json

    at = app.run()
    assert not at.exception, at.exception
    figs = [json.loads(c.proto.spec) for c in _charts(at)]
    fig = next(f for f in figs if any(t.get("type") == "heatmap" for t in f["data"]))
    heat = next(t for t in fig["data"] if t["type"] == "heatmap")
    chosen = at.multiselect(key="sim_groups").value
    # The session gallery's identities: CelebA's numeric names, and whatever other tests added.
    assert sum(c.isdigit() for c in chosen) >= 8
    assert list(heat["x"]) == list(heat["y"]) == sorted(chosen)
    assert fig["layout"]["xaxis"].get("type") == fig["layout"]["yaxis"].get("type") == "category"


def test_pca_3d_clusters_and_last_query(small_gallery, app):
    from facesearch.settings import Settings
    from store import FaceGallery, list_galleries

    s = small_gallery
    g = next(g for g in list_galleries(s) if g["model"] == s.model and g["detector"] == s.detector)
    _, X, _ = FaceGallery(s.model, g["dim"], s.detector, s).all_embeddings(limit=1)
    at = app
    at.session_state["last_query"] = {"embedding": X[0], "thumb": None}
    at.run()
    at.radio(key="method").set_value("PCA").run()
    assert not at.exception, at.exception
    assert "Map: PCA" in _captions(at)
    at.radio(key="dims").set_value(3).run()
    at.radio(key="colour_by").set_value("cluster").run()
    assert not at.exception, at.exception
    # Map, barcode of the placed query, similarity matrix.
    assert len(_charts(at)) >= 3
    assert any("Query face" in h.value for h in at.subheader)


def test_empty_gallery_message(tmp_path, monkeypatch, app):
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "empty"))
    at = app.run()
    assert not at.exception, at.exception
    assert any("gallery is empty" in i.value for i in at.info)
    assert not _charts(at)
