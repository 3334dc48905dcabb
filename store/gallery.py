"""FaceGallery: one persistent Chroma collection per (model, detector).

Validate, then hand off to Chroma (as Chroma's own ``Collection`` does): shapes, dimension
and finiteness are checked here so that Chroma never sees a vector it would refuse
halfway through a batch. Collection metadata records model, dimension, metric and
detector; opening it with another model or dimension is refused.

Writes take a per-collection file lock (``filelock``; threads and processes alike), so
two ingests never interleave their batches; a second writer gets a clear
:class:`GalleryBusyError` instead of a corrupted index. Every write is reported to the
audit log (:mod:`facesearch.audit`).

A delete only marks faces deleted in Chroma's files; :meth:`FaceGallery.rebuild` and
:func:`scrub_database` remove their bytes (right to erasure, :mod:`facesearch.admin.privacy`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from filelock import FileLock, Timeout

from facesearch.errors import (
    ConfigError,
    EmptyGalleryError,
    GalleryBusyError,
    GalleryMismatchError,
    StorageFullError,
    StoreError,
    is_disk_full,
)
from facesearch import audit
from facesearch.access import Actor, require_admin
from facesearch.instances import Registry
from facesearch.settings import Settings, ensure_private, get_settings

from store.memindex import GENERATION, MAX_FACES, MemoryIndex, TooManyFaces

METRIC = "cosine"
# The HNSW index every new collection is built with: recall@10 0.99 at 200,000 faces, where
# Chroma's defaults (100/100/16) give 0.68 (bench/bench_query.py, docs/BENCHMARKS.md "Query at
# 200,000 faces"). Chroma keeps a collection's own configuration: galleries created before
# keep theirs and keep working. A new ef_search set with collection.modify is stored at once
# but used only from the server's next start (Chroma 1.5.9).
HNSW_CONFIG = {"space": METRIC, "ef_construction": 200, "ef_search": 450, "max_neighbors": 64}
PREFIX = "faces"
# A collection being rewritten by FaceGallery.rebuild is filled under this prefix, which
# list_galleries does not list, then renamed over the original.
REBUILD_PREFIX = "rebuild__"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@dataclass(frozen=True)
class Hit:
    id: str
    identity: str
    distance: float  # cosine distance, 0 = identical
    metadata: dict = field(default_factory=dict)

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


def collection_name(model: str, detector: str) -> str:
    # Chroma names: 3-512 chars of [a-zA-Z0-9._-], starting and ending alphanumeric.
    safe = lambda s: re.sub(r"[^A-Za-z0-9_-]+", "_", s).strip("_-") or "x"
    return f"{PREFIX}__{safe(model)}__{safe(detector)}"


_clients: Registry[str, Any] = Registry()
# (database, collection name) -> this process's MemoryIndex of it.
_memory_indexes: Registry[tuple[str, str], MemoryIndex] = Registry()


def _database(settings: Settings) -> tuple[str | None, str]:
    """(the server's URL or None for the embedded database, the key under which this
    process keeps its client and memory indexes for that database)."""
    from store.server import resolve

    url = resolve(settings)
    return url, url or str(settings.chroma_path.resolve())


def _database_key(settings: Settings) -> str:
    """The key of ``settings``' client without resolving anything (no waiting)."""
    if settings.chroma_url:
        return settings.chroma_url
    from store.server import _held, _key, _read_server

    if _key(settings) in _held:
        return str(settings.chroma_path.resolve())
    info = _read_server(settings)
    return info["url"] if info else str(settings.chroma_path.resolve())


def get_client(settings: Settings):
    """A Chroma client for ``settings``' database: ``HttpClient`` to ``chroma_url`` or to
    the data folder's running server (``store.server``), else the embedded
    ``PersistentClient``, which makes this process the folder's single owner until it
    exits. Raises GalleryBusyError when another process owns the folder."""
    url, key = _database(settings)
    return _clients.get(key, lambda: _open_client(settings, url))


