"""Photos to vectors for the models compared, cache-first: the loop every evaluation run
shares (the pipeline's SQLite cache keyed by model, detector and image SHA-1, so a second
run computes nothing), and where the datasets are found."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facesearch.errors import ConfigError, DatasetError, FaceSearchError
from facesearch.embedding.batch import ModelState
from facesearch.settings import Settings


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


def model_states(names: Sequence[str], settings: Settings, load: bool = True) -> list[ModelState]:
    """One state per model. ``load``: load each model here now, so one that cannot run is
    known before any photo (False when workers embed: they load their own, and
    :func:`~facesearch.embedding.batch.embed_all` loads it here first only when its weights
    are not on disk and some photo is not cached)."""
    from facesearch.embedding.pipeline import Pipeline
    from facesearch.embedding.workers import Work

    states = []
    for n in names:
        st = ModelState(n, None, Work(n, settings.detector, settings))
        try:
            st.pipe = Pipeline(n, settings.detector, settings)
            if load:
                st.pipe.model.load()
        except FaceSearchError as exc:
            st.error = str(exc)
        states.append(st)
    return states


def photo_workers(settings: Settings, workers: int | None = None, dask: str | None = None):
    """Where an evaluation embeds its photos: ``workers`` processes (default: the
    settings', every core), or a Dask cluster (:class:`~facesearch.embedding.workers.PhotoWorkers`)."""
    from facesearch.embedding.workers import PhotoWorkers

    return PhotoWorkers(workers or settings.workers, dask)
