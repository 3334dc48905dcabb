"""People: a photo library ingested without labels, its faces grouped into people that a
user names, merges and corrects; named people found by Match; one identity per photo.

Real parts throughout: the shared photos, sface + yunet, Chroma, SQLite, the console
script. Each test that embeds has its own empty data folder and cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA

FS = str(Path(sys.executable).with_name("facesearch"))
PHOTOS = DATA / "photos"


def _library(folder: Path) -> Path:
    """A flat photo library: Obama (2), Biden (1), the group photos, the deepface photos
    of one actress (img1-7): no labels anywhere."""
    folder.mkdir(parents=True)
    for p in [*(PHOTOS / "people").glob("*/*.jpg"), *(PHOTOS / "group").glob("*.jpg"),
              *(PHOTOS / "deepface-unit" / f"img{i}.jpg" for i in (1, 2, 4, 5, 6, 7))]:
        shutil.copy(p, folder / p.name)
    return folder


def test_photo_library_is_detected_and_loaded_unlabelled(tmp_path):
    from facesearch.datasets.photos import UnlabeledImage
    from facesearch.datasets.registry import detect_format, load_images

    lib = _library(tmp_path / "lib")
    assert detect_format(lib) == "photos"
    images = load_images(lib)
    assert len(images) == len(os.listdir(lib))
    assert all(isinstance(i, UnlabeledImage) and i.identity == "" for i in images)
    # --format photos reads sub-folders too, and never takes a folder's name for a name
    # (auto-detection calls loose photos beside per-person folders a labelled layout).
    (lib / "2019").mkdir()
    shutil.copy(PHOTOS / "people" / "biden" / os.listdir(PHOTOS / "people" / "biden")[0], lib / "2019" / "x.jpg")
    images = load_images(lib, "photos")
    assert any(i.path.parent.name == "2019" for i in images) and {i.identity for i in images} == {""}
    # A labelled layout stays labelled; --format photos forces a library.
    assert detect_format(PHOTOS / "people") == "folders"
    assert {i.identity for i in load_images(PHOTOS / "people", "photos")} == {""}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """A photo library ingested into its own data folder and cache: (settings, gallery, folder)."""
    from facesearch.ingest.run import ingest
    from facesearch.search.identify import open_gallery
    from facesearch.embedding.pipeline import Pipeline
    from facesearch.settings import Settings

    base = tmp_path_factory.mktemp("people")
    s = Settings(home=base / "home")
    lib = _library(base / "lib")
    rep = ingest(lib, settings=s)
    assert rep.failed == [] and rep.faces_added > rep.images_with_faces  # every face, not the largest only
    return s, open_gallery(Pipeline(settings=s)), lib


def _person_of(gallery, path_end: str) -> int:
    from facesearch.people import service as S

    for p in S.list_people(gallery, min_faces=1):
        if any(f.path.endswith(path_end) and f.face_id.split("-")[1] == "0" for f in S.show_person(gallery, p.id).faces):
            return p.id
    raise AssertionError(f"no person holds the largest face of {path_end}")


def test_library_faces_are_unnamed_and_grouped(library):
    from facesearch.people import service as S

    s, g, lib = library
    mds = g.get()["metadatas"]
    assert mds and all(m["identity"] == "" and m["people"] is True for m in mds)
    assert g.identities() == {}  # nobody named yet: no identity called "" or a file name
    people = S.list_people(g)
    assert people and all(p.name is None and p.faces >= 2 for p in people)
    assert [p.faces for p in people] == sorted((p.faces for p in people), reverse=True)
    # Obama's two portraits are one person; the actress's six photos another.
    obama = _person_of(g, "obama.jpg")
    assert obama == _person_of(g, "obama2.jpg")
    actress = _person_of(g, "img1.jpg")
    assert actress != obama and all(_person_of(g, f"img{i}.jpg") == actress for i in (2, 4, 5, 6, 7))
    # Never two faces of one photo in one person.
    for p in S.list_people(g, min_faces=1):
        photos = [f.photo for f in S.show_person(g, p.id).faces]
        assert len(photos) == len(set(photos))


def test_name_match_move_regroup_and_new_photos(library, tmp_path):
    from facesearch.errors import ConfigError, DatasetError
    from facesearch.ingest.run import ingest
    from facesearch.people import service as S
    from facesearch.search.identify import match

    s, g, lib = library
    obama = _person_of(g, "obama.jpg")
    named = S.name_person(g, obama, "  Barack Obama ")
    assert named.name == "Barack Obama"
    with pytest.raises(DatasetError):
        S.name_person(g, obama, "ob\u200bama")  # the label rule holds for typed names
    # A named person is an identity of the gallery: Match finds them.
    res = match(PHOTOS / "people" / "obama" / "obama.jpg", settings=s, gallery=g)
    assert res.faces[0].best.identity == "Barack Obama" and res.faces[0].verdict == "match"
    assert g.identities() == {"Barack Obama": named.faces}

    # "Not this person": one of his faces out; it never comes back, even after a regroup.
    face = next(f for f in S.show_person(g, obama).faces if "obama2" in f.path)
    assert S.move_faces(g, [face.face_id], None) is None
    assert face.face_id not in {f.face_id for f in S.show_person(g, obama).faces}
    assert g.get(ids=[face.face_id])["metadatas"][0]["identity"] == ""
    rep = S.regroup(g)
    assert rep.people >= 2
    after = S.show_person(g, obama)
    assert after.person.name == "Barack Obama" and face.face_id not in {f.face_id for f in after.faces}
    # Moving it back is a user's decision too, and lifts the "not this person".
    S.move_faces(g, [face.face_id], obama)
    assert face.face_id in {f.face_id for f in S.show_person(g, obama).faces}
    with pytest.raises(ConfigError):
        S.show_person(g, 10**9)

    # New photos join the people already found, without regrouping: a mirrored Obama.
    from PIL import Image

    new = tmp_path / "more"
    new.mkdir()
    Image.open(PHOTOS / "people" / "obama" / "obama.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(new / "mirror.jpg")
    before = {p.id: p.faces for p in S.list_people(g, min_faces=1)}
    ingest(new, "photos", settings=s)
    now = {p.id: p.faces for p in S.list_people(g, min_faces=1)}
    assert now[obama] == before[obama] + 1
    assert all(now.get(p, 0) == n for p, n in before.items() if p != obama)
    assert any(p.path.endswith("mirror.jpg") for p in S.person_photos(g, obama) for p in [p.face])

    # Merge two people under a name; the result keeps both, and photos show who else is there.
    others = [p.id for p in S.list_people(g) if p.id != obama][:2]
    if len(others) == 2:
        m = S.merge_people(g, others, name="Merged <b>one</b>")
        assert m.name == "Merged <b>one</b>"  # kept as text, never markup
        assert S.regroup(g) and S.show_person(g, m.id).person.name == "Merged <b>one</b>"
    views = S.person_photos(g, obama)
    group_photo = [v for v in views if v.path.endswith("obama_and_biden.jpg")]
    assert group_photo and len(group_photo[0].others) == 2
    assert S.person_named(g, "Barack Obama") == obama


def test_not_this_person_holds_for_an_unnamed_person_through_regroups(library):
    from facesearch.people import service as S

    s, g, lib = library
    actress = _person_of(g, "img1.jpg")
    face = next(f for f in S.show_person(g, actress).faces if f.path.endswith("img2.jpg"))
    S.move_faces(g, [face.face_id], None)
    for _ in range(2):
        S.regroup(g)
        assert face.face_id not in {f.face_id for f in S.show_person(g, actress).faces}


def test_two_writers_at_once_leave_people_and_gallery_consistent(library):
    """Two writers (each its own gallery handle, so its own file locks) change people at
    the same time: every change lands, one after the other, and each face's identity in
    the gallery is its person's name."""
    import threading

    from facesearch.people import service as S
    from store import FaceGallery

    s, g, lib = library
    people = S.list_people(g)
    a, b = people[0].id, people[-1].id
    moving = S.show_person(g, b).faces[0].face_id
    errors: list[BaseException] = []

    def renamer():
        try:
            mine = FaceGallery(g.model, g.dim, g.detector, s)
            for i in range(6):
                S.name_person(mine, a, f"Writer one {i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def mover():
        try:
            mine = FaceGallery(g.model, g.dim, g.detector, s)
            for _ in range(3):
                S.move_faces(mine, [moving], None)
                S.move_faces(mine, [moving], b)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=renamer), threading.Thread(target=mover)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert S.show_person(g, a).person.name == "Writer one 5"
    assert moving in {f.face_id for f in S.show_person(g, b).faces}
    names = {p.id: p.name for p in S.list_people(g, min_faces=1)}
    for p in S.list_people(g, min_faces=1):
        for f in S.show_person(g, p.id).faces:
            assert g.get(ids=[f.face_id])["metadatas"][0]["identity"] == (names[p.id] or "")