def _open_client(settings: Settings, url: str | None):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    cs = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if url:
            from urllib.parse import urlparse

            from store.server import TOKEN_HEADER, token_for

            u = urlparse(url if "://" in url else f"http://{url}")
            # The data folder's own server wants its token (store/relay.py).
            token = None if settings.chroma_url else token_for(settings, url)
            c = chromadb.HttpClient(host=u.hostname or "127.0.0.1", port=u.port or 8000,
                                    ssl=u.scheme == "https", settings=cs,
                                    headers={TOKEN_HEADER: token} if token else None)
            c.heartbeat()
            return c
        ensure_private(settings.home)
        settings.chroma_path.mkdir(parents=True, exist_ok=True)
        _refuse_foreign_database(settings.chroma_path)
        return chromadb.PersistentClient(path=str(settings.chroma_path), settings=cs)
    except StoreError:
        raise
    except Exception as exc:
        if url:
            from store.server import restarting, restarting_error

            if restarting(settings):
                raise restarting_error(settings) from None
            raise StoreError(f"the gallery's database server at {url} is not answering. Is the dashboard "
                             "(make run) or `facesearch serve` still running? Start it again and retry.") from None
        # Chroma keeps a system that failed to start under the folder's path; every later
        # open in this process would get it back, even once the folder is repaired.
        with contextlib.suppress(Exception):
            from chromadb.api.shared_system_client import SharedSystemClient

            SharedSystemClient._identifier_to_system.pop(str(settings.chroma_path), None)
        raise _translate(exc, f"opening the gallery database in {settings.chroma_path}", settings) from None


def close_client(settings: Settings) -> None:
    """Forget this process's client for ``settings`` and give up embedded ownership of the
    data folder, so another process can open it (a finished CLI job; tests)."""
    from store.server import release

    c = _clients.pop(str(settings.chroma_path.resolve()))
    if c is not None:
        with contextlib.suppress(Exception):
            c.clear_system_cache()
    release(settings)


# Tables every Chroma database has; an SQLite file without them belongs to something else.
_CHROMA_TABLES = frozenset({"collections", "segments", "embeddings"})


