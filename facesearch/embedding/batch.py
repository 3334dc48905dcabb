"""Many photos to their largest face's vector, cache-first, for one or several models.

The loop evaluation and calibration share: each photo goes through
:meth:`Pipeline.embed_file` (decoded only on a cache miss, detected once for all models
that share a detector); an unreadable photo is recorded and skipped, a model that cannot
run (missing weights) is stopped with its reason while the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from facesearch.errors import FaceSearchError, ImageError

# progress(done, total, stage): ``done`` of ``total`` photos embedded for ``stage``, "model,
# task"; each stage is announced with done 0 before its first photo.
Progress = Callable[[int, int, str], None]


@dataclass
class ModelState:
    name: str
    pipe: Any
    emb: dict[str, np.ndarray | None] = field(default_factory=dict)  # path -> (dim,) or None (no face)
    no_face: set = field(default_factory=set)
    fallback: set = field(default_factory=set)
    unreadable: set = field(default_factory=set)
    costs: dict[str, tuple[float, int]] = field(default_factory=dict)  # path -> (seconds, faces)
    computed: int = 0
    cached: int = 0
    error: str | None = None


def embed_all(paths: Sequence[str], states: list[ModelState], crop_fallback: bool,
               progress: Progress | None, task: str) -> None:
    """Fill each state's ``emb[path]`` with the largest face's unit embedding ``(dim,)``,
    one model after the other, so that progress can say which one runs.

    A photo is decoded only when a model misses the cache, and detected once for all
    the models (they share one detector, whose faces the cache keeps).
    """
    total = len(paths)
    for s in states:
        if s.error is not None:
            continue
        stage = f"{s.name}, {task}"
        if progress:
            progress(0, total, stage)
        for i, p in enumerate(paths, 1):
            if p not in s.emb:
                embed_one(p, s, crop_fallback)
            if s.error is not None:
                break
            if progress:
                progress(i, total, stage)


def embed_one(path: str, s: ModelState, crop_fallback: bool) -> None:
    try:
        e = s.pipe.embed_file(path, whole_frame_fallback=crop_fallback)
    except ImageError:
        s.unreadable.add(path)
        s.emb[path] = None
        return
    except FaceSearchError as exc:
        # Weights missing, a model that fails to load: this model is out, the rest go on.
        s.error = str(exc)
        return
    s.cached += e.cached
    s.computed += not e.cached
    s.costs[path] = (e.seconds, len(e.faces))
    if e.whole_frame:
        s.no_face.add(path)
        s.fallback.add(path)
    elif not e.faces:
        s.no_face.add(path)
    s.emb[path] = np.asarray(e.embeddings[0], np.float32) if len(e.faces) else None
