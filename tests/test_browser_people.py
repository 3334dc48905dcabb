"""The People page in headless Chromium (issue 20): name a person, merge two, take a face
out ("not this person"), regroup the whole library, and every decision is still there;
then Match's "show this person's photos" opens the named person. The faces waiting for a
person open as a grid and two of them become a person; a regroup runs in the background
(one at a time) and keeps it.

Its own dashboard, as `make run` starts it, over its own data folder: a flat photo
library (symlinks in tmp, no labels) of the CelebA identities with the most photos,
ingested as ``--format photos`` by a subprocess (the data folder's database has one owner
process; the dashboard's server takes it over afterwards). The embedding cache is the
session's: the test is about the page, not about embedding. The subprocess prints the
people the core found, so the test knows which ids and faces to look for on the page.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from test_browser import (  # noqa: F401
    need_chromium,
    plain_page,
    CHROMIUM, MODEL_WAIT_MS, dashboard, no_exception, open_page, playwright, shot, wait_idle,
)

pytestmark = pytest.mark.browser

N_IDS, N_PHOTOS = 5, 6

BUILD = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "tests")!r})
from conftest import celeba_library
from facesearch.embedding.pipeline import Pipeline
from facesearch.ingest.run import ingest
from facesearch.people import service as S
from facesearch.search.identify import open_gallery
from facesearch.settings import Settings

s = Settings.from_env()
lib, truth = celeba_library(Path(sys.argv[1]), {N_IDS}, {N_PHOTOS})
rep = ingest(lib, "photos", settings=s)
assert not rep.failed, rep.failed
g = open_gallery(Pipeline(settings=s))
people = [{{"id": p.id, "faces": p.faces,
            "files": {{f.face_id: Path(f.path).name for f in S.show_person(g, p.id).faces}}}}
          for p in S.list_people(g)]
print(json.dumps({{"people": people, "truth": truth, "gallery": g.name}}))
"""


