"""The embedding cache: a photo's faces and vectors, per (model key, detector key, SHA-1).

:class:`EmbeddingCache` is the SQLite file under ``$FACESEARCH_HOME/cache`` (one per cache
folder, :func:`get_cache`); :class:`MemoryCache` a small per-process LRU for photos that
must never reach the disk. See :mod:`facesearch.embedding.pipeline` for how they are used.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from filelock import FileLock

from facesearch.errors import FaceSearchError, disk_full_raises
from facesearch.imaging.detection import Face
from facesearch.instances import Registry
from facesearch.settings import Settings


def scrub_sqlite(db: sqlite3.Connection, path) -> str | None:
    """VACUUM and empty the WAL of a SQLite file whose rows were just deleted: no freed
    page or old page image keeps their bytes. None when done, else why not (another
    process reading it at that moment)."""
    try:
        db.execute("VACUUM")
        busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError as exc:
        return f"{path} could not be compacted now ({exc}); its deleted rows are scrubbed at the next erasure"
    if busy and busy[0]:
        return f"{path}: another process was reading it, so its write-ahead log still holds old pages"
    return None


def _faces_from_json(text: str) -> list[Face]:
    return [Face(tuple(d["box"]), d["confidence"], {k: tuple(v) for k, v in d["landmarks"].items()})
            for d in json.loads(text)]


class EmbeddingCache:
    """(model key, detector key, sha1) -> faces and embeddings; (detector key, sha1) ->
    faces. Thread-safe, one file per cache folder."""

    def __init__(self, path: Path):
        self.path = path
        from facesearch.settings import ensure_private

        ensure_private(path.parent)  # embeddings are biometric data: the owner's only
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        # Worker processes open a new cache at the same moment: switching it to WAL
        # fails at once with "database is locked" (SQLite's busy timeout does not cover
        # it), so they set it up one at a time.
        with disk_full_raises(f"disk full while creating the embedding cache {path}", path.parent), \
                FileLock(str(path) + ".lock", timeout=60):
            self._setup()

    def _setup(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # A deleted or replaced row's bytes are zeroed, not left in free space (erasure).
        self._db.execute("PRAGMA secure_delete=ON")
        # Tables of the first layout were keyed by bare names, which cannot tell an
        # old vector from a new one: they are dropped rather than trusted.
        self._db.execute("DROP TABLE IF EXISTS faces")
        self._db.execute("DROP TABLE IF EXISTS detections")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, detector TEXT, sha1 TEXT, n INTEGER, "
            "faces TEXT, emb BLOB, seconds REAL, PRIMARY KEY (model, detector, sha1))"
        )
        # Detections are model-independent: a second model over the same photos skips
        # detection, which costs more than embedding on CPU.
        self._db.execute("CREATE TABLE IF NOT EXISTS found (detector TEXT, sha1 TEXT, faces TEXT, seconds REAL, "
                         "PRIMARY KEY (detector, sha1))")
        self._db.commit()

    def _write(self, sql: str, row: tuple) -> None:
        with disk_full_raises(f"disk full while writing the embedding cache {self.path}", self.path.parent), \
                self._lock:
            self._db.execute(sql, row)
            self._db.commit()

    def get_faces(self, detector: str, sha1: str) -> tuple[list[Face], float] | None:
        """(faces, detection seconds) found by the detector whose key is ``detector``."""
        with self._lock:
            row = self._db.execute("SELECT faces, seconds FROM found WHERE detector=? AND sha1=?",
                                   (detector, sha1)).fetchone()
        return None if row is None else (_faces_from_json(row[0]), float(row[1]))

    def put_faces(self, detector: str, sha1: str, faces: list[Face], seconds: float) -> None:
        self._write("INSERT OR REPLACE INTO found VALUES (?,?,?,?)",
                    (detector, sha1, json.dumps([f.to_dict() for f in faces]), seconds))

    def get(self, model: str, detector: str, sha1: str) -> tuple[list[Face], np.ndarray, float] | None:
        """(faces, (n, dim) embeddings, seconds) for the model and detector keys."""
        with self._lock:
            row = self._db.execute(
                "SELECT n, faces, emb, seconds FROM vectors WHERE model=? AND detector=? AND sha1=?",
                (model, detector, sha1),
            ).fetchone()
        if row is None:
            return None
        n, faces_json, blob, secs = row
        faces = _faces_from_json(faces_json)
        emb = np.frombuffer(blob, dtype=np.float32).reshape(n, -1) if n else np.zeros((0, 0), np.float32)
        return faces, emb, secs

    def put(self, model: str, detector: str, sha1: str, faces: list[Face], emb: np.ndarray, seconds: float) -> None:
        self._write("INSERT OR REPLACE INTO vectors VALUES (?,?,?,?,?,?,?)",
                    (model, detector, sha1, len(faces), json.dumps([f.to_dict() for f in faces]),
                     np.ascontiguousarray(emb, dtype=np.float32).tobytes(), seconds))

    def forget(self, sha1s) -> tuple[int, str | None]:
        """Delete every row of these photos, under any model and detector key, and scrub
        the file. Returns (rows deleted, None or why the file could not be scrubbed).

        secure_delete zeroes the rows' bytes; VACUUM rewrites the file without pages freed
        before secure_delete was on; a TRUNCATE checkpoint empties the write-ahead log,
        which still holds earlier copies of the pages."""
        hs = sorted({str(h) for h in sha1s if h})
        n = 0
        with self._lock:
            try:
                with disk_full_raises(f"disk full while deleting from the embedding cache {self.path}"):
                    for i in range(0, len(hs), 500):
                        part = hs[i:i + 500]
                        marks = ",".join("?" * len(part))
                        n += self._db.execute(f"DELETE FROM vectors WHERE sha1 IN ({marks})", part).rowcount
                        n += self._db.execute(f"DELETE FROM found WHERE sha1 IN ({marks})", part).rowcount
                    self._db.commit()
            except sqlite3.OperationalError as exc:
                self._db.rollback()
                raise FaceSearchError(f"the embedding cache {self.path} is busy ({exc}): nothing was deleted "
                                      "from it; run the erasure again") from None
            return n, scrub_sqlite(self._db, self.path)


class MemoryCache:
    """(model key, detector key, sha1) -> (faces, embeddings, seconds), in this process's
    memory only: the searched-with photos' vectors, which must not be written to disk."""

    def __init__(self, size: int = 256):
        self.size = size
        self._d: OrderedDict[tuple[str, str, str], tuple[list[Face], np.ndarray, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: str, detector: str, sha1: str) -> tuple[list[Face], np.ndarray, float] | None:
        with self._lock:
            hit = self._d.get((model, detector, sha1))
            if hit is not None:
                self._d.move_to_end((model, detector, sha1))
            return hit

    def put(self, model: str, detector: str, sha1: str, faces: list[Face], emb: np.ndarray, seconds: float) -> None:
        with self._lock:
            self._d[(model, detector, sha1)] = (list(faces), np.array(emb, np.float32), seconds)
            self._d.move_to_end((model, detector, sha1))
            while len(self._d) > self.size:
                self._d.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


_caches: Registry[str, EmbeddingCache] = Registry()


def get_cache(settings: Settings) -> EmbeddingCache:
    return _caches.get(str(settings.cache_path.resolve()),
                       lambda: EmbeddingCache(settings.cache_path / "embeddings.sqlite"))
