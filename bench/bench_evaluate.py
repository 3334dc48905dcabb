"""Model comparison: cold run vs cached re-run of ``facesearch.evaluation.pairs.evaluate``.

    .venv/bin/python -m bench.bench_evaluate [DATASET] [LIMIT] [MODELS]

Defaults: lfw, 60 pairs, dlib,facenet-casia. Uses ``$FACESEARCH_HOME`` (set it to a
scratch folder: the first run fills its embedding cache). Prints each model's table row
and the wall time of both runs; the second run must compute nothing.
"""

from __future__ import annotations

import sys
import time

from facesearch.cli.evaluation import format_table
from facesearch.evaluation.pairs import evaluate
from facesearch.settings import get_settings


def main(argv: list[str]) -> int:
    dataset = argv[0] if argv else "lfw"
    limit = int(argv[1]) if len(argv) > 1 else 60
    models = (argv[2] if len(argv) > 2 else "dlib,facenet-casia").split(",")
    s = get_settings()
    times = []
    for run in ("first", "second"):
        t0 = time.perf_counter()
        cmp = evaluate(dataset, None, models, s, limit=limit)
        times.append(time.perf_counter() - t0)
        print(f"{run} run: {times[-1]:.1f} s, computed {cmp.n_computed}")
    print(format_table(cmp))
    if cmp.n_computed:
        print("FAIL: the second run computed embeddings again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
