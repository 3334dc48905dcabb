"""Open-set identification runs (1:N search, ``evaluate --open-set``): a ``folder`` or
``lfw`` dataset embedded as the pairs protocols embed it (:mod:`facesearch.evaluation.vectors`),
then scored per model by :mod:`facesearch.evaluation.openset` (FPIR/FNIR at the search
threshold, DET, FPIR against gallery size)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facesearch.datasets.registry import load_images
from facesearch.errors import ConfigError, DatasetError, FaceSearchError
from facesearch.settings import Settings, get_settings
from facesearch.embedding.batch import Progress, ModelState, embed_all
from facesearch.evaluation.vectors import (dataset_path, jsonable, model_names, model_states, photo_workers,
                                           task_cost)


# Identity datasets whose photos can be split into enrolled and not-enrolled people.
OPEN_SET_DATASETS = ("folder", "lfw")


@dataclass
class OpenSetComparison:
    """Open-set identification (:mod:`facesearch.evaluation.openset`) of several models on one
    identity dataset; ``to_json`` puts each model's figures under ``open_set``."""

    dataset: str
    path: str
    params: dict[str, Any]
    results: list[Any]  # openset.OpenSetResult, one per model

    def result(self, model: str):
        return next((r for r in self.results if r.model == model), None)

    @property
    def n_computed(self) -> int:
        return sum(r.n_computed for r in self.results)

    @property
    def n_cached(self) -> int:
        return sum(r.n_cached for r in self.results)

    def to_table(self):
        """pandas DataFrame: one row per model."""
        import pandas as pd

        return pd.DataFrame([r.row() for r in self.results])

    def size_table(self):
        """pandas DataFrame: FPIR against gallery size, one row per (model, threshold, size)."""
        import pandas as pd

        return pd.DataFrame([{"model": r.model, **row} for r in self.results for row in r.fpir_vs_size])

    def table_csv(self) -> str:
        return self.to_table().to_csv(index=False)

    def to_json(self) -> str:
        return json.dumps({"dataset": self.dataset, "path": self.path, "params": jsonable(self.params),
                           "open_set": {r.model: jsonable(r.to_dict()) for r in self.results}}, indent=2)


def evaluate_open_set(dataset: str, path: str | Path | None, models: Sequence[str],
                      settings: Settings | None = None, seed: int = 0, enroll: int = 1,
                      max_identities: int | None = None, progress: Progress | None = None,
                      crop_fallback: bool = False, workers: int | None = None,
                      dask: str | None = None) -> OpenSetComparison:
    """Open-set identification (1:N search) of ``models`` on an identity dataset
    (``folder``: CelebA, NAME/*.jpg or a path,label csv; ``lfw``: the LFW image folders).

    Every photo is embedded once per model (largest face, cache-first, as
    :func:`evaluate`); :func:`facesearch.evaluation.openset.score_open_set` then splits the people
    (seeded) into enrolled (``enroll`` gallery photos each) and not enrolled, searches
    every other photo and scores it at the model's search threshold for that gallery
    size (:func:`facesearch.search.verdicts.search_thresholds`). ``max_identities``: use a
    seeded random subset of that many people. A model that cannot run is reported in its
    result's ``error``. ``workers``/``dask``: where the photos are embedded, as
    :func:`facesearch.evaluation.pairs.evaluate`.
    """
    from facesearch.evaluation import openset as OS

    settings = settings or get_settings()
    names = _check_open_set(dataset, models, enroll, max_identities)
    path = dataset_path(dataset, path)
    if dataset == "lfw" and path.is_file():
        path = path.parent  # pairs.txt given: its images sit beside it
    label, family = _open_set_labels(dataset, path, seed, max_identities)
    photos = list(label)

    with photo_workers(settings, workers, dask) as pool:
        states = model_states(names, settings, load=pool.in_process)
        embed_all(photos, states, crop_fallback, progress, "open-set", pool)
    results = [_score_open_set(s, photos, label, family, int(enroll), seed, settings) for s in states]
    params = {"open_set": True, "seed": seed, "enroll": int(enroll), "max_identities": max_identities,
              "detector": settings.detector, "models": names, "crop_fallback": crop_fallback,
              "fpir_targets": dict(OS.FPIR_TARGETS)}
    return OpenSetComparison(dataset, str(path), params, results)


def _check_open_set(dataset: str, models: Sequence[str], enroll: int, max_identities: int | None) -> list[str]:
    """The canonical model names; ConfigError for a dataset without identities, a bad
    ``enroll`` or ``max_identities``."""
    if dataset not in OPEN_SET_DATASETS:
        raise ConfigError(f"the open-set evaluation needs an identity dataset ({', '.join(OPEN_SET_DATASETS)}), "
                          f"not {dataset!r}")
    names = model_names(models)
    if isinstance(enroll, bool) or not isinstance(enroll, (int, np.integer)) or int(enroll) < 1:
        raise ConfigError(f"photos enrolled per identity must be an integer >= 1, got {enroll!r}")
    if max_identities is not None and (isinstance(max_identities, bool) or int(max_identities) < 2):
        raise ConfigError(f"max_identities must be at least 2 (one enrolled, one not), got {max_identities}")
    return names


