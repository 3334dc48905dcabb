"""Nothing lost (issue 17, items 1, 2 and 9): real CLI processes on real photos.

1. The same photo under a second name must not move the face: a face is a photo's face
   under a label, so ``alice/x.jpg`` and ``bob/x.jpg`` are two faces, and the ledger,
   the report and the audit log count what was really written.
2. Erasure removes exactly the erased person's records and files (not those of another
   identity that shares the photo), and finds every gallery's variants of the label.
3. Two ingests of the same gallery through the data folder's ``chroma run`` server: the
   second waits (saying so) instead of failing, and each face is added once.

Each test has its own data folder and an empty embedding cache.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from test_processes import _celeba_people, _cli, _folder, home  # noqa: F401  (home is a fixture)

pytestmark = pytest.mark.timeout(600)


def _added(r: subprocess.CompletedProcess) -> int:
    m = re.search(r"(\d+) faces added", r.stdout)
    assert m, r.stdout + r.stderr
    return int(m.group(1))


def _identities(s, model: str = "sface", dim: int = 128) -> dict[str, int]:
    from store import FaceGallery
    from store.gallery import close_client

    try:
        return FaceGallery(model, dim, s.detector, s).identities()
    finally:
        close_client(s)


def _ingest_audit(s) -> list[int]:
    from facesearch.audit import read_audit

    return [e["faces"] for e in reversed(read_audit(s)) if e["action"] == "ingest"]


def _photo(n: int = 0) -> Path:
    """A real CelebA photo with one clear face."""
    people = _celeba_people(1, 2, skip=40)
    return next(iter(people.values()))[n]


def test_same_photo_under_a_second_name_keeps_both(home, tmp_path):
    s, env = home
    x = _photo()
    for folder, name in (("A", "alice"), ("B", "bob")):
        (tmp_path / folder / name).mkdir(parents=True)
        shutil.copy(x, tmp_path / folder / name / "x.jpg")
    runs = [_cli(env, "ingest", tmp_path / f, "--quiet") for f in ("A", "B", "A")]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert [_added(r) for r in runs] == [1, 1, 0]
    assert _identities(s) == {"alice": 1, "bob": 1}
    r = _cli(env, "stats", "--identities", "9")
    assert re.search(r"^\s+alice\s+1$", r.stdout, re.M) and re.search(r"^\s+bob\s+1$", r.stdout, re.M), r.stdout
    # The audit log counts what was written: one line per run that wrote, 1 face each.
    assert _ingest_audit(s) == [1, 1]
    # Forgetting the ledger and ingesting again writes nothing, and says so.
    r = _cli(env, "ingest", tmp_path / "A", "--quiet", "--restart")
    assert r.returncode == 0 and _added(r) == 0, r.stdout + r.stderr
    assert _ingest_audit(s) == [1, 1]
    assert _identities(s) == {"alice": 1, "bob": 1}


def test_erasure_removes_exactly_the_erased_persons_records_and_files(home, tmp_path):
    from facesearch.ingest.ledger import Ledger
    from store import FaceGallery
    from store.gallery import close_client

    s, env = home
    x, y = _photo(0), _photo(1)
    sha_x = hashlib.sha1(x.read_bytes()).hexdigest()
    enroll = s.home / "uploads" / "enroll"
    for name in ("alice", "carol"):
        (enroll / name).mkdir(parents=True)
        shutil.copy(x, enroll / name / "x.jpg")  # the same photo, uploaded under two names
    (tmp_path / "v" / "CAROL ").mkdir(parents=True)  # a variant of carol's label, in another model's gallery
    shutil.copy(y, tmp_path / "v" / "CAROL " / "y.jpg")
    r = _cli(env, "ingest", enroll, "--quiet")
    assert r.returncode == 0 and _added(r) == 2, r.stdout + r.stderr
    r = _cli(env, "ingest", tmp_path / "v", "--quiet", "--model", "dlib")
    assert r.returncode == 0 and _added(r) == 1, r.stdout + r.stderr
    assert _identities(s) == {"alice": 1, "carol": 1}
    assert _identities(s, "dlib") == {"CAROL": 1}
    try:
        gal = FaceGallery("sface", 128, s.detector, s)
        alice_id = gal.get(where={"identity": "alice"})["ids"][0]
        alice_thumb = gal.thumb_path(alice_id)
        carol_thumb = gal.thumb_path(gal.get(where={"identity": "carol"})["ids"][0])
    finally:
        close_client(s)
    assert alice_thumb.is_file() and carol_thumb.is_file() and alice_thumb != carol_thumb

    r = _cli(env, "delete", "--identity", "carol")
    assert r.returncode == 0, r.stderr
    assert "Deleted 2 faces" in r.stdout and "1 uploaded file(s)" in r.stdout, r.stdout

    assert _identities(s) == {"alice": 1}
    assert _identities(s, "dlib") == {}
    assert not (enroll / "carol").exists() and not carol_thumb.exists()
    # What alice's face uses stays: her uploaded copy, her thumbnail, the photo's cached
    # vectors and her ledger row.
    assert (enroll / "alice" / "x.jpg").is_file()
    assert alice_thumb.is_file()
    with sqlite3.connect(s.cache_path / "embeddings.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM vectors WHERE sha1=?", (sha_x,)).fetchone()[0] == 1
    ledger = Ledger(s.home / "ingest.sqlite", "")
    try:
        assert ledger.paths_of([sha_x]) == {str(enroll / "alice" / "x.jpg")}
    finally:
        ledger.db.close()
    # Alice is whole: ingesting the folder again finds nothing to add.
    r = _cli(env, "ingest", enroll, "--quiet")
    assert r.returncode == 0 and _added(r) == 0, r.stdout + r.stderr


def test_two_ingests_of_the_same_folder_at_once_through_the_server(home, tmp_path):
    from store.server import start_server

    s, env = home
    # Enough photos that the first run holds the gallery well past the 5 s after which
    # the second used to fail.
    folder = _folder(tmp_path / "a", _celeba_people(20, 5))
    with start_server(s):
        procs = [subprocess.Popen([sys.executable, "-m", "facesearch", "ingest", str(folder), "--quiet"], cwd=ROOT,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        runs = []
        for p in procs:
            so, se = p.communicate(timeout=600)
            runs.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
        for r in runs:
            assert r.returncode == 0, r.stderr
        faces = _identities(s)
        from test_processes import _gallery_faces
        keys = [(m["image_sha1"], m["identity"]) for m in _gallery_faces(s)]
    total = sum(faces.values())
    assert len(faces) == 20 and total >= 90 and len(keys) == len(set(keys)) == total, faces
    # Each face added once, and each run reports what it added: together, the gallery.
    assert sorted(_added(r) for r in runs) == [0, total], [r.stdout for r in runs]
    assert _ingest_audit(s) == [total]
    # The later one waited, saying so, instead of failing.
    assert any("waiting for it to finish" in r.stderr for r in runs), [r.stderr for r in runs]


HOLDER = r"""
import sys
from store import FaceGallery
from facesearch.settings import get_settings

