"""The Explore page through Streamlit's AppTest on a small CelebA gallery."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from conftest import ROOT, celeba_split

PAGE = str(ROOT / "pages" / "2_Explore.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def small_gallery(settings):
    """8 CelebA identities x 4 photos in the session gallery (the default model and detector)."""
    from facesearch.ingest.run import ingest

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


def _figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in _charts(at)]


def _values(v) -> np.ndarray:
    """A plotly array from the chart's JSON: a list, or base64 ``bdata`` with its dtype."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray(v, dtype=float)


def _points(fig: dict) -> dict[str, list[list]]:
    """The map's groups (trace names) with each point's hover data [id, identity, file]."""
    return {t["name"]: t["customdata"] for t in fig["data"] if t.get("mode") == "markers" and t["name"] != "query"}


def _gallery(s):
    """(ids, identity -> faces) of the session gallery, read from the store."""
    from store import FaceGallery, list_galleries

    g = next(g for g in list_galleries(s) if g["model"] == s.model and g["detector"] == s.detector)
    gal = FaceGallery(s.model, g["dim"], s.detector, s)
    return [i for i, _ in gal.iter_metadata()], gal.identities()


def test_map_shows_every_face_by_identity_and_perplexity_redraws(small_gallery, app):
    ids, idents = _gallery(small_gallery)
    at = app.run()
    assert not at.exception, at.exception
    fig = _figures(at)[0]
    points = _points(fig)
    # One point per gallery face, grouped and named by identity (the legend and the hover).
    assert sorted(p[0] for pts in points.values() for p in pts) == sorted(ids)
    assert {name: len(pts) for name, pts in points.items()} == idents
    assert all(p[1] == name for name, pts in points.items() for p in pts)
    assert fig["layout"]["showlegend"] == (len(idents) <= 25)
    assert f"t-SNE, 2-D: {len(ids):,} faces, perplexity 30" == fig["layout"]["title"]["text"]
    assert "perplexity 30" in _captions(at) and "computed from scratch" in _captions(at)
    before = np.concatenate([_values(t["x"]) for t in fig["data"] if t["name"] in points])

    at.slider(key="perplexity").set_value(5).run()  # 30 is capped to about (faces - 1) / 3 here
    assert not at.exception, at.exception
    fig = _figures(at)[0]
    assert "perplexity 5" in _captions(at) and "perplexity 30" not in _captions(at)
    assert {name: len(pts) for name, pts in _points(fig).items()} == idents
    after = np.concatenate([_values(t["x"]) for t in fig["data"] if t["name"] in points])
    assert not np.allclose(before, after), "a new perplexity draws a new map"
    # ... re-tuned from the map on screen (projection.retune), not computed from scratch.
    assert "re-tuned from the previous map" in _captions(at) and "from scratch" not in _captions(at)

    at.slider(key="perplexity").set_value(30).run()  # back: this session's first map again
    assert not at.exception, at.exception
    again = np.concatenate([_values(t["x"]) for t in _figures(at)[0]["data"] if t["name"] in points])
    np.testing.assert_array_equal(again, before)
    assert "computed from scratch" in _captions(at)


def test_similarity_matrix_names_are_categories(small_gallery, app):
    """CelebA's identities are numbers ("7201"): the heatmap must show one even cell per
    name, not place them on a numeric axis (7200, 7220, ...)."""
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


def test_pca_3d_clusters_and_a_query_photo(small_gallery, app, monkeypatch):
    import facesearch.embedding.pipeline
    from conftest import celeba_split

    ids, idents = _gallery(small_gallery)
    at = app.run()
    at.radio(key="method").set_value("PCA").run()
    assert not at.exception, at.exception
    assert "Map: PCA" in _captions(at)
    at.radio(key="dims").set_value(3).run()
    at.radio(key="colour_by").set_value("cluster").run()
    assert not at.exception, at.exception
    fig = _figures(at)[0]
    points = _points(fig)
    assert sorted(points) == [f"cluster {c}" for c in range(10)]  # k = 10 clusters
    assert sum(len(p) for p in points.values()) == len(ids)
    assert {t["type"] for t in fig["data"]} == {"scatter3d"}

    # A photo of a gallery face, uploaded: a star on the map, its nearest face its own.
    photo = celeba_split(8, 4, 0)[0][0]
    at.file_uploader(key="explore_query").set_value((photo.path.name, photo.path.read_bytes(), "image/jpeg")).run()
    assert not at.exception, at.exception
    figs = _figures(at)
    star = next(t for t in figs[0]["data"] if t.get("name") == "query")
    assert star["type"] == "scatter3d" and len(_values(star["z"])) == 1
    assert any(h.value == "Query face" for h in at.subheader)
    rows = next(t["y"] for f in figs for t in f["data"] if "query" in (t.get("y") or []))
    assert rows[1] == f"1. {photo.identity} (1.00)", rows

    # A slider redraws the map with the query on it, without reading the photo again.
    decoded = []
    load = facesearch.embedding.pipeline.load_image
    monkeypatch.setattr(facesearch.embedding.pipeline, "load_image", lambda *a, **kw: decoded.append(a) or load(*a, **kw))
    at.slider(key="k").set_value(4).run()
    assert not at.exception, at.exception
    fig = _figures(at)[0]
    assert sorted(_points(fig)) == [f"cluster {c}" for c in range(4)]
    assert any(t.get("name") == "query" for t in fig["data"]) and decoded == []


