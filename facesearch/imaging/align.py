"""Align/crop: from a detected :class:`Face` to a fixed-size face chip.

The step between ``detect`` and ``embed``. Each embedder says which crop it was trained
on (``Embedder.crop``); the functions here are the shared building blocks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from facesearch.imaging.detection import Face


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


# The 112x112 five-point template SFace and ArcFace-family models were trained on
# (cv2.FaceRecognizerSF.alignCrop uses the same numbers), in the order of the subject's
# right eye, left eye, nose, right and left mouth corner.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
FIVE_POINTS = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking ``src`` (n, 2) onto
    ``dst`` (n, 2) (Umeyama 1991, as OpenCV's alignCrop computes it). Returns (2, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n = len(src)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    a = d0.T @ s0 / n
    d = np.ones(2)
    if np.linalg.det(a) < 0:
        d[1] = -1.0
    u, sv, vt = np.linalg.svd(a)
    r = u @ np.diag(d) @ vt
    var = (s0 ** 2).sum() / n
    scale = (sv * d).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * r
    m[:, 2] = mu_d - scale * r @ mu_s
    return m


def landmark_crop(rgb: np.ndarray, face: Face, size: int = 112,
                  template: np.ndarray = TEMPLATE_112) -> np.ndarray | None:
    """The face warped so its landmarks sit on ``template`` (given for a 112-px chip,
    scaled to ``size``): ``(size, size, 3)`` uint8, or None with fewer than two of the
    five landmarks (the caller falls back to :func:`crop`). Uses the points the detector
    gave: all five from YuNet and MTCNN, eyes and nose from dlib, eyes from others."""
    have = [i for i, k in enumerate(FIVE_POINTS) if k in face.landmarks]
    if len(have) < 2:
        return None
    src = np.array([face.landmarks[FIVE_POINTS[i]] for i in have], np.float64)
    dst = template[have] * (size / 112.0)
    m = similarity_transform(src, dst)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
