"""YuNet + SFace (the defaults) against MTCNN + dlib (the previous defaults), same photos,
same run: detector recall on the group photos and CelebA, seconds per photo for
detection and for detection + embedding, each in a fresh data folder (cold cache).

    .venv/bin/python -m bench.bench_default_pair [N_CELEBA]

Last line: ``yunet+sface A s/photo, mtcnn+dlib B s/photo, ratio R``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from facesearch.imaging.decode import load_image
from facesearch.embedding.pipeline import Pipeline
from facesearch.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GROUP = {"couple.jpg": 2, "two_people.jpg": 2, "kit_with_rose.jpg": 2, "obama_and_biden.jpg": 3,
         "selfie-many-people.jpg": 7}


def run(model: str, detector: str, celeba: list[Path]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        pipe = Pipeline(model, detector, Settings(home=Path(tmp)), use_cache=False)
        pipe.model.load()
        pipe.detect(load_image(celeba[0]).rgb)  # warm-up
        found = truth = 0
        for name, n in GROUP.items():
            found += min(n, len(pipe.detect(load_image(DATA / "photos/group" / name).rgb)))
            truth += n
        imgs = [load_image(p).rgb for p in celeba]
        t0 = time.perf_counter()
        with_face = sum(bool(pipe.detect(rgb)) for rgb in imgs)
        det = (time.perf_counter() - t0) / len(imgs)
        t0 = time.perf_counter()
        for rgb in imgs:
            faces = pipe.detect(rgb)
            if faces:
                pipe.embed(pipe.crops(rgb, faces[:1]))
        both = (time.perf_counter() - t0) / len(imgs)
    print(f"{detector}+{model}: group photos {found}/{truth} faces; CelebA {with_face}/{len(imgs)} photos with a "
          f"face; detection {det * 1000:.1f} ms/photo, detection + embedding {both * 1000:.1f} ms/photo", flush=True)
    return both, det


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    celeba = sorted((DATA / "celeba/img_celeba").glob("*.jpg"))[:n]
    ours, _ = run("sface", "yunet", celeba)
    base, _ = run("dlib", "mtcnn", celeba)
    print(f"yunet+sface {ours:.4f} s/photo, mtcnn+dlib {base:.4f} s/photo, ratio {base / ours:.2f}")


if __name__ == "__main__":
    main()
