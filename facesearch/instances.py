"""This process's shared objects: one model, detector, cache or pipeline per key."""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Registry(Generic[K, V]):
    """This process's shared objects of one kind (models, detectors, caches, pipelines),
    one per key, built by the first caller under a lock so two threads never build two."""

    def __init__(self) -> None:
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K, build: Callable[[], V]) -> V:
        with self._lock:
            if key not in self._items:
                self._items[key] = build()
            return self._items[key]

    def pop(self, key: K) -> V | None:
        with self._lock:
            return self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
