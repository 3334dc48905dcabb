"""The gallery: one persistent Chroma collection per (model, detector). No UI imports."""

from store.arrays import ArrayGallery
from store.gallery import METRIC, FaceGallery, Hit, collection_name, get_client, list_galleries

__all__ = ["ArrayGallery", "FaceGallery", "Hit", "METRIC", "collection_name", "get_client", "list_galleries"]
