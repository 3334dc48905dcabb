"""Detector recall and time per photo on the group photos, against DeepFace's own
``extract_faces`` with the same backend as the baseline (same machine, same run).

    .venv/bin/python -m bench.bench_detectors
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from facesearch.imaging.detection import get_detector
from facesearch.imaging.decode import load_image
from facesearch.settings import get_settings
from facesearch.weights import configure_deepface

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "group"
TRUTH = {"couple.jpg": 2, "two_people.jpg": 2, "kit_with_rose.jpg": 2, "obama_and_biden.jpg": 3,
         "selfie-many-people.jpg": 7}
REPEAT = 3


def timed(fn, rgb):
    fn(rgb)  # warm-up: first call builds graphs
    t = time.perf_counter()
    for _ in range(REPEAT):
        n = fn(rgb)
    return n, (time.perf_counter() - t) / REPEAT


def main() -> None:
    s = get_settings()
    configure_deepface(s)
    from deepface import DeepFace

    print(f"{'detector':<8} {'photo':<24} {'found/true':>10} {'ours s':>8} {'deepface s':>11} {'ratio':>6}")
    for name in ("mtcnn", "dlib"):
        det = get_detector(name, s)
        found = truth = 0
        ours_t = base_t = 0.0
        for photo, n_true in TRUTH.items():
            rgb = load_image(DATA / photo).rgb
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            n, t_ours = timed(lambda x: len(det.detect(x)), rgb)
            _, t_base = timed(lambda x: len(DeepFace.extract_faces(bgr, detector_backend=name, enforce_detection=False)), rgb)
            found += min(n, n_true); truth += n_true; ours_t += t_ours; base_t += t_base
            print(f"{name:<8} {photo:<24} {n:>4}/{n_true:<5} {t_ours:>8.3f} {t_base:>11.3f} {t_base / t_ours:>6.2f}")
        print(f"{name:<8} {'ALL':<24} recall {found}/{truth} = {found / truth:.2f}; "
              f"{ours_t / len(TRUTH):.3f} s/photo vs DeepFace {base_t / len(TRUTH):.3f} s/photo; "
              f"speed-up x{base_t / ours_t:.2f}")


if __name__ == "__main__":
    main()