def test_regroup_keeps_decisions_made_while_it_runs(library):
    """The grouping is computed without the gallery's write lock: a name and a "not this
    person" made meanwhile land at once, and the regroup starts over to keep them (it
    never writes a result computed before them). A second regroup meanwhile is refused."""
    from facesearch.errors import ConfigError
    from facesearch.people import service as S

    s, g, lib = library
    actress = _person_of(g, "img1.jpg")
    out = next(f for f in S.show_person(g, actress).faces if f.path.endswith("img4.jpg")).face_id
    stages: list[str] = []

    def meanwhile(stage: str) -> None:
        stages.append(stage)
        if stage.startswith("grouping") and len(stages) == 2:  # the first try, between snapshot and write
            S.name_person(g, actress, "Named meanwhile")
            S.move_faces(g, [out], None)
            with pytest.raises(ConfigError, match="already running"):
                S.regroup(g)  # the same gallery, even from the same thread
            with pytest.raises(ConfigError, match="already running elsewhere"):
                S.start_regroup(g)  # the page's job: refused at once, in a sentence

    rep = S.regroup(g, progress=meanwhile)
    assert rep.reruns == 1 and "grouped again" in rep.summary()
    assert any(st.startswith("people changed meanwhile") for st in stages)
    after = S.show_person(g, actress)
    assert after.person.name == "Named meanwhile" and out not in {f.face_id for f in after.faces}
    assert g.get(ids=[after.faces[0].face_id])["metadatas"][0]["identity"] == "Named meanwhile"
    assert S.regroup(g).reruns == 0  # nothing changed meanwhile: written at once


