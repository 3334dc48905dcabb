"""The embedder interface every model implements, and what embedders share.

Every embedder has ``name``, ``dim``, ``metric`` ("cosine"), a default ``threshold``
(cosine distance at or below which two faces are called the same person), and

* ``crop(rgb (h, w, 3) uint8, face) -> chip (s, s, 3) uint8``: the alignment it was trained on;
* ``embed(chips: sequence of (s, s, 3) uint8) -> (n, dim) float32``, unit-normalised.

Weights load on first ``embed`` (never at import) and once per process; an embedder is
shared by all Streamlit sessions, so its forward pass is guarded by a lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facesearch.errors import ConfigError, FaceSearchError
from facesearch.imaging.align import crop as _crop
from facesearch.imaging.detection import Face
from facesearch.settings import Settings


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to unit length; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class WeightFile:
    filename: str
    folder: Path
    note: str = ""

    @property
    def path(self) -> Path:
        return self.folder / self.filename

    @property
    def present(self) -> bool:
        return self.path.is_file()


class Embedder:
    name: str = ""
    dim: int = 0
    metric: str = "cosine"
    threshold: float = 0.4
    family: str = "face"  # "face" (trained to recognise people) or "generic" (ImageNet features)
    input_size: int = 160
    description: str = ""
    # Everything besides the name that changes a vector (weights file, runtime,
    # alignment); part of the embedding cache key.
    version: str = "1"

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def key(self) -> str:
        """Cache key, e.g. ``sface@2021dec-int8bq/ort/align5``."""
        return f"{self.name}@{self.version}"

    # -- weights ---------------------------------------------------------------------
    def weight_files(self) -> list[WeightFile]:
        return []

    def status(self) -> tuple[bool, str]:
        """(ready, detail): ready means it will run with no network."""
        missing = [w for w in self.weight_files() if not w.present]
        if not missing:
            return True, "ready"
        return False, "missing " + ", ".join(str(w.path) for w in missing)

    def _load(self) -> None:
        raise NotImplementedError

    def load(self) -> "Embedder":
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._load()
                    self._loaded = True
        return self

    # -- the two steps -----------------------------------------------------------------
    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        return _crop(rgb, face, self.input_size, margin=0.1, rotate=True)

    def _forward(self, chips: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """``chips``: n crops from :meth:`crop`. Returns ``(n, dim)`` float32, unit rows."""
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
        if batch.ndim != 4 or batch.shape[3] != 3:
            raise ConfigError(f"{self.name}: embed() expects (n, h, w, 3) crops, got {batch.shape}")
        self.load()
        with self._lock:
            out = np.asarray(self._forward(batch), dtype=np.float32).reshape(len(batch), -1)
        if out.shape[1] != self.dim:
            raise FaceSearchError(f"{self.name}: model returned {out.shape[1]}-d vectors, expected {self.dim}")
        return l2_normalise(out)

    def info(self) -> dict:
        ready, detail = self.status()
        return {"name": self.name, "dim": self.dim, "metric": self.metric, "threshold": self.threshold,
                "family": self.family, "ready": ready, "detail": detail, "description": self.description}
