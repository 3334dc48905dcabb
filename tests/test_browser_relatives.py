"""The Match page's "Find relatives" mode in headless Chromium (issue 21), on a gallery of
shared FIW families.

Its own dashboard, as `make run` starts it, over its own data folder: the first
``N_FAMILIES`` families of ../shared/data/fiw, at most ``PER_MEMBER`` photos of each
member, ingested by a subprocess (the data folder's database has one owner process; the
dashboard's server takes it over afterwards). The embedding cache is the session's: the
test is about the page, not about embedding. The probe is a photo of a child kept out
of the gallery, whose parents are in it (a reunification: the person is unknown, the
family is not); the subprocess also asks the core (:func:`find_relatives`) for the
families it ranks, so the test checks that the page shows what the core answers, with
the child's own family among them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from test_browser import (  # noqa: F401
    need_chromium,
    plain_page,
    CHROMIUM, MODEL_WAIT_MS, dashboard, no_exception, open_page, playwright, shot, wait_idle,
)

pytestmark = pytest.mark.browser

N_FAMILIES, PER_MEMBER = 24, 3

BUILD = f"""
import json, sys
from pathlib import Path
from facesearch.datasets.registry import load_images
from facesearch.ingest.run import ingest
from facesearch.kinship.search import find_relatives
from facesearch.settings import Settings

s = Settings.from_env()
fiw = Path({str(DATA / "fiw")!r})
images = load_images(fiw, "fiw")
families = sorted({{im.family for im in images}})[:{N_FAMILIES}]
by_member = {{}}
for im in images:
    if im.family in families:
        by_member.setdefault(im.identity, []).append(im)
# Probes: children (with both parents in the gallery) kept out of it entirely, one per
# family: the page is asked about a person it does not know, as in a reunification.
children = []
for member, ims in sorted(by_member.items()):
    parents = (ims[0].get("parents") or "").split(";")
    if len(parents) == 2 and all(p in by_member for p in parents) and ims[0].family not in {{c[1] for c in children}}:
        children.append((member, ims[0].family))
children = children[:8]
out = {{c for c, _ in children}}
gallery = [im for m, ims in by_member.items() if m not in out for im in ims[:{PER_MEMBER}]]
rep = ingest(fiw, items=gallery, settings=s)
assert not rep.failed, rep.failed
for member, family in children:
    probe = by_member[member][0]
    res = find_relatives(str(probe.path), settings=s)
    if len(res.faces) != 1:
        continue
    fams = [rf.family.family for rf in res.faces[0].families]
    if family in fams:
        print(json.dumps({{"probe": str(probe.path), "member": member, "family": family, "families": fams,
                          "bands": [rf.band for rf in res.faces[0].families],
                          "meanings": [rf.meaning for rf in res.faces[0].families],
                          "notes": res.notes, "space": res.space}}))
        sys.exit(0)
sys.exit("no probe whose family the core ranks among the families shown")
"""


@pytest.fixture(scope="module")
def relatives_dashboard(tmp_path_factory, session_home):
    need_chromium()
    tmp = tmp_path_factory.mktemp("relatives")
    env = {**os.environ, "FACESEARCH_HOME": str(tmp / "home"), "FACESEARCH_CACHE": str(session_home / "cache"),
           "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", BUILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    probe = json.loads(r.stdout.strip().splitlines()[-1])
    with dashboard(env, "streamlit-relatives.log") as url:
        yield url, probe


@pytest.fixture
def page(playwright, relatives_dashboard):  # noqa: F811
    with plain_page(playwright, "relatives.png") as pg:
        yield pg


def test_find_relatives_lists_the_childs_family(page, relatives_dashboard):
    url, probe = relatives_dashboard
    open_page(page, url + "/Match")
    page.get_by_text("Find relatives", exact=True).click()
    wait_idle(page)
    page.locator('input[type="file"]').first.set_input_files(probe["probe"])
    page.get_by_text("families that could be its relatives").first.wait_for(timeout=MODEL_WAIT_MS)
    wait_idle(page)
    no_exception(page)
    body = page.inner_text("body")
    # The same-person block first (the upload mode's "Face 1"), then the families, apart.
    assert body.index("Face 1") < body.index("Face 1: families that could be its relatives"), body[:3000]
    # The families, in the core's order, each with its band ("possible relative", never "match")
    # and what its score means in words.
    shown = re.findall(r"#(\d+) family (\S+) · ([a-z ]+) · closest member (\S+)", body)
    assert [f for _, f, _, _ in shown] == probe["families"], body[:4000]
    assert [b for _, _, b, _ in shown] == probe["bands"]
    assert probe["family"] in [f for _, f, _, _ in shown]
    assert probe["member"] not in body  # the child is nobody in the gallery: only its family is found
    assert not {b for _, _, b, _ in shown} & {"match", "possible"}  # a family is never a match
    for meaning in probe["meanings"]:
        assert meaning in body, (meaning, body[:4000])
    for note in probe["notes"]:  # what the result says of itself, and what its scores rest on
        assert note in body, (note, body[:4000])
    assert "Kinship scores: " + probe["space"] in body
    shot(page, "relatives.png")
