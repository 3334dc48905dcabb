"""Append-only audit log of every gallery change: ``$FACESEARCH_HOME/audit.jsonl``.

One JSON line per change: when (UTC), who (the actor's name: ``admin``, ``local user``,
``cli:<user>``), what (``ingest``, ``enroll``, ``add``, ``delete``, ``restore``,
``export``, ``threshold``) and how many faces, with the galleries it touched.

The store reports every write it makes (:func:`count`, called by ``FaceGallery.upsert``
and ``delete``), so no write goes unlogged whoever calls it. An operation made of many
writes (an ingest's batches, an erasure across galleries, a restore) wraps them in
:func:`operation`, which sums them into one entry: a ``"started"`` line written before
its first write (the store calls :func:`begin`), and its completed line, with the faces
counted, when it ends (also when it fails, marked ``"incomplete"``). The two share an
``"op"`` id and :func:`read_audit` shows them as one entry; a started line with no
completion (a process killed outright) shows as incomplete, with no count. A full disk
cannot take the completed line away: the operation keeps a small reserve file beside
the log from its start, and deletes it to make room for that line.

The log names no person: an erased identity must not live on in it, so lines say how
many faces changed, not whose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from facesearch.access import Actor, cli_actor
from facesearch.errors import StorageFullError, disk_full_raises
from facesearch.settings import Settings, ensure_private, get_settings

AUDIT_NAME = "audit.jsonl"


def audit_path(settings: Settings) -> Path:
    return settings.home / AUDIT_NAME


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# Room kept by an open operation for its completed line (one line is well under 1 KB;
# a filesystem allocates in pages, and several operations may end at once).
_RESERVE_BYTES = 64 * 1024


def record(settings: Settings, actor: Actor | None, action: str, faces: int | None, **details) -> dict:
    """Append one line and return it. ``faces`` None: a change that is not about faces
    (a threshold)."""
    entry = {"at": _now(), "actor": (actor or cli_actor()).name, "action": action, "faces": faces}
    entry.update({k: v for k, v in details.items() if v is not None})
    line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
    path = audit_path(settings)
    with disk_full_raises(f"disk full while writing the audit log {path}"):
        ensure_private(path.parent)
        # O_APPEND and one write per line, under a lock: lines of two processes never
        # interleave, and nothing already written is ever rewritten.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    return entry


@dataclass
class Operation:
    """What an :func:`operation` has counted so far."""

    settings: Settings
    actor: Actor | None
    action: str
    details: dict
    faces: int = 0
    galleries: set[str] = field(default_factory=set)
    always: bool = False  # write a line even when no face changed (an erasure of cached data only)
    id: str = field(default_factory=lambda: os.urandom(8).hex())
    started: bool = False  # its "started" line is written

    @property
    def reserve(self) -> Path:
        return self.settings.home / f".audit-reserve-{os.getpid()}-{self.id}"

    def begin(self) -> None:
        """Write the "started" line (once), before the operation's first write, and keep
        room on the disk for the completed one. A full disk here stops the operation
        before it writes anything (StorageFullError)."""
        if self.started:
            return
        record(self.settings, self.actor, self.action, None, status="started", op=self.id, **self.details)
        self.started = True
        _drop_dead_reserves(self.settings.home)
        try:
            with open(self.reserve, "wb") as fh:
                fh.write(bytes(_RESERVE_BYTES))  # real bytes: a sparse file would keep no room
                fh.flush()
                os.fsync(fh.fileno())
        except OSError:
            # No room left even for the reserve: the first write will stop on the full
            # disk, and the completed line will be tried all the same.
            with contextlib.suppress(OSError):
                self.reserve.unlink()

    def finish(self, failed: bool) -> None:
        """The completed line, if the operation started or changed a face."""
        try:
            if not (self.faces or self.always or self.started):
                return
            extra = dict(self.details)
            if self.galleries:
                extra["galleries"] = sorted(self.galleries)
            if failed:
                extra["incomplete"] = True
            if self.started:
                extra.update(status="completed", op=self.id)
            try:
                record(self.settings, self.actor, self.action, self.faces, **extra)
            except StorageFullError:
                if not self.reserve.exists():
                    raise
                self.reserve.unlink()  # the room kept for this line
                record(self.settings, self.actor, self.action, self.faces, **extra)
        finally:
            with contextlib.suppress(OSError):
                self.reserve.unlink()


def _drop_dead_reserves(home: Path) -> None:
    """Remove the reserves of processes that are gone (killed during an operation)."""
    for p in home.glob(".audit-reserve-*-*"):
        try:
            os.kill(int(p.name.split("-")[2]), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                p.unlink()
        except (ValueError, PermissionError, OSError):
            pass


_local = threading.local()


def _stack() -> list[Operation]:
    if not hasattr(_local, "ops"):
        _local.ops = []
    return _local.ops


def _same_home(a: Settings, b: Settings) -> bool:
    return a.home.resolve() == b.home.resolve()


@contextlib.contextmanager
def operation(settings: Settings, actor: Actor | None, action: str, **details) -> Iterator[Operation]:
    """Every store write of this thread inside the block counts towards one line,
    written when the block ends (with ``"incomplete": true`` if it raised). Nothing is
    written when no face changed, unless ``op.always`` is set."""
    op = Operation(settings, actor, action, dict(details))
    _stack().append(op)
    failed = False
    try:
        yield op
    except BaseException:
        failed = True
        raise
    finally:
        _stack().remove(op)
        op.finish(failed)


def begin(settings: Settings) -> None:
    """Called by the store before it writes: this thread's open operation on the same
    data folder writes its "started" line now (see :meth:`Operation.begin`)."""
    for op in reversed(_stack()):
        if _same_home(op.settings, settings):
            op.begin()
            return


def count(settings: Settings, actor: Actor | None, action: str, faces: int, gallery: str, in_doubt: int = 0) -> None:
    """A store write of ``faces`` faces: added to this thread's open operation on the
    same data folder, else logged on its own line. ``in_doubt``: faces of a write that
    failed and may still have gone in (a full disk), logged as ``"in_doubt"``."""
    for op in reversed(_stack()):
        if _same_home(op.settings, settings):
            op.faces += int(faces)
            op.galleries.add(gallery)
            if in_doubt:
                op.details["in_doubt"] = op.details.get("in_doubt", 0) + int(in_doubt)
            return
    if faces or in_doubt:
        record(settings, actor, action, int(faces), galleries=[gallery], in_doubt=in_doubt or None)


def read_audit(settings: Settings | None = None, limit: int | None = None) -> list[dict]:
    """The log's entries, newest first (at most ``limit``): an operation's started and
    completed lines as one entry (the completed one); a started line alone is marked
    ``"incomplete"`` with ``faces`` None. A torn last line (a process killed while
    writing it) is skipped."""
    settings = settings or get_settings()
    try:
        lines = audit_path(settings).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out, completed = [], set()
    for raw in reversed(lines):
        try:
            e = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(e, dict):
            if e.get("status") == "completed":
                completed.add(e.get("op"))
            elif e.get("status") == "started":
                if e.get("op") in completed:
                    continue  # shown by its completed line, read first (it is newer)
                e = {**e, "incomplete": True}  # it never ended: killed, or its line could not be written
            out.append(e)
            if limit is not None and len(out) >= limit:
                break
    return out
