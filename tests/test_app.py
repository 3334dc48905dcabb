"""Home and Match pages through Streamlit's AppTest (in-process, no browser): photos go
in through the pages' own file uploaders, results are read from what the page shows.
"""

from __future__ import annotations

import re
import subprocess
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
    from facesearch.ingest.run import ingest

    gallery, probes = celeba_split(n_identities=10, n_gallery=3, n_probe=1)
    report = ingest(DATA / "celeba", items=gallery, settings=settings)
    assert not report.failed, report.failed
    return probes


def _texts(at) -> str:
    parts = []
    for kind in ("markdown", "caption", "subheader", "header", "title", "success", "warning", "error", "info"):
        parts += [str(e.value) for e in getattr(at, kind)]
    from components.text import md_unescape

    return md_unescape("\n".join(parts))  # labels and messages are escaped Markdown: read them as shown


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


def _photo(path: Path) -> tuple[str, bytes, str]:
    """What a browser uploads: (name, bytes, MIME type)."""
    return path.name, path.read_bytes(), "image/png" if path.suffix == ".png" else "image/jpeg"


def _match(photos, k: int | None = None, at=None):
    """The Match page with ``photos`` uploaded (and the k slider at ``k``)."""
    at = _run(AppTest.from_file(MATCH, default_timeout=TIMEOUT)) if at is None else at
    if k is not None:
        at.slider(key="match_k").set_value(k)
    at.file_uploader(key="match_upload").set_value(photos)
    return _run(at)


def _best(at) -> list[str]:
    """Each face block's best identity, as the page writes it."""
    from components.text import BEST_MATCH, md_unescape

    return [md_unescape(i) for i, _, _ in BEST_MATCH.findall("\n".join(m.value for m in at.markdown))]


def _faces(at) -> list[str]:
    return [s.value for s in at.subheader if s.value.startswith("Face ")]


# -- Home ------------------------------------------------------------------------------------
def test_home_shows_gallery_status(celeba_gallery, settings):
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model"] == settings.model and metrics["Detector"] == settings.detector
    assert int(metrics["Faces"].replace(",", "")) >= 29
    assert int(metrics["Identities"]) >= 10
    assert str(settings.home) in _texts(at)
    # Which calibration the search verdicts rest on (this small gallery: the shipped one, and why).
    from components.text import md_unescape

    said = md_unescape(_texts(at))
    assert "Search verdicts: match at distance ≤" in said and "calibrated on the shipped impostor scores" in said
    assert "too few to calibrate on" in said
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


def test_home_ingest_families_folder(monkeypatch, tmp_path, session_home):
    """The Home page's families box reads FAMILY/PERSON/*.jpg: each person gets its family
    in the gallery (its own data folder over the session's cache: the test is about the
    page); with another format chosen it says why not."""
    import shutil

    from facesearch.settings import Settings
    from store import FaceGallery, list_galleries

    for fam, person, mid in (("Okafor", "ada", "MID1"), ("Okafor", "chidi", "MID3"), ("Lee", "min", "MID2")):
        (tmp_path / "fams" / fam / person).mkdir(parents=True)
        for p in sorted((DATA / "fiw/train-faces/F0001" / mid).glob("*.jpg"))[:2]:
            shutil.copy(p, tmp_path / "fams" / fam / person / p.name)
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    at.text_input(key="ingest_path").set_value(str(tmp_path / "fams"))
    at.checkbox(key="ingest_families").check()
    at.selectbox(key="ingest_format").set_value("folders")
    at.button(key="ingest_go").click()
    _run(at)
    assert any("not the folders format" in e.value for e in at.error), [e.value for e in at.error]
    at.selectbox(key="ingest_format").set_value("auto")
    at.button(key="ingest_go").click()
    _until_ingested(_run(at))
    n = len(list((tmp_path / "fams").glob("*/*/*.jpg")))
    assert f"{n} faces added" in _texts(at), _texts(at)
    s = Settings.from_env()
    g = next(g for g in list_galleries(s) if g["model"] == s.model)
    mds = [md for _, md in FaceGallery(s.model, g["dim"], s.detector, s).iter_metadata()]
    assert sorted({(md["identity"], md["family"]) for md in mds}) == [
        ("Lee/min", "Lee"), ("Okafor/ada", "Okafor"), ("Okafor/chidi", "Okafor")]


