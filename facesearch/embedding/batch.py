"""Many photos to their largest face's vector, cache-first, for one or several models.

The loop evaluation and calibration share: each photo goes through
:meth:`Pipeline.embed_file` (decoded only on a cache miss, detected once for all models
that share a detector), in this process or on the ingest's workers
(:class:`facesearch.embedding.workers.PhotoWorkers`: worker processes or Dask), with the
same job either way, so the same vectors and cache entries. An unreadable photo (or one
a decoder or model crashes on) is recorded with its reason and skipped; a model that
cannot run (missing weights) is stopped with its reason while the others go on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from facesearch.errors import FaceSearchError, ImageError
from facesearch.embedding.workers import MIN_POOL, PhotoWorkers, Work

# progress(done, total, stage): ``done`` of ``total`` photos embedded for ``stage``, "model,
# task"; each stage is announced with done 0 before its first photo.
Progress = Callable[[int, int, str], None]


@dataclass
class ModelState:
    name: str
    pipe: Any  # this process's Pipeline (photos embedded here)
    work: Work | None = None  # how a worker builds the same pipeline
    emb: dict[str, np.ndarray | None] = field(default_factory=dict)  # path -> (dim,) or None (no face)
    no_face: set = field(default_factory=set)
    fallback: set = field(default_factory=set)
    unreadable: set = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read (the unreadable)
    costs: dict[str, tuple[float, int]] = field(default_factory=dict)  # path -> (seconds, faces)
    computed: int = 0
    cached: int = 0
    error: str | None = None


def embed_all(paths: Sequence[str], states: list[ModelState], crop_fallback: bool,
              progress: Progress | None, task: str, workers: PhotoWorkers | None = None) -> None:
    """Fill each state's ``emb[path]`` with the largest face's unit embedding ``(dim,)``,
    one model after the other, so that progress can say which one runs.

    A photo is decoded only when a model misses the cache, and detected once for all
    the models (they share one detector, whose faces the cache keeps). ``workers``: where
    the photos are embedded (None: this process).
    """
    total = len(paths)
    runner = workers or PhotoWorkers(1)
    for s in states:
        if s.error is not None:
            continue
        stage = f"{s.name}, {task}"
        if progress:
            progress(0, total, stage)
        todo = list(dict.fromkeys(p for p in paths if p not in s.emb))
        done = total - len(todo)
        if progress and done:
            progress(done, total, stage)
        if not runner.in_process:
            # What the cache has is read here (no decoding): only the misses are worth
            # sending to workers, and a run served from the cache starts none.
            misses = []
            for p in todo:
                res = embed_job(s.pipe, p, None, crop_fallback, cached_only=True)
                if res is None:
                    misses.append(p)
                    if len(misses) == MIN_POOL:
                        runner.warm(s.work)  # the workers start while the rest is looked up
                    continue
                record(s, res)
                if s.error is not None:
                    break
                done += 1
                if progress:
                    progress(done, total, stage)
            if s.error is None and misses and not s.pipe.model.status()[0]:
                try:
                    # Weights not on disk: fetched here, once, before the workers need
                    # them, and a model that cannot run (a download refused) is known at once.
                    s.pipe.model.load()
                except FaceSearchError as exc:
                    s.error = str(exc)
            if s.error is not None:
                continue
            todo = misses
        results = runner.run(embed_job, s.work, todo, crop_fallback, pipe=s.pipe)
        with contextlib.closing(results):
            for res in results:
                record(s, res)
                if s.error is not None:
                    break  # closing the results cancels the photos not started
                done += 1
                if progress:
                    progress(done, total, stage)


class _NotCached(Exception):
    """Raised instead of decoding a photo: the cache does not have all it needs."""


def _not_cached():
    raise _NotCached


def embed_job(pipe: Any, path: str, data: bytes | None, crop_fallback: bool, cached_only: bool = False) -> dict | None:
    """One photo's largest face for evaluation, as a worker job
    (:mod:`facesearch.embedding.workers`): ``{"path", "vector": (dim,) float32 or None,
    "faces", "seconds", "cached", "whole_frame"}``; ``{"path", "error"}`` when the photo
    cannot be read (or a decoder crashes on it); ``{"path", "fatal"}`` when the model
    cannot run. ``data``: the photo's bytes (a remote Dask worker), embedded without the cache.
    ``cached_only``: the cache's answer or None, computing nothing (a photo needs decoding
    only when something is not cached) and reporting no error (the run reports it)."""
    from pathlib import Path

    from facesearch.imaging.decode import content_hash, load_image

    try:
        if cached_only:
            try:
                raw = Path(path).read_bytes()
            except OSError:
                return None
            e = pipe.embed_photo(content_hash(raw), _not_cached, whole_frame_fallback=crop_fallback)
        elif data is None:
            e = pipe.embed_file(path, whole_frame_fallback=crop_fallback)
        else:
            e = pipe.embed_photo(content_hash(data), lambda: load_image(data, path).rgb, cache=False,
                                 whole_frame_fallback=crop_fallback)
    except _NotCached:
        return None
    except ImageError as exc:
        if cached_only:
            return None
        return {"path": path, "error": exc.reason}
    except FaceSearchError as exc:
        # Weights missing, a model that fails to load: this model is out, the rest go on.
        return {"path": path, "fatal": str(exc)}
    except Exception as exc:  # a decoder or model crash on one photo must not end the run (as ingest)
        if cached_only:
            return None
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}
    vec = np.asarray(e.embeddings[0], np.float32) if len(e.faces) else None
    return {"path": path, "vector": vec, "faces": len(e.faces), "seconds": e.seconds, "cached": e.cached,
            "whole_frame": e.whole_frame}


def record(s: ModelState, res: dict) -> None:
    """One :func:`embed_job` result into ``s``."""
    path = res["path"]
    if "fatal" in res:
        s.error = res["fatal"]
        return
    if "error" in res:
        s.unreadable.add(path)
        s.failed[path] = res["error"]
        s.emb[path] = None
        return
    s.cached += res["cached"]
    s.computed += not res["cached"]
    s.costs[path] = (res["seconds"], res["faces"])
    if res["whole_frame"]:
        s.no_face.add(path)
        s.fallback.add(path)
    elif not res["faces"]:
        s.no_face.add(path)
    s.emb[path] = res["vector"]


def embed_one(path: str, s: ModelState, crop_fallback: bool) -> None:
    """One photo in this process."""
    record(s, embed_job(s.pipe, path, None, crop_fallback))