def test_empty_gallery_message(tmp_path, monkeypatch, app):
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "empty"))
    at = app.run()
    assert not at.exception, at.exception
    assert any("gallery is empty" in i.value for i in at.info)
    assert not _charts(at)


@pytest.fixture
def family_gallery(tmp_path, monkeypatch, session_home):
    """Its own data folder over the session's embedding cache (the test is about the page):
    three FIW families ingested from FIW's layout (with mid.csv's parents) and one family
    from a FAMILY/PERSON/ folder made of a fourth FIW family's photos (no parents known).
    Returns its settings."""
    import shutil

    from facesearch.datasets.registry import load_images
    from facesearch.ingest.run import ingest
    from facesearch.settings import Settings

    from conftest import DATA

    s = Settings(home=tmp_path / "home", cache_dir=session_home / "cache")
    fiw = [im for im in load_images(DATA / "fiw", "fiw") if im.family in ("F0001", "F0002", "F0004")]
    per = {}
    items = [im for im in fiw if per.setdefault(im.identity, []).append(im) or len(per[im.identity]) <= 3]
    assert not ingest(DATA / "fiw", items=items, settings=s).failed
    for mid, who in (("MID1", "papa"), ("MID2", "mama"), ("MID3", "kid")):
        src = sorted((DATA / "fiw" / "train-faces" / "F0005" / mid).glob("*.jpg"))[:3]
        for p in src:
            (tmp_path / "fams" / "Smith & co" / who).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, tmp_path / "fams" / "Smith & co" / who / p.name)
    assert not ingest(tmp_path / "fams", "families", settings=s).failed
    monkeypatch.setenv("FACESEARCH_HOME", str(s.home))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    return s


def _table(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_family_colours_and_the_mom_dad_child_question(family_gallery, app):
    from components.text import md_unescape
    from facesearch.kinship import space as KS
    from store import FaceGallery, list_galleries

    s = family_gallery
    at = app.run()
    assert not at.exception, at.exception
    # The map coloured by family: FIW's families and the folder's, its name as written.
    at.radio(key="colour_by").set_value("family").run()
    assert not at.exception, at.exception
    assert sorted(_points(_figures(at)[0])) == ["F0001", "F0002", "F0004", "Smith &amp; co"]  # plotly: HTML-escaped

    # F0001: mid.csv says MID1 (m) and MID2 (f) are the parents of MID3 and MID4 (sons).
    at.selectbox(key="family_view").set_value("F0001").run()
    assert not at.exception, at.exception
    t = _table(at, "parent is")
    assert sorted(zip(t["child"], t["parent"], t["parent is"])) == [
        ("F0001/MID3", "F0001/MID1", "father"), ("F0001/MID3", "F0001/MID2", "mother"),
        ("F0001/MID4", "F0001/MID1", "father"), ("F0001/MID4", "F0001/MID2", "mother")]
    assert sorted(t["relation ROC AUC (held out)"]) == [0.81, 0.81, 0.85, 0.85]  # fs, ms
    # The scores are the kinship space's and the model's cosines of the members' mean faces.
    g = next(g for g in list_galleries(s) if g["model"] == s.model)
    _, x, mds = FaceGallery(s.model, g["dim"], s.detector, s).all_embeddings()
    keep = [i for i, md in enumerate(mds) if md.get("family") == "F0001"]
    names, m = KS.member_means(x[keep], [mds[i]["identity"] for i in keep])
    z = KS.load(s.model, s).project(m)
    pos = {n: i for i, n in enumerate(names)}
    for child, parent, kin, same in zip(t["child"], t["parent"], t["kinship score"], t["same-person similarity"]):
        i, j = pos[child], pos[parent]
        assert kin == pytest.approx(float(z[i] @ z[j]), abs=1e-3) and same == pytest.approx(float(m[i] @ m[j]), abs=1e-3)
    assert "F0001/MID3 scores closer to its" in md_unescape(_captions(at))
    assert len(_table(at, "member b")) == len(names) * (len(names) - 1) // 2
    caveat = " ".join(md_unescape(i.value) for i in at.info)
    assert "0.835" in caveat and "0.810" in caveat and "grandparents near chance" in caveat

    # The FAMILY/PERSON/ folder's family: no parents recorded, so every pair, said so.
    at.selectbox(key="family_view").set_value("Smith & co").run()
    assert not at.exception, at.exception
    assert not any("parent is" in d.value.columns for d in at.dataframe)
    pairs = _table(at, "member b")
    assert sorted(pairs["member a"]) == ["Smith & co/kid", "Smith & co/kid", "Smith & co/mama"]
    assert "does not record who is a parent" in _captions(at)
