"""The gallery on a real Chroma database: persistence, idempotence, refusal, errors."""

import collections
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facesearch.errors import EmptyGalleryError, GalleryBusyError, GalleryMismatchError
import facesearch.ingest.run as ingest_mod
from facesearch.ingest.run import ingest
from facesearch.settings import Settings
from store import FaceGallery, list_galleries
import store.gallery as gallery_mod


def _vecs(n, d=128, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _forget_clients():
    # A new process would open the database afresh; drop cached clients to do the same.
    gallery_mod._clients.clear()


def test_survives_reopen_and_refuses_mismatch(tmp_path):
    s = Settings(home=tmp_path)
    g = FaceGallery("dlib", 128, "mtcnn", s)
    x = _vecs(10)
    g.upsert([f"id{i}" for i in range(10)], x, [{"identity": f"p{i % 3}"} for i in range(10)])
    _forget_clients()
    g2 = FaceGallery("dlib", 128, "mtcnn", s)
    assert g2.count() == 10
    assert g2.identities() == {"p0": 4, "p1": 3, "p2": 3}
    hits = g2.query(x[:2], k=3)
    assert [h[0].id for h in hits] == ["id0", "id1"] and hits[0][0].distance < 1e-5
    # Same collection name, other dimension: refused with a clear error.
    with pytest.raises(GalleryMismatchError, match="128"):
        FaceGallery("dlib", 512, "mtcnn", s)
    with pytest.raises(GalleryMismatchError, match="128-d"):
        g2.upsert(["x"], _vecs(1, 64), [{"identity": "x"}])
    with pytest.raises(GalleryMismatchError):
        g2.query(_vecs(1, 512), k=1)
    assert g2.delete(identity="p0") == 4 and g2.count() == 6
    assert {g["model"] for g in list_galleries(s)} == {"dlib"}


def test_empty_gallery_query_is_clear(tmp_path):
    g = FaceGallery("dlib", 128, "mtcnn", Settings(home=tmp_path))
    with pytest.raises(EmptyGalleryError, match="empty"):
        g.query(_vecs(1), k=5)


def _hold_lock(home, ready, release):
    g = FaceGallery("dlib", 128, "mtcnn", Settings(home=Path(home)))
    with g.writer():
        ready.set()
        release.wait(30)


def _open_embedded(home, q):
    try:
        FaceGallery("dlib", 128, "mtcnn", Settings(home=Path(home)))
        q.put("opened")
    except GalleryBusyError as exc:
        q.put(f"busy: {exc}")


def test_second_process_refused_while_one_owns_the_folder(tmp_path):
    """The embedded database has one owner: another process is told who, not let in."""
    import os

    s = Settings(home=tmp_path)
    FaceGallery("dlib", 128, "mtcnn", s)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_open_embedded, args=(str(tmp_path), q))
    p.start(); p.join(120)
    msg = q.get(timeout=5)
    assert msg.startswith("busy:") and f"pid {os.getpid()}" in msg and "make run" in msg
    # Once this process lets go, the other one gets in.
    gallery_mod.close_client(s)
    p = ctx.Process(target=_open_embedded, args=(str(tmp_path), q))
    p.start(); p.join(120)
    assert q.get(timeout=5) == "opened"


def test_second_writer_thread_gets_busy_error_naming_the_pid(tmp_path):
    import os
    import threading

    s = Settings(home=tmp_path)
    holding, release = threading.Event(), threading.Event()

    def hold():
        with FaceGallery("dlib", 128, "mtcnn", s).writer():
            holding.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert holding.wait(30)
        g = FaceGallery("dlib", 128, "mtcnn", s)
        t0 = time.monotonic()
        with pytest.raises(GalleryBusyError, match=f"pid {os.getpid()}"):
            with g.writer(wait=0.5):
                pass
        assert time.monotonic() - t0 >= 0.5
    finally:
        release.set(); t.join(30)
    with g.writer(wait=5):
        with g.writer(wait=0):  # the same thread may nest
            pass
    _forget_clients()


def test_second_writer_through_the_server_gets_busy_error(tmp_path):
    from store.server import start_server

    s = Settings(home=tmp_path)
    with start_server(s) as srv:
        assert srv.owned and srv.url.startswith("http://127.0.0.1:")
        FaceGallery("dlib", 128, "mtcnn", s)
        ctx = mp.get_context("spawn")
        ready, release = ctx.Event(), ctx.Event()
        p = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
        p.start()
        try:
            assert ready.wait(60)
            g = FaceGallery("dlib", 128, "mtcnn", s)
            with pytest.raises(GalleryBusyError, match="pid"):
                with g.writer(wait=0.5):
                    pass
        finally:
            release.set(); p.join(30)
        with g.writer(wait=5):
            pass
    _forget_clients()