def test_home_enroll_then_delete(celeba_gallery, tmp_path):
    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    at.text_input(key="enroll_name").set_value("Barack Obama")
    at.file_uploader(key="enroll_files").set_value(
        [_photo(p) for p in sorted((DATA / "photos/people/obama").iterdir())])
    at.button(key="enroll_go").click()
    _until_ingested(_run(at))
    assert re.search(r"Enrolled Barack Obama: .*\b2 faces added", _texts(at)), _texts(at)
    assert "Barack Obama (2 faces)" in at.selectbox(key="delete_identity").options
    faces = int(next(m.value for m in at.metric if m.label == "Faces").replace(",", ""))

    at.selectbox(key="delete_identity").set_value("Barack Obama")
    at.checkbox(key="delete_confirm").check()
    _run(at)  # the button is enabled by the confirmation
    at.button(key="delete_go").click()
    _run(at)
    assert any("Deleted 2 faces of Barack Obama" in s.value for s in at.success)
    assert not any(o.startswith("Barack Obama") for o in at.selectbox(key="delete_identity").options)
    assert next(m.value for m in at.metric if m.label == "Faces") == f"{faces - 2:,}"


def test_pages_without_a_photo_load_no_model(celeba_gallery):
    """Home counts faces and identities, Match waits for a photo, Explore maps the gallery:
    none of them loads TensorFlow or a face model (a fresh process, as a new server)."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from streamlit.testing.v1 import AppTest
for page in ("app.py", "pages/1_Match.py", "pages/2_Explore.py"):
    at = AppTest.from_file({str(ROOT)!r} + "/" + page, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page == "app.py":
        assert int(next(m.value for m in at.metric if m.label == "Identities").replace(",", "")) >= 10
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "deepface", "dlib", "torch"))
    assert not loaded, (page, loaded[:5])
    from facesearch.models import registry as models
    assert not [k for k, m in models._cache._items.items() if m._loaded], page
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_home_says_while_the_models_load(celeba_gallery):
    """As `make run` starts the dashboard (components/launch.py), the default model loads
    in the background: meanwhile Home says so, and once loaded it says nothing more. The
    model's own lock is held to keep it loading while the page is read (a fresh process)."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from streamlit.testing.v1 import AppTest
from facesearch.embedding.warmup import warm_up
from facesearch.models.registry import get_model
from facesearch.settings import get_settings

