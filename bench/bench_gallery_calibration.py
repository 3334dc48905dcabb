"""Search thresholds that hold on the gallery searched: open-set FPIR at the default
threshold on the shared FIW, CelebA and LFW slices, 1 and 3 photos enrolled per person.

    FACESEARCH_HOME=/scratch .venv/bin/python -m bench.bench_gallery_calibration [SEEDS]

Runs ``facesearch.evaluation.identification.evaluate_open_set`` (what ``facesearch
evaluate --open-set`` runs) with sface on each set, for seed 0 (the command's default)
and, with ``SEEDS`` > 1, more seeded splits; each row gives the calibration the threshold
came from (``gallery``: measured on the enrolled gallery, ``shipped``: LFW's), the
threshold, FPIR and FNIR there, and the shipped calibration's threshold and FPIR/FNIR on
the same split for comparison. The first run fills the embedding cache (about 6,300
photos). Last line: ``gallery calibration: FPIR at the default threshold X-Y% over N
sets (target 1%, band 0.3-2%), shipped calibration X-Y%``.
"""

from __future__ import annotations

import sys
import time

from facesearch.evaluation.identification import evaluate_open_set
from facesearch.search.calibration import load
from facesearch.settings import get_settings

SETS = (("fiw", "folder", "../shared/data/fiw"), ("celeba", "folder", "../shared/data/celeba"),
        ("lfw", "lfw", "../shared/data/lfw"))


def main(argv: list[str]) -> int:
    seeds = int(argv[0]) if argv else 1
    s = get_settings()
    cal = load("sface", s)
    fpirs, shipped = [], []
    print(f"{'set':<7}{'K':>2}{'seed':>5}{'faces':>7}{'ids':>6}{'probes':>8}  {'calibration':<9}{'thr':>7}"
          f"{'FPIR':>8}{'FNIR':>8}   {'shipped thr':>11}{'FPIR':>8}{'FNIR':>8}{'extremes':>9}")
    t0 = time.perf_counter()
    for name, ds, path in SETS:
        for k in (1, 3):
            for seed in range(seeds):
                r = evaluate_open_set(ds, path, ["sface"], s, seed=seed, enroll=k).results[0]
                t_ship = cal.threshold_for_fpir(0.01, r.gallery_faces)
                f_ship, n_ship = r.at(t_ship)
                fpirs.append(r.fpir)
                shipped.append(f_ship)
                print(f"{name:<7}{k:>2}{seed:>5}{r.gallery_faces:>7}{r.gallery_identities:>6}{r.n_nonmated:>8}  "
                      f"{r.calibration_kind:<9}{r.threshold:>7.3f}{r.fpir:>8.2%}{r.fnir:>8.2%}   {t_ship:>11.3f}"
                      f"{f_ship:>8.2%}{n_ship:>8.2%}{r.n_extremes:>9}", flush=True)
    print(f"{time.perf_counter() - t0:.0f} s")
    print(f"gallery calibration: FPIR at the default threshold {min(fpirs):.2%}-{max(fpirs):.2%} over {len(fpirs)} sets "
          f"(target 1%, band 0.3-2%), shipped calibration {min(shipped):.2%}-{max(shipped):.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