def _refuse_foreign_database(folder: Path) -> None:
    """Refuse a ``chroma.sqlite3`` that is not Chroma's before Chroma opens it: Chroma
    would run its migrations on another program's SQLite file, adding its tables to it."""
    db = folder / "chroma.sqlite3"
    if db.exists() and not db.is_file():
        raise StoreError(f"the gallery database {db} is not a file. Move the folder {folder} aside (or restore it "
                         "from a backup) and start again; nothing was written to it.")
    if not db.is_file() or db.stat().st_size == 0:
        return
    damaged, tables = None, set()
    try:
        with open(db, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                damaged = "it does not start as an SQLite file does"
        if damaged is None:
            con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                con.close()
    except OSError as exc:
        raise StoreError(f"cannot read the gallery database {db} ({exc.strerror or exc}). Check the data folder "
                         "(FACESEARCH_HOME) and its permissions.") from None
    except sqlite3.Error as exc:
        damaged = f"SQLite says: {exc}"
    if damaged:
        raise StoreError(f"the gallery database {db} is damaged or is not a database ({damaged}). Move the folder "
                         f"{folder} aside (or restore it from a backup) and start again; nothing was written to it.")
    if tables and not _CHROMA_TABLES <= tables:
        raise StoreError(f"{db} is another program's SQLite database (tables: {', '.join(sorted(tables)[:5])}), "
                         "not a Chroma gallery; nothing was written to it. Point FACESEARCH_HOME at another folder.")


def _translate(exc: Exception, what: str, settings: Settings | None = None) -> Exception:
    """``exc`` as one of our errors. ``settings``: the database's data folder, to tell a
    server being restarted by its supervisor from one that is gone, and (by the free space
    of its database folder) a full disk from other I/O errors (Chroma says "Error in
    compaction" when its files cannot grow)."""
    text = str(exc)
    folder = settings.chroma_path if settings is not None else None
    if is_disk_full(exc, folder):
        if what.startswith(("writing", "rewriting", "deleting", "saving")):
            return StorageFullError(f"disk full while {what}; the batch was not written. Free some space and run "
                                    "again.")
        # Chroma writes to its database as it starts, so on a full disk even a search
        # cannot open it (through the server, which opened it earlier, searches go on).
        return StorageFullError(f"disk full while {what}: the gallery's database needs a little free space even to "
                                "be read, so free some space on the data folder's disk and try again.")
    if "dimension" in text.lower():
        return GalleryMismatchError(f"{what}: {text}")
    low = text.lower()
    if any(s in low for s in ("could not connect", "connection refused", "connecterror", "connection reset",
                              "server disconnected", "timed out")):
        if settings is not None:
            from store.server import restarting, restarting_error

            # The next call opens a new client: the old one's connections went with the server.
            _clients.pop(_database_key(settings))
            if restarting(settings):
                return restarting_error(settings)
        return StoreError(f"{what} failed: the gallery's database server is not answering. Is the dashboard "
                          "(make run) or `facesearch serve` still running? Start it again and retry.")
    if "unauthorized" in low and settings is not None:
        # The folder's server was started again with a new token: the next call reads it.
        _clients.pop(_database_key(settings))
        return StoreError(f"{what} failed: the gallery's database server did not accept this process's token "
                          "(it was started again meanwhile); try again.")
    if any(s in low for s in ("file is not a database", "database disk image is malformed",
                              "unable to open database file")):
        return StoreError(f"{what} failed: the database there is damaged or unreadable ({text}). Move the folder "
                          "aside (or restore it from a backup) and start again.")
    if "error finding id" in low or "error executing plan" in low:
        # What an embedded reader sees after another process wrote the same folder.
        return StoreError(f"{what} failed: the gallery's index is out of step with its database, which happens "
                          "when two processes open it without the server. Restart the dashboard with `make run`.")
    return StoreError(f"{what} failed: {text}")


def _missing(exc: Exception) -> bool:
    """Chroma's answer for a collection that is not there (or no longer: rebuilt)."""
    low = str(exc).lower()
    return type(exc).__name__ == "NotFoundError" or "does not exist" in low or "not found" in low


# header.bin of Chroma's HNSW segments (hnswlib's index header after a format version):
# version, offsetLevel0, max_elements, cur_element_count, size_data_per_element, ...
_HNSW_HEADER = struct.Struct("<i6Qi I3QdQ")


def _zero_unused_capacity(segment: Path) -> bool:
    """Zero the part of an HNSW segment's files past its last element. Chroma (1.5) may
    save the index's whole allocated capacity, and the unused part is uninitialised memory:
    whatever the writing process had freed, seen to hold the metadata of faces it had
    just deleted. Nothing reads that part (the header's element count bounds it), so
    zeroing it changes nothing else. False when the files are not in the known format."""
    try:
        head = (segment / "header.bin").read_bytes()
        if len(head) != _HNSW_HEADER.size:
            return False
        version, _, max_el, cur, per_el, *_ = _HNSW_HEADER.unpack(head)
        if version != 1 or not 0 <= cur <= max_el:
            return False
        for name, width in (("data_level0.bin", per_el), ("length.bin", 4)):
            f = segment / name
            size = f.stat().st_size
            # Saved at its capacity (a new index) or at its element count (after a resize).
            if not cur * width <= size <= max_el * width:
                return False
            with open(f, "r+b") as fh:
                fh.seek(cur * width)
                left = size - cur * width
                while left > 0:
                    n = min(left, 1 << 20)
                    fh.write(b"\0" * n)
                    left -= n
                fh.flush()
                os.fsync(fh.fileno())
    except (OSError, struct.error):
        return False
    return True


def scrub_database(settings: Settings) -> str | None:
    """Remove from the data folder's Chroma files what deleted faces leave behind: the
    segment folders (HNSW files) of dropped collections, which Chroma leaves on disk, the
    free pages of its SQLite file (VACUUM), and the uninitialised memory Chroma writes
    into its HNSW files (:func:`_zero_unused_capacity`). Returns None when done, else a
    sentence saying what could not be scrubbed. Run it after :meth:`FaceGallery.rebuild`.

    The process that rebuilt a collection (this one, or the data folder's server) keeps
    its index in memory, with its own uninitialised tail, and saves it again after its
    next 1,000 additions: a process that lives on may write freed bytes again then."""
    if settings.chroma_url:
        return (f"the gallery is on the Chroma server {settings.chroma_url}, whose files are not in this data "
                "folder: deleted faces are gone from its answers, but only that server's owner can scrub its files")
    db = settings.chroma_path / "chroma.sqlite3"
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(str(db), timeout=60)
    except sqlite3.Error as exc:
        return f"could not open {db} to scrub it ({exc})"
    try:
        live = {str(r[0]) for r in con.execute("SELECT id FROM segments")}
        odd = []
        for d in settings.chroma_path.iterdir():
            if not (d.is_dir() and _UUID.match(d.name)):
                continue
            if d.name not in live:
                # A dropped collection's HNSW folder still holds every vector it had.
                shutil.rmtree(d, ignore_errors=True)
            elif (d / "header.bin").exists() and not _zero_unused_capacity(d):
                odd.append(d.name)
        con.execute("VACUUM")
    except sqlite3.Error as exc:
        return f"could not scrub {db} now ({exc}); deleted rows stay in its free pages until the next erasure"
    finally:
        con.close()
    if odd:
        return (f"the index files of {', '.join(odd)} are not in the format this version knows, so their unused "
                "part (which may hold freed memory) was left as it is")
    return None


def _write_pid(fd: int) -> None:
    """filelock's ``on_acquired``: the holder's pid in the lock file, for a waiting writer's message."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)


def list_galleries(settings: Settings | None = None) -> list[dict]:
    """Every face collection in the database with its model, detector and face count."""
    settings = settings or get_settings()
    client = get_client(settings)
    out = []
    try:
        for c in client.list_collections():
            col = c if hasattr(c, "metadata") else client.get_collection(c)
            md = col.metadata or {}
            if not col.name.startswith(PREFIX + "__") or "model" not in md:
                continue
            out.append({"name": col.name, "model": md.get("model"), "detector": md.get("detector"),
                        "dim": md.get("dim"), "count": col.count()})
    except Exception as exc:
        raise _translate(exc, "listing the galleries", settings) from None
    return sorted(out, key=lambda d: d["name"])


class FaceGallery:
    def __init__(self, model: str, dim: int, detector: str, settings: Settings | None = None,
                 create: bool = True, actor: Actor | None = None, memory_index: bool = False):
        """``model``/``dim``: the embedder's name and vector size; ``detector``: its name.
        ``actor``: who writes through this object (None: the command line); a visitor
        of a hosted dashboard may read but not write (facesearch.access).
        ``memory_index``: answer queries by exact search over a copy of the vectors in
        this process's memory (:mod:`store.memindex`), for a long-lived reader."""
        self.settings = settings or get_settings()
        self.actor = actor
        self.model, self.dim, self.detector = model, int(dim), detector
        self.name = collection_name(model, detector)
        self.client = get_client(self.settings)
        want = {"model": model, "dim": self.dim, "metric": METRIC, "detector": detector}
        try:
            self.col = self._open(create, want)
        except StoreError:
            raise
        except Exception as exc:
            raise _translate(exc, f"opening gallery {self.name}", self.settings) from None
        md = self.col.metadata or {}
        if "model" not in md or "dim" not in md:
            # Our name, not our metadata: another program's collection, never ours to write.
            raise GalleryMismatchError(
                f"the database holds a collection named {self.name} that facesearch did not create (it records "
                "no model or dimension); refusing to read or write it. Use another data folder (FACESEARCH_HOME)."
            )
        for k, v in want.items():
            if k in md and md[k] != v:
                raise GalleryMismatchError(
                    f"gallery {self.name} holds {md.get('model')} vectors of dimension {md.get('dim')} "
                    f"({md.get('metric')}, detector {md.get('detector')}); refusing {k}={v!r}"
                )
        self._lock = FileLock(self.settings.home / "locks" / f"{self.name}.lock", on_acquired=_write_pid)
        self.memory = (_memory_indexes.get((_database(self.settings)[1], self.name), MemoryIndex)
                       if memory_index else None)

    def _open(self, create: bool, want: dict):
        try:
            return self.client.get_collection(self.name, embedding_function=None)
        except Exception as exc:
            if not _missing(exc):
                raise
        col = self._finish_rebuild()
        if col is not None:
            return col
        if not create:
            raise StoreError(f"no gallery for model {self.model!r} with detector {self.detector!r} yet; "
                             "ingest photos first")
        return self.client.get_or_create_collection(
            self.name, metadata={**want, "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
            # We always pass vectors; Chroma's default embedding function would try
            # to download a text model.
            embedding_function=None, configuration={"hnsw": dict(HNSW_CONFIG)},
        )

    def _finish_rebuild(self):
        """The gallery's collection missing but its rebuilt copy present: a rebuild was cut
        off after dropping the original, and the copy is complete. It takes the name."""
        try:
            tmp = self.client.get_collection(REBUILD_PREFIX + self.name, embedding_function=None)
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        try:
            tmp.modify(name=self.name)
        except Exception:
            pass  # another process renamed it first
        return self.client.get_collection(self.name, embedding_function=None)

    def _call(self, what: str, fn):
        """``fn()`` on the collection, translated; once more on a re-opened collection when
        it was rebuilt (new id) since this object opened it."""
        try:
            return fn()
        except Exception as exc:
            if not _missing(exc):
                raise _translate(exc, what, self.settings) from None
        try:
            self.col = self.client.get_collection(self.name, embedding_function=None)
        except Exception:
            try:
                self.col = self._finish_rebuild()
            except Exception as exc:
                raise _translate(exc, what, self.settings) from None
            if self.col is None:
                raise StoreError(f"{what} failed: gallery {self.name} no longer exists") from None
        try:
            return fn()
        except Exception as exc:
            raise _translate(exc, what, self.settings) from None

    # -- locking ---------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, wait: float = 30.0) -> Iterator[None]:
        """Exclusive write access across threads and processes (re-entrant in one thread).
        Waits up to ``wait`` s, then raises GalleryBusyError naming the holder's pid."""
        try:
            self._lock.acquire(timeout=max(0.0, wait), poll_interval=0.2)
        except Timeout:
            try:
                holder = Path(self._lock.lock_file).read_text().strip()
            except OSError:
                holder = ""
            raise GalleryBusyError(f"gallery {self.name} is being written by {holder or 'another process'}; wait "
                                   f"for it to finish (lock file {self._lock.lock_file})") from None
        try:
            yield
        finally:
            self._lock.release()

    # -- validation ------------------------------------------------------------------
    def _check(self, embeddings: np.ndarray | Sequence, what: str) -> np.ndarray:
        """``embeddings`` as ``(n, dim)`` float32 (a ``(dim,)`` vector is one row), or
        :class:`ConfigError` (not an array of real numbers, another shape, NaN, infinity,
        a row with no direction) / :class:`GalleryMismatchError` (another dimension),
        before Chroma sees it: Chroma would fail halfway through a batch, or store a zero
        or overflowing vector at distance 1 from everything."""
        try:
            a = np.asarray(embeddings)
        except (ValueError, TypeError) as exc:  # ragged lists
            raise ConfigError(f"{what}: embeddings must be an (n, {self.dim}) array of numbers ({exc})") from None
        if a.dtype.kind not in "iuf":
            raise ConfigError(f"{what}: embeddings must be real numbers, got {a.dtype}")
        with np.errstate(over="ignore"):
            x = a.astype(np.float32)  # past float32's range becomes infinity, refused below
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ConfigError(f"{what}: embeddings must be (n, {self.dim}), got shape {x.shape}")
        if x.shape[1] != self.dim:
            raise GalleryMismatchError(
                f"{what}: gallery {self.name} ({self.model}) stores {self.dim}-d vectors, got {x.shape[1]}-d"
            )
        if not np.isfinite(x).all():
            raise ConfigError(f"{what}: embeddings contain NaN or infinity")
        with np.errstate(over="ignore", under="ignore"):
            # Chroma normalises in float32: a norm that under- or overflows there is no direction.
            norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        bad = np.flatnonzero(~((norms > 0) & np.isfinite(norms)))
        if bad.size:
            raise ConfigError(f"{what}: embedding row {int(bad[0])} has no direction (all zeros, or values too "
                              "small or too large to normalise)")
        return x

    # -- writes ----------------------------------------------------------------------
    def upsert(self, ids: Sequence[str], embeddings: np.ndarray, metadatas: Sequence[dict], *, lock: bool = True) -> int:
        """Insert or replace faces. ``embeddings``: (n, dim). Returns n."""
        actor = require_admin(self.actor, "adding faces to the gallery")
        x = self._check(embeddings, "add")
        ids = [str(i) for i in ids]
        if not (len(ids) == len(x) == len(metadatas)):
            raise ConfigError(f"add: {len(ids)} ids, {len(x)} embeddings and {len(metadatas)} metadatas differ")
        if len(set(ids)) != len(ids):
            raise ConfigError("add: duplicate ids in one batch")
        if not ids:
            return 0
        clean = [{k: v for k, v in m.items() if v is not None and not isinstance(v, (list, dict, tuple))} for m in metadatas]
        step = max(1, min(self.settings.batch_size * 16, self._max_batch()))
        ctx = self.writer() if lock else contextlib.nullcontext()
        with ctx:
            audit.begin(self.settings)  # an open operation's "started" line, before anything is written
            for i in range(0, len(ids), step):
                part = ids[i:i + step]
                try:
                    self._call(f"writing {len(part)} faces to {self.name}",
                               lambda: self.col.upsert(ids=part, embeddings=x[i:i + step],
                                                       metadatas=clean[i:i + step]))
                except StorageFullError:
                    # Chroma logs a batch before it applies it ("Error in compaction"): of a
                    # batch stopped by a full disk, some faces may show up once the
                    # database is opened again. The audit log says how many are in doubt.
                    audit.count(self.settings, actor, "add", 0, self.name, in_doubt=len(part))
                    raise StorageFullError(f"disk full while writing {len(part)} faces to {self.name}; some of them "
                                           "may have been written. Free some space and run again: the run writes "
                                           "them again.") from None
                audit.count(self.settings, actor, "add", len(part), self.name)
            self._new_generation()
        return len(ids)

    def delete(self, ids: Sequence[str] | None = None, identity: str | None = None, *, lock: bool = True,
               thumbs: bool = True) -> int:
        """Delete by ids or by identity, with their thumbnails (unless ``thumbs`` is False:
        the caller knows which are shared); returns how many faces were removed. Chroma
        only marks them deleted in its files: erasing a person for good is :func:`facesearch.admin.privacy.erase_identity`."""
        actor = require_admin(self.actor, "deleting faces from the gallery")
        if not ids and identity is None:
            raise ConfigError("delete: give ids or an identity")
        ctx = self.writer() if lock else contextlib.nullcontext()
        with ctx:
            if identity is not None:
                found = self._call("deleting faces", lambda: self.col.get(where={"identity": identity}, include=[]))
                ids = list(ids or []) + found["ids"]
            if not ids:
                return 0
            ids = list(dict.fromkeys(ids))
            n = len(self._call("deleting faces", lambda: self.col.get(ids=ids, include=[]))["ids"])
            audit.begin(self.settings)
            self._call("deleting faces", lambda: self.col.delete(ids=ids))
            audit.count(self.settings, actor, "delete", n, self.name)
            self._new_generation()
        for i in ids if thumbs else ():
            with contextlib.suppress(OSError):
                self.thumb_path(i).unlink()
        return n

    def relabel(self, identities: dict[str, str], *, lock: bool = True) -> int:
        """Set the ``identity`` of faces (face id -> name; ``""``: unnamed), vectors and
        other metadata kept: a person of a photo library named, renamed or changed
        (:mod:`facesearch.people`). Faces no longer stored are skipped; returns how many
        changed."""
        actor = require_admin(self.actor, "naming faces in the gallery")
        if not identities:
            return 0
        ctx = self.writer() if lock else contextlib.nullcontext()
        n = 0
        with ctx:
            ids = list(identities)
            step = max(1, min(self.settings.batch_size * 16, self._max_batch()))
            for i in range(0, len(ids), step):
                got = self.get(ids=ids[i:i + step])
                # Chroma replaces a face's whole metadata: the stored one, with the new name.
                pairs = [(fid, {**(md or {}), "identity": identities[fid]}) for fid, md in
                         zip(got["ids"], got["metadatas"]) if (md or {}).get("identity") != identities[fid]]
                if not pairs:
                    continue
                audit.begin(self.settings)
                self._call(f"naming {len(pairs)} faces in {self.name}", lambda: self.col.update(
                    ids=[p[0] for p in pairs], metadatas=[p[1] for p in pairs]))
                audit.count(self.settings, actor, "name", len(pairs), self.name)
                n += len(pairs)
            if n:
                self._new_generation()
        return n

    def rebuild(self, *, lock: bool = True) -> int:
        """Rewrite the collection from its live faces, so that deleted ones leave Chroma's
        files: its HNSW index keeps a deleted vector's bytes and only marks it deleted.
        The copy is filled under a temporary name, then takes the original's place, so a
        crash leaves either the original or the complete copy (renamed on next open).
        Follow with :func:`scrub_database`. Returns the faces kept."""
        require_admin(self.actor, "rewriting the gallery")
        ctx = self.writer() if lock else contextlib.nullcontext()
        with ctx:
            ids, x, mds = self.all_embeddings()
            tmp_name = REBUILD_PREFIX + self.name
            try:
                with contextlib.suppress(Exception):
                    self.client.delete_collection(tmp_name)  # a copy left by a rebuild cut off early
                cfg = dict((self.col.configuration or {}).get("hnsw") or {})
                hnsw = {k: cfg.get(k, v) for k, v in HNSW_CONFIG.items()}
                tmp = self.client.create_collection(tmp_name, metadata=dict(self.col.metadata or {}),
                                                    embedding_function=None, configuration={"hnsw": hnsw})
                step = max(1, min(self.settings.batch_size * 16, self._max_batch()))
                for i in range(0, len(ids), step):
                    tmp.add(ids=ids[i:i + step], embeddings=x[i:i + step], metadatas=mds[i:i + step])
                self.client.delete_collection(self.name)
                try:
                    tmp.modify(name=self.name)
                except Exception:
                    pass  # a reader opening the gallery just then finished the rename (_finish_rebuild)
                self.col = self.client.get_collection(self.name, embedding_function=None)
            except StoreError:
                raise
            except Exception as exc:
                raise _translate(exc, f"rewriting gallery {self.name}", self.settings) from None
            self._new_generation()
        return len(ids)

    # -- reads -----------------------------------------------------------------------
    def _max_batch(self) -> int:
        try:
            return int(self.client.get_max_batch_size())
        except Exception:
            return 5000

    def count(self) -> int:
        return self._call("counting the gallery's faces", lambda: self.col.count())

    def version(self) -> str:
        """``collection id:write generation:face count``, different after every write (the
        count also catches a writer killed before it marked its change): what a
        measurement of the gallery is kept under."""
        def read():
            col = self.client.get_collection(self.name, embedding_function=None)
            return f"{col.id}:{(col.metadata or {}).get(GENERATION)}:{col.count()}"
        return self._call("reading the gallery's version", read)

    def _new_generation(self) -> None:
        """Mark the gallery changed, after the change: readers in other processes drop
        their in-memory copies (:mod:`store.memindex`). Chroma replaces a collection's
        whole metadata, so the current one is read and kept."""
        def bump():
            md = dict(self.client.get_collection(self.name, embedding_function=None).metadata or {})
            md[GENERATION] = uuid.uuid4().hex
            self.col.modify(metadata=md)
        self._call(f"marking gallery {self.name} changed", bump)

    def _load_memory(self):
        """``(collection id, generation, ids, identities, (n, dim) vectors)`` for
        :meth:`MemoryIndex.refresh`, the generation read before the vectors."""
        col = self.client.get_collection(self.name, embedding_function=None)
        gen = (col.metadata or {}).get(GENERATION)
        if col.count() > MAX_FACES:
            raise TooManyFaces((str(col.id), gen))
        ids, idents, embs, offset, page = [], [], [], 0, self._max_batch()
        while True:
            r = col.get(limit=page, offset=offset, include=["metadatas", "embeddings"])
            if not r["ids"]:
                break
            ids += r["ids"]
            idents += [str((m or {}).get("identity", "?")) for m in r["metadatas"]]
            embs.append(np.asarray(r["embeddings"], np.float32).reshape(-1, self.dim))
            offset += len(r["ids"])
        return str(col.id), gen, ids, idents, (np.concatenate(embs) if embs else np.zeros((0, self.dim), np.float32))

    def _query_memory(self, x: np.ndarray, k: int) -> list[list[Hit]] | None:
        col = self._call("querying the gallery", lambda: self.client.get_collection(self.name, embedding_function=None))
        col_id, gen = str(col.id), (col.metadata or {}).get(GENERATION)
        mem = self.memory
        if mem.too_many(col_id, gen):
            return None
        if mem.ready(col_id, gen) and mem.stale_count(lambda: col.count()):
            # A writer died between its faces and its generation: load again.
            mem.refresh(self._load_memory)
            return None
        found = mem.search(col_id, gen, x, k)
        if found is None:
            mem.refresh(self._load_memory)
            return None
        if not any(found):
            raise EmptyGalleryError(f"gallery {self.name} is empty: ingest or enroll some faces first")
        return [[Hit(i, ident, d) for i, ident, d in row] for row in found]

    def query(self, embeddings: np.ndarray, k: int = 5, where: dict | None = None) -> list[list[Hit]]:
        """Top-k neighbours for each of m embeddings ``(m, dim)``: m lists of :class:`Hit`,
        nearest first. Exact, from memory, when this gallery keeps a memory index that is
        in step with the database; otherwise Chroma's HNSW index."""
        x = self._check(embeddings, "query")
        if len(x) == 0:
            return []
        if self.memory is not None and where is None:
            hits = self._query_memory(x, k)
            if hits is not None:
                return hits
        r = self._call("querying the gallery", lambda: self.col.query(
            query_embeddings=x, n_results=max(1, int(k)), where=where, include=["metadatas", "distances"]))
        if not any(r["ids"]) and where is None and self.count() == 0:
            raise EmptyGalleryError(f"gallery {self.name} is empty: ingest or enroll some faces first")
        out = []
        for ids, dists, mds in zip(r["ids"], r["distances"], r["metadatas"]):
            # HNSW returns -1e-7 for identical vectors; a distance is never negative.
            out.append([Hit(i, str((m or {}).get("identity", "?")), max(0.0, float(d)), dict(m or {}))
                        for i, d, m in zip(ids, dists, mds)])
        return out

    def get(self, ids: Sequence[str] | None = None, where: dict | None = None, limit: int | None = None,
            offset: int | None = None, embeddings: bool = False) -> dict:
        include = ["metadatas"] + (["embeddings"] if embeddings else [])
        r = self._call("reading the gallery", lambda: self.col.get(
            ids=list(ids) if ids else None, where=where, limit=limit, offset=offset, include=include))
        if embeddings:
            e = r.get("embeddings")
            r["embeddings"] = np.asarray(e, np.float32).reshape(-1, self.dim) if e is not None and len(e) else np.zeros((0, self.dim), np.float32)
        return r

    def iter_metadata(self, page: int = 5000) -> Iterator[tuple[str, dict]]:
        offset = 0
        while True:
            r = self.get(limit=page, offset=offset)
            if not r["ids"]:
                return
            yield from zip(r["ids"], r["metadatas"])
            offset += len(r["ids"])

    def all_embeddings(self, limit: int | None = None, identities: Sequence[str] | None = None,
                       page: int = 5000) -> tuple[list[str], np.ndarray, list[dict]]:
        """(ids, (n, dim) float32, metadatas) for the whole gallery or some identities."""
        where = None
        if identities:
            where = {"identity": {"$in": list(identities)}} if len(identities) > 1 else {"identity": identities[0]}
        ids, embs, mds, offset = [], [], [], 0
        while limit is None or len(ids) < limit:
            take = page if limit is None else min(page, limit - len(ids))
            r = self.get(where=where, limit=take, offset=offset, embeddings=True)
            if not r["ids"]:
                break
            ids += r["ids"]; embs.append(r["embeddings"]); mds += r["metadatas"]
            offset += len(r["ids"])
        x = np.concatenate(embs) if embs else np.zeros((0, self.dim), np.float32)
        return ids, x, mds

    def identities(self) -> dict[str, int]:
        """identity -> number of faces, most faces first. A photo library's unnamed faces
        (identity ``""``, facesearch.people) are nobody's: not counted."""
        counts: dict[str, int] = {}
        for _, md in self.iter_metadata():
            ident = str((md or {}).get("identity", "?"))
            if not ident:
                continue
            counts[ident] = counts.get(ident, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def image_hashes(self) -> set[str]:
        return {str(md.get("image_sha1")) for _, md in self.iter_metadata() if md and md.get("image_sha1")}

    # -- thumbnails --------------------------------------------------------------------
    def thumb_path(self, face_id: str) -> Path:
        # Thumbnails depend on the detector's box only, so models share them.
        return self.settings.thumbs_path / self.detector / face_id[:2] / f"{face_id}.jpg"

    def save_thumb(self, face_id: str, jpeg: bytes) -> Path:
        p = self.thumb_path(face_id)
        if p.is_file():
            return p
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".part")
            tmp.write_bytes(jpeg)
            os.replace(tmp, p)
        except OSError as exc:
            raise _translate(exc, "saving a thumbnail") from None
        return p
