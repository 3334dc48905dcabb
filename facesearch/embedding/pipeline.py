"""detect -> align/crop -> embed for one photo, with an embedding cache.

:meth:`Pipeline.embed_photo` is the one path from a photo to its vectors: ingest,
evaluation, match, verify and the webcam all go through it. The cache (SQLite under
``$FACESEARCH_HOME/cache``) is keyed by (model key, detector key, image SHA-1), where a
key holds the name and a version string of everything that changes a vector (weights,
runtime, alignment, detector thresholds, shrink size): a photo is detected and embedded
once per configuration, and changing any part never serves a stale vector. Photos with
no face are cached too, so a re-run of an evaluation computes nothing again.

Photos a user only searches with (match, verify, webcam, a query on the Explore map) are
not the gallery's: they pass ``cache=False`` and never reach the disk. ``memory=True``
keeps their faces and vectors in a small per-process LRU instead (never written out), so
the page's reruns on the same upload do not detect and embed it again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from filelock import FileLock

from facesearch.imaging.align import thumbnail
from facesearch.imaging.detection import Detector, Face, get_detector
from facesearch.errors import FaceSearchError, ImageError, disk_full_raises
from facesearch.imaging.decode import ImageSource, LoadedImage, content_hash, load_image
from facesearch.models.base import Embedder
from facesearch.models.registry import get_model
from facesearch.imaging.quality import Quality, assess
from facesearch.settings import Registry, Settings, get_settings


@dataclass
class FaceResult:
    index: int  # position in the photo's face list (largest first)
    face: Face
    embedding: np.ndarray  # (dim,) float32, unit length
    thumb: np.ndarray | None = None  # (t, t, 3) uint8: what a person is shown
    quality: Quality | None = None  # whether the model can judge this face (size, blur, pose)


@dataclass
class Analysis:
    sha1: str
    source: str
    faces: list[FaceResult]
    image: LoadedImage | None = None  # None when served from the cache without decoding
    seconds: float = 0.0
    cached: bool = False

    @property
    def embeddings(self) -> np.ndarray:
        """(n_faces, dim) float32."""
        if not self.faces:
            return np.zeros((0, 0), np.float32)
        return np.stack([f.embedding for f in self.faces])


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


@dataclass
class Embedded:
    """What :meth:`Pipeline.embed_photo` gives for one photo."""

    sha1: str
    faces: list[Face]  # largest first
    embeddings: np.ndarray  # (n_faces, dim) float32, unit rows
    seconds: float  # detection + alignment + embedding, as first computed
    cached: bool = False
    whole_frame: bool = False  # no face was found; the whole photo was embedded as one


class EmbeddingCache:
    """(model key, detector key, sha1) -> faces and embeddings; (detector key, sha1) ->
    faces. Thread-safe, one file per cache folder."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        # Worker processes open a new cache at the same moment: switching it to WAL
        # fails at once with "database is locked" (SQLite's busy timeout does not cover
        # it), so they set it up one at a time.
        with disk_full_raises(f"disk full while creating the embedding cache {path}"), \
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
        with disk_full_raises(f"disk full while writing the embedding cache {self.path}"), self._lock:
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


memory_cache = MemoryCache()

_caches: Registry[str, EmbeddingCache] = Registry()


def get_cache(settings: Settings) -> EmbeddingCache:
    return _caches.get(str(settings.cache_path.resolve()),
                       lambda: EmbeddingCache(settings.cache_path / "embeddings.sqlite"))


