"""Faces followed from frame to frame, so a video's labels are the verdict of several frames.

A live video is searched a few times a second (:func:`facesearch.search.identify.match`
on each sampled frame). One frame's answer is noisy: compression, motion and a face's
angle move a borderline face across a threshold and back. :class:`FaceTracker` pairs
each frame's faces with the faces of the frames before (by box overlap, an optimal
assignment) and gives each tracked face the verdict its recent frames agree on
(:func:`facesearch.search.verdicts.over_time`): a face is named only once several frames
name the same person, so a stranger is not named for a single frame and labels do not
flicker.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facesearch.search import verdicts as V

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes, 0..1."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(0, w) * max(0, h)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames: its latest box and similarity, and the
    ``(verdict, identity)`` of its last frames (oldest first)."""

    id: int
    box: Box
    history: deque = field(default_factory=deque)
    similarity: float | None = None  # of the latest frame's best identity
    misses: int = 0  # consecutive searched frames without this face

    @property
    def verdict(self) -> str:
        return V.over_time(self.history)[0]

    @property
    def identity(self) -> str | None:
        """The agreed identity: set only for a match."""
        return V.over_time(self.history)[1]


class FaceTracker:
    """Tracks faces across searched frames.

    ``window``: frames a verdict is taken over; ``min_iou``: box overlap for a face to
    continue a track (faces move little between frames sampled a few times a second);
    ``max_misses``: searched frames a track survives without its face (a missed
    detection must not reset the agreement)."""

    def __init__(self, window: int = 5, min_iou: float = 0.3, max_misses: int = 2):
        self.window, self.min_iou, self.max_misses = window, min_iou, max_misses
        self.tracks: list[Track] = []
        self._next = 1

    def reset(self) -> None:
        self.tracks = []

    def update(self, faces: Sequence) -> list[Track]:
        """One searched frame: ``faces`` are its :class:`FaceMatches` (largest first).
        Returns the track of each face, in the same order."""
        from scipy.optimize import linear_sum_assignment

        boxes = [tuple(int(v) for v in fm.face.face.box) for fm in faces]
        pairs: dict[int, Track] = {}
        if self.tracks and boxes:
            overlap = np.array([[iou(b, t.box) for t in self.tracks] for b in boxes])
            rows, cols = linear_sum_assignment(-overlap)
            pairs = {r: self.tracks[c] for r, c in zip(rows, cols) if overlap[r, c] >= self.min_iou}
        out = []
        for i, (fm, box) in enumerate(zip(faces, boxes)):
            t = pairs.get(i)
            if t is None:
                t = Track(self._next, box, deque(maxlen=self.window))
                self._next += 1
                self.tracks.append(t)
            t.box, t.misses = box, 0
            best = fm.best
            t.history.append((fm.verdict, best.identity if best else None))
            t.similarity = best.similarity if best else None
            out.append(t)
        seen = {id(t) for t in out}
        for t in self.tracks:
            if id(t) not in seen:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_misses]
        return out
