"""Shared test fixtures.

One data folder (FACESEARCH_HOME) for the whole session, served by one Chroma server.

The embedding cache decides what a test really runs: a photo found in it is neither
detected nor embedded. So a test that claims to exercise detection, embedding or worker
processes uses ``own_settings`` (or its own ``Settings(home=tmp_path / ...)``): its own
empty cache and weights folder, and it computes what it tests. Only a test about
something else (a gallery write, a page, a search's ranking) may use
``shared_cache_settings``, an empty gallery over the session's cache, and its docstring
says so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["ANONYMIZED_TELEMETRY"] = "False"


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"test data not found at {DATA} (the shared data folder beside the repo)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Path:
    """The session's FACESEARCH_HOME; subprocesses inherit it through the environment.

    Its database is served by a real ``chroma run`` for the whole session, as ``make
    run`` does, so the test process, CLI subprocesses and the dashboard share it (the
    embedded database has one owner process). Tests with their own ``tmp_path`` home
    get the embedded database."""
    from facesearch.settings import Settings
    from store.server import start_server

    home = tmp_path_factory.mktemp("fshome")
    os.environ["FACESEARCH_HOME"] = str(home)
    os.environ["DEEPFACE_HOME"] = str(home / "models")
    os.environ["KERAS_HOME"] = str(home / "models" / "keras")
    with start_server(Settings(home=home)):
        yield home


@pytest.fixture(autouse=True)
def _pytest_stays_main():
    """Streamlit's script runner (every AppTest) installs the script it runs as
    ``sys.modules["__main__"]`` and leaves it there. A worker process that a later test
    spawns re-runs the parent's ``__main__`` on start (multiprocessing's spawn), so it
    would run that script again: put pytest's own back after each test."""
    import sys

    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


@pytest.fixture(scope="session")
def settings(session_home):
    from facesearch.settings import Settings

    return Settings.from_env()


@pytest.fixture
def own_settings(tmp_path):
    """An empty data folder with its own empty embedding cache and weights folder: every
    photo a test gives it is detected and embedded in that test."""
    from facesearch.settings import Settings

    s = Settings(home=tmp_path / "home")
    assert not s.cache_path.exists()
    return s


@pytest.fixture
def shared_cache_settings(tmp_path, session_home):
    """An empty gallery and ledger in tmp_path over the session's embedding cache (keyed by
    content hash and the model's and detector's versions, so sharing is safe): photos an
    earlier test embedded cost nothing. Only for tests that are not about detection,
    embedding or workers."""
    from facesearch.settings import Settings

    return Settings(home=tmp_path / "home", cache_dir=session_home / "cache")


@pytest.fixture
def tiny_disk(tmp_path):
    """``mount(size="16m")``: a fresh tmpfs of that size under ``tmp_path``, a disk a test
    can fill; unmounted afterwards. Needs root: in CI (CI=true) a tmpfs that cannot be
    mounted fails the test, elsewhere it is skipped."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: str = "16m") -> Path:
        mnt = tmp_path / f"disk{len(mounted)}"
        mnt.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
        if r.returncode:
            if os.environ.get("CI") == "true":
                pytest.fail("cannot mount a tmpfs here (needs root): the full-disk tests must run in CI")
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", "-l", str(mnt)])


def fill_disk(folder: Path, keep_bytes: int = 0) -> Path:
    """Fill ``folder``'s disk until ``keep_bytes`` are left free (0: until it refuses
    more); returns the filler file, whose removal frees the space."""
    filler = next(folder / f"filler{i}" for i in range(1000) if not (folder / f"filler{i}").exists())
    st = os.statvfs(folder)
    want = max(0, st.f_bavail * st.f_frsize - keep_bytes)
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: nothing left to fail at close
        try:
            while want > 0:
                want -= fh.write(bytes(min(want, 1 << 20)))
            while keep_bytes == 0:
                fh.write(bytes(4096))
        except OSError:
            pass
    return filler


@pytest.fixture
def no_memory_cache(monkeypatch):
    """A searched photo's faces and vectors are kept in this process's memory
    (``facesearch.embedding.pipeline.memory_cache``), so a photo an earlier test searched with would
    not be detected or embedded again; here nothing is kept, and every search computes."""
    from facesearch.embedding import pipeline
    from facesearch.embedding.cache import MemoryCache

    monkeypatch.setattr(pipeline, "memory_cache", MemoryCache(size=0))


@pytest.fixture
def no_network(monkeypatch):
    """This process cannot reach another machine, whatever network the machine has: name
    lookups and connections to anything but loopback fail at once with OSError, and proxy
    variables are unset (a proxy on localhost would be a way out). Loopback stays open for
    the session's Chroma server. Yields the list of hosts and addresses refused, so a test
    can check that a download was really tried."""
    import ipaddress
    import socket

    refused: list[str] = []
    real_getaddrinfo, real_connect, real_connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex

    def loopback(host) -> bool:
        if host in (None, "", "localhost") or str(host).endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
        except ValueError:
            return False

    def getaddrinfo(host, *args, **kwargs):
        if not loopback(host if not isinstance(host, bytes) else host.decode()):
            refused.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"network blocked by the test: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    def allowed(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or loopback(address[0]):
            return True
        refused.append(str(address[0]))
        return False

    def connect(self, address):
        if not allowed(self, address):
            raise OSError(101, f"network blocked by the test: {address[0]}")  # ENETUNREACH
        return real_connect(self, address)

    def connect_ex(self, address):
        return real_connect_ex(self, address) if allowed(self, address) else 101

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield refused


def celeba_split(n_identities: int = 20, n_gallery: int = 4, n_probe: int = 2):
    """A deterministic CelebA gallery/probe split: the identities with the most photos."""
    from facesearch.datasets.registry import load_images

    imgs = load_images(DATA / "celeba", "celeba")
    by_id: dict[str, list] = {}
    for im in imgs:
        by_id.setdefault(im.identity, []).append(im)
    ids = sorted(by_id, key=lambda i: (-len(by_id[i]), i))[:n_identities]
    gallery, probes = [], []
    for i in ids:
        ims = by_id[i]
        gallery += ims[:n_gallery]
        probes += ims[n_gallery:n_gallery + n_probe]
    return gallery, probes


def celeba_library(folder: Path, n_identities: int = 5, n_photos: int = 6) -> tuple[Path, dict[str, str]]:
    """A flat photo library (no labels anywhere): symlinks to ``n_photos`` photos of each
    of the ``n_identities`` CelebA identities with the most photos. Returns the folder and
    each file name's true identity (for checking, never given to the ingest)."""
    gallery, _ = celeba_split(n_identities=n_identities, n_gallery=n_photos, n_probe=0)
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for im in gallery:
        (folder / im.path.name).symlink_to(im.path)
        truth[im.path.name] = im.identity
    return folder, truth
