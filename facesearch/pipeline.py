"""detect -> align/crop -> embed for one photo, with an embedding cache.

The cache (SQLite under ``$FACESEARCH_HOME/cache``) is keyed by (model, detector, image
SHA-1): a photo is detected and embedded once per model, whether it comes in through
ingest, an evaluation or a match. Photos with no face are cached too, so a re-run of an
evaluation computes nothing again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .align import thumbnail
from .detection import Detector, Face, get_detector
from .errors import ImageError, StorageFullError
from .images import ImageSource, LoadedImage, content_hash, load_image
from .models import Embedder, get_model
from .settings import Settings, get_settings


@dataclass
class FaceResult:
    index: int  # position in the photo's face list (largest first)
    face: Face
    embedding: np.ndarray  # (dim,) float32, unit length
    chip: np.ndarray | None = None  # (s, s, 3) uint8: what the model saw
    thumb: np.ndarray | None = None  # (t, t, 3) uint8: what a person is shown


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


def _is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return getattr(exc, "errno", None) == 28 or "disk is full" in text or "no space left" in text


def _faces_from_json(text: str) -> list[Face]:
    return [Face(tuple(d["box"]), d["confidence"], {k: tuple(v) for k, v in d["landmarks"].items()})
            for d in json.loads(text)]


class EmbeddingCache:
    """(model, detector, sha1) -> faces and embeddings. Thread-safe, one file per data folder."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS faces (model TEXT, detector TEXT, sha1 TEXT, n INTEGER, "
            "faces TEXT, emb BLOB, seconds REAL, PRIMARY KEY (model, detector, sha1))"
        )
        # Detections are model-independent: a second model over the same photos skips
        # detection, which costs more than embedding on CPU.
        self._db.execute("CREATE TABLE IF NOT EXISTS detections (detector TEXT, sha1 TEXT, faces TEXT, "
                         "PRIMARY KEY (detector, sha1))")
        self._db.commit()

    def get_faces(self, detector: str, sha1: str) -> list[Face] | None:
        with self._lock:
            row = self._db.execute("SELECT faces FROM detections WHERE detector=? AND sha1=?",
                                   (detector, sha1)).fetchone()
        return None if row is None else _faces_from_json(row[0])

    def put_faces(self, detector: str, sha1: str, faces: list[Face]) -> None:
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO detections VALUES (?,?,?)",
                                 (detector, sha1, json.dumps([f.to_dict() for f in faces])))
                self._db.commit()
        except sqlite3.OperationalError as exc:
            if _is_disk_full(exc):
                raise StorageFullError(f"disk full while writing the embedding cache {self.path}") from None
            raise

    def get(self, model: str, detector: str, sha1: str) -> tuple[list[Face], np.ndarray, float] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT n, faces, emb, seconds FROM faces WHERE model=? AND detector=? AND sha1=?",
                (model, detector, sha1),
            ).fetchone()
        if row is None:
            return None
        n, faces_json, blob, secs = row
        faces = _faces_from_json(faces_json)
        emb = np.frombuffer(blob, dtype=np.float32).reshape(n, -1) if n else np.zeros((0, 0), np.float32)
        return faces, emb, secs

    def put(self, model: str, detector: str, sha1: str, faces: list[Face], emb: np.ndarray, seconds: float) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO faces VALUES (?,?,?,?,?,?,?)",
                    (model, detector, sha1, len(faces), json.dumps([f.to_dict() for f in faces]),
                     np.ascontiguousarray(emb, dtype=np.float32).tobytes(), seconds),
                )
                self._db.commit()
        except sqlite3.OperationalError as exc:
            if _is_disk_full(exc):
                raise StorageFullError(f"disk full while writing the embedding cache {self.path}") from None
            raise

    def count(self, model: str | None = None) -> int:
        with self._lock:
            if model:
                return self._db.execute("SELECT COUNT(*) FROM faces WHERE model=?", (model,)).fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]


_caches: dict[str, EmbeddingCache] = {}
_caches_lock = threading.Lock()


def get_cache(settings: Settings) -> EmbeddingCache:
    key = str(settings.cache_path.resolve())
    with _caches_lock:
        c = _caches.get(key)
        if c is None:
            c = _caches[key] = EmbeddingCache(settings.cache_path / "embeddings.sqlite")
        return c


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
        return self.model.name, self.detector.name

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return self.detector.detect(rgb)

    def crops(self, rgb: np.ndarray, faces: Sequence[Face]) -> list[np.ndarray]:
        return [self.model.crop(rgb, f) for f in faces]

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.embed(chips)

    def analyze(self, src: ImageSource | LoadedImage, name: str | None = None, *, thumbs: bool = True,
                chips: bool = False, max_faces: int | None = None) -> Analysis:
        """Every face in the photo, largest first. Raises ImageError for unreadable input;
        a photo with no face gives an Analysis with ``faces == []``."""
        img = src if isinstance(src, LoadedImage) else load_image(src, name)
        t0 = time.perf_counter()
        hit = self.cache.get(*self.key, img.sha1) if self.cache else None
        if hit is not None:
            faces, emb, secs = hit
            cached = True
        else:
            faces = self.cache.get_faces(self.detector.name, img.sha1) if self.cache else None
            if faces is None:
                faces = self.detect(img.rgb)
                if self.cache:
                    self.cache.put_faces(self.detector.name, img.sha1, faces)
            emb = self.embed(self.crops(img.rgb, faces)) if faces else np.zeros((0, self.model.dim), np.float32)
            secs = time.perf_counter() - t0
            cached = False
            if self.cache:
                self.cache.put(*self.key, img.sha1, faces, emb, secs)
        if max_faces is not None:
            faces, emb = faces[:max_faces], emb[:max_faces]
        results = []
        for i, (f, e) in enumerate(zip(faces, emb)):
            r = FaceResult(i, f, np.asarray(e, np.float32))
            if thumbs:
                r.thumb = thumbnail(img.rgb, f, self.settings.thumb_size)
            if chips:
                r.chip = self.model.crop(img.rgb, f)
            results.append(r)
        return Analysis(img.sha1, img.source, results, img, secs, cached)

    def embed_file(self, path: str | Path) -> tuple[str, list[Face], np.ndarray]:
        """Cache-first: (sha1, faces, (n, dim) embeddings) without decoding a cached photo."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ImageError(str(p), f"cannot read file ({exc.strerror or exc})") from None
        sha1 = content_hash(data)
        if self.cache:
            hit = self.cache.get(*self.key, sha1)
            if hit is not None:
                return sha1, hit[0], hit[1]
        a = self.analyze(load_image(data, str(p)), thumbs=False)
        emb = a.embeddings if a.faces else np.zeros((0, self.model.dim), np.float32)
        return sha1, [f.face for f in a.faces], emb


_pipelines: dict[tuple, Pipeline] = {}
_pipelines_lock = threading.Lock()


def get_pipeline(model: str | None = None, detector: str | None = None, settings: Settings | None = None) -> Pipeline:
    settings = settings or get_settings()
    key = (model or settings.model, detector or settings.detector, str(settings.home))
    with _pipelines_lock:
        p = _pipelines.get(key)
        if p is None:
            p = _pipelines[key] = Pipeline(model or settings.model, detector or settings.detector, settings)
        return p
