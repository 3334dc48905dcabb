"""What a cold ``facesearch match`` of a group photo spends outside the work itself.

A new data folder gets the three photos of ``photos/people`` (Obama, Biden); then
``python -m facesearch match photos/group/obama_and_biden.jpg`` runs ``--runs`` times,
each in a new process as a user runs it (interpreter start, imports, model load, opening
the gallery, the work, printing), against the embedded database and against the data
folder's own server (``facesearch serve`` / ``make run`` running). The work itself
(decode, detect, align, embed the 3 faces, search) is then timed in this process, models
loaded and gallery open: the median of 5 matches with nothing remembered.

    python -m bench.bench_cold_match [--runs 5]

Last line: ``cold match: X s outside the work (total T s, work W s; server), load L``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(os.environ.get("FACESEARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PHOTO = DATA / "photos" / "group" / "obama_and_biden.jpg"


def _cold(env: dict, runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) seconds of ``runs`` cold matches."""
    walls, cpus = [], []
    for _ in range(runs):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "facesearch", "match", str(PHOTO)], env=env,
                           capture_output=True, text=True, timeout=300)
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        if r.returncode != 0 or "3 face(s)" not in r.stdout:
            raise SystemExit(f"facesearch match failed: {r.stdout}{r.stderr}")
    return walls, cpus


def _work(settings) -> float:
    """Median seconds of one match with the models loaded and the gallery open."""
    from facesearch.search.identify import get_pipeline, match, open_gallery

    pipe = get_pipeline(None, None, settings)
    gallery = open_gallery(pipe)
    match(PHOTO, settings=settings, gallery=gallery, pipeline=pipe, remember=False)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        match(PHOTO, settings=settings, gallery=gallery, pipeline=pipe, remember=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fs-coldmatch-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "FACESEARCH_HOME": str(home), "ANONYMIZED_TELEMETRY": "False"}
        env.pop("FACESEARCH_CHROMA_URL", None)
        r = subprocess.run([sys.executable, "-m", "facesearch", "ingest", str(DATA / "photos" / "people"), "--quiet"],
                           env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        os.environ["FACESEARCH_HOME"] = str(home)
        from facesearch.settings import get_settings
        from store.gallery import close_client
        from store.server import start_server

        settings = get_settings()
        load0 = os.getloadavg()[0]
        rows = {}
        walls, cpus = _cold(env, args.runs)  # the embedded database: each process opens the folder
        rows["embedded"] = (walls, cpus)
        srv = start_server(settings)  # as `make run` leaves it: every command shares the server
        try:
            walls, cpus = _cold(env, args.runs)
            rows["server"] = (walls, cpus)
            work = _work(settings)
        finally:
            close_client(settings)
            srv.stop()
        load1 = os.getloadavg()[0]
        for mode, (walls, cpus) in rows.items():
            total = statistics.median(walls)
            print(f"{mode:<9} total median {total:.2f} s (runs {', '.join(f'{w:.2f}' for w in walls)}), "
                  f"CPU median {statistics.median(cpus):.2f} s; outside the work {total - work:.2f} s")
        print(f"work (decode, detect, embed 3 faces, search; models loaded, gallery open): {work:.3f} s")
        total = statistics.median(rows["server"][0])
        print(f"cold match: {total - work:.2f} s outside the work (total {total:.2f} s, work {work:.2f} s; server), "
              f"load {load0:.1f}-{load1:.1f}")


if __name__ == "__main__":
    main()
