"""One owner per data folder: a Chroma server every process shares, or one embedded user.

Chroma's embedded ``PersistentClient`` caches its HNSW segments per process: another
process's writes reach the SQLite file (``count()`` goes up) but not the reader's
``query()``/``get()`` (chroma issues #3792, #3769, #961). So a data folder's database has
exactly one owner at a time, marked by an exclusive ``flock`` on ``$FACESEARCH_HOME/
chroma.lock``:

* **a Chroma server** (``chroma run``, started by :func:`start_server`, which ``make run``
  does through ``facesearch serve``): it publishes its URL and pid in
  ``$FACESEARCH_HOME/chroma-server.json``; every other process (dashboard, CLI) finds it
  there and talks to it through ``HttpClient``;
* **or one embedded user** (a CLI command run with no server): it holds the lock for as
  long as it runs; a second process is refused with a message naming the holder.

``FACESEARCH_CHROMA_URL`` (``Settings.chroma_url``) bypasses all of this and uses that
server. No streamlit here.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facesearch.errors import GalleryBusyError, StoreError
from facesearch.settings import Settings

LOCK_NAME = "chroma.lock"
SERVER_FILE = "chroma-server.json"
HOST = "127.0.0.1"
# How long a process waits for a server that holds the lock but has not answered yet
# (``chroma run`` takes a few seconds to start, longer on a loaded machine).
STARTUP_WAIT = 60.0

_held: dict[str, int] = {}  # lock path -> fd of the owner lock this process holds
_held_lock = threading.Lock()


def lock_path(settings: Settings) -> Path:
    return settings.home / LOCK_NAME


def server_file(settings: Settings) -> Path:
    return settings.home / SERVER_FILE


def _key(settings: Settings) -> str:
    return str(lock_path(settings).resolve())


def _try_lock(settings: Settings, holder: str) -> int | None:
    """Take the folder's owner lock without waiting: its fd, or None when another process
    holds it. The holder text is written into the file for whoever is refused."""
    settings.home.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(settings), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    # The command line may hold a file name that is not UTF-8 (escaped, not refused).
    os.pwrite(fd, holder.encode("utf-8", "backslashreplace"), 0)
    return fd


def _release_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def holder(settings: Settings) -> str:
    """Who holds the folder's owner lock, as they described themselves ('' if unknown)."""
    with contextlib.suppress(OSError):
        return lock_path(settings).read_text().strip()
    return ""


def _this_process() -> str:
    cmd = " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv and sys.argv[0] else "python"
    return f"pid {os.getpid()} ({cmd[:200]})"


