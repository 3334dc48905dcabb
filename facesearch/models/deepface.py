"""DeepFace's recognition models and Keras' generic ImageNet feature extractors; both
download their weights on first use."""

from __future__ import annotations

import numpy as np

from facesearch.errors import FaceSearchError, WeightsMissingError
from facesearch.imaging.align import crop as _crop
from facesearch import weights as _weights
from facesearch.models.base import Embedder, WeightFile
from facesearch.settings import Settings


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
