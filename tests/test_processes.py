"""Several processes, one gallery: real processes, a real ``chroma run`` server.

Chroma's embedded database caches its index per process, so a reader never saw another
process's writes (issue 8). Here a long-lived reader and CLI ingests run as separate
processes, through the data folder's server, or refused cleanly when the folder is
owned embedded. Each test has its own data folder and an empty embedding cache, so the
ingests really detect and embed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, ROOT
from facesearch.settings import Settings

pytestmark = pytest.mark.timeout(600)

READER = r"""
import json, sys
from facesearch.search.identify import match
from facesearch.settings import get_settings

s = get_settings()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    r = match(line.strip(), settings=s)
    f = r.faces[0]
    print(json.dumps({"identity": f.best.identity, "verdict": f.verdict, "faces": r.gallery_size}), flush=True)
"""


def _celeba_people(n: int, photos: int, skip: int = 20) -> dict[str, list[Path]]:
    """``n`` CelebA identities with at least ``photos`` photos each (after the ``skip``
    largest, which other tests use): identity -> photo paths."""
    from facesearch.datasets.registry import load_images

    by_id: dict[str, list[Path]] = {}
    for im in load_images(DATA / "celeba", "celeba"):
        by_id.setdefault(im.identity, []).append(Path(im.path))
    ids = [i for i in sorted(by_id, key=lambda i: (-len(by_id[i]), i))[skip:] if len(by_id[i]) >= photos][:n]
    return {i: by_id[i][:photos] for i in ids}


def _folder(root: Path, people: dict[str, list[Path]], prefix: str = "person_") -> Path:
    """A folder-per-identity dataset of symlinks to the shared photos."""
    for ident, paths in people.items():
        d = root / f"{prefix}{ident}"
        d.mkdir(parents=True, exist_ok=True)
        for p in paths:
            (d / p.name).symlink_to(p)
    return root


@pytest.fixture
def home(tmp_path):
    s = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    env = {**os.environ, "FACESEARCH_HOME": str(s.home), "FACESEARCH_CACHE": str(s.cache_path)}
    return s, env


def _cli(env, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesearch", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


class Reader:
    """A long-lived process that answers "who is this?" for each photo path it is sent."""

    def __init__(self, env):
        self.proc = subprocess.Popen([sys.executable, "-c", READER], cwd=ROOT, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._line() == {"ready": True}

    def _line(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"the reader died: {self.proc.stderr.read()[-3000:]}")
        return json.loads(line)

    def ask(self, photo: Path) -> dict:
        self.proc.stdin.write(f"{photo}\n")
        self.proc.stdin.flush()
        return self._line()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def _gallery_faces(s: Settings) -> list[dict]:
    from store import FaceGallery
    from store.gallery import close_client

    try:
        return FaceGallery(s.model, 128, s.detector, s).get()["metadatas"]
    finally:
        close_client(s)


def test_reader_process_sees_cli_ingest_through_the_server(home, tmp_path):
    from store.server import start_server

    s, env = home
    people = _celeba_people(3, 4)
    (newcomer, new_photos), *others = people.items()
    with start_server(s):
        r = _cli(env, "ingest", DATA / "photos/people", "--quiet")
        assert r.returncode == 0, r.stderr
        r = _cli(env, "ingest", _folder(tmp_path / "seed", dict(others)), "--quiet")
        assert r.returncode == 0, r.stderr
        reader = Reader(env)
        try:
            first = reader.ask(new_photos[-1])
            assert first["identity"] != f"person_{newcomer}"
            r = _cli(env, "ingest", _folder(tmp_path / "new", {newcomer: new_photos[:-1]}), "--quiet")
            assert r.returncode == 0, r.stderr
            assert " 3 faces added" in r.stdout, r.stdout
            # The reader's very next query, in the same process, finds the new person.
            after = reader.ask(new_photos[-1])
            assert after == {"identity": f"person_{newcomer}", "verdict": "match", "faces": first["faces"] + 3}
        finally:
            reader.close()


def test_cli_refused_while_another_process_owns_the_folder(home, tmp_path):
    s, env = home
    people = _celeba_people(2, 3)
    r = _cli(env, "ingest", _folder(tmp_path / "a", {k: people[k] for k in list(people)[:1]}), "--quiet")
    assert r.returncode == 0, r.stderr
    reader = Reader(env)  # no server: the reader opens the folder embedded and owns it
    try:
        before = reader.ask(next(iter(people.values()))[0])
        r = _cli(env, "ingest", _folder(tmp_path / "b", {k: people[k] for k in list(people)[1:]}), "--quiet")
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
        assert f"pid {reader.proc.pid}" in lines[0] and "make run" in lines[0]
        assert reader.ask(next(iter(people.values()))[0]) == before  # the owner carries on unharmed
    finally:
        reader.close()
    # Nothing was half-written: once the owner is gone the same command adds everything.
    r = _cli(env, "ingest", tmp_path / "b", "--quiet")
    assert r.returncode == 0 and " 3 faces added" in r.stdout, r.stdout + r.stderr


def _no_face_lost_or_doubled(s: Settings, env, folders: list[Path]) -> None:
    faces = _gallery_faces(s)
    shas = [m["image_sha1"] for m in faces]
    assert len(shas) == len(set(shas)), "a photo's face was stored twice"
    # A fresh ingest of both folders (the ledger forgotten) must find nothing missing.
    for f in folders:
        r = _cli(env, "ingest", f, "--quiet", "--restart")
        assert r.returncode == 0, r.stderr
    assert len(_gallery_faces(s)) == len(faces)


def _two_at_once(env, a: Path, b: Path) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen([sys.executable, "-m", "facesearch", "ingest", str(f), "--quiet"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in (a, b)]
    out = []
    for p in procs:
        so, se = p.communicate(timeout=600)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    return out


def test_two_cli_ingests_at_once_through_the_server(home, tmp_path):
    from store.server import start_server

    s, env = home
    people = _celeba_people(5, 3)
    ids = list(people)
    # The two datasets overlap by one person: the same photos, ingested by both.
    a = _folder(tmp_path / "a", {i: people[i] for i in ids[:3]})
    b = _folder(tmp_path / "b", {i: people[i] for i in ids[2:]})
    with start_server(s):
        runs = _two_at_once(env, a, b)
        for r in runs:
            assert r.returncode == 0, r.stderr
        _no_face_lost_or_doubled(s, env, [a, b])
        assert {m["identity"] for m in _gallery_faces(s)} == {f"person_{i}" for i in ids}


def test_two_cli_ingests_at_once_without_a_server(home, tmp_path):
    s, env = home
    people = _celeba_people(4, 3)
    ids = list(people)
    a = _folder(tmp_path / "a", {i: people[i] for i in ids[:2]})
    b = _folder(tmp_path / "b", {i: people[i] for i in ids[2:]})
    runs = _two_at_once(env, a, b)
    refused = [r for r in runs if r.returncode != 0]
    # Both finish (one after the other) or the later one is refused, in one clear line.
    assert len(refused) <= 1
    for r in refused:
        assert r.stderr.strip().startswith("error: ") and "open in another process" in r.stderr
        assert "Traceback" not in r.stderr
        again = _cli(env, "ingest", r.args[-2])
        assert again.returncode == 0, again.stderr
    _no_face_lost_or_doubled(s, env, [a, b])
    assert {m["identity"] for m in _gallery_faces(s)} == {f"person_{i}" for i in ids}


OPEN_CACHE = r"""
import sys, time
from pathlib import Path
from facesearch.embedding.cache import EmbeddingCache
path, start = Path(sys.argv[1]), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
for i in range(3):
    c = EmbeddingCache(path)
"""


def test_worker_processes_opening_a_new_cache_at_once(tmp_path):
    """Ingest workers (pool or Dask) open the data folder's embedding cache at the same
    moment; on a new cache none of them may fail with SQLite's "database is locked"."""
    import time

    for attempt in range(3):  # three fresh caches: the race is in their first seconds
        path = tmp_path / f"cache{attempt}" / "embeddings.sqlite"
        start = time.time() + 3.0
        procs = [subprocess.Popen([sys.executable, "-c", OPEN_CACHE, str(path), str(start)], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-1500:]