def heartbeat(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/v2/heartbeat", timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


def _read_server(settings: Settings) -> dict | None:
    try:
        info = json.loads(server_file(settings).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("url"), str) else None


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_server(settings: Settings) -> str | None:
    """The URL of this data folder's running server, or None. Trusted only while its
    process lives, holds the owner lock and answers a heartbeat."""
    info = _read_server(settings)
    if info is None or not _alive(info.get("pid")):
        return None
    if _key(settings) in _held:
        return None  # we are the embedded owner: a server file here is stale
    return info["url"] if heartbeat(info["url"]) else None


def resolve(settings: Settings, wait: float = STARTUP_WAIT) -> str | None:
    """How this process reaches the data folder's database: a server URL, or None for
    the embedded database (this process then holds the owner lock until it exits or
    calls :func:`release`). Raises :class:`GalleryBusyError` when another process owns the
    folder embedded, or a server holds it but does not answer within ``wait`` s."""
    if settings.chroma_url:
        return settings.chroma_url
    key = _key(settings)
    with _held_lock:
        if key in _held:
            return None
        deadline = time.monotonic() + wait
        while True:
            url = find_server(settings)
            if url:
                return url
            fd = _try_lock(settings, f"embedded database, {_this_process()}")
            if fd is not None:
                # Nobody owns the folder: any server file left behind is from a dead server.
                with contextlib.suppress(OSError):
                    server_file(settings).unlink()
                _held[key] = fd
                return None
            who = holder(settings)
            # A server that is starting holds the lock before it answers: wait for it.
            if who.startswith("chroma server") and time.monotonic() < deadline:
                time.sleep(0.25)
                continue
            if who.startswith("chroma server"):
                raise GalleryBusyError(f"the gallery server for {settings.home} ({who}) is not answering; "
                                       "stop it (or the dashboard that started it) and try again")
            raise GalleryBusyError(
                f"the gallery in {settings.chroma_path} is open in another process ({who or 'unknown'}). "
                "Chroma's embedded database has a single owner: wait for that process to finish, or start "
                "the dashboard with `make run`, whose database server every process can share")


def release(settings: Settings) -> None:
    """Give up this process's embedded ownership of the folder (tests; a finished job)."""
    with _held_lock:
        fd = _held.pop(_key(settings), None)
    if fd is not None:
        _release_fd(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    # Linux: the server gets SIGTERM when the process that started it dies, even by
    # SIGKILL, so a killed dashboard never leaves an orphan owning the folder.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class ChromaServer:
    """A running ``chroma run`` for one data folder (see :func:`start_server`)."""

    url: str
    pid: int
    settings: Settings
    proc: subprocess.Popen | None = None  # None: found running, not ours to stop
    _fd: int | None = None

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server (only one this process started) and free the folder."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        info = _read_server(self.settings)
        if info and info.get("pid") == self.pid:
            with contextlib.suppress(OSError):
                server_file(self.settings).unlink()
        if self._fd is not None:
            _release_fd(self._fd)
            self._fd = None
        self.proc = None

    def __enter__(self) -> "ChromaServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def chroma_executable() -> str:
    exe = Path(sys.executable).with_name("chroma")
    if exe.is_file():
        return str(exe)
    raise StoreError(f"the `chroma` command is missing next to {sys.executable}: install the requirements (make install)")


def start_server(settings: Settings, port: int | None = None, timeout: float = 120.0) -> ChromaServer:
    """Start ``chroma run`` on loopback for ``settings.home``'s database and publish it in
    ``chroma-server.json``; or return the folder's server that is already running (not
    owned: :meth:`ChromaServer.stop` leaves it alone). ``port``: None picks a free one.
    Raises :class:`GalleryBusyError` when a process has the folder open embedded."""
    if settings.chroma_url:
        raise StoreError("FACESEARCH_CHROMA_URL is set: that server is used, none is started")
    info = _read_server(settings)
    url = find_server(settings)
    if url and info:
        return ChromaServer(url=url, pid=int(info["pid"]), settings=settings)
    port = int(port or _free_port())
    url = f"http://{HOST}:{port}"
    fd = _try_lock(settings, f"chroma server {url} (starting, started by {_this_process()})")
    if fd is None:
        who = holder(settings)
        raise GalleryBusyError(f"cannot start the gallery server: {settings.chroma_path} is open in another "
                               f"process ({who or 'unknown'}); wait for it to finish")
    try:
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        logs = settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = open(logs / "chroma-server.log", "ab")
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        # The child inherits the lock's fd: the folder stays owned while the server lives,
        # even if this process is gone.
        proc = subprocess.Popen([chroma_executable(), "run", "--path", str(settings.chroma_path), "--host", HOST,
                                 "--port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, pass_fds=(fd,), preexec_fn=die_with_parent)
        log.close()
    except BaseException:
        _release_fd(fd)
        raise
    srv = ChromaServer(url=url, pid=proc.pid, settings=settings, proc=proc, _fd=fd)
    deadline = time.monotonic() + timeout
    while not heartbeat(url, timeout=1.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            srv.stop()
            tail = ""
            with contextlib.suppress(OSError):
                tail = (logs / "chroma-server.log").read_text(errors="replace").strip().splitlines()[-1:][0]
            raise StoreError(f"the gallery server did not start on {url}: {tail or 'no answer'} "
                             f"(log: {logs / 'chroma-server.log'})")
        time.sleep(0.25)
    tmp = server_file(settings).with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": proc.pid, "path": str(settings.chroma_path.resolve()),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    os.replace(tmp, server_file(settings))
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"chroma server {url} (pid {proc.pid})".encode(), 0)
    return srv