def test_regroup_job_runs_in_the_background_one_at_a_time(library):
    """The page's regroup: a background job, one per gallery (a second is refused while it
    runs); a decision made while it waits to write is kept; its report when done."""
    import time

    from facesearch.errors import ConfigError
    from facesearch.people import service as S

    s, g, lib = library
    pid = S.list_people(g)[-1].id
    with g.writer():  # the job computes, then waits here for the gallery's write lock
        job = S.start_regroup(g)
        end = time.monotonic() + 120
        while job.stage != "writing the people" and job.running and time.monotonic() < end:
            time.sleep(0.05)
        assert job.running and S.running_regroup(g) is job
        with pytest.raises(ConfigError, match="already running"):
            S.start_regroup(g)
        S.name_person(g, pid, "Named during the job")  # this thread holds the lock: it lands first
    assert job.wait(300) and job.error is None, job.error
    assert job.report.reruns == 1 and S.running_regroup(g) is None
    assert S.show_person(g, pid).person.name == "Named during the job"
    # Finished: a new one may start; its failure is a sentence in ``error``, not an exception.
    again = S.start_regroup(g)
    assert again.wait(300) and again.error is None and again.report.reruns == 0
    # Another process regrouping (it holds the regroup lock): refused at once, with a sentence.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom filelock import FileLock\n"
                               "l = FileLock(sys.argv[1]); l.acquire(); print('held', flush=True); time.sleep(120)",
                               S._regroup_lock(g).lock_file], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="already running elsewhere"):
            S.start_regroup(g)
    finally:
        holder.kill()
        holder.wait()
    assert S.start_regroup(g).wait(300)


