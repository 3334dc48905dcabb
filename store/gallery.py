"""FaceGallery: one persistent Chroma collection per (model, detector).

Validate, then hand off to Chroma (as Chroma's own ``Collection`` does): shapes, dimension
and finiteness are checked here so that Chroma never sees a vector it would refuse
halfway through a batch. Collection metadata records model, dimension, metric and
detector; opening it with another model or dimension is refused.

Writes take a per-collection file lock (``filelock``; threads and processes alike), so
two ingests never interleave their batches; a second writer gets a clear
:class:`GalleryBusyError` instead of a corrupted index.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import threading
import time
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
)
from facesearch.access import Actor, require_admin
from facesearch.settings import Settings, get_settings

METRIC = "cosine"
# The HNSW index every new collection is built with (bench/bench_query.py, docs/BENCHMARKS.md
# "Query at 200,000 faces"). Chroma keeps a collection's own configuration: galleries created
# before keep theirs (Chroma's defaults 100/100/16) and keep working.
HNSW_CONFIG = {"space": METRIC, "ef_construction": 100, "ef_search": 100, "max_neighbors": 16}
PREFIX = "faces"

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


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def get_client(settings: Settings):
    """A Chroma client for ``settings``' database: ``HttpClient`` to ``chroma_url`` or to
    the data folder's running server (``store.server``), else the embedded
    ``PersistentClient``, which makes this process the folder's single owner until it
    exits. Raises GalleryBusyError when another process owns the folder."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from .server import resolve

    url = resolve(settings)
    key = url or str(settings.chroma_path.resolve())
    with _clients_lock:
        c = _clients.get(key)
        if c is not None:
            return c
        cs = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        try:
            if url:
                from urllib.parse import urlparse

                u = urlparse(url if "://" in url else f"http://{url}")
                c = chromadb.HttpClient(host=u.hostname or "127.0.0.1", port=u.port or 8000,
                                        ssl=u.scheme == "https", settings=cs)
                c.heartbeat()
            else:
                settings.chroma_path.mkdir(parents=True, exist_ok=True)
                _refuse_foreign_database(settings.chroma_path)
                c = chromadb.PersistentClient(path=str(settings.chroma_path), settings=cs)
        except StoreError:
            raise
        except Exception as exc:
            if url:
                raise StoreError(f"the gallery's database server at {url} is not answering. Is the dashboard "
                                 "(make run) or `facesearch serve` still running? Start it again and retry.") from None
            # Chroma keeps a system that failed to start under the folder's path; every later
            # open in this process would get it back, even once the folder is repaired.
            with contextlib.suppress(Exception):
                from chromadb.api.shared_system_client import SharedSystemClient

                SharedSystemClient._identifier_to_system.pop(str(settings.chroma_path), None)
            raise _translate(exc, f"opening the gallery database in {settings.chroma_path}") from None
        _clients[key] = c
        return c


def close_client(settings: Settings) -> None:
    """Forget this process's client for ``settings`` and give up embedded ownership of the
    data folder, so another process can open it (a finished CLI job; tests)."""
    from .server import release

    with _clients_lock:
        c = _clients.pop(str(settings.chroma_path.resolve()), None)
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


def _translate(exc: Exception, what: str) -> Exception:
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in text.lower() or "no space left" in text.lower():
        return StorageFullError(f"disk full while {what}; the batch was not written. Free some space and run again.")
    if "dimension" in text.lower():
        return GalleryMismatchError(f"{what}: {text}")
    low = text.lower()
    if any(s in low for s in ("could not connect", "connection refused", "connecterror", "connection reset",
                              "server disconnected", "timed out")):
        return StoreError(f"{what} failed: the gallery's database server is not answering. Is the dashboard "
                          "(make run) or `facesearch serve` still running? Start it again and retry.")
    if any(s in low for s in ("file is not a database", "database disk image is malformed",
                              "unable to open database file")):
        return StoreError(f"{what} failed: the database there is damaged or unreadable ({text}). Move the folder "
                          "aside (or restore it from a backup) and start again.")
    if "error finding id" in low or "error executing plan" in low:
        # What an embedded reader sees after another process wrote the same folder.
        return StoreError(f"{what} failed: the gallery's index is out of step with its database, which happens "
                          "when two processes open it without the server. Restart the dashboard with `make run`.")
    return StoreError(f"{what} failed: {text}")


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
        raise _translate(exc, "listing the galleries") from None
    return sorted(out, key=lambda d: d["name"])