def _open_set_labels(dataset: str, path: Path, seed: int, max_identities: int | None
                     ) -> tuple[dict[str, str], dict[str, str | None]]:
    """(photo path -> identity, photo path -> family or None), for a seeded random subset
    of ``max_identities`` people when given."""
    images = load_images(path, "lfw" if dataset == "lfw" else "auto")
    idents = sorted({im.identity for im in images})
    if max_identities is not None and int(max_identities) < len(idents):
        rng = np.random.default_rng([int(seed), 1])
        keep = {idents[i] for i in rng.permutation(len(idents))[: int(max_identities)]}
        images = [im for im in images if im.identity in keep]
    label, family = {}, {}
    for im in images:
        label.setdefault(str(im.path), im.identity)
        family.setdefault(str(im.path), im.family)
    return label, family


def _search_threshold(model: str, settings: Settings, cal, target: float) -> Callable[..., float]:
    """``thr_at(n, gallery_cal)``: the Match page's "match" threshold for a gallery of ``n``
    faces measured as ``gallery_cal`` (memoised)."""
    from facesearch.search.verdicts import search_thresholds

    memo: dict = {}

    def thr_at(n: int, gallery_cal=None) -> float:
        key = (n, id(gallery_cal), getattr(gallery_cal, "n_searched", None))
        if key not in memo:
            try:
                memo[key] = float(search_thresholds(model, settings, n, gallery_cal=gallery_cal)[0])
            except ConfigError:
                # search_thresholds also computes the "possible" band; should that ever lie
                # beyond the calibration's kept tail, the match threshold alone still does.
                if cal is None:
                    raise
                memo[key] = float(cal.threshold_for_fpir(target, n))
        return memo[key]

    return thr_at


def _score_open_set(s: ModelState, photos: Sequence[str], label: dict[str, str], family: dict[str, str | None],
                    enroll: int, seed: int, settings: Settings):
    """One model's :class:`~facesearch.evaluation.openset.OpenSetResult` from its embedded
    ``photos``; an error result when the model could not run or found no face."""
    from facesearch.evaluation import openset as OS
    from facesearch.search import calibration as cal_mod
    from facesearch.search.thresholds import target_fpir, verify_threshold

    if s.error is not None:
        return OS.OpenSetResult(model=s.name, enroll=enroll, n_images=len(photos), error=s.error)
    usable = [p for p in photos if s.emb.get(p) is not None]
    cal = cal_mod.load(s.name, settings)
    target = target_fpir(s.name, settings)
    try:
        if not usable:
            raise DatasetError("no face was found in any photo")
        r = OS.score_open_set(np.stack([s.emb[p] for p in usable]), [label[p] for p in usable],
                              enroll=enroll, seed=seed, threshold=_search_threshold(s.name, settings, cal, target),
                              model=s.name, verify_threshold=verify_threshold(s.name, settings), calibration=cal,
                              families=[family.get(p) for p in usable], own_calibration=True)
        for e in r.extremes:
            e["photo"] = usable[e.pop("index")]
    except FaceSearchError as exc:
        r = OS.OpenSetResult(model=s.name, enroll=enroll, error=str(exc))
    _name_calibration(r, s.name, settings, cal, target)
    r.n_images = len(photos)
    r.n_no_face = len(photos) - len(usable)
    r.seconds = task_cost(photos, s)[0]
    r.n_computed, r.n_cached = s.computed, s.cached
    return r


def _name_calibration(r, model: str, settings: Settings, cal, target: float) -> None:
    """Say which calibration the result's threshold came from, as the Match page's rule does."""
    from facesearch.search.verdicts import search_rule

    r.target_fpir = target if cal is not None else None
    if r.error is not None or r.threshold is None:
        r.threshold_source = ""
        return
    rule = search_rule(model, settings, r.gallery_faces, r.gallery_cal)
    own = r.gallery_cal is not None and r.gallery_cal.usable(target)
    r.calibration_kind = "gallery" if own else ("shipped" if cal is not None else "")
    r.calibration = rule.calibration or r.calibration
    r.predicted_fpir = rule.predicted_fpir
    if own:
        r.target_fpir = target
        r.threshold_source = (f"this gallery's own impostor scores (target FPIR {target:.2%}, "
                              f"{r.gallery_cal.n_probes} probe faces, {r.gallery_cal.n_scores:,} scores)")
    elif cal is not None:
        r.threshold_source = f"shipped calibration (target FPIR {target:.2%} at {r.gallery_faces} faces)"
    else:
        r.threshold_source = "verify threshold (model not calibrated)"