@pytest.fixture(scope="module")
def people_dashboard(tmp_path_factory, session_home):
    need_chromium()
    tmp = tmp_path_factory.mktemp("people_browser")
    env = {**os.environ, "FACESEARCH_HOME": str(tmp / "home"), "FACESEARCH_CACHE": str(session_home / "cache"),
           "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    env.pop("FACESEARCH_ADMIN_PASSWORD", None)  # single-user mode: whoever opens the page is the admin
    r = subprocess.run([sys.executable, "-c", BUILD, str(tmp / "lib")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    found = json.loads(r.stdout.strip().splitlines()[-1])
    with dashboard(env, "streamlit-people.log") as url:
        yield url, found, tmp / "lib"


@pytest.fixture
def page(playwright, people_dashboard):  # noqa: F811
    with plain_page(playwright, "people_last.png") as pg:
        yield pg


def _key(page, key: str):
    """The widget Streamlit renders for ``key`` (its container has the class st-key-KEY)."""
    return page.locator(f".st-key-{key}")


def _click(page, key: str, inner: str = "button") -> None:
    _key(page, key).locator(inner).first.click()
    wait_idle(page)
    no_exception(page)


def _open(page, pid: int) -> None:
    if _key(page, "people_back").count():
        _click(page, "people_back")
    _click(page, f"people_open_{pid}")
    page.get_by_text(f"Person #{pid}", exact=True).wait_for()


def _shown_faces(page, found_files: dict[str, str]) -> set[str]:
    """The face ids whose checkbox the open person's page shows."""
    return {fid for fid in found_files if _key(page, f"people_face_{fid}").count()}


def test_name_merge_not_this_person_survive_a_regroup(page, people_dashboard):
    url, found, lib = people_dashboard
    people = found["people"]
    assert len(people) >= 3, people
    a, b, c = people[:3]
    every_face = {fid: name for p in people for fid, name in p["files"].items()}
    # "/" first: on a fresh server, Streamlit (1.67) runs a deep link's page script alone,
    # outside app.py's st.navigation, until the app itself has run once.
    open_page(page, url)
    open_page(page, url + "/People")
    assert "groups" in page.inner_text('[data-testid="stSidebarNav"]')  # app.py's menu, with its icons
    page.get_by_text(re.compile("people, most faces first")).first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    body = page.inner_text("body")
    assert re.search(rf"{len(people)} people, most faces first", body), body[:2000]
    assert body.count("Unnamed") >= len(people)

    # Name the largest person.
    _open(page, a["id"])
    name = _key(page, f"people_name_{a['id']}").locator("input")
    name.fill("Ada *Lovelace*")
    name.press("Tab")  # Streamlit takes a text input's value when it loses focus
    wait_idle(page)
    _click(page, f"people_name_go_{a['id']}")
    page.get_by_text(f"Named person #{a['id']}").wait_for()
    assert "Ada *Lovelace*" in page.inner_text("body")  # a label, shown as written

    # "Not this person": one of her faces out.
    out = sorted(a["files"])[-1]
    _click(page, f"people_face_{out}", "label")
    _click(page, f"people_move_go_{a['id']}")  # the default target: "Not this person (out)"
    page.get_by_text("taken out of person").first.wait_for()
    assert _shown_faces(page, a["files"]) == set(a["files"]) - {out}

    # Merge the next two people.
    _click(page, "people_back")
    _click(page, f"people_sel_{b['id']}", "label")
    _click(page, f"people_sel_{c['id']}", "label")
    _click(page, "people_merge_go")
    merged_msg = page.get_by_text(re.compile(r"Merged 2 people into person #\d+")).first
    merged_msg.wait_for()
    merged = int(re.search(r"person #(\d+)", merged_msg.inner_text()).group(1))
    assert merged in (b["id"], c["id"])
    assert not _key(page, f"people_sel_{merged}").locator("input").is_checked()  # the ticks went with the change

    # The whole library grouped again: every decision is kept.
    _click(page, "people_regroup")
    page.get_by_text("Regrouped:").first.wait_for(timeout=MODEL_WAIT_MS)
    body = page.inner_text("body")
    assert "Ada *Lovelace*" in body, body[:3000]
    shot(page, "people.png")

    _open(page, a["id"])
    assert "Ada *Lovelace*" in page.inner_text("body")
    ada = _shown_faces(page, every_face)
    assert out not in ada, "the face taken out came back"
    assert set(a["files"]) - {out} <= ada

    _open(page, merged)
    together = _shown_faces(page, every_face)
    assert set(b["files"]) | set(c["files"]) <= together, "the merge was undone"

    # From a Match result: "Show this person's photos" opens Ada.
    photo = lib / a["files"][sorted(set(a["files"]) - {out})[0]]
    open_page(page, url + "/Match")
    page.locator('input[type="file"]').first.set_input_files(str(photo))
    link = page.get_by_text("Show this person's photos").first
    link.wait_for(timeout=MODEL_WAIT_MS)
    assert "Best match:" in page.inner_text("body") and "Ada *Lovelace*" in page.inner_text("body")
    link.click()  # app.py's st.page_link, ?person=NAME
    page.get_by_text(f"Person #{a['id']}", exact=True).wait_for(timeout=60_000)
    wait_idle(page)
    no_exception(page)
    assert "Ada *Lovelace*" in page.inner_text("body")
    assert "Also in this photo:" in page.inner_text("body") or "Nobody else in this photo." in page.inner_text("body")


def test_waiting_faces_become_a_person_kept_by_a_background_regroup(page, people_dashboard):
    from filelock import FileLock

    url, found, lib = people_dashboard
    people = found["people"]
    d = people[-1]
    assert d["faces"] >= 2, people
    two = sorted(d["files"])[:2]
    every_face = {fid: name for p in people for fid, name in p["files"].items()}
    open_page(page, url)
    open_page(page, url + "/People")
    page.get_by_text(re.compile("people, most faces first")).first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)

    # Two faces out of their person: they wait for a person.
    _open(page, d["id"])
    for fid in two:
        _click(page, f"people_face_{fid}", "label")
    _click(page, f"people_move_go_{d['id']}")  # "Not this person (out)"
    page.get_by_text("taken out of person").first.wait_for()
    if _key(page, "people_back").count():
        _click(page, "people_back")

    # Open the waiting faces: a grid of thumbnails to tick; make a person of the two.
    _click(page, "people_waiting_open")
    page.get_by_text(re.compile(r"Waiting faces \(\d+\)")).first.wait_for()
    assert all(_key(page, f"people_face_{fid}").count() for fid in two)
    assert page.locator('[data-testid="stImage"]').count() >= 2
    shot(page, "people_waiting.png")
    for fid in two:
        _click(page, f"people_face_{fid}", "label")
    _click(page, "people_move_go_waiting")  # the default: a new person
    made = page.get_by_text(re.compile(r"2 waiting faces are now person #\d+")).first
    made.wait_for()
    new = int(re.search(r"#(\d+)", made.inner_text()).group(1))
    assert _key(page, f"people_open_{new}").count(), "the new person is not in the grid"
    _open(page, new)
    assert _shown_faces(page, every_face) == set(two)
    name = _key(page, f"people_name_{new}").locator("input")
    name.fill("Two *waiting*")
    name.press("Tab")
    wait_idle(page)
    _click(page, f"people_name_go_{new}")
    page.get_by_text(f"Named person #{new}").wait_for()
    _click(page, "people_back")

    # Regroup in the background. The test holds the gallery's write lock (as an ingest
    # would): the job groups, then waits to write, and the page says it runs; a second
    # click is refused. Released, it finishes and every decision is there.
    lock = FileLock(str(lib.parent / "home" / "locks" / f"{found['gallery']}.lock"))
    with lock:
        _click(page, "people_regroup")
        page.get_by_text(re.compile("Regrouping the library in the background: writing the people")).first.wait_for(
            timeout=MODEL_WAIT_MS)
        assert _key(page, f"people_open_{new}").count()  # the grid stays usable meanwhile
        shot(page, "people_regrouping.png")
        _click(page, "people_regroup")
        page.get_by_text(re.compile("already running")).first.wait_for()
    page.get_by_text("Regrouped:").first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    assert "Two *waiting*" in page.inner_text("body")
    _open(page, new)
    assert _shown_faces(page, every_face) == set(two), "the regroup undid the new person"


def _people_count(page, url: str) -> int:
    open_page(page, url + "/People")
    found = page.get_by_text(re.compile(r"\d+ people, most faces first")).first
    found.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    return int(re.search(r"(\d+) people, most faces first", found.inner_text()).group(1))


def test_a_zip_of_a_photo_library_uploaded_on_home_becomes_people(page, people_dashboard, tmp_path):
    """A zip of one folder of photos of someone not in the library: as "a photo library"
    (its folder is no name: auto-detection would call it an identity folder), every face
    is kept unnamed and the photos found one new person."""
    import zipfile

    from conftest import celeba_split

    url, found, lib = people_dashboard
    gallery, _ = celeba_split(n_identities=N_IDS + 1, n_gallery=N_PHOTOS, n_probe=0)
    known = set(found["truth"].values())
    photos = [im for im in gallery if im.identity not in known]
    assert len(photos) == N_PHOTOS
    z = tmp_path / "holiday *photos* <b>.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for im in photos:
            zf.write(im.path, f"trip/{im.path.name}")
    open_page(page, url)
    before = _people_count(page, url)

    open_page(page, url)
    page.get_by_role("tab", name="Upload a zip").click()
    _key(page, "ingest_zip").locator('input[type="file"]').set_input_files(str(z))
    wait_idle(page)
    _key(page, "ingest_zip_format").get_by_text("A photo library (no names)").click()
    wait_idle(page)
    _click(page, "ingest_zip_go")
    done = page.get_by_text(re.compile(r"Ingested holiday \*photos\* <b>\.zip: .*faces? added")).first
    done.wait_for(timeout=MODEL_WAIT_MS)
    added = int(re.search(r"(\d+) faces? added", done.inner_text()).group(1))
    assert added >= N_PHOTOS
    no_exception(page)
    shot(page, "people_zip.png")
    assert _people_count(page, url) == before + 1
