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
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facesearch.errors import DatabaseRestartingError, GalleryBusyError, StoreError
from facesearch.settings import Settings, ensure_private

LOCK_NAME = "chroma.lock"
SERVER_FILE = "chroma-server.json"
HOST = "127.0.0.1"
# How long a process waits for a server that holds the lock but has not answered yet
# (``chroma run`` takes a few seconds to start, longer on a loaded machine).
STARTUP_WAIT = 60.0
# How long a process waits for a server its supervisor is restarting before it says so
# (DatabaseRestartingError): the CLI waits as for a start; the dashboard sets it short
# (components/common.py) so that its pages say "restarting" instead of hanging.
RESTART_WAIT = STARTUP_WAIT
# Seconds between a dead server and each try to start it again (ChromaServer.supervise);
# the last one repeats. After MAX_FAILED_STARTS tries in a row that did not answer, the
# supervisor gives up (facesearch serve then exits non-zero).
RESTART_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
MAX_FAILED_STARTS = 8
# A server that stayed up this long resets the backoff.
STABLE_AFTER = 60.0

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
    ensure_private(settings.home)
    fd = os.open(lock_path(settings), os.O_RDWR | os.O_CREAT, 0o600)
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


TOKEN_HEADER = "X-Facesearch-Token"  # what store/relay.py lets in


