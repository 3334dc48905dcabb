"""Photos to vectors for the models compared, cache-first: the loop every evaluation run
shares (the pipeline's SQLite cache keyed by model, detector and image SHA-1, so a second
run computes nothing), and where the datasets are found."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facesearch.errors import ConfigError, DatasetError, FaceSearchError, ImageError
from facesearch.settings import Settings


# progress(done, total, stage): ``done`` of ``total`` photos embedded for ``stage``, "model,
# task"; each stage is announced with done 0 before its first photo.
Progress = Callable[[int, int, str], None]

_DEFAULT_SUBPATH = {"fiw": "fiw", "lfw": "lfw", "folder": "celeba", "master": "photos/deepface-unit/master.csv"}


def default_path(dataset: str) -> Path | None:
    """``<repo>/../shared/data/<dataset folder>`` if it exists, else None."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    p = root / _DEFAULT_SUBPATH.get(dataset, dataset)
    return p if p.exists() else None




def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


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




def task_cost(photos: Sequence[str], s: ModelState) -> tuple[float, int]:
    """(seconds, faces) of ``photos`` as first computed (the cache keeps the seconds)."""
    secs, n = 0.0, 0
    for p in photos:
        c = s.costs.get(p)
        if c is not None:
            secs += c[0]
            n += c[1]
    return secs, n




def model_names(models: Sequence[str]) -> list[str]:
    """Canonical, de-duplicated model names; ConfigError/UnknownModelError when none or unknown."""
    from facesearch.models.registry import check_model_name

    names = list(dict.fromkeys(check_model_name(m.strip()) for m in models if str(m).strip()))
    if not names:
        raise ConfigError("no model given")
    return names


def dataset_path(dataset: str, path: str | Path | None) -> Path:
    """``path``, or the shared data's folder for ``dataset``; DatasetError when missing."""
    if path is None:
        path = default_path(dataset)
        if path is None:
            raise DatasetError(f"no path given for dataset {dataset!r} and ../shared/data/"
                               f"{_DEFAULT_SUBPATH[dataset]} does not exist")
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    return path


def model_states(names: Sequence[str], settings: Settings) -> list[ModelState]:
    from facesearch.embedding.pipeline import Pipeline

    states = []
    for n in names:
        st = ModelState(n, None)
        try:
            st.pipe = Pipeline(n, settings.detector, settings)
            st.pipe.model.load()
        except FaceSearchError as exc:
            st.error = str(exc)
        states.append(st)
    return states
