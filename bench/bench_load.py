"""Eight dashboard sessions at once: peak memory and time per match when eight threads
call the Match page's core function (``facesearch.search.identify.match``) together, against one
session doing the same matches alone, in one process, in the same run.

    .venv/bin/python -m bench.bench_load [--sessions 8] [--matches 5]

Last line: ``8 sessions: peak RSS A MB (1 session B MB), p50 C s per match (alone D s)``.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

from facesearch.datasets.registry import load_images
from facesearch.ingest.run import ingest
from facesearch.search.identify import match
from facesearch.settings import Settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class Peak:
    """Samples this process's RSS every 50 ms until stopped."""

    def __init__(self):
        self.mb, self._stop = 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        p = psutil.Process()
        while not self._stop.is_set():
            self.mb = max(self.mb, p.memory_info().rss / 2**20)
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--matches", type=int, default=5, help="photos each session matches")
    a = ap.parse_args()
    imgs = load_images(DATA / "celeba", "celeba")
    with tempfile.TemporaryDirectory() as home:
        s = Settings(home=Path(home))
        ingest(None, items=imgs[:300], settings=s, workers=2)
        n = a.sessions * a.matches
        # Two probe sets: match() keeps recent results in memory, so the concurrent round
        # must not see the photos the lone round already matched.
        first = [im.path.read_bytes() for im in imgs[300:300 + n]]
        second = [im.path.read_bytes() for im in imgs[300 + n:300 + 2 * n]]
        match(imgs[-1].path.read_bytes(), settings=s, require_face=False)  # models loaded, as on a running server

        def session(i: int, out: list, probes: list) -> None:
            for data in probes[i::a.sessions]:
                t = time.perf_counter()
                match(data, settings=s, require_face=False)
                out.append(time.perf_counter() - t)

        alone: list[float] = []
        with Peak() as p1:
            for i in range(a.sessions):
                session(i, alone, first)
        together: list[float] = []
        with Peak() as p8, ThreadPoolExecutor(a.sessions) as pool:
            list(pool.map(lambda i: session(i, together, second), range(a.sessions)))
    print(f"{len(alone)} matches alone: p50 {np.median(alone):.3f} s, peak RSS {p1.mb:.0f} MB")
    print(f"{a.sessions} sessions: peak RSS {p8.mb:.0f} MB (1 session {p1.mb:.0f} MB), "
          f"p50 {np.median(together):.3f} s per match (alone {np.median(alone):.3f} s)")


if __name__ == "__main__":
    main()
