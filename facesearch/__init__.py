"""facesearch: find the most similar faces in a persistent gallery.

The public API, re-exported here. Importing this package is cheap: nothing heavy
(TensorFlow, dlib, Chroma) loads until a function that needs it is called.

    >>> from facesearch import match, verify, get_pipeline
    >>> result = match("group.jpg")          # every face, top-k matches each
    >>> pipe = get_pipeline("dlib", "mtcnn")
    >>> faces = pipe.detect(rgb)             # detect
    >>> chips = pipe.crops(rgb, faces)       # align / crop
    >>> vectors = pipe.embed(chips)          # embed: (n, 128) float32, unit rows
"""

from __future__ import annotations

import importlib

from facesearch.errors import *  # noqa: F401,F403  (the exception tree is light and always wanted)
from facesearch.settings import Settings, get_settings

_LAZY = {
    "load_image": "imaging.decode", "LoadedImage": "imaging.decode",
    "Face": "imaging.detection", "get_detector": "imaging.detection", "DETECTORS": "imaging.detection", "detector_status": "imaging.detection",
    "crop": "imaging.align", "thumbnail": "imaging.align",
    "get_model": "models.registry", "list_models": "models.registry", "MODELS": "models.registry", "OFFLINE_MODELS": "models.registry", "Embedder": "models.base",
    "Pipeline": "embedding.pipeline", "get_pipeline": "embedding.pipeline", "Analysis": "embedding.pipeline", "FaceResult": "embedding.pipeline",
    "match": "search.identify", "verify": "search.identify", "decide": "search.verdicts", "Rule": "search.verdicts", "MatchResult": "search.identify", "VerifyResult": "search.identify",
    "open_gallery": "search.identify",
    "IngestReport": "ingest.run",
    "get_threshold": "search.verdicts", "set_threshold": "search.thresholds", "threshold_info": "search.thresholds",
    "search_thresholds": "search.verdicts", "set_target_fpir": "search.thresholds",
    "load_images": "datasets.registry", "LabeledImage": "datasets.base",
}

__all__ = ["Settings", "get_settings", *sorted(_LAZY)]


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'facesearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"facesearch.{mod}"), name)
    globals()[name] = value
    return value
