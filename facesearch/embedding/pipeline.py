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

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facesearch.embedding.cache import EmbeddingCache, MemoryCache, get_cache
from facesearch.imaging.align import thumbnail
from facesearch.imaging.detection import Detector, Face, get_detector
from facesearch.errors import ImageError
from facesearch.imaging.decode import ImageSource, LoadedImage, content_hash, load_image
from facesearch.models.base import Embedder
from facesearch.models.registry import get_model
from facesearch.imaging.quality import Quality, assess
from facesearch.instances import Registry
from facesearch.settings import Settings, get_settings


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


@dataclass
class Embedded:
    """What :meth:`Pipeline.embed_photo` gives for one photo."""

    sha1: str
    faces: list[Face]  # largest first
    embeddings: np.ndarray  # (n_faces, dim) float32, unit rows
    seconds: float  # detection + alignment + embedding, as first computed
    cached: bool = False
    whole_frame: bool = False  # no face was found; the whole photo was embedded as one


# The searched-with photos' faces and vectors (``memory=True``), never written to disk.
memory_cache = MemoryCache()


class Pipeline:
    """One (model, detector) pair. ``analyze(photo)`` gives every face with its embedding."""

    def __init__(self, model: str | Embedder | None = None, detector: str | Detector | None = None,
                 settings: Settings | None = None, use_cache: bool = True):
        self.settings = settings or get_settings()
        self.model = model if isinstance(model, Embedder) else get_model(model, self.settings)
        self.detector = detector if isinstance(detector, Detector) else get_detector(detector, self.settings)
        self.use_cache = use_cache
        self._cache: EmbeddingCache | None = None

    @property
    def cache(self) -> EmbeddingCache | None:
        """The data folder's embedding cache, opened on first use: a search with the
        cache off (a visitor's photo) never touches the disk, so it works on a full one."""
        if self._cache is None and self.use_cache:
            self._cache = get_cache(self.settings)
        return self._cache

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
