"""Ingest throughput on CelebA photos, end to end (decode, detect, align, embed,
thumbnail, write, ledger), against the naive loop the seeds' notebook ran: one
``DeepFace.represent`` call per photo (Dlib model, MTCNN detector: the offline pair
closest to theirs) and one Chroma ``add`` per face. Same photos, same machine, same run;
each side gets a fresh data folder and a cold embedding cache.

    .venv/bin/python -m bench.bench_ingest [--photos 240] [--workers 2] [--skip-naive]

Last line: ``ours A photos/s, naive B photos/s, ratio R``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from facesearch.datasets.registry import load_images  # noqa: E402
from facesearch.ingest.run import ingest  # noqa: E402
from facesearch.settings import Settings  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba"


def naive(items, home: Path) -> float:
    """photos/s of the seeds' loop (model load excluded, as for ours it is not)."""
    import chromadb

    from facesearch.weights import DLIB_RESNET, configure_deepface, ensure_dlib_file

    s = Settings(home=home)
    configure_deepface(s)
    ensure_dlib_file(s, DLIB_RESNET)
    from deepface import DeepFace

    col = chromadb.PersistentClient(path=str(home / "naive-chroma")).get_or_create_collection(
        "faces", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    # Load the models before the clock starts.
    DeepFace.represent(str(items[0].path), model_name="Dlib", detector_backend="mtcnn", enforce_detection=False)
    t = time.perf_counter()
    n = 0
    for it in items:
        for face in DeepFace.represent(str(it.path), model_name="Dlib", detector_backend="mtcnn",
                                       enforce_detection=False):
            col.add(ids=[f"f{n}"], embeddings=[face["embedding"]], metadatas=[{"identity": it.identity}])
            n += 1
    return len(items) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=240)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-naive", action="store_true", help="only ours (then no ratio)")
    a = ap.parse_args()
    items = load_images(DATA, "celeba", limit=a.photos)
    with tempfile.TemporaryDirectory() as home:
        rep = ingest(None, items=items, settings=Settings(home=Path(home)), workers=a.workers)
    # Worker start-up (spawn, imports, model load) is inside the figure: it is what a user waits.
    ours = rep.photos_per_second
    print(f"facesearch ingest, {a.workers} worker(s): {rep.summary()}", flush=True)
    if a.skip_naive:
        print(f"ours {ours:.2f} photos/s")
        return
    with tempfile.TemporaryDirectory() as home:
        base = naive(items, Path(home))
    print(f"naive DeepFace.represent (Dlib, mtcnn) + one Chroma add per face, 1 process: {base:.2f} photos/s")
    print(f"ours {ours:.2f} photos/s, naive {base:.2f} photos/s, ratio {ours / base:.2f}")


if __name__ == "__main__":
    main()
