"""A gallery held in arrays: the enrolled photos of an evaluation, searched exactly.

Same ``query`` as :class:`store.FaceGallery`, so evaluation searches through the very
function the Match page uses (:func:`facesearch.search.identify.search_faces`), without a
database: an open-set split is thrown away after one run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from store.gallery import Hit


class ArrayGallery:
    """``vectors`` ``(g, dim)`` unit rows labelled ``identities`` (g names); ``ids``:
    one id per row (default: the row number as text)."""

    def __init__(self, vectors: np.ndarray, identities: Sequence[str], ids: Sequence[str] | None = None,
                 chunk: int = 2048):
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(identities):
            raise ValueError(f"{self.vectors.shape} vectors and {len(identities)} identities do not match")
        self.identities = [str(i) for i in identities]
        self.ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(self.identities))]
        self.chunk = chunk

    def count(self) -> int:
        return len(self.identities)

    def query(self, embeddings: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """Exact top-k by cosine distance ``1 - dot`` (clipped to [0, 2]) for each of m
        rows ``(m, dim)``: m lists of :class:`Hit`, nearest first (ties by row order)."""
        q = np.asarray(embeddings, np.float32).reshape(-1, self.vectors.shape[1])
        k = max(1, min(int(k), len(self.identities)))
        out: list[list[Hit]] = []
        for i in range(0, len(q), self.chunk):
            d = np.clip(1.0 - q[i:i + self.chunk] @ self.vectors.T, 0.0, 2.0)
            top = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
            for row, cols in zip(d, top):
                cols = cols[np.lexsort((cols, row[cols]))]
                out.append([Hit(self.ids[j], self.identities[j], float(row[j])) for j in cols])
        return out
