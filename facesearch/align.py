"""Align/crop: from a detected :class:`Face` to a fixed-size face chip.

The step between ``detect`` and ``embed``. Each embedder says which crop it was trained
on (``Embedder.crop``); the functions here are the shared building blocks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .detection import Face


def square_box(face: Face, margin: float) -> tuple[float, float, float]:
    """Centre and side of a square around the face box, grown by ``margin`` on each side
    (as a fraction of the box's longer side)."""
    x, y, w, h = face.box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    return cx, cy, side


def eye_angle(face: Face) -> float:
    """Roll of the face in degrees (0 when the eyes are level); 0 when eyes are unknown."""
    le, re = face.landmarks.get("left_eye"), face.landmarks.get("right_eye")
    if le is None or re is None:
        return 0.0
    # The subject's right eye is on the image's left.
    dx, dy = le[0] - re[0], le[1] - re[1]
    if dx <= 0:
        return 0.0
    return math.degrees(math.atan2(dy, dx))


def crop(rgb: np.ndarray, face: Face, size: int | tuple[int, int], margin: float = 0.1,
         rotate: bool = True) -> np.ndarray:
    """A square crop around ``face``, rolled so the eyes are level when ``rotate`` and both
    eyes are known, resized to ``size``. Pixels outside the photo are black, as DeepFace
    pads them. Returns ``(size_h, size_w, 3)`` uint8 RGB."""
    out_w, out_h = (size, size) if isinstance(size, int) else (size[1], size[0])
    cx, cy, side = square_box(face, margin)
    angle = eye_angle(face) if rotate else 0.0
    scale = out_w / side
    # One affine warp does rotate + crop + resize, so the image is resampled only once.
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[0, 2] += out_w / 2.0 - cx
    m[1, 2] += out_h / 2.0 - cy
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, m, (out_w, out_h), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def thumbnail(rgb: np.ndarray, face: Face, size: int = 112) -> np.ndarray:
    """A small, upright, slightly loose crop for showing a face to a person: ``(size, size, 3)``."""
    return crop(rgb, face, size, margin=0.2, rotate=True)
