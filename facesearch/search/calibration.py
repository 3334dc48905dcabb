"""Impostor score distributions: how often a model calls two different people close.

A 1:N search compares each probe with every face of the gallery, so a threshold that
lets through 1 impostor pair in 1,000 (FMR 0.1%) calls a stranger a "match" about
63% of the time in a gallery of 1,000 faces. Choosing a threshold for a target false
positive identification rate (FPIR) at the gallery's size needs the low tail of the
impostor distance distribution:

    FPIR(N, t) ~= 1 - (1 - FMR(t)) ** N      (N gallery faces, independent comparisons)
    FMR*(N)     = 1 - (1 - FPIR) ** (1 / N)   (the per-comparison rate a target asks for)

``Calibration`` keeps the smallest impostor distances measured on a labelled set (every
pair of photos of different people) and the total number of pairs, so FMR(t) is exact
where the sample has at least ``MIN_TAIL`` pairs below t. Beyond that (the rates large
galleries need) FMR is extrapolated: log FMR is close to linear in the distance over
the low tail, so a straight line fitted to log FMR between ``MIN_TAIL / n`` and 1% is
continued downwards.

Calibrations for the offline models ship in ``facesearch/calibration/`` (measured on
the LFW fold, which the CelebA checks never see); ``facesearch calibrate`` measures one
on any labelled set into ``$FACESEARCH_HOME/calibration`` and that one is used instead.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facesearch.errors import ConfigError, DatasetError, FaceSearchError
from facesearch.files import first_present, write_atomic
from facesearch.settings import Settings, get_settings

SHIPPED = Path(__file__).resolve().parent / "calibrations"
# Below this many impostor pairs under a threshold, the empirical rate is too noisy and
# the tail line takes over.
MIN_TAIL = 50
# How many of the smallest impostor distances a calibration keeps.
KEEP = 20000
# The tail line is fitted on rates up to this.
FIT_MAX_FMR = 0.01
_GRID_RATES = np.arange(1, 1000) / 1000.0


def fpir_from_fmr(fmr: float, gallery_faces: int) -> float:
    """``1 - (1 - fmr) ** N``: the share of strangers called a match by a gallery of N
    faces if every comparison were an independent draw from the impostor distribution."""
    f = min(max(float(fmr), 0.0), 1.0 - 1e-12)
    return float(-math.expm1(max(1, int(gallery_faces)) * math.log1p(-f)))


def fmr_for_fpir(fpir: float, gallery_faces: int) -> float:
    """The inverse of :func:`fpir_from_fmr`: the per-comparison FMR that gives ``fpir``."""
    return float(-math.expm1(math.log1p(-fpir) / max(1, int(gallery_faces))))


@dataclass(frozen=True)
class Calibration:
    """``tail``: the smallest impostor cosine distances, sorted ``(m,)``; ``n_pairs``:
    how many impostor pairs were measured in all."""

    model: str
    model_key: str
    detector_key: str
    source: str
    n_pairs: int
    n_identities: int
    tail: np.ndarray
    # Distances at FMR 0.001, 0.002, ..., 0.999 ``(999,)``: rates beyond the kept tail
    # (small galleries, the "possible" band) are read from these.
    grid: np.ndarray
    slope: float  # d log(FMR) / d distance over the fitted tail
    intercept: float

    # -- rates ---------------------------------------------------------------------
    def fmr(self, t: float | np.ndarray) -> np.ndarray:
        """Share of impostor pairs at cosine distance <= t: measured where the sample
        is dense enough, the fitted tail line below that."""
        t = np.asarray(t, np.float64)
        counts = np.searchsorted(self.tail, t, side="right")
        emp = counts / self.n_pairs
        beyond = np.interp(t, self.grid, _GRID_RATES, left=0.0, right=1.0)
        emp = np.where(counts >= len(self.tail), np.maximum(emp, beyond), emp)
        line = np.exp(np.minimum(self.intercept + self.slope * t, 0.0))
        return np.where(counts >= MIN_TAIL, emp, np.minimum(line, MIN_TAIL / self.n_pairs))

    def threshold_for_fmr(self, fmr: float) -> float:
        """The largest distance whose FMR is at most ``fmr``."""
        if not 0.0 < fmr < 1.0:
            raise ConfigError(f"FMR must lie in (0, 1), got {fmr}")
        k = int(math.floor(fmr * self.n_pairs))
        if k >= MIN_TAIL:
            if k > len(self.tail):
                return float(np.interp(fmr, _GRID_RATES, self.grid))
            # The k-th smallest distance: at it, k pairs match.
            return float(self.tail[k - 1])
        return float((math.log(fmr) - self.intercept) / self.slope)

    def fpir(self, threshold: float, gallery_size: int) -> float:
        """Predicted share of people not in a gallery of ``gallery_size`` faces called a match."""
        return fpir_from_fmr(float(self.fmr(threshold)), gallery_size)

    def threshold_for_fpir(self, fpir: float, gallery_size: int) -> float:
        """The distance at or below which a face is a "match" so that about ``fpir`` of
        the people not in a gallery of ``gallery_size`` faces are called one."""
        if not 0.0 < fpir < 1.0:
            raise ConfigError(f"target FPIR must lie in (0, 1), got {fpir}")
        return self.threshold_for_fmr(fmr_for_fpir(fpir, gallery_size))

    # -- files -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"model": self.model, "model_key": self.model_key, "detector_key": self.detector_key,
                           "source": self.source, "n_pairs": self.n_pairs, "n_identities": self.n_identities,
                           "slope": self.slope, "intercept": self.intercept,
                           "grid": [round(float(x), 6) for x in self.grid],
                           "tail": [round(float(x), 6) for x in self.tail]})

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        d = json.loads(text)
        return cls(d["model"], d["model_key"], d["detector_key"], d["source"], int(d["n_pairs"]),
                   int(d["n_identities"]), np.asarray(d["tail"], np.float64), np.asarray(d["grid"], np.float64),
                   float(d["slope"]), float(d["intercept"]))


def fit(model: str, model_key: str, detector_key: str, source: str, distances: np.ndarray,
        n_identities: int) -> Calibration:
    """A calibration from every impostor distance ``(n,)`` of a labelled set."""
    d = np.sort(np.asarray(distances, np.float64).ravel())
    n = len(d)
    if n < 20 * MIN_TAIL:
        raise DatasetError(f"{n} impostor pairs are too few to calibrate on (at least {20 * MIN_TAIL})")
    tail = d[: min(KEEP, n)]
    # log FMR against distance over the low tail, from MIN_TAIL pairs up to FIT_MAX_FMR.
    hi = min(len(tail), max(MIN_TAIL + 10, int(FIT_MAX_FMR * n)))
    ks = np.unique(np.geomspace(MIN_TAIL, hi, 40).astype(int))
    x, y = tail[ks - 1], np.log(ks / n)
    slope, intercept = np.polyfit(x, y, 1)
    if slope <= 0:
        raise DatasetError("impostor distances do not thin out towards zero; cannot extrapolate the tail")
    grid = np.quantile(d, _GRID_RATES, method="inverted_cdf")
    return Calibration(model, model_key, detector_key, source, n, n_identities, tail, grid, float(slope),
                       float(intercept))


def impostor_distances(embeddings: np.ndarray, identities: Sequence[str]) -> np.ndarray:
    """Cosine distances of every pair of rows of ``embeddings`` (n, d) (unit rows) whose
    identities differ: ``(n_impostor_pairs,)``."""
    x = np.asarray(embeddings, np.float32)
    ids = np.asarray(identities)
    out = []
    for i in range(0, len(x), 1024):
        block = 1.0 - x[i:i + 1024] @ x.T  # (b, n)
        rows = np.arange(i, min(i + 1024, len(x)))[:, None]
        keep = (np.arange(len(x))[None, :] > rows) & (ids[i:i + 1024, None] != ids[None, :])
        out.append(np.maximum(block[keep], 0.0))
    return np.concatenate(out) if out else np.zeros(0)


def _user_dir(settings: Settings) -> Path:
    return settings.home / "calibration"


def load(model: str, settings: Settings | None = None) -> Calibration | None:
    """The calibration for ``model``: the user's own (``facesearch calibrate``) if there
    is one, else the shipped one; None when the model has neither."""
    settings = settings or get_settings()
    found = first_present((_user_dir(settings), SHIPPED), f"{model}.json")
    return _read(*found) if found else None


@functools.lru_cache(maxsize=32)
def _read(path: str, mtime_ns: int) -> Calibration:
    """Parsed once per file version: every search (and webcam frame) asks for it."""
    try:
        return Calibration.from_json(Path(path).read_text())
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"calibration file {path} is damaged ({exc}); delete it or run "
                          "'facesearch calibrate' again") from None


def save(cal: Calibration, folder: Path) -> Path:
    """Write ``cal`` as ``folder/<model>.json`` atomically."""
    return write_atomic(folder / f"{cal.model}.json", cal.to_json())


def calibrate(path: str | Path, fmt: str = "auto", model: str | None = None, settings: Settings | None = None,
              folder: Path | None = None, progress=None, workers: int | None = None,
              dask: str | None = None) -> tuple[Calibration, Path]:
    """Embed every photo of a labelled set (largest face) and save the model's impostor
    distribution, to ``folder`` (default: the data folder's ``calibration/``).
    ``workers``/``dask``: where the photos are embedded, as ingest's (default: the
    settings' worker processes, one per core)."""
    from facesearch.datasets.registry import load_images
    from facesearch.embedding.batch import ModelState, embed_all
    from facesearch.embedding.pipeline import Pipeline
    from facesearch.embedding.workers import PhotoWorkers, Work

    settings = settings or get_settings()
    pipe = Pipeline(model, None, settings)
    images = load_images(path, fmt)
    state = ModelState(pipe.model.name, pipe, Work(pipe.model.name, settings.detector, settings))
    # An unreadable photo or one with no face only shrinks the sample.
    with PhotoWorkers(workers or settings.workers, dask) as pool:
        embed_all([str(im.path) for im in images], [state], False, progress, "calibration", pool)
    if state.error is not None:
        raise FaceSearchError(f"{pipe.model.name}: {state.error}")
    kept = [(state.emb[str(im.path)], im.identity) for im in images if state.emb.get(str(im.path)) is not None]
    vecs, ids = [v for v, _ in kept], [i for _, i in kept]
    if len(set(ids)) < 2:
        raise DatasetError(f"{path}: need photos of at least two people with a detected face")
    d = impostor_distances(np.stack(vecs), ids)
    src = f"{Path(path).name}: {len(vecs)} photos, {len(set(ids))} people, {time.strftime('%Y-%m-%d')}"
    cal = fit(pipe.model.name, pipe.model.key, pipe.detector.key, src, d, len(set(ids)))
    return cal, save(cal, folder or _user_dir(settings))
