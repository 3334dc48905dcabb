"""MTCNN, offline (the ``mtcnn`` package ships its weights)."""

from __future__ import annotations

import os

from facesearch.imaging.detection import Detector, Face, _clip_box
from facesearch.settings import Settings


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

    @classmethod
    def status(cls, settings: Settings) -> tuple[bool, str]:
        return True, "weights ship with the mtcnn package"

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
