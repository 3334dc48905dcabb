"""DeepFace's detector backends; all but opencv and mediapipe download their weights on first use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.imaging.detection import DEEPFACE_DETECTORS, Detector, Face, _clip_box
from facesearch import weights as _weights
from facesearch.settings import Settings


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

    @classmethod
    def status(cls, settings: Settings, backend: str) -> tuple[bool, str]:
        if backend == "opencv":
            import cv2

            data = getattr(cv2, "data", None)
            folder = Path(getattr(data, "haarcascades", "") or "")
            ok = (folder / "haarcascade_frontalface_default.xml").is_file()
            return ok, str(folder) if ok else "OpenCV 5 wheels ship no Haar cascades"
        if backend == "mediapipe":
            import importlib.util

            ok = importlib.util.find_spec("mediapipe") is not None
            return ok, "mediapipe package" if ok else "pip install mediapipe"
        path = settings.weights_path / DEEPFACE_DETECTORS[backend]
        return path.is_file(), str(path)

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