def test_ingest_is_idempotent_and_reports_bad_files(tmp_path, data_dir, own_settings):
    """Own empty cache: the faces found and the photo with none are detected here."""
    s = own_settings
    # A folder-per-identity dataset with the awkward files mixed in.
    root = tmp_path / "ds"
    (root / "obama").mkdir(parents=True); (root / "junk").mkdir()
    for f in (data_dir / "photos/people/obama").iterdir():
        shutil.copy(f, root / "obama" / f.name)
    for f in ("not-an-image.jpg", "truncated.jpg", "32bit.png", "obama_small.jpg"):
        shutil.copy(data_dir / "photos/edge" / f, root / "junk" / f)
    (root / "junk" / "blank.png").write_bytes(__import__("base64").b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="))
    r1 = ingest(root, "folders", settings=s)
    failed = dict(r1.failed)
    assert "not an image" in failed[str(root / "junk/not-an-image.jpg")]
    assert "truncated" in failed[str(root / "junk/truncated.jpg")]
    assert str(root / "junk/blank.png") in r1.no_face
    assert r1.faces_added >= 2
    g = FaceGallery(s.model, 128, s.detector, s)
    n = g.count()
    assert n == r1.faces_added
    # Thumbnails are stored beside the database, one per face.
    ids = g.get()["ids"]
    assert all(g.thumb_path(i).is_file() for i in ids)
    # Second run: resumes, adds nothing.
    r2 = ingest(root, "folders", settings=s)
    assert r2.skipped == r1.total and r2.processed == 0 and g.count() == n
    # Even when the ledger is forgotten, content-hash IDs make re-ingest add nothing.
    r3 = ingest(root, "folders", settings=s, restart=True)
    assert r3.processed == r1.total and g.count() == n


def _free_port():
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    chroma = Path(sys.executable).with_name("chroma")
    port = _free_port()
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "srv"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request

    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1)
            break
        except Exception:
            if proc.poll() is not None:
                pytest.fail("chroma server exited")
            time.sleep(0.5)
    yield url
    proc.terminate(); proc.wait(20)


def test_http_server_gallery(tmp_path, chroma_server):
    s = Settings(home=tmp_path / "home", chroma_url=chroma_server)
    g = FaceGallery("facenet-casia", 512, "mtcnn", s)
    x = _vecs(5, 512)
    g.upsert([f"f{i}" for i in range(5)], x, [{"identity": "a" if i < 2 else "b"} for i in range(5)])
    _forget_clients()
    g2 = FaceGallery("facenet-casia", 512, "mtcnn", s)
    assert g2.count() == 5 and g2.query(x[3:4], k=1)[0][0].id == "f3"
    with pytest.raises(GalleryMismatchError):
        FaceGallery("facenet-casia", 128, "mtcnn", s)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 64 MB filesystem (tmpfs) to fill up; skipped where mounting is not allowed."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("cannot mount a tmpfs here (needs root): the full-disk test must run in CI")
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    _forget_clients()
    subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk_stops_cleanly_and_resume_loses_nothing(tiny_disk, session_home):
    """The gallery on a full disk; the embedding cache is the session's, on another disk
    (this is about gallery writes, not about detection or embedding)."""
    from facesearch.errors import StorageFullError
    from conftest import celeba_split

    s = Settings(home=tiny_disk / "home", cache_dir=session_home / "cache")
    items, _ = celeba_split(n_identities=3, n_gallery=3, n_probe=0)
    g = FaceGallery(s.model, 128, s.detector, s)
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    with pytest.raises(StorageFullError, match="disk full"):
        ingest(None, items=items, settings=s)
    written = g.count()
    filler.unlink()
    usage = subprocess.run(["du", "-sh", str(tiny_disk / "home")], capture_output=True, text=True).stdout
    rep = ingest(None, items=items, settings=s)
    print(usage)
    assert rep.processed + rep.skipped == len(items)
    ids = g.get()["ids"]
    assert len(ids) == rep.faces_added + written and len(ids) >= len(items) - 1
    assert all(g.thumb_path(i).is_file() for i in ids)