class Pipeline:
    """One (model, detector) pair. ``analyze(photo)`` gives every face with its embedding."""

    def __init__(self, model: str | Embedder | None = None, detector: str | Detector | None = None,
                 settings: Settings | None = None, use_cache: bool = True):
        self.settings = settings or get_settings()
        self.model = model if isinstance(model, Embedder) else get_model(model, self.settings)
        self.detector = detector if isinstance(detector, Detector) else get_detector(detector, self.settings)
        self.cache = get_cache(self.settings) if use_cache else None

    @property
    def key(self) -> tuple[str, str]:
        """(model key, detector key): what the embedding cache is keyed by."""
        return self.model.key, self.detector.key

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return self.detector.detect(rgb)

    def crops(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        return [self.model.crop(rgb, f) for f in faces]

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.embed(chips)

    def embed_photo(self, sha1: str, rgb: Callable[[], np.ndarray], *, cache: bool = True,
                    whole_frame_fallback: bool = False, memory: bool = False) -> Embedded:
        """detect -> align -> embed one photo, cache-first. ``rgb()`` decodes the photo
        ((h, w, 3) uint8) and is called only on a cache miss. With
        ``whole_frame_fallback``, a photo with no face is embedded whole (already-cropped
        face datasets); that vector is cached under its own detector key so it never
        passes for a detection. ``cache=False``: the disk cache is neither read nor
        written; ``memory=True`` then uses this process's in-memory cache."""
        mkey, dkey = self.key
        if not cache and memory and not whole_frame_fallback:
            hit = memory_cache.get(mkey, dkey, sha1)
            if hit is not None:
                return Embedded(sha1, list(hit[0]), _shaped(hit[1], self.model.dim), hit[2], cached=True)
            e = self.embed_photo(sha1, rgb, cache=False)
            memory_cache.put(mkey, dkey, sha1, e.faces, e.embeddings, e.seconds)
            return e
        store = self.cache if cache else None
        if store is not None:
            hit = store.get(mkey, dkey, sha1)
            if hit is not None and (hit[0] or not whole_frame_fallback):
                return Embedded(sha1, hit[0], _shaped(hit[1], self.model.dim), hit[2], cached=True)
        memo: list[np.ndarray] = []

        def pixels() -> np.ndarray:
            if not memo:
                memo.append(rgb())
            return memo[0]

        found = store.get_faces(dkey, sha1) if store is not None else None
        if found is None:
            t0 = time.perf_counter()
            faces = self.detect(pixels())
            det_secs = time.perf_counter() - t0
            if store is not None:
                store.put_faces(dkey, sha1, faces, det_secs)
        else:
            faces, det_secs = found
        if faces or not whole_frame_fallback:
            t0 = time.perf_counter()
            emb = self.embed(self.crops(pixels(), faces)) if faces else np.zeros((0, self.model.dim), np.float32)
            secs = det_secs + time.perf_counter() - t0
            if store is not None:
                store.put(mkey, dkey, sha1, faces, emb, secs)
            return Embedded(sha1, faces, emb, secs)
        full = dkey + "+full"
        hit = store.get(mkey, full, sha1) if store is not None else None
        if hit is not None:
            return Embedded(sha1, hit[0], _shaped(hit[1], self.model.dim), det_secs + hit[2], True, True)
        img = pixels()
        h, w = img.shape[:2]
        whole = [Face((0, 0, w, h), 0.0)]
        t0 = time.perf_counter()
        emb = self.embed(self.crops(img, whole))
        secs = time.perf_counter() - t0
        if store is not None:
            store.put(mkey, dkey, sha1, [], np.zeros((0, self.model.dim), np.float32), det_secs)
            store.put(mkey, full, sha1, whole, emb, secs)
        return Embedded(sha1, whole, emb, det_secs + secs, whole_frame=True)

    def analyze(self, src: ImageSource | LoadedImage, name: str | None = None, *, thumbs: bool = True,
                max_faces: int | None = None, cache: bool = True, memory: bool = False) -> Analysis:
        """Every face in the photo, largest first. Raises ImageError for unreadable input;
        a photo with no face gives an Analysis with ``faces == []``. ``cache=False``
        neither reads nor writes the embedding cache on disk (photos searched with, webcam
        frames); with ``memory=True`` they are kept in this process's memory instead."""
        img = src if isinstance(src, LoadedImage) else load_image(src, name)
        e = self.embed_photo(img.sha1, lambda: img.rgb, cache=cache, memory=memory)
        faces, emb = e.faces, e.embeddings
        if max_faces is not None:
            faces, emb = faces[:max_faces], emb[:max_faces]
        results = []
        for i, (f, v) in enumerate(zip(faces, emb)):
            # Cheap (no model): a face too small, blurred or turned gets no "match" verdict.
            r = FaceResult(i, f, np.asarray(v, np.float32), quality=assess(img.rgb, f))
            if thumbs:
                r.thumb = thumbnail(img.rgb, f, self.settings.thumb_size)
            results.append(r)
        return Analysis(img.sha1, img.source, results, img, e.seconds, e.cached)

    def embed_file(self, path: str | Path, *, whole_frame_fallback: bool = False) -> Embedded:
        """Cache-first, without decoding a cached photo. Raises ImageError."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ImageError(str(p), f"cannot read file ({exc.strerror or exc})") from None
        return self.embed_photo(content_hash(data), lambda: load_image(data, str(p)).rgb,
                                whole_frame_fallback=whole_frame_fallback)


def _shaped(emb: np.ndarray, dim: int) -> np.ndarray:
    """A cached (0, 0) array for a photo with no face, as (0, dim)."""
    return emb if len(emb) else np.zeros((0, dim), np.float32)


_pipelines: Registry[tuple, Pipeline] = Registry()


def get_pipeline(model: str | None = None, detector: str | None = None, settings: Settings | None = None) -> Pipeline:
    settings = settings or get_settings()
    model, detector = model or settings.model, detector or settings.detector
    return _pipelines.get((model, detector, str(settings.home)), lambda: Pipeline(model, detector, settings))
