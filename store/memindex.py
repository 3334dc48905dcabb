"""Exact top-k search over a copy of a gallery's vectors held in this process's memory.

Why: at 200,000 faces Chroma's HNSW index needs ef_search 450 for recall@10 0.99, and a
query then takes 5.7 ms through the server (4.6 ms of it in the index) on the project's
2-core machine, while a brute-force matrix product over the same 200,000 x 128 float32
vectors takes 2-3.6 ms and is exact (bench/bench_query.py, docs/BENCHMARKS.md). A
long-lived reader (the dashboard: one process serves every session) therefore keeps the
vectors in memory, 512 bytes a face at 128-d (100 MB at 200,000), and Chroma stays the
only place they are stored.

Staying in step with writers in other processes: every write through
:class:`store.gallery.FaceGallery` sets a new random ``generation`` in the collection's
metadata once its faces are written. A query reads the collection's id and generation
(one small request, about 0.6 ms) and uses the copy only when both are the ones the copy
was loaded at; otherwise it is answered by Chroma's index, and a background thread loads
a new copy (7 s for 200,000 faces through the server), reading the generation before the
vectors so that a copy is never newer than the generation it is marked with. A writer
killed between its write and its generation bump leaves a copy that misses its last
batch: a face count compared every ``recheck`` seconds catches that.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

import numpy as np

GENERATION = "generation"
# Above this many faces the copy is not kept and Chroma's index answers: exact search is
# linear in N (3.6 ms at 200,000 on one core) while HNSW grows by about 0.9 ms per
# doubling, so they cross near 300,000; and the copy would take 150 MB and more.
MAX_FACES = 300_000


class TooManyFaces(Exception):
    """Raised by a loader that finds more than MAX_FACES faces: no copy is kept."""


@dataclass(frozen=True)
class _Copy:
    col_id: str
    generation: str | None
    ids: list[str]
    identities: np.ndarray  # (n,) object: each face's identity
    x: np.ndarray  # (n, dim) float32, rows of unit length


def _give_back_freed_memory() -> None:
    """Return the heap that decoding the vectors' JSON left free to the system: without it
    the dashboard's resident memory stays ~300 MB above the 100 MB copy at 200,000 faces
    (glibc keeps freed small blocks; measured with bench/bench_query.py)."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class MemoryIndex:
    """One gallery's vectors in memory. Thread-safe: queries read an immutable copy; one
    background thread at a time replaces it."""

    def __init__(self, recheck: float = 60.0) -> None:
        self._copy: _Copy | None = None
        self._lock = threading.Lock()
        self._loading = False
        self.recheck = recheck
        self.error: str | None = None  # why the last load failed (queries then use Chroma)
        self._too_many: tuple[str, str | None] | None = None  # (col_id, generation) found too big
        self._counted_at = 0.0  # when the copy's size was last compared with the gallery's

    def too_many(self, col_id: str, generation: str | None) -> bool:
        """Was the gallery at (col_id, generation) found too big to copy?"""
        return self._too_many == (col_id, generation)

    def ready(self, col_id: str, generation: str | None) -> bool:
        c = self._copy
        return c is not None and c.col_id == col_id and c.generation == generation

    def search(self, col_id: str, generation: str | None, q: np.ndarray, k: int
               ) -> list[list[tuple[str, str, float]]] | None:
        """Top-k ``(id, identity, cosine distance)`` for each row of ``q`` ``(m, dim)``,
        nearest first; None when the copy is not at (col_id, generation)."""
        c = self._copy
        if c is None or c.col_id != col_id or c.generation != generation:
            return None
        n = len(c.ids)
        if n == 0:
            return [[] for _ in range(len(q))]
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        sims = q @ c.x.T  # (m, n)
        k = min(int(k), n)
        out = []
        for row in sims:
            top = np.argpartition(-row, k - 1)[:k] if k < n else np.arange(n)
            top = top[np.argsort(-row[top], kind="stable")]
            out.append([(c.ids[i], str(c.identities[i]), max(0.0, 1.0 - float(row[i]))) for i in top])
        return out

    def stale_count(self, count_fn) -> bool:
        """Every ``recheck`` s: does the gallery hold another number of faces than the copy?"""
        c = self._copy
        if c is None or time.monotonic() - self._counted_at < self.recheck:
            return False
        self._counted_at = time.monotonic()
        try:
            return int(count_fn()) != len(c.ids)
        except Exception:
            return False

    def refresh(self, load) -> None:
        """Load a new copy in a background thread, unless one is loading. ``load()`` returns
        ``(col_id, generation, ids, identities, x)``, the generation read before the vectors."""
        with self._lock:
            if self._loading:
                return
            self._loading = True

        def run() -> None:
            try:
                col_id, gen, ids, idents, x = load()
                x = np.ascontiguousarray(x, np.float32)
                norms = np.linalg.norm(x, axis=1, keepdims=True)
                x /= np.where(norms > 0, norms, 1.0)
                self._copy = _Copy(str(col_id), gen, list(ids), np.asarray(idents, object), x)
                self._counted_at = time.monotonic()
                self.error = None
                _give_back_freed_memory()
            except TooManyFaces as exc:
                self._copy, self._too_many = None, exc.args[0]
            except Exception as exc:  # the next query tries again; Chroma answers meanwhile
                self.error = f"{type(exc).__name__}: {exc}"
            finally:
                with self._lock:
                    self._loading = False

        threading.Thread(target=run, name="facesearch-memindex", daemon=True).start()

    def wait(self, timeout: float = 600.0) -> bool:
        """Until no load is running (benchmarks and tests); True when a copy is there."""
        deadline = time.monotonic() + timeout
        while self._loading and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._copy is not None