def test_visitor_cannot_change_people(library):
    from facesearch.access import Actor
    from facesearch.errors import PermissionDeniedError
    from facesearch.people import service as S
    from store import FaceGallery

    s, g, lib = library
    visitor = FaceGallery(g.model, g.dim, g.detector, s, actor=Actor("visitor", admin=False))
    pid = S.list_people(visitor)[0].id  # reading is allowed
    with pytest.raises(PermissionDeniedError):
        S.name_person(visitor, pid, "Someone")
    with pytest.raises(PermissionDeniedError):
        S.start_regroup(visitor)  # refused before any thread starts


def test_match_gives_one_identity_to_one_face_per_photo(tmp_path):
    """A photo made of two copies of Obama's face: one face is Obama, the other is not."""
    from PIL import Image

    from facesearch.ingest.run import ingest
    from facesearch.settings import Settings
    from facesearch.search.identify import match

    s = Settings(home=tmp_path / "home")
    ingest(PHOTOS / "people", settings=s)
    rgb = np.asarray(Image.open(PHOTOS / "people" / "obama" / "obama.jpg").convert("RGB"))
    twice = np.concatenate([rgb, rgb[:, ::-1]], axis=1)  # side by side, the second mirrored
    res = match(twice, "twice.png", settings=s)
    assert len(res.faces) == 2
    matched = [fm for fm in res.faces if fm.verdict == "match"]
    assert [fm.best.identity for fm in matched] == ["obama"]
    other = next(fm for fm in res.faces if fm not in matched)
    assert other.best is None or other.best.identity != "obama"


def test_erasing_a_named_person_erases_their_people_rows(library):
    import sqlite3

    from facesearch.admin.privacy import erase_identity
    from facesearch.people import service as S

    s, g, lib = library
    pid = S.person_named(g, "Barack Obama")
    faces = {f.face_id for f in S.show_person(g, pid).faces}
    rep = erase_identity("Barack Obama", s)
    assert rep.faces == len(faces)
    assert S.person_named(g, "Barack Obama") is None
    db = sqlite3.connect(s.home / "people.sqlite")
    left = {r[0] for r in db.execute("SELECT face_id FROM faces")} & faces
    assert not left and not db.execute("SELECT 1 FROM persons WHERE name='Barack Obama'").fetchall()
    # The other people of the library are untouched.
    assert S.list_people(g)


