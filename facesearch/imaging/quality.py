"""Face quality gate: is a detected face good enough for a "match" verdict?

A face that is too small, too blurred or too turned still gets an embedding, but a less
trustworthy one: on the LFW pairs the genuine distance of a shrunk or blurred face grows
toward the match thresholds (median 0.32 at full size, 0.42 at 20 px, 0.61 at 12 px), so
a true match is missed and a verdict on it means little. :func:`assess` tells the caller,
per face, whether to trust a verdict and, if not, why (a short sentence for the user and
a ``kind`` for code).

Three cheap measures (well under 1 ms per face, no model):

* **width** of the detector's box in the photo's own pixels;
* **sharpness**: variance of the Laplacian on the grey aligned 112x112 chip (the central
  part between the eyes and the mouth), i.e. in face-relative units, so it does not
  depend on how large the photo is. A face upscaled from a tiny one (below ~20 px) has a
  large box but a blurred chip and is caught here;
* **yaw**: the nose's sideways offset from the eyes' midpoint, along the eye line,
  divided by the inter-eye distance (0 frontal, about +-0.5 when the nose is in line
  with one eye), from the detector's five landmarks.

The thresholds were measured with ``python -m bench.bench_face_size`` (SFace + YuNet,
LFW pairs to choose, CelebA photos and the group photos to check): see the section
"Face quality gate" in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facesearch.imaging.align import landmark_crop
from facesearch.imaging.detection import Face

__all__ = ["Quality", "assess", "face_width", "face_chip", "sharpness", "yaw", "MIN_FACE_WIDTH", "MIN_SHARPNESS",
           "MAX_YAW"]

# Measured with ``python -m bench.bench_face_size`` (docs/BENCHMARKS.md, "Face quality gate"):
# LFW half-B pairs with the second photo degraded, SFace + YuNet, judged at both the 1:1
# verify threshold (chosen on half A) and the 1:N search threshold of a 1,000-face gallery.
#
# Face box width in the photo's pixels. Downscaled LFW faces keep 1:1 accuracy down to
# 20 px (0.977 vs 0.987 full) but lose genuine matches at the 1:N threshold sooner:
# TAR 0.880 at 32 px (re-detected), 0.833 at 28, 0.773 at 24, vs 0.907 at full size;
# 32 px is the smallest width from which every larger one stays within 3 points. Box
# width rather than inter-eye distance: on re-detection it is twice as stable (median
# error 3% vs 6% at 32 px), and the eye distance shrinks as a face turns (box/eye ratio
# 2.1 frontal, 2.9 at |yaw| 0.5), which would call turned faces small.
MIN_FACE_WIDTH = 32.0
# Variance of the Laplacian on the aligned grey chip (see sharpness()). Gaussian-blurred
# LFW probes: genuine acceptance at the 1:N threshold is back within 3 points of full
# resolution from sharpness 28.6 (isotonic fit), at the 1:1 threshold from 9.9. Ordinary
# photos sit far above: CelebA faces 1st percentile 66, median 612; LFW 10th percentile
# 91, median 175. Chosen over the contrast-free Laplacian/grey-variance ratio, which at
# its own threshold rejects 1.4% of CelebA (this: 0.1%).
MIN_SHARPNESS = 29.0
# |nose offset from the eyes' midpoint| / inter-eye distance (see yaw()); 0.5 puts the
# nose in line with one eye (a strong three-quarter view). Accuracy falls gradually with
# the turn (CelebA genuine pairs: 1:N TAR 0.81 frontal, 0.77 at 0.1-0.2, 0.66 at 0.2-0.3,
# 0.60 at 0.4-0.5), so a 3-point rule would cut at 0.1-0.2 and reject a fifth to two
# fifths of ordinary photos; the gate stops the faces whose genuine pairs more often miss
# than reach the 1:N threshold: median distance 0.509 > 0.499 from 0.5 (0.58 beyond 0.8,
# profiles). Rejects 2.3% of held-out CelebA faces.
MAX_YAW = 0.5

CHIP = 112
# Rows and columns of the 112-px chip used for sharpness: from above the eyes to below the
# mouth corners, inside the cheeks. Leaves out the chip's corners, which hold background
# (or black where the face touches the photo's edge) and hair.
_ROWS = slice(36, 100)
_COLS = slice(24, 88)


@dataclass(frozen=True)
class Quality:
    ok: bool
    reason: str | None  # None when ok; else a short sentence for the user
    kind: str | None  # None | "too small" | "blurred" | "turned"
    width: float  # face box width in the photo's pixels
    blur: float | None  # sharpness (variance of the Laplacian of the grey 112-px chip); assess() always sets it
    yaw: float | None  # signed nose offset / inter-eye distance; None without eyes and nose


def face_width(face: Face) -> float:
    """The face's size: the width of the detector's box, in the photo's pixels."""
    return float(face.box[2])