def test_every_write_on_a_full_disk_says_disk_full(tiny_disk):
    """The thresholds file, a calibration, the embedding cache and the ingest ledger: each
    refuses a write on a real full disk with StorageFullError, not an OSError or SQLite's words."""
    from facesearch.search import calibration
    from facesearch.search import thresholds
    from facesearch.errors import StorageFullError
    from facesearch.ingest.ledger import Ledger
    from facesearch.embedding.cache import EmbeddingCache

    s = Settings(home=tiny_disk / "home")
    cache = EmbeddingCache(tiny_disk / "cache" / "embeddings.sqlite")
    ledger = Ledger(tiny_disk / "ledger.sqlite", "c")
    cal = calibration.Calibration("sface", "k", "d", "test", 10, 2, np.zeros(4), np.zeros(999), -1.0, 0.0)
    with open(tiny_disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    writes = [
        lambda: thresholds.set_threshold("sface", 0.5, "test", s),
        lambda: calibration.save(cal, tiny_disk / "cal"),
        lambda: cache.put("m", "d", "ab" * 20, [], np.zeros((0, 0), np.float32), 0.1),
        lambda: ledger.mark([(f"/p/{i}.jpg" * 200, 1, 0.0, "done", "", 1, "ab" * 20) for i in range(500)]),
    ]
    for write in writes:
        with pytest.raises(StorageFullError, match="disk full"):
            write()


def test_deleted_identity_comes_back_on_reingest(shared_cache_settings):
    """About the gallery and the ledger, not embedding: the session's cache serves the photos."""
    from conftest import celeba_split

    s = shared_cache_settings
    items, _ = celeba_split(n_identities=2, n_gallery=2, n_probe=0)
    ingest(None, items=items, settings=s)
    g = FaceGallery(s.model, 128, s.detector, s)
    n = g.count()
    victim = items[0].identity
    assert g.delete(identity=victim) >= 1
    rep = ingest(None, items=items, settings=s)
    assert rep.processed == 2 and g.count() == n
    assert victim in g.identities()


_REAL_PROCESS = ingest_mod._process


def _process_noting_pid(pipe, path, data=None, max_faces=None):
    """ingest's work on one photo, in a worker process, after writing "pid path" to the
    file named by FACESEARCH_TEST_PIDS. A worker's first photo waits (up to 120 s) until
    another process has started one too, so that which worker starts faster cannot decide
    the test: with only one worker process the wait runs out and the test fails."""
    log = Path(os.environ["FACESEARCH_TEST_PIDS"])
    me = str(os.getpid())
    first = not any(line.split()[0] == me for line in log.read_text().splitlines())
    with open(log, "a") as f:
        f.write(f"{me} {path}\n")
    t0 = time.monotonic()
    while first and time.monotonic() - t0 < 120:
        if any(line.split()[0] != me for line in log.read_text().splitlines()):
            break
        time.sleep(0.05)
    return _REAL_PROCESS(pipe, path, data, max_faces)


def _gallery(s: Settings) -> tuple[list[str], np.ndarray, list[str]]:
    r = FaceGallery(s.model, 128, s.detector, s).get(embeddings=True)
    order = np.argsort(r["ids"])
    return ([r["ids"][i] for i in order], r["embeddings"][order], [r["metadatas"][i]["identity"] for i in order])


def test_two_worker_processes_ingest_the_same_as_one(tmp_path, monkeypatch):
    """Nine photos through two worker processes, each data folder with its own empty cache:
    the workers detect and embed every photo (both of them take part, neither is this
    process) and the gallery equals the one a single in-process run builds."""
    from conftest import celeba_split

    items, _ = celeba_split(n_identities=3, n_gallery=3, n_probe=0)
    one = Settings(home=tmp_path / "one")
    rep1 = ingest(None, items=items, settings=one, workers=1)
    assert rep1.processed == 9 and not rep1.failed

    two = Settings(home=tmp_path / "two")
    assert not two.cache_path.exists()
    log = tmp_path / "pids.txt"
    log.write_text("")
    monkeypatch.setenv("FACESEARCH_TEST_PIDS", str(log))
    # Workers are spawned: they import this module by name and run the wrapper above.
    monkeypatch.setattr(ingest_mod, "_process", _process_noting_pid)
    rep = ingest(None, items=items, settings=two, workers=2)
    assert rep.processed == 9 and not rep.failed
    done = [line.split(" ", 1) for line in log.read_text().splitlines()]
    assert sorted(p for _, p in done) == sorted(str(it.path) for it in items)
    pids = {pid for pid, _ in done}
    assert len(pids) == 2 and str(os.getpid()) not in pids, f"photos per process: {collections.Counter(pid for pid, _ in done)}"

    ids1, x1, who1 = _gallery(one)
    ids2, x2, who2 = _gallery(two)
    assert ids2 == ids1 and who2 == who1 and len(set(who2)) == 3
    assert rep.faces_added == rep1.faces_added == len(ids2)
    assert np.allclose(x2, x1, atol=1e-5)


def test_same_photo_in_two_folders_is_stored_once(tmp_path, data_dir, own_settings):
    """Identical bytes under three paths in one batch, on a first ingest (own empty
    cache): one face per label (two copies under ``a``, one under ``b``), not a refused
    batch, and the report counts the faces written."""
    s = own_settings
    photo = next((data_dir / "photos/people/obama").iterdir())
    for who in ("a", "b"):
        (tmp_path / "ds" / who).mkdir(parents=True)
        shutil.copy(photo, tmp_path / "ds" / who / photo.name)
    shutil.copy(photo, tmp_path / "ds" / "a" / f"copy-{photo.name}")
    rep = ingest(tmp_path / "ds", "folders", settings=s)
    assert rep.processed == 3 and not rep.failed, rep.summary()
    g = FaceGallery(s.model, 128, s.detector, s)
    assert g.identities() == {"a": 1, "b": 1} and rep.faces_added == 2
