"""Ingest throughput (photos per second) on CelebA photos, against a baseline of what
DeepFace's ``find`` does to build its index: ``DeepFace.represent`` per photo with the
same model and detector. Same photos, same machine, same run.

    .venv/bin/python -m bench.bench_ingest [N_PHOTOS] [WORKERS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facesearch.datasets import load_images
from facesearch.ingest import ingest
from facesearch.settings import Settings
from facesearch.weights import configure_deepface, ensure_dlib_file, DLIB_RESNET

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    items = load_images(DATA, "celeba", limit=n)
    results = {}
    for w in sorted({1, workers}):
        with tempfile.TemporaryDirectory() as home:
            s = Settings(home=Path(home))
            rep = ingest(None, items=items, settings=s, workers=w)
            results[w] = rep
            print(f"facesearch ingest, {w} worker(s): {rep.summary()}")
    with tempfile.TemporaryDirectory() as home:
        s = Settings(home=Path(home))
        configure_deepface(s)
        ensure_dlib_file(s, DLIB_RESNET)
        from deepface import DeepFace

        DeepFace.represent(str(items[0].path), model_name="Dlib", detector_backend="mtcnn", enforce_detection=False)
        t = time.perf_counter()
        for it in items:
            DeepFace.represent(str(it.path), model_name="Dlib", detector_backend="mtcnn", enforce_detection=False)
        base = len(items) / (time.perf_counter() - t)
    print(f"baseline DeepFace.represent (Dlib, mtcnn), 1 process: {base:.2f} photos/s")
    for w, rep in results.items():
        print(f"ratio facesearch({w} worker) / baseline: {rep.photos_per_second / base:.2f}")


if __name__ == "__main__":
    main()
