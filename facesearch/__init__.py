"""facesearch: find the most similar faces in a persistent gallery.

The public API, re-exported here. Importing this package is cheap: nothing heavy
(TensorFlow, dlib, Chroma) loads until a function that needs it is called.

    >>> from facesearch import match, verify, ingest, get_pipeline
    >>> result = match("group.jpg")          # every face, top-k matches each
    >>> pipe = get_pipeline("dlib", "mtcnn")
    >>> faces = pipe.detect(rgb)             # detect
    >>> chips = pipe.crops(rgb, faces)       # align / crop
    >>> vectors = pipe.embed(chips)          # embed: (n, 128) float32, unit rows
"""

from __future__ import annotations

import importlib

from .errors import *  # noqa: F401,F403  (the exception tree is light and always wanted)
from .settings import Settings, get_settings

_LAZY = {
    "load_image": "images", "LoadedImage": "images",
    "Face": "detection", "get_detector": "detection", "DETECTORS": "detection", "detector_status": "detection",
    "crop": "align", "thumbnail": "align",
    "get_model": "models", "list_models": "models", "MODELS": "models", "OFFLINE_MODELS": "models", "Embedder": "models",
    "Pipeline": "pipeline", "get_pipeline": "pipeline", "Analysis": "pipeline", "FaceResult": "pipeline",
    "match": "search", "verify": "search", "verdict": "search", "MatchResult": "search", "VerifyResult": "search",
    "open_gallery": "search",
    "ingest": "ingest", "IngestReport": "ingest",
    "get_threshold": "thresholds", "set_threshold": "thresholds", "threshold_info": "thresholds",
    "search_thresholds": "thresholds", "set_target_fpir": "thresholds",
    "load_images": "datasets", "LabeledImage": "datasets",
}

__all__ = ["Settings", "get_settings", *sorted(_LAZY)]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'facesearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{mod}", __name__), name)
    globals()[name] = value
    return value
