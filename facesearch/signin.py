"""Admin sign-in with throttling: failed attempts slow down exponentially, per session and
for the whole server, and a burst of failures locks sign-in for a while.

* **per session**: one typo is free; after a session's n-th failure (n >= 2) its next
  attempt waits ``SESSION_BASE * 2**(n-2)`` s (1, 2, 4, ... capped at ``MAX_DELAY``);
* **globally** (every session, every process on the data folder): after ``GLOBAL_FREE``
  failures within ``WINDOW`` s, each further one doubles the wait everyone has before the
  next attempt (up to ``GLOBAL_MAX_DELAY``); at ``LOCKOUT_AFTER`` failures within the window sign-in is locked until
  enough of them are older than the window. So opening more sessions buys an attacker
  nothing. The global count is kept in this process and in ``$FACESEARCH_HOME/signin.json``
  (0600), so a restart does not reset it.

A refused attempt (too early, or locked) is not checked against the password, so
guessing while waiting learns nothing. Every attempt goes into the audit log
(:mod:`facesearch.audit`, action ``sign-in``) with its outcome and counts, never with
the password. The price of the global lockout: someone who keeps guessing also keeps
the real admin out for a while (the command line, which needs no password, still works).

No streamlit here: the page (components/common.py ``admin_box``) keeps a
:class:`SessionAttempts` in its session state and calls :meth:`SignInGuard.attempt`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from facesearch.access import VISITOR, check_password
from facesearch.settings import Settings, ensure_private

SIGNIN_FILE = "signin.json"
SESSION_BASE = 1.0  # s: the wait after a session's second failure; doubles with each one
GLOBAL_BASE = 1.0  # s: the wait after the first failure past GLOBAL_FREE; doubles likewise
MAX_DELAY = 900.0  # s: no session's wait is longer
# s: the longest global wait; short enough that a steady guesser reaches the lockout
# (GLOBAL_FREE + 5 doublings + 30 s steps: 20 failures take about 5.5 min < WINDOW).
GLOBAL_MAX_DELAY = 30.0
WINDOW = 900.0  # s: failures older than this no longer count globally
GLOBAL_FREE = 5  # failures within WINDOW before everyone is slowed down (typos)
LOCKOUT_AFTER = 20  # failures within WINDOW that lock sign-in

_process_failures: dict[str, list[tuple[float, str]]] = {}  # data folder -> this process's (time, id) failures
_process_lock = threading.Lock()


@dataclass
class SessionAttempts:
    """One dashboard session's sign-in history (kept in its session state)."""

    failures: int = 0
    next_at: float = 0.0  # clock time before which this session may not try again
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:8])  # names it in the audit log


@dataclass(frozen=True)
class SignInResult:
    ok: bool
    wait: float  # s before the next attempt is taken (0: now)
    locked: bool  # sign-in is locked for everyone (too many failures in the window)
    checked: bool  # the password was compared (False: refused before that)
    message: str


def session_delay(failures: int) -> float:
    """The wait after a session's ``failures``-th failure (the first is a free typo)."""
    return 0.0 if failures <= 1 else min(MAX_DELAY, SESSION_BASE * 2.0 ** (failures - 2))


def global_delay(failures_in_window: int) -> float:
    """Everyone's wait after the window's ``failures_in_window``-th failure."""
    over = failures_in_window - GLOBAL_FREE
    return 0.0 if over <= 0 else min(GLOBAL_MAX_DELAY, GLOBAL_BASE * 2.0 ** (over - 1))


