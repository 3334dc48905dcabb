"""``facesearch evaluate`` on the ingest's worker pool against the one-process path.

    .venv/bin/python -m bench.bench_evaluate [--dataset lfw] [--limit N] [--models sface] [--workers W]

Both ways from a cold cache, in the same run, each with its own fresh data folder under
a temporary folder: first the one-process path (``workers=1``) in a process held to one
thread per library, as each worker is (so the baseline is not slowed by thread pools
fighting over the cores, nor given more threads than a worker), then ours (``W`` worker
processes, default one per core) from this process. Each time covers the whole
``evaluate`` call: loading the models, starting the workers, reading the pairs,
embedding every photo and scoring. The two comparisons must give the same figures (only
the measured seconds differ); a cached second run of ours must compute nothing.

Each side also prints its CPU seconds (user + system, this process and its workers):
photos per CPU-second says what the workers cost beyond the one process's work, a
figure the machine's other jobs do not change as much as the wall-clock ratio (on a
shared machine with the kernel's autogroup scheduling, a busy machine gives this
session about one share however many processes it starts).

Defaults: lfw (the shared slice: 600 pairs, 807 photos), every pair, sface. Last line:
``evaluate: ours X photos/s, one process Y photos/s, ratio Z`` (photos: embedded photos
summed over the models).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _figures(text: str) -> dict:
    data = json.loads(text)
    for r in data["results"]:
        r.pop("seconds", None)
        r.pop("ms_per_face", None)
    return data


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its reaped children so far."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _run(home: str, dataset: str, limit: int | None, models: list[str], workers: int
         ) -> tuple[float, str, int, int, float]:
    """(seconds, JSON, photos embedded, photos computed, CPU seconds) of one cold
    ``evaluate`` (the CPU of worker processes counts once they have ended, as they have
    when it returns)."""
    from facesearch.evaluation.pairs import evaluate
    from facesearch.settings import Settings

    t0, c0 = time.perf_counter(), _cpu()
    cmp = evaluate(dataset, None, models, Settings(home=Path(home)), limit=limit, workers=workers)
    secs = time.perf_counter() - t0
    return secs, cmp.to_json(pairs=True), sum(r.n_images for r in cmp.results), cmp.n_computed, _cpu() - c0


def _one_process(q, home: str, dataset: str, limit: int | None, models: list[str]) -> None:
    """The baseline, in a fresh process with the worker's thread settings."""
    from facesearch.embedding.workers import single_thread

    single_thread()
    q.put(_run(home, dataset, limit, models, 1))


def main(argv: list[str]) -> int:
    from facesearch.settings import default_workers

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="lfw")
    ap.add_argument("--limit", type=int, default=None, help="pairs per task (default: all)")
    ap.add_argument("--models", default="sface")
    ap.add_argument("--workers", type=int, default=default_workers())
    ap.add_argument("--dir", default=None, help="where the fresh data folders go (default: a temporary folder)")
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    root = Path(a.dir or tempfile.mkdtemp(prefix="bench_evaluate_"))
    homes = {k: root / k for k in ("one", "ours")}
    for h in homes.values():
        if h.exists():
            raise SystemExit(f"{h} exists: give an empty --dir (both runs start from a cold cache)")
    print(f"{a.dataset}, models {','.join(models)}, limit {a.limit or 'none'}, {a.workers} worker(s), "
          f"cores {default_workers()}, load {os.getloadavg()[0]:.2f}", flush=True)

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_one_process, args=(q, str(homes["one"]), a.dataset, a.limit, models))
    p.start()
    s1, j1, n1, c1, cpu1 = q.get()
    p.join()
    print(f"one process (one thread per library): {n1} photos in {s1:.1f} s, computed {c1}, CPU {cpu1:.1f} s "
          f"({n1 / cpu1:.2f} photos per CPU-second); load {os.getloadavg()[0]:.2f}", flush=True)

    s2, j2, n2, c2, cpu2 = _run(str(homes["ours"]), a.dataset, a.limit, models, a.workers)
    print(f"ours ({a.workers} worker processes): {n2} photos in {s2:.1f} s, computed {c2}, CPU {cpu2:.1f} s "
          f"({n2 / cpu2:.2f} photos per CPU-second); load {os.getloadavg()[0]:.2f}", flush=True)

    s3, _, _, c3, _ = _run(str(homes["ours"]), a.dataset, a.limit, models, a.workers)
    print(f"ours again, cached: {s3:.1f} s, computed {c3}", flush=True)

    ok = True
    if _figures(j1) != _figures(j2):
        print("FAIL: the worker pool's figures differ from the one-process path's", file=sys.stderr)
        ok = False
    if c1 != n1 or c2 != n2:
        print("FAIL: a cold run did not compute every photo", file=sys.stderr)
        ok = False
    if c3:
        print("FAIL: the second run computed embeddings again", file=sys.stderr)
        ok = False
    print(f"same figures both ways: {'yes' if _figures(j1) == _figures(j2) else 'NO'}")
    x, y = n2 / s2, n1 / s1
    print(f"evaluate: ours {x:.2f} photos/s, one process {y:.2f} photos/s, ratio {x / y:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
