"""Embedding models: a registry of name -> embedder, one module per embedder.

The interface is :class:`facesearch.models.base.Embedder`. Embedders are built on first
request and shared (one per name and data folder); their weights load on first ``embed``.
"""

from __future__ import annotations

from typing import Callable

from facesearch.errors import UnknownModelError
from facesearch.models.base import Embedder
from facesearch.models.deepface import DEEPFACE_MODELS, GENERIC_MODELS, DeepFaceEmbedder, KerasGenericEmbedder
from facesearch.models.dlib import DlibEmbedder
from facesearch.models.facenet_casia import FacenetCasiaEmbedder
from facesearch.models.sface import SFaceEmbedder
from facesearch.instances import Registry
from facesearch.settings import Settings, get_settings

# name -> factory. A new model is a module in facesearch/models/ plus one line here.
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


def visitor_models(settings: Settings | None = None) -> tuple[str, ...]:
    """The models a visitor of a hosted dashboard may choose (facesearch.access.check_model).

    ``FACESEARCH_VISITOR_MODELS`` when set (checked names: the admin's choice, which may
    widen it); otherwise the offline models whose weights are already on disk, so no
    visitor makes the server download weights."""
    settings = settings or get_settings()
    if settings.visitor_models:
        return tuple(dict.fromkeys(check_model_name(m) for m in settings.visitor_models))
    return tuple(m for m in OFFLINE_MODELS if get_model(m, settings).status()[0])


def allowed_models(settings: Settings, actor) -> tuple[str, ...]:
    """What ``actor`` (facesearch.access.Actor) may choose: every model for an admin or a
    local user, else :func:`visitor_models`."""
    return MODELS if actor.admin else visitor_models(settings)
