"""Draw face boxes with labels on a photo (OpenCV only, no UI).

Used by the Match page (numbered boxes on an uploaded photo) and by the live webcam
callback (boxes with the recognised name on every video frame), so it must be cheap:
one copy of the frame, then in-place drawing on that copy. What a box says and its
colour are the caller's (for a verdict: :mod:`facesearch.search.verdicts`).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

NEUTRAL = (79, 157, 255)  # a box with no colour given
Box = tuple[int, int, int, int]  # x, y, w, h in pixels
RGB = tuple[int, int, int]


def _scale(shape: tuple[int, ...]) -> float:
    # Line width and font size follow the photo size so labels stay legible on a
    # 4000-px phone photo and do not swamp a 320-px webcam frame.
    return max(0.45, min(shape[0], shape[1]) / 600.0)


def draw_faces(rgb: np.ndarray, boxes: Sequence[Box], labels: Sequence[str] | None = None,
               colors: Sequence[RGB] | None = None, copy: bool = True) -> np.ndarray:
    """Boxes and labels drawn on ``rgb``.

    rgb: ``(h, w, 3)`` uint8 RGB. boxes: one ``(x, y, w, h)`` per face. labels: text per
    box (default ``"1"``, ``"2"``, ...). colors: one RGB colour per box (default: a
    neutral blue). Returns an ``(h, w, 3)`` uint8 array, a new
    one unless ``copy=False``.
    """
    out = np.ascontiguousarray(rgb.copy() if copy else rgb)
    if out.ndim != 3 or out.shape[2] != 3 or out.dtype != np.uint8:
        raise ValueError(f"draw_faces expects an (h, w, 3) uint8 array, got {out.shape} {out.dtype}")
    labels = list(labels) if labels is not None else [str(i + 1) for i in range(len(boxes))]
    colors = list(colors) if colors is not None else [NEUTRAL] * len(boxes)
    s = _scale(out.shape)
    thick = max(1, int(round(2 * s)))
    font, fscale = cv2.FONT_HERSHEY_SIMPLEX, 0.6 * s
    h, w = out.shape[:2]
    for box, text, color in zip(boxes, labels, colors):
        x, y, bw, bh = (int(round(c)) for c in box)
        cv2.rectangle(out, (x, y), (x + bw, y + bh), color, thick, cv2.LINE_AA)
        if not text:
            continue
        (tw, th), base = cv2.getTextSize(text, font, fscale, thick)
        pad = max(2, thick)
        # Label above the box, or inside its top edge when the face touches the top.
        ty = y - pad if y - th - base - 2 * pad >= 0 else y + th + pad
        tx = min(max(0, x), max(0, w - tw - 2 * pad))
        cv2.rectangle(out, (tx, ty - th - pad), (tx + tw + 2 * pad, ty + base), color, cv2.FILLED)
        cv2.putText(out, text, (tx + pad, ty), font, fscale, (0, 0, 0), thick, cv2.LINE_AA)
    return out
