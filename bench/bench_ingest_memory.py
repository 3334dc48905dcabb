"""Memory and throughput of a long ingest: N synthetic photos (copies of the shared CelebA
photos, re-encoded at a different JPEG quality with a one-pixel mark, so every file has
its own content hash and is really processed), ingested by ``facesearch ingest
--workers W`` in a subprocess with a fresh data folder and cache, while the RSS of the
main process and of each worker is sampled every second.

    .venv/bin/python -m bench.bench_ingest_memory [--photos 20000] [--workers 2] [--dir /tmp/fs_mem]

Prints the RSS of the main process at 10%/50%/90% of the run (flat memory: no growth with
the photos done), the peak of each, and the photos/s over the run. Last line:
``N photos: A photos/s, peak RSS main B MB, workers C MB (max), main at 10/50/90% D/E/F MB,
largest worker at 10/50/90% G/H/I MB``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CELEBA = ROOT.parent / "shared" / "data" / "celeba"


def make_photos(dest: Path, n: int) -> Path:
    """``n`` re-encoded CelebA copies as ``dest/photos/<identity>/<k>_<file>.jpg``."""
    from facesearch.datasets.registry import load_images

    root = dest / "photos"
    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == n and (dest / ".v2").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    src = load_images(CELEBA, "celeba")
    for k in range(n):
        it = src[k % len(src)]
        copy = k // len(src)
        im = Image.open(it.path).convert("RGB")
        # A mark in the corner, different for every copy: a new hash, the same face.
        im.putpixel((0, 0), (copy % 256, (copy // 256) % 256, 7))
        buf = io.BytesIO()
        # The comment makes the bytes differ even where quantisation erases the mark.
        im.save(buf, "JPEG", quality=90 - copy % 5, comment=f"facesearch bench copy {copy}".encode())
        d = root / f"id_{it.identity}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{copy}_{Path(it.path).name}").write_bytes(buf.getvalue())
    (dest / ".v2").touch()
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/fs_mem", help="where the synthetic photos and the data folder go")
    a = ap.parse_args()
    base = Path(a.dir)
    base.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    photos = make_photos(base, a.photos)
    print(f"{a.photos} synthetic photos in {photos} ({time.perf_counter() - t:.0f} s)", flush=True)
    home = base / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "FACESEARCH_HOME": str(home), "FACESEARCH_CACHE": str(home / "cache")}
    env.pop("FACESEARCH_CHROMA_URL", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "facesearch", "ingest", str(photos), "--format", "folders",
                             "--workers", str(a.workers), "--quiet"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            text=True)
    main_p = psutil.Process(proc.pid)
    samples: list[tuple[float, float, float]] = []  # (seconds, main RSS MB, largest worker RSS MB)
    peak_main, peak_worker = 0.0, 0.0
    while proc.poll() is None:
        try:
            rss = main_p.memory_info().rss / 2**20
            kids = [c.memory_info().rss / 2**20 for c in main_p.children(recursive=True)]
        except psutil.Error:
            break
        samples.append((time.perf_counter() - t0, rss, max(kids, default=0.0)))
        peak_main = max(peak_main, rss)
        peak_worker = max([peak_worker, *kids])
        time.sleep(1.0)
    out = proc.communicate()[0].strip()
    secs = time.perf_counter() - t0
    print(out)
    if proc.returncode:
        sys.exit(f"ingest failed with exit code {proc.returncode}")

    def at(frac: float, col: int = 1) -> float:
        return min(samples, key=lambda s: abs(s[0] - frac * secs))[col] if samples else 0.0

    print(f"{a.photos} photos: {a.photos / secs:.2f} photos/s, peak RSS main {peak_main:.0f} MB, "
          f"workers {peak_worker:.0f} MB (max), main at 10/50/90% {at(.1):.0f}/{at(.5):.0f}/{at(.9):.0f} MB, "
          f"largest worker at 10/50/90% {at(.1, 2):.0f}/{at(.5, 2):.0f}/{at(.9, 2):.0f} MB")


if __name__ == "__main__":
    main()