s = get_settings()
with FaceGallery(s.model, 128, s.detector, s).writer():
    print("holding", flush=True)
    sys.stdin.readline()
"""


def test_dashboard_ingest_waits_for_another_writer(home, tmp_path):
    """The dashboard's background ingest, while another process (a real one, through the
    server) writes the gallery: it waits and says why, a stop ends the wait, and once the
    other writer is done it goes on and adds everything."""
    import time

    from facesearch.ingest.jobs import IngestJob
    from store.gallery import close_client
    from store.server import start_server

    s, env = home
    folder = _folder(tmp_path / "a", _celeba_people(2, 2))

    def until(cond, what: str) -> None:
        for _ in range(1200):
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(what)

    with start_server(s):
        holder = subprocess.Popen([sys.executable, "-c", HOLDER], cwd=ROOT, env=env, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert holder.stdout.readline().strip() == "holding", holder.stderr.read()
            stopped = IngestJob("Ingesting", folder, dict(settings=s)).start()
            job = IngestJob("Ingesting", folder, dict(settings=s)).start()
            until(lambda: job.waiting and stopped.waiting, "the ingests did not say they wait")
            assert f"pid {holder.pid}" in job.waiting and "waiting for it to finish" in job.waiting
            assert job.running and job.done == 0
            stopped.stop()
            assert stopped.wait(60) and stopped.error is None
            assert "waiting for another ingest" in stopped.report.stopped and stopped.report.faces_added == 0
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(60) == 0
            assert job.wait(600) and job.error is None, job.error
            assert job.report.faces_added == 4 and not job.waiting, job.report.summary()
            assert job.rate > 0 and job.seconds_left == 0  # what the Home page's progress shows
            assert _identities(s) == {f"person_{i}": 2 for i in _celeba_people(2, 2)}
        finally:
            if holder.poll() is None:
                holder.kill()
            close_client(s)