class FaceGallery:
    def __init__(self, model: str, dim: int, detector: str, settings: Settings | None = None,
                 create: bool = True, actor: Actor | None = None):
        """``model``/``dim``: the embedder's name and vector size; ``detector``: its name.
        ``actor``: who writes through this object (None: the command line); a visitor
        of a hosted dashboard may read but not write (facesearch.access)."""
        self.settings = settings or get_settings()
        self.actor = actor
        self.model, self.dim, self.detector = model, int(dim), detector
        self.name = collection_name(model, detector)
        self.client = get_client(self.settings)
        want = {"model": model, "dim": self.dim, "metric": METRIC, "detector": detector}
        try:
            if create:
                self.col = self.client.get_or_create_collection(
                    self.name, metadata={**want, "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
                    # We always pass vectors; Chroma's default embedding function would try
                    # to download a text model.
                    embedding_function=None, configuration={"hnsw": dict(HNSW_CONFIG)},
                )
            else:
                self.col = self.client.get_collection(self.name, embedding_function=None)
        except Exception as exc:
            if not create and ("does not exist" in str(exc).lower() or "not found" in str(exc).lower()):
                raise StoreError(f"no gallery for model {model!r} with detector {detector!r} yet; ingest photos first") from None
            raise _translate(exc, f"opening gallery {self.name}") from None
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
        require_admin(self.actor, "adding faces to the gallery")
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
            for i in range(0, len(ids), step):
                try:
                    self.col.upsert(ids=ids[i:i + step], embeddings=x[i:i + step], metadatas=clean[i:i + step])
                except Exception as exc:
                    raise _translate(exc, f"writing {len(ids[i:i + step])} faces to {self.name}") from None
        return len(ids)

    def delete(self, ids: Sequence[str] | None = None, identity: str | None = None) -> int:
        """Delete by ids or by identity; returns how many faces were removed."""
        require_admin(self.actor, "deleting faces from the gallery")
        if not ids and identity is None:
            raise ConfigError("delete: give ids or an identity")
        with self.writer():
            try:
                if identity is not None:
                    found = self.col.get(where={"identity": identity}, include=[])["ids"]
                    ids = list(ids or []) + found
                if not ids:
                    return 0
                n = len(self.col.get(ids=list(ids), include=[])["ids"])
                self.col.delete(ids=list(ids))
            except Exception as exc:
                raise _translate(exc, "deleting faces") from None
        for i in ids:
            with contextlib.suppress(OSError):
                self.thumb_path(i).unlink()
        return n

    # -- reads -----------------------------------------------------------------------
    def _max_batch(self) -> int:
        try:
            return int(self.client.get_max_batch_size())
        except Exception:
            return 5000

    def count(self) -> int:
        try:
            return self.col.count()
        except Exception as exc:
            raise _translate(exc, "counting the gallery's faces") from None

    def query(self, embeddings: np.ndarray, k: int = 5, where: dict | None = None) -> list[list[Hit]]:
        """Top-k neighbours for each of m embeddings ``(m, dim)``: m lists of :class:`Hit`."""
        x = self._check(embeddings, "query")
        n = self.count()
        if n == 0:
            raise EmptyGalleryError(f"gallery {self.name} is empty: ingest or enroll some faces first")
        if len(x) == 0:
            return []
        try:
            r = self.col.query(query_embeddings=x, n_results=max(1, min(int(k), n)), where=where,
                               include=["metadatas", "distances"])
        except Exception as exc:
            raise _translate(exc, "querying the gallery") from None
        out = []
        for ids, dists, mds in zip(r["ids"], r["distances"], r["metadatas"]):
            # HNSW returns -1e-7 for identical vectors; a distance is never negative.
            out.append([Hit(i, str((m or {}).get("identity", "?")), max(0.0, float(d)), dict(m or {}))
                        for i, d, m in zip(ids, dists, mds)])
        return out

    def get(self, ids: Sequence[str] | None = None, where: dict | None = None, limit: int | None = None,
            offset: int | None = None, embeddings: bool = False) -> dict:
        include = ["metadatas"] + (["embeddings"] if embeddings else [])
        try:
            r = self.col.get(ids=list(ids) if ids else None, where=where, limit=limit, offset=offset, include=include)
        except Exception as exc:
            raise _translate(exc, "reading the gallery") from None
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
        """identity -> number of faces, most faces first."""
        counts: dict[str, int] = {}
        for _, md in self.iter_metadata():
            ident = str((md or {}).get("identity", "?"))
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