def _grey(chip: np.ndarray) -> np.ndarray:
    if chip.ndim == 3:
        chip = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY)
    if chip.shape[:2] != (CHIP, CHIP):
        h, w = chip.shape[:2]
        chip = cv2.resize(chip, (CHIP, CHIP), interpolation=cv2.INTER_AREA if min(h, w) > CHIP else cv2.INTER_LINEAR)
    return chip


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian (3x3) of the grey chip's centre: high for a crisp face,
    low for a blurred, out-of-focus or upscaled one. ``chip``: an aligned face chip
    (112x112 expected; other sizes are resized to it)."""
    g = _grey(chip)[_ROWS, _COLS]
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def yaw(face: Face) -> float | None:
    """Signed sideways turn from the landmarks: the nose's offset from the eyes' midpoint
    along the eye line, over the inter-eye distance (positive: nose toward the subject's
    left eye, the image's right). None without both eyes and the nose."""
    lm = face.landmarks
    re, le, nose = lm.get("right_eye"), lm.get("left_eye"), lm.get("nose")
    if re is None or le is None or nose is None:
        return None
    ex, ey = le[0] - re[0], le[1] - re[1]
    d = math.hypot(ex, ey)
    if d < 1e-6:
        return None
    mx, my = (le[0] + re[0]) / 2.0, (le[1] + re[1]) / 2.0
    return ((nose[0] - mx) * ex + (nose[1] - my) * ey) / (d * d)


def face_chip(rgb: np.ndarray, face: Face) -> np.ndarray:
    """The 112-px five-point-aligned chip the sharpness thresholds were measured on (what
    SFace sees); a plain box crop when the face has fewer than two landmarks."""
    chip = landmark_crop(rgb, face, CHIP)
    if chip is None:
        x, y, w, h = face.box
        box = rgb[y:y + h, x:x + w]
        if box.size == 0:
            return np.zeros((CHIP, CHIP, 3), np.uint8)
        chip = cv2.resize(box, (CHIP, CHIP), interpolation=cv2.INTER_AREA if min(w, h) > CHIP else cv2.INTER_LINEAR)
    return chip


def assess(rgb: np.ndarray, face: Face, chip: np.ndarray | None = None) -> Quality:
    """Whether ``face`` (found in ``rgb``, in its coordinates) is good enough to judge.

    ``chip`` may be SFace's chip already made for the embedder (``Pipeline.crops`` with
    model ``sface``: the 112x112 five-point alignment). Do not pass another model's crop
    (other sizes are ignored; a 112-px box crop of another model would skew the
    sharpness): without ``chip`` the right one is made here (about 0.1 ms). Checks in
    order: too small, blurred, turned; the first failure is the reason.
    """
    width = face_width(face)
    y = yaw(face)
    if chip is None or chip.shape[:2] != (CHIP, CHIP):
        chip = face_chip(rgb, face)
    blur = sharpness(chip)
    if width < MIN_FACE_WIDTH:
        return Quality(False, f"face too small to judge ({width:.0f} px wide, needs {MIN_FACE_WIDTH:.0f})",
                       "too small", width, blur, y)
    if blur < MIN_SHARPNESS:
        return Quality(False, f"face too blurred to judge (sharpness {blur:.0f}, needs {MIN_SHARPNESS:.0f})",
                       "blurred", width, blur, y)
    if y is not None and abs(y) > MAX_YAW:
        return Quality(False, f"face turned too far from the camera to judge (yaw {abs(y):.2f}, at most {MAX_YAW:.2f})",
                       "turned", width, blur, y)
    return Quality(True, None, None, width, blur, y)