def heartbeat(url: str, timeout: float = 2.0, token: str | None = None) -> bool:
    req = urllib.request.Request(url.rstrip("/") + "/api/v2/heartbeat", headers={TOKEN_HEADER: token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
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
    # A killed server its parent has not reaped yet is a zombie: dead, though kill(0) works.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def find_server(settings: Settings) -> str | None:
    """The URL of this data folder's running server, or None. Trusted only while its
    process lives, holds the owner lock and answers a heartbeat."""
    info = _read_server(settings)
    if info is None or not _alive(info.get("pid")):
        return None
    if _key(settings) in _held:
        return None  # we are the embedded owner: a server file here is stale
    return info["url"] if heartbeat(info["url"], token=info.get("token")) else None


def token_for(settings: Settings, url: str) -> str | None:
    """The token the data folder's server at ``url`` wants (store/relay.py), or None."""
    info = _read_server(settings)
    return info.get("token") if info and info.get("url") == url else None


_netns: bool | None = None


def netns_available() -> bool:
    """Whether this machine lets us run the server in a network namespace of its own
    (unprivileged user namespaces: ``unshare --user --map-root-user --net``)."""
    global _netns
    if _netns is None:
        try:
            _netns = subprocess.run(["unshare", "--user", "--map-root-user", "--net", "true"],
                                    capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _netns = False
    return _netns


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
        start = time.monotonic()
        deadline = start + wait
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
            if who.startswith("chroma server") and restarting(settings):
                # Its supervisor is starting it again: wait a little (RESTART_WAIT), then say so.
                if time.monotonic() < min(deadline, start + RESTART_WAIT):
                    time.sleep(0.25)
                    continue
                raise restarting_error(settings)
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


def restarting(settings: Settings) -> bool:
    """True while the folder's server is down and its supervisor (``facesearch serve``)
    is starting it again: the owner lock says so, or the published server died and the
    lock is still held (the supervisor has not noticed yet)."""
    if settings.chroma_url:
        return False
    who = holder(settings)
    if not who.startswith("chroma server"):
        return False
    if "restarting" in who:
        return True
    info = _read_server(settings)
    return info is not None and not _alive(info.get("pid"))


def restarting_error(settings: Settings) -> DatabaseRestartingError:
    return DatabaseRestartingError(
        "the database is restarting: its server stopped and is being started again. This works again in a few "
        "seconds; try again (reload the page).")


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
    port: int | None = None
    restarts: int = 0  # how many times supervise() started it again
    _failed: int = 0  # tries in a row that did not answer
    _up_since: float = 0.0
    _next_try: float | None = None  # when the next restart is due (monotonic), while down
    token: str | None = None  # what the relay wants; None: no barrier (no network namespace here)
    _listen: socket.socket | None = None  # the relay's listening socket, kept across restarts

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
        if self._listen is not None:
            self._listen.close()
            self._listen = None
        self.proc = None

    def supervise(self, log=None) -> bool:
        """Check the server this process started and start it again if it died: on the
        same port, data folder and owner lock, after a backoff (:data:`RESTART_BACKOFF`)
        that grows with each try that fails. Call it every second or so from the thread
        that started the server (its child dies with that thread: PR_SET_PDEATHSIG).
        ``log``: a function given one line per event (default: stderr). True while the
        server is up; raises :class:`StoreError` after :data:`MAX_FAILED_STARTS` failed
        tries in a row."""
        if self.proc is None or self._fd is None:
            return True  # not ours
        say = log or (lambda line: print(line, file=sys.stderr, flush=True))
        now = time.monotonic()
        if self._next_try is None:
            code = self.proc.poll()
            if code is None:
                if self._failed and now - self._up_since > STABLE_AFTER:
                    self._failed = 0
                return True
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            if self.token and code > 128:
                how = f"its chroma run was killed by signal {code - 128}"  # store/relay.py exits 128 + N
            delay = RESTART_BACKOFF[min(self._failed, len(RESTART_BACKOFF) - 1)]
            # Say so in the owner lock first: readers then report "restarting".
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, f"chroma server {self.url} (restarting, pid {self.pid} died)".encode(), 0)
            say(f"gallery database server {self.url} (pid {self.pid}) died ({how}); restarting it in {delay:g} s")
            self._next_try = now + delay
            return False
        if now < self._next_try:
            return False
        self._next_try = None
        self.proc = _launch(self.settings, int(self.port or urllib.parse.urlparse(self.url).port), self._fd,
                            self._listen, self.token)
        self.pid = self.proc.pid
        why = _wait_up(self.settings, self.proc, self.url, timeout=120.0, token=self.token)
        if why is not None:
            self._failed += 1
            with contextlib.suppress(Exception):
                self.proc.kill()
                self.proc.wait(10)
            if self._failed >= MAX_FAILED_STARTS:
                raise StoreError(f"the gallery database server on {self.url} died and did not start again after "
                                 f"{self._failed} tries: {why}")
            delay = RESTART_BACKOFF[min(self._failed, len(RESTART_BACKOFF) - 1)]
            say(f"gallery database server {self.url} did not start again ({why}); next try in {delay:g} s")
            self._next_try = time.monotonic() + delay
            return False
        self.restarts += 1
        self._failed += 1  # reset once it has stayed up STABLE_AFTER s
        self._up_since = time.monotonic()
        _publish(self.settings, self._fd, self.url, self.pid, self.token)
        say(f"gallery database server restarted on {self.url} (pid {self.pid}, restart {self.restarts})")
        return True

    def __enter__(self) -> "ChromaServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def chroma_executable() -> str:
    exe = Path(sys.executable).with_name("chroma")
    if exe.is_file():
        return str(exe)
    raise StoreError(f"the `chroma` command is missing next to {sys.executable}: install the requirements (make install)")


def _launch(settings: Settings, port: int, fd: int, listen: socket.socket | None = None,
            token: str | None = None) -> subprocess.Popen:
    """``chroma run`` for the folder's database, its output in logs/; it inherits the
    owner lock's fd, so the folder stays owned while the server lives. With ``listen``
    and ``token``: in a network namespace of its own behind store/relay.py, which accepts
    on ``listen`` (see there); else on loopback ``port``, open to every local user."""
    ensure_private(settings.home)
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    if listen is not None and token:
        from store.relay import INNER_PORT

        r, w = os.pipe()
        try:
            os.write(w, token.encode())
        finally:
            os.close(w)
        try:
            cmd = ["unshare", "--user", "--map-root-user", "--net", sys.executable,
                   str(Path(__file__).with_name("relay.py")), "--listen-fd", str(listen.fileno()), "--token-fd", str(r),
                   "--pass-fd", str(fd), "--log", str(logs / "chroma-server.log"), "--",
                   chroma_executable(), "run", "--path", str(settings.chroma_path), "--host", "127.0.0.1",
                   "--port", str(INNER_PORT)]
            with open(logs / "chroma-server.log", "ab") as log:
                return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                        pass_fds=(fd, listen.fileno(), r), preexec_fn=die_with_parent)
        finally:
            os.close(r)
    log = open(logs / "chroma-server.log", "ab")
    try:
        return subprocess.Popen([chroma_executable(), "run", "--path", str(settings.chroma_path), "--host", HOST,
                                 "--port", str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, pass_fds=(fd,), preexec_fn=die_with_parent)
    finally:
        log.close()


def _wait_up(settings: Settings, proc: subprocess.Popen, url: str, timeout: float,
             token: str | None = None) -> str | None:
    """Wait until ``proc`` answers on ``url``: None when it does, else why not (it exited
    or did not answer within ``timeout`` s, with the log's last line)."""
    deadline = time.monotonic() + timeout
    while not heartbeat(url, timeout=1.0, token=token):
        if proc.poll() is not None or time.monotonic() > deadline:
            log = settings.home / "logs" / "chroma-server.log"
            tail = ""
            with contextlib.suppress(OSError, IndexError):
                tail = log.read_text(errors="replace").strip().splitlines()[-1:][0]
            return f"{tail or 'no answer'} (log: {log})"
        time.sleep(0.25)
    return None


def _publish(settings: Settings, fd: int, url: str, pid: int, token: str | None = None) -> None:
    tmp = server_file(settings).with_suffix(".tmp")
    # The token is the key to the gallery: the file is the owner's only (umask 077, and
    # explicitly, in case this process was started with a looser one).
    tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(tfd, 0o600)
    with os.fdopen(tfd, "w") as fh:
        fh.write(json.dumps({"url": url, "pid": pid, "path": str(settings.chroma_path.resolve()),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "token": token,
                             "barrier": "network namespace + token" if token else "none"}))
    os.replace(tmp, server_file(settings))
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"chroma server {url} (pid {pid})".encode(), 0)


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
    listen, token = None, None
    if netns_available():
        # Chroma 1.5.9 enforces no authentication: the server goes into a network
        # namespace of its own, behind a relay that wants the folder's token (store/relay.py).
        listen = socket.socket()
        listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listen.bind((HOST, int(port or 0)))
        except OSError as exc:
            listen.close()
            raise StoreError(f"cannot start the gallery server on port {port}: {exc.strerror or exc}") from None
        listen.listen(128)
        port = listen.getsockname()[1]
        token = secrets.token_urlsafe(32)
    port = int(port or _free_port())
    url = f"http://{HOST}:{port}"
    fd = _try_lock(settings, f"chroma server {url} (starting, started by {_this_process()})")
    if fd is None:
        if listen is not None:
            listen.close()
        who = holder(settings)
        raise GalleryBusyError(f"cannot start the gallery server: {settings.chroma_path} is open in another "
                               f"process ({who or 'unknown'}); wait for it to finish")
    try:
        proc = _launch(settings, port, fd, listen, token)
    except BaseException:
        _release_fd(fd)
        if listen is not None:
            listen.close()
        raise
    srv = ChromaServer(url=url, pid=proc.pid, settings=settings, proc=proc, _fd=fd, port=port,
                       _up_since=time.monotonic(), token=token, _listen=listen)
    why = _wait_up(settings, proc, url, timeout, token=token)
    if why is not None:
        srv.stop()
        raise StoreError(f"the gallery server did not start on {url}: {why}")
    _publish(settings, fd, url, proc.pid, token)
    if token is None:
        print(f"warning: no network namespaces here (unshare --user --net failed): the gallery server {url} is "
              "open to every local user", file=sys.stderr, flush=True)
    return srv