class SignInGuard:
    """Throttled admin sign-in for one data folder. ``clock``: seconds since the epoch
    (tests pass their own; the global count is stored in these units)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.path = settings.home / SIGNIN_FILE
        self.key = str(settings.home.resolve())

    # -- the global count ------------------------------------------------------------
    def _update(self, add: float | None, now: float) -> list[float]:
        """The times of the failures within the window (this process's and the folder
        file's, sorted), with ``add`` appended; written back to the file when ``add`` is
        given. Each failure has an id, so the two lists merge without double counting."""
        with _process_lock:
            mine = _process_failures.setdefault(self.key, [])
            if add is not None:
                mine.append((add, uuid.uuid4().hex[:12]))
            merged = {i: t for t, i in mine}
            with contextlib.suppress(OSError):
                ensure_private(self.settings.home)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    raw = b""
                    while chunk := os.read(fd, 1 << 16):
                        raw += chunk
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        merged.update({str(i): float(t) for t, i in json.loads(raw or b"{}").get("failures", [])})
                    if add is not None:
                        keep = sorted((t, i) for i, t in merged.items() if now - t < WINDOW)
                        os.ftruncate(fd, 0)
                        os.pwrite(fd, json.dumps({"failures": keep}).encode(), 0)
                finally:
                    os.close(fd)
            _process_failures[self.key] = [(t, i) for t, i in mine if now - t < WINDOW]
            return sorted(t for t in merged.values() if now - t < WINDOW)

    def status(self, attempts: SessionAttempts) -> tuple[float, bool, int]:
        """(seconds before ``attempts``' session may try, locked for everyone, failures in the window)."""
        now = self.clock()
        recent = self._update(None, now)
        wait = max(0.0, attempts.next_at - now)
        locked = len(recent) >= LOCKOUT_AFTER
        if locked:
            # Until enough failures age out of the window to go below the lockout.
            wait = max(wait, recent[len(recent) - LOCKOUT_AFTER] + WINDOW - now)
        elif recent:
            wait = max(wait, recent[-1] + global_delay(len(recent)) - now)
        return wait, locked, len(recent)

    def attempt(self, attempts: SessionAttempts, given: str, actor_name: str = VISITOR.name) -> SignInResult:
        """Try ``given`` as the admin password for ``attempts``' session; updates it."""
        from facesearch import audit

        wait, locked, in_window = self.status(attempts)
        if wait > 0:
            self._audit(audit, actor_name, "locked" if locked else "too early", attempts, in_window, wait)
            why = ("Sign-in is locked after too many wrong passwords" if locked
                   else "Too many wrong passwords")
            return SignInResult(False, wait, locked, False, f"{why}: try again in {_human(wait)}.")
        if check_password(self.settings, given or ""):
            attempts.failures, attempts.next_at = 0, 0.0
            self._audit(audit, actor_name, "signed in", attempts, in_window, 0.0)
            return SignInResult(True, 0.0, False, True, "Signed in.")
        now = self.clock()
        attempts.failures += 1
        attempts.next_at = now + session_delay(attempts.failures)
        recent = self._update(now, now)
        wait = max(session_delay(attempts.failures), global_delay(len(recent)))
        locked = len(recent) >= LOCKOUT_AFTER
        if locked:
            wait = max(wait, recent[len(recent) - LOCKOUT_AFTER] + WINDOW - now)
        self._audit(audit, actor_name, "wrong password", attempts, len(recent), wait)
        return SignInResult(False, wait, locked, True, f"Wrong password. Next attempt in {_human(wait)}.")

    def _audit(self, audit, actor_name: str, outcome: str, attempts: SessionAttempts, in_window: int,
               wait: float) -> None:
        from facesearch.access import Actor
        from facesearch.errors import FaceSearchError

        # The password never goes in: only what happened and the counts.
        with contextlib.suppress(FaceSearchError, OSError):
            audit.record(self.settings, Actor(actor_name, False), "sign-in", None, outcome=outcome,
                         session=attempts.session, session_failures=attempts.failures,
                         failures_in_window=in_window, wait_s=round(wait, 1))


def _human(seconds: float) -> str:
    s = int(seconds + 0.999)
    return f"{s} s" if s < 120 else f"{(s + 59) // 60} min"