s = get_settings()
model = get_model(s.model, s)
with model._lock:  # the loading thread waits here: still loading
    w = warm_up(s)
    at = AppTest.from_file({str(ROOT)!r} + "/app.py", default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    notes = [i.value for i in at.info if "Loading the face models" in i.value]
    assert len(notes) == 1 and s.model in notes[0] and s.detector in notes[0], [i.value for i in at.info]
    assert not w.done
assert w.wait(120) and w.error is None and w.seconds is not None, w
assert model._loaded
at.run()
assert not at.exception, [e.value for e in at.exception]
assert not [i.value for i in at.info if "Loading the face models" in i.value]
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


# -- Match -------------------------------------------------------------------------------------
def test_match_page_opens_without_input(celeba_gallery):
    at = _run(AppTest.from_file(MATCH, default_timeout=TIMEOUT))
    assert not at.error and not at.warning
    assert at.slider(key="match_k").value == 5
    assert at.radio(key="match_mode").value == "Upload photos"
    assert "Upload one or more photos" in _texts(at)


def test_match_probe_of_ingested_identity_is_first_match(celeba_gallery):
    probe = celeba_gallery[0]
    at = _match([_photo(probe.path)], k=3)
    assert _faces(at) == ["Face 1"]
    assert _best(at)[0] == probe.identity, _texts(at)
    assert re.search(rf"\*\*Best match:\*\* {re.escape(probe.identity)} :(green|orange)\[\*\*(match|possible)\*\*\]", _texts(at)), _texts(at)
    # k = 3: three ranked gallery faces under the face, the first of them the probe's identity.
    from components.text import md_unescape

    hits = [md_unescape(c.value) for c in at.caption if c.value.startswith("#")]
    assert [h.split()[0] for h in hits] == ["#1", "#2", "#3"] and hits[0].startswith(f"#1 {probe.identity}  \n")
    # The sentence saying what "match" means names the calibration behind it.
    assert any("calibrated on the shipped impostor scores" in md_unescape(i.value) for i in at.info), _texts(at)


def test_match_reruns_reuse_the_result(celeba_gallery, monkeypatch):
    """Once a photo is matched, moving a widget re-renders it: no decode, no search, no
    second gallery listing; one gallery handle and one listing per run."""
    import facesearch.embedding.pipeline
    import store

    calls = {"decode": 0, "list": 0, "open": 0}

    def counting(name, fn):
        def wrapped(*a, **kw):
            calls[name] += 1
            return fn(*a, **kw)
        return wrapped

    monkeypatch.setattr(facesearch.embedding.pipeline, "load_image", counting("decode", facesearch.embedding.pipeline.load_image))
    monkeypatch.setattr(store, "list_galleries", counting("list", store.list_galleries))
    monkeypatch.setattr(store.FaceGallery, "__init__", counting("open", store.FaceGallery.__init__))
    probes = [celeba_gallery[2], celeba_gallery[3]]
    at = _match([_photo(p.path) for p in probes])
    assert _best(at) == [p.identity for p in probes]
    assert calls == {"decode": 2, "list": 2, "open": 1}, calls  # the page's run, the upload's run
    calls.update(decode=0, list=0, open=0)
    at.radio(key="match_mode").set_value("Upload photos")  # a rerun, as any widget makes
    _run(at)
    assert _best(at) == [p.identity for p in probes]
    assert calls == {"decode": 0, "list": 1, "open": 1}, calls
    at.slider(key="match_k").set_value(2)  # k is part of the result: searched again
    _run(at)
    assert _best(at) == [p.identity for p in probes]
    assert len([c for c in at.caption if c.value.startswith("#")]) == 4  # two hits per face


def test_match_group_photo_gives_one_block_per_face(celeba_gallery):
    at = _match([_photo(DATA / "photos/group/obama_and_biden.jpg")])
    assert _faces(at) == ["Face 1", "Face 2", "Face 3"]
    assert "3 faces found" in _texts(at)


def test_match_not_an_image_is_an_error_and_other_photos_still_run(celeba_gallery):
    probe = celeba_gallery[1]
    at = _match([_photo(DATA / "photos/edge/not-an-image.jpg"), _photo(probe.path)])
    assert any("not an image" in e.value for e in at.error), [e.value for e in at.error]
    assert _best(at) == [probe.identity]


def test_match_photo_without_face(celeba_gallery, tmp_path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    at = _match([_photo(tmp_path / "grey.png")])
    assert any("no face detected" in e.value for e in at.error)
    assert not _faces(at)


def test_match_empty_gallery_says_so(celeba_gallery, monkeypatch, tmp_path, session_home, settings):
    s = settings
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    at = _run(AppTest.from_file(MATCH, default_timeout=TIMEOUT))
    assert [w.value for w in at.warning] == [f"The {s.model} / {s.detector} gallery is empty: add faces on the Home "
                                             "page (ingest a folder, upload a zip or enroll a person) before matching."]
    assert not at.file_uploader and not at.error
    at.radio(key="match_mode").set_value("Verify two photos")  # two photos need no gallery
    _run(at)
    assert not at.warning and len(at.file_uploader) == 2


def test_match_relatives_mode_on_a_gallery_without_families_says_so(celeba_gallery):
    """The CelebA gallery knows no family: the relatives mode says how to give it some."""
    probe = celeba_gallery[0]
    at = _run(AppTest.from_file(MATCH, default_timeout=TIMEOUT))
    at.radio(key="match_mode").set_value("Find relatives")
    _run(at)
    assert "never a match" in _texts(at) and not at.error
    at.file_uploader(key="relatives_upload").set_value([_photo(probe.path)])
    _run(at)
    from components.text import md_unescape

    errors = [md_unescape(e.value) for e in at.error]
    assert errors == ["this gallery knows no families: ingest an FIW folder, a FAMILY/PERSON/ folder or a CSV with a "
                      "family column to search for relatives"], errors
    assert not _faces(at)


def test_verify_same_and_different_person(celeba_gallery):
    gal, _ = celeba_split(n_identities=10, n_gallery=3, n_probe=1)
    a, b, c = gal[0], gal[1], gal[3]  # a, b: one identity; c: the next one
    assert a.identity == b.identity != c.identity
    at = _run(AppTest.from_file(MATCH, default_timeout=TIMEOUT))
    at.radio(key="match_mode").set_value("Verify two photos")
    _run(at)
    assert "Upload two photos." in _texts(at)
    at.file_uploader(key="verify_a").set_value(_photo(a.path))
    shown = {}
    for other in (b, c):
        at.file_uploader(key="verify_b").set_value(_photo(other.path))
        _run(at)
        metrics = {m.label: float(m.value) for m in at.metric}
        assert list(metrics) == ["Distance", "Threshold", "Similarity"]
        assert metrics["Similarity"] == pytest.approx(1 - metrics["Distance"], abs=0.0015)
        headline = [h.value for h in at.subheader if h.value.endswith(("person", "people"))]
        shown[other is b] = (headline[0], metrics)
    assert shown[True][1]["Distance"] < shown[False][1]["Distance"]
    assert shown[True][0] in ("Same person", "Possibly the same person")
    assert shown[False][0] == "Different people" and shown[False][1]["Distance"] > shown[False][1]["Threshold"]


def test_router_pages_share_the_session(celeba_gallery):
    """app.py opens on Home; Match and Explore run from its menu in one session: the face
    last matched is placed on Explore's map, its nearest gallery face the same person."""
    import json

    at = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    assert at.title[0].value == "facesearch" and any(m.label == "Identities" for m in at.metric)
    probe = celeba_gallery[0]
    _run(at.switch_page("pages/1_Match.py"))
    _match([_photo(probe.path)], at=at)
    assert _best(at) == [probe.identity]
    _run(at.switch_page("pages/2_Explore.py"))
    assert any(h.value == "Query face" for h in at.subheader)
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(t.get("name") == "query" for t in figs[0]["data"]), "the query's star on the map"
    barcode = next(f for f in figs if any("query" in (t.get("y") or []) for t in f["data"]))
    rows = next(t["y"] for t in barcode["data"] if "query" in (t.get("y") or []))
    assert rows[1].startswith(f"1. {probe.identity} ("), rows


@pytest.mark.parametrize("script", ["app.py", "pages/1_Match.py", "pages/2_Explore.py", "pages/3_Evaluate.py",
                                    "pages/4_People.py"])
def test_every_page_explains_a_database_that_is_not_answering(script, monkeypatch, tmp_path):
    import socket

    with socket.socket() as sk:  # a port nobody listens on
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    monkeypatch.setenv("FACESEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACESEARCH_CHROMA_URL", f"http://127.0.0.1:{port}")
    at = _run(AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT))
    assert any("not answering" in e.value and "make run" in e.value for e in at.error), _texts(at)


# -- People ----------------------------------------------------------------------------------------
PEOPLE = str(ROOT / "pages" / "4_People.py")


@pytest.fixture(scope="module")
def people_library(tmp_path_factory, session_home):
    """A flat library of 4 CelebA identities x 5 photos, ingested unlabelled into its own data
    folder (a page test: the session's embedding cache). Returns (home, truth by file name)."""
    from conftest import celeba_library
    from facesearch.ingest.run import ingest
    from facesearch.settings import Settings

    base = tmp_path_factory.mktemp("people_page")
    lib, truth = celeba_library(base / "lib", n_identities=4, n_photos=5)
    s = Settings(home=base / "home", cache_dir=session_home / "cache")
    rep = ingest(lib, "photos", settings=s)
    assert not rep.failed, rep.failed
    return base / "home", truth


def _people_env(monkeypatch, home: Path, session_home, password: str | None = None):
    monkeypatch.setenv("FACESEARCH_HOME", str(home))
    monkeypatch.setenv("FACESEARCH_CACHE", str(session_home / "cache"))
    if password:
        monkeypatch.setenv("FACESEARCH_ADMIN_PASSWORD", password)
    else:
        monkeypatch.delenv("FACESEARCH_ADMIN_PASSWORD", raising=False)


def _keys(at) -> set[str]:
    return {w.key for kind in ("button", "text_input", "selectbox", "checkbox", "toggle") for w in getattr(at, kind)
            if w.key}


def test_people_page_on_a_gallery_without_a_library_says_so(monkeypatch, tmp_path, session_home):
    _people_env(monkeypatch, tmp_path / "empty", session_home)
    at = _run(AppTest.from_file(PEOPLE, default_timeout=TIMEOUT))
    assert any("No people in this gallery yet" in i.value for i in at.info), _texts(at)
    assert not at.error and not any(k.startswith("people_open") for k in _keys(at))


def test_people_page_visitor_sees_people_but_no_editing(people_library, monkeypatch, session_home):
    home, truth = people_library
    _people_env(monkeypatch, home, session_home, password="s3cret")
    at = _run(AppTest.from_file(PEOPLE, default_timeout=TIMEOUT))
    keys = _keys(at)
    opens = sorted(k for k in keys if k.startswith("people_open_"))
    assert opens, _texts(at)
    assert "Unnamed" in [t.value for t in at.text]
    assert not {k for k in keys if k.startswith(("people_sel_", "people_merge", "people_regroup"))}
    assert "Only the gallery's admin" in _texts(at)
    at.button(key=opens[0]).click()
    _run(at)
    keys = _keys(at)
    assert "people_back" in keys and any(h.value.startswith("Person #") for h in at.subheader)
    assert not {k for k in keys if k.startswith(("people_face_", "people_move", "people_name"))}, keys
    assert any(t.value in truth for t in at.text)  # the faces' and photos' file names, as text


def test_people_page_admin_names_a_person_shown_as_text(people_library, monkeypatch, session_home):
    """Single-user mode (no password): the local user is the admin. A name is a label: shown as written."""
    home, _ = people_library
    _people_env(monkeypatch, home, session_home)
    at = _run(AppTest.from_file(PEOPLE, default_timeout=TIMEOUT))
    assert {"people_merge_go", "people_regroup"} <= _keys(at)
    first = sorted(k for k in _keys(at) if k.startswith("people_open_"))[0]
    pid = int(first.rsplit("_", 1)[1])
    at.button(key=first).click()
    _run(at)
    at.text_input(key=f"people_name_{pid}").set_value("*Ann* [x](y)")
    at.button(key=f"people_name_go_{pid}").click()
    _run(at)
    assert "*Ann* [x](y)" in [t.value for t in at.text], _texts(at)
    assert any("Named person" in s.value for s in at.success)


def test_match_links_a_named_person_to_their_people_page(people_library, monkeypatch, session_home):
    """A Match result whose best identity is a named person of the library links to the
    People page with that person open (?person=NAME)."""
    from facesearch.people import service as S
    from facesearch.search.identify import open_gallery
    from facesearch.embedding.pipeline import Pipeline
    from facesearch.settings import Settings

    home, truth = people_library
    _people_env(monkeypatch, home, session_home)
    g = open_gallery(Pipeline(settings=Settings.from_env()))
    person = S.list_people(g)[0]
    S.name_person(g, person.id, "Linked Person")
    photo = next(f for f in S.show_person(g, person.id).faces)
    at = _match([_photo(Path(photo.path))])
    assert "Linked Person" in _best(at)
    # In app.py's menu it is a st.page_link to the People page.
    app = _run(AppTest.from_file(APP, default_timeout=TIMEOUT))
    _run(app.switch_page("pages/1_Match.py"))
    _match([_photo(Path(photo.path))], at=app)
    links = [l.proto for l in app.get("page_link")]
    assert any(l.label == "Show this person's photos" for l in links), links
    # Outside app.py's menu (this AppTest) the link is a Markdown one; in the app, st.page_link.
    assert any(m.value == "[Show this person's photos](People?person=Linked%20Person)" for m in at.markdown), _texts(at)
    at = AppTest.from_file(PEOPLE, default_timeout=TIMEOUT)
    at.query_params["person"] = "Linked Person"
    _run(at)
    assert any(h.value == f"Person #{person.id}" for h in at.subheader) and "Linked Person" in [t.value for t in at.text]