def test_people_command(tmp_path):
    """``facesearch ingest PATH --format photos`` then ``facesearch people`` list, show,
    name, move, merge, photos with --json, as a user runs them; mistakes exit non-zero
    with one line."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for p in [*(PHOTOS / "people").glob("*/*.jpg"), PHOTOS / "group" / "obama_and_biden.jpg",
              PHOTOS / "group" / "two_people.jpg"]:
        shutil.copy(p, lib / p.name)
    env = {**os.environ, "FACESEARCH_HOME": str(tmp_path / "home")}

    def fs(*args):
        return subprocess.run([FS, *args], capture_output=True, text=True, env=env, timeout=600)

    r = fs("ingest", str(lib), "--format", "photos", "--quiet")
    assert r.returncode == 0, r.stderr
    people = json.loads(fs("people", "list", "--json").stdout)["people"]
    assert people and all(p["name"] is None for p in people)
    pid = people[0]["id"]
    shown = json.loads(fs("people", "show", str(pid), "--json").stdout)
    assert shown["faces"] and all(f["face"] and f["path"] for f in shown["faces"])
    r = fs("people", "name", str(pid), "--name", "Person\nTwo")
    assert r.returncode != 0 and r.stderr.count("\n") == 1  # a control character: refused in one line
    named = json.loads(fs("people", "name", str(pid), "--name", "Ann", "--json").stdout)
    assert named["name"] == "Ann"
    face = shown["faces"][0]["face"]
    moved = json.loads(fs("people", "move", "--face", face, "--out", "--json").stdout)
    assert moved == {"moved": 1, "to": None}
    assert face not in {f["face"] for f in json.loads(fs("people", "show", str(pid), "--json").stdout)["faces"]}
    # The face taken out waits for a person: listed by 'waiting', made a person of its own by 'new'.
    waiting = json.loads(fs("people", "waiting", "--json").stdout)["waiting"]
    assert face in {f["face"] for f in waiting} and all(f["path"] and len(f["box"]) == 4 for f in waiting)
    assert face in fs("people", "waiting").stdout
    made = json.loads(fs("people", "new", "--face", face, "--name", "Bo", "--json").stdout)
    assert made["name"] == "Bo" and made["faces"] == 1
    assert face not in {f["face"] for f in json.loads(fs("people", "waiting", "--json").stdout)["waiting"]}
    r = fs("people", "new")
    assert r.returncode != 0 and "--face" in r.stderr
    r = fs("people", "show", "999999")
    assert r.returncode != 0 and "no person" in r.stderr
    photos = json.loads(fs("people", "photos", str(pid), "--json").stdout)
    assert photos and all("others" in ph for ph in photos)


def test_grouping_scores_on_a_hand_made_grouping():
    """The grouping metric on a case worked by hand: identities X (a, b, c) and Y (d, e);
    people {a, b}, {c, d}, e waiting (a person of one face)."""
    from facesearch.evaluation.clustering import grouping_scores

    true = {"a": "X", "b": "X", "c": "X", "d": "Y", "e": "Y"}
    m = grouping_scores({"a": 1, "b": 1, "c": 2, "d": 2, "z": 7}, true)  # z is not judged
    # Pairs in one person: ab, cd (1 right); pairs of one identity: ab, ac, bc, de.
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 4)
    assert m["f"] == pytest.approx(1 / 3)
    # BCubed precision: a 1, b 1, c 1/2, d 1/2, e 1; recall: a 2/3, b 2/3, c 1/3, d 1/2, e 1/2.
    assert m["bcubed_p"] == pytest.approx(4 / 5) and m["bcubed_r"] == pytest.approx(8 / 15)
    assert m["bcubed_f"] == pytest.approx(0.64)
    assert (m["people"], m["true"], m["big"], m["mixing"]) == (2, 2, 0, 0)
    # Mixing counts people of 3+ judged faces only: {c, d, f} mixes X and Y, {g, h, i} does not.
    true.update(f="X", g="Z", h="Z", i="Z")
    m = grouping_scores({"a": 1, "b": 1, "c": 2, "d": 2, "f": 2, "g": 3, "h": 3, "i": 3}, true)
    assert (m["people"], m["true"], m["big"], m["mixing"]) == (3, 3, 2, 0.5)
    # A perfect grouping scores 1 throughout; nothing grouped: no precision lost, no recall.
    perfect = grouping_scores({k: ord(v) for k, v in true.items()}, true)
    assert all(perfect[k] == pytest.approx(1) for k in ("precision", "recall", "f", "bcubed_f"))
    alone = grouping_scores({}, true)
    assert alone["precision"] == 1 and alone["recall"] == 0 and alone["bcubed_p"] == 1 and alone["people"] == 0


def test_faces_ticked_on_one_page_stay_ticked_on_another(tmp_path):
    """The People page's face grid shows FACES_PAGE faces at a time: a face ticked on page
    1 is still ticked (and returned) after page 2 was shown, and a tick can be taken back
    on its own page (Streamlit drops a widget's state while it is not drawn)."""
    from streamlit.testing.v1 import AppTest

    script = f"""
import streamlit as st
from components.people_view import FACES_PAGE, faces_grid
from facesearch.people.service import PersonFace
import dataclasses
from pathlib import Path
from facesearch.settings import Settings
from store import FaceGallery

settings = dataclasses.replace(Settings.from_env(), home=Path({str(tmp_path / 'home')!r}))
g = FaceGallery("sface", 128, "yunet", settings)
faces = [PersonFace(f"face{{i}}", f"photo{{i}}", f"/srv/photos/photo{{i}}.jpg", (0, 0, 9, 9), "", False)
         for i in range(FACES_PAGE + 5)]
got = faces_grid(faces, g, selectable=True, key="t", ticked=st.session_state.get("kept", ()))
st.session_state["kept"] = got
st.text("ticked: " + ",".join(got))
"""
    at = AppTest.from_string(script, default_timeout=60).run()
    assert not at.exception, at.exception
    ticked = lambda: at.text[-1].value  # noqa: E731
    at.checkbox(key="people_face_face1").check().run()
    assert ticked() == "ticked: face1"
    at.number_input(key="people_page_t").set_value(2).run()
    at.checkbox(key="people_face_face50").check().run()
    assert set(ticked().split(": ")[1].split(",")) == {"face1", "face50"}
    assert any("1 face ticked on other pages" in c.value for c in at.caption)
    at.number_input(key="people_page_t").set_value(1).run()
    assert at.checkbox(key="people_face_face1").value is True
    assert set(ticked().split(": ")[1].split(",")) == {"face1", "face50"}
    at.checkbox(key="people_face_face1").uncheck().run()
    assert ticked() == "ticked: face50"
    assert "/srv/photos" not in str([t.value for t in at.text]) and not at.exception


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_celeba_library_people_against_identities(tmp_path):
    """``facesearch ingest`` of a flat copy of the shared CelebA photos, then ``facesearch
    people --json``: the people found against identity_CelebA.txt (the largest face of
    each photo is the labelled one; other faces are not judged; a photo with no face is a
    person of one face). The parameters were chosen on the LFW fold (docs/BENCHMARKS.md,
    "People"); this is the data they were not chosen on. Measured (2026-12-06): BCubed F
    0.9502, pairwise precision 0.9998 and recall 0.904, 79 people for 75 identities, 1 of
    76 people of 3+ faces mixing two identities (1.3%): the issue's targets (BCubed F >=
    0.95, < 2% mixing), met by a small margin on BCubed F (see docs/BENCHMARKS.md)."""
    from facesearch.evaluation.clustering import grouping_scores

    flat = tmp_path / "celeba_flat"
    flat.mkdir()
    src = DATA / "celeba" / "img_celeba"
    for f in src.iterdir():
        os.link(f, flat / f.name) if f.stat().st_dev == flat.stat().st_dev else shutil.copy(f, flat / f.name)
    home = tmp_path / "home"
    env = {**os.environ, "FACESEARCH_HOME": str(home)}
    r = subprocess.run([FS, "ingest", str(flat), "--quiet", "--workers", "2"], capture_output=True, text=True,
                       env=env, timeout=1700)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([FS, "people", "list", "--json", "--faces", "--min-faces", "1"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    people = json.loads(r.stdout)["people"]
    labels = dict(line.split() for line in (DATA / "celeba" / "identity_CelebA.txt").read_text().splitlines())
    # The largest face of each photo (face index 0 in its id) is the labelled person.
    pred = {Path(path).name: p["id"] for p in people for fid, path in zip(p["faces_ids"], p["paths"])
            if fid.split("-")[1] == "0"}
    m = grouping_scores(pred, {name: labels[name] for name in os.listdir(flat)})
    print(json.dumps(m))
    assert m["precision"] >= 0.99
    assert m["bcubed_f"] >= 0.95
    assert m["mixing"] < 0.02
    assert 0.9 * m["true"] <= m["people"] <= 1.3 * m["true"]
