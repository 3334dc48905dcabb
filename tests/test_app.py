"""Home and Match pages through Streamlit's AppTest (in-process, no browser).

AppTest cannot upload files, so the pages also read photos from session state:
``match_inputs`` / ``verify_inputs`` / ``enroll_inputs`` = ``[(name, bytes), ...]``.
The Match page leaves what it showed in ``st.session_state["match_summary"]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT, celeba_split

sys.path.insert(0, str(ROOT))  # the pages import the top-level ``components`` package

from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(ROOT / "app.py")
MATCH = str(ROOT / "pages" / "1_Match.py")
TIMEOUT = 180  # the first run loads TensorFlow and the models


@pytest.fixture(scope="module")
def celeba_gallery(settings):
    """10 CelebA identities x 3 photos in the session gallery (idempotent: every module
    that asks for it reuses the same faces). Returns the probe photos (1 per identity)."""
    from facesearch.ingest import ingest

    gallery, probes = celeba_split(n_identities=10, n_gallery=3, n_probe=1)
    report = ingest(DATA / "celeba", items=gallery, settings=settings)
    assert not report.failed, report.failed
    return probes


def _texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "subheader", "header", "title", "success", "warning", "error", "info"):
        parts += [str(e.value) for e in getattr(at, kind)]
    return "\n".join(parts)


def _run(at):
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _until_ingested(at, timeout: float = TIMEOUT):
    """Rerun the Home page until its background ingest has finished and its report shows."""
    import time

    deadline = time.monotonic() + timeout
    while "ingest_job" in at.session_state and time.monotonic() < deadline:
        time.sleep(0.5)
        _run(at)
    assert "ingest_job" not in at.session_state, "the ingest did not finish"
    return at


def _match(photos, **state):
    at = AppTest.from_file(MATCH, default_timeout=TIMEOUT)
    at.session_state["match_inputs"] = photos
    for key, v in state.items():
        at.session_state[key] = v
    return _run(at)


def _photo(path: Path) -> tuple[str, bytes]:
    return path.name, path.read_bytes()


# -- Home ------------------------------------------------------------------------------------
def test_home_shows_gallery_status(celeba_gallery, settings):
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model"] == settings.model and metrics["Detector"] == settings.detector
    assert int(metrics["Faces"].replace(",", "")) >= 29
    assert int(metrics["Identities"]) >= 10
    assert str(settings.home) in _texts(at)
    assert at.text_input(key="ingest_path") is not None and at.selectbox(key="ingest_format").value == "auto"


def test_home_ingest_missing_folder_is_a_clear_error(celeba_gallery):
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    at.text_input(key="ingest_path").set_value("/no/such/folder")
    at.button(key="ingest_go").click()
    _run(at)
    assert any("no such folder" in e.value for e in at.error)


def test_home_ingest_folder_reports_failed_and_no_face_files(celeba_gallery, tmp_path):
    # A tiny folder-per-person dataset with one good photo, a text file posing as a JPEG
    # and a photo without a face: the report lists each problem file with its reason.
    import numpy as np
    from PIL import Image

    (tmp_path / "biden").mkdir()
    (tmp_path / "biden" / "biden.jpg").write_bytes((DATA / "photos/people/biden").glob("*").__next__().read_bytes())
    (tmp_path / "biden" / "broken.jpg").write_bytes((DATA / "photos/edge/not-an-image.jpg").read_bytes())
    Image.fromarray(np.full((120, 160, 3), 200, np.uint8)).save(tmp_path / "biden" / "blank.jpg")
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    at.text_input(key="ingest_path").set_value(str(tmp_path))
    at.selectbox(key="ingest_format").set_value("folders")
    at.button(key="ingest_go").click()
    _until_ingested(_run(at))
    text = _texts(at)
    assert "1 faces added" in text, text
    assert any("Failed files (1)" in e.label for e in at.expander)
    assert any("No face detected (1)" in e.label for e in at.expander)


def test_home_enroll_then_delete(celeba_gallery, tmp_path):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["enroll_inputs"] = [_photo(p) for p in sorted((DATA / "photos/people/obama").iterdir())]
    _run(at)
    at.text_input(key="enroll_name").set_value("Barack Obama")
    at.button(key="enroll_go").click()
    _until_ingested(_run(at))
    assert "Enrolled Barack Obama" in _texts(at)
    assert "Barack Obama" in at.session_state["home_identities"]

    at.selectbox(key="delete_identity").set_value("Barack Obama")
    at.checkbox(key="delete_confirm").check()
    _run(at)  # the button is enabled by the confirmation
    at.button(key="delete_go").click()
    _run(at)
    assert any("Deleted 2 faces of Barack Obama" in s.value for s in at.success)
    assert "Barack Obama" not in at.session_state["home_identities"]


# -- Match -------------------------------------------------------------------------------------
def test_match_page_opens_without_input(celeba_gallery):
    at = _run(AppTest.from_file(MATCH, default_timeout=TIMEOUT))
    assert not at.error and not at.warning
    assert at.slider(key="match_k").value == 5
    assert at.radio(key="match_mode").value == "Upload photos"


def test_match_probe_of_ingested_identity_is_first_match(celeba_gallery):
    probe = celeba_gallery[0]
    at = _match([_photo(probe.path)], match_k=3)
    summary = at.session_state["match_summary"]
    assert summary and summary[0]["best"] == probe.identity, summary
    assert summary[0]["verdict"] in ("match", "possible")
    assert "Face 1" in [s.value for s in at.subheader]
    assert f"`{probe.identity}`" in _texts(at)


def test_match_group_photo_gives_one_block_per_face(celeba_gallery):
    at = _match([_photo(DATA / "photos/group/obama_and_biden.jpg")])
    faces = [s.value for s in at.subheader if s.value.startswith("Face ")]
    assert faces == ["Face 1", "Face 2", "Face 3"]
    assert len(at.session_state["match_summary"]) == 3


def test_match_not_an_image_is_an_error_and_other_photos_still_run(celeba_gallery):
    probe = celeba_gallery[1]
    at = _match([_photo(DATA / "photos/edge/not-an-image.jpg"), _photo(probe.path)])
    assert any("not an image" in e.value for e in at.error), [e.value for e in at.error]
    assert at.session_state["match_summary"][0]["best"] == probe.identity


def test_match_photo_without_face(celeba_gallery, tmp_path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    at = _match([_photo(tmp_path / "grey.png")])
    assert any("no face detected" in e.value for e in at.error)


def test_match_empty_gallery_says_so(celeba_gallery, monkeypatch, tmp_path, session_home):
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    at = _match([_photo(celeba_gallery[0].path)])
    assert any("gallery is empty" in w.value for w in at.warning)
    assert any("is empty" in e.value and "Home page" in e.value for e in at.error)


def test_verify_same_and_different_person(celeba_gallery):
    gal, _ = celeba_split(n_identities=10, n_gallery=3, n_probe=1)
    a, b, c = gal[0], gal[1], gal[3]  # a, b: one identity; c: the next one
    assert a.identity == b.identity != c.identity
    res = {}
    for other in (b, c):
        at = AppTest.from_file(MATCH, default_timeout=TIMEOUT)
        at.session_state["match_mode"] = "Verify two photos"
        at.session_state["verify_inputs"] = [_photo(a.path), _photo(other.path)]
        _run(at)
        res[other.identity == a.identity] = at.session_state["verify_summary"]
        assert [m.label for m in at.metric] == ["Distance", "Threshold", "Similarity"]
    assert res[True]["distance"] < res[False]["distance"]
    assert res[False]["verdict"] == "no match"


@pytest.mark.parametrize("script", ["app.py", "pages/1_Match.py", "pages/2_Explore.py", "pages/3_Evaluate.py"])
def test_every_page_explains_a_database_that_is_not_answering(script, monkeypatch, tmp_path):
    import socket

    with socket.socket() as sk:  # a port nobody listens on
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACESEARCH_CHROMA_URL", f"http://127.0.0.1:{port}")
    at = _run(AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT))
    assert any("not answering" in e.value and "make run" in e.value for e in at.error), _texts(at)
