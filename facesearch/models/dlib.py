"""dlib's ResNet-34 face embedder, offline (weights from face-recognition-models)."""

from __future__ import annotations

import numpy as np

from facesearch import weights as _weights
from facesearch.models.base import Embedder, WeightFile


class DlibEmbedder(Embedder):
    name = "dlib"
    dim = 128
    # Best-accuracy threshold on the LFW slice was 0.085 (docs/BENCHMARKS.md); DeepFace uses 0.07.
    threshold = 0.085
    input_size = 150
    description = "dlib ResNet-34 (DeepFace 'Dlib'), 128-d; weights from face-recognition-models"
    version = "resnet-v1/chip150-pad0.25"

    def weight_files(self):
        # These are copied in from face-recognition-models on first use, so they count as
        # present when either copy exists.
        return [WeightFile(f, self.settings.weights_path) for f in (_weights.DLIB_RESNET, _weights.DLIB_SHAPE5)]

    def status(self):
        for f in (_weights.DLIB_RESNET, _weights.DLIB_SHAPE5):
            if not (self.settings.weights_path / f).is_file() and _weights.package_file("face_recognition_models", "models", f) is None:
                return False, f"missing {self.settings.weights_path / f}"
        return True, "ready"

    def _load(self):
        import dlib

        self._dlib = dlib
        self._net = dlib.face_recognition_model_v1(str(_weights.ensure_dlib_file(self.settings, _weights.DLIB_RESNET)))
        self._sp = dlib.shape_predictor(str(_weights.ensure_dlib_file(self.settings, _weights.DLIB_SHAPE5)))

    def crop(self, rgb, face):
        # The network was trained on dlib's own 5-point chips (150 px, 25% padding);
        # any other crop costs accuracy, so we fit the shape model inside whatever box
        # the detector gave.
        self.load()
        x, y, w, h = face.box
        rect = self._dlib.rectangle(int(x), int(y), int(x + w), int(y + h))
        with self._lock:
            shape = self._sp(rgb, rect)
            chip = self._dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
        return np.asarray(chip, dtype=np.uint8)

    def _forward(self, chips):
        descs = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.array([np.array(d) for d in descs], dtype=np.float32)
