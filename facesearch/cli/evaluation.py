"""Commands that measure and set thresholds: evaluate, thresholds, calibrate."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any


from facesearch.errors import ConfigError
from facesearch.settings import Settings
from facesearch.cli.common import _fmt, _out_prefix, _pct, _settings, add_worker_options, progress_bar
from facesearch.datasets.registry import FORMATS

if TYPE_CHECKING:
    from facesearch.evaluation.pairs import Comparison
    from facesearch.evaluation.identification import OpenSetComparison


def format_table(cmp: Comparison) -> str:
    """The side-by-side table as fixed-width text."""
    cols = [("model", "model", 0), ("task", "task", 0), ("pairs", "pairs", 0), ("roc_auc", "AUC", 3),
            ("ap", "AP", 3), ("f1_threshold", "thr@F1", 3), ("f1_precision", "P@F1", 3), ("f1_recall", "R@F1", 3),
            ("f1", "F1", 3), ("p_threshold", "thr@P", 3), ("p_recall", "R@P", 3), ("fmr_threshold", "thr@FMR", 3),
            ("fmr_recall", "R@FMR", 3), ("lfw_acc", "acc", 3), ("lfw_std", "±", 3), ("rank1", "rank1", 3),
            ("rank5", "rank5", 3), ("no_face_rate", "noface", 3), ("ms_per_face", "ms/face", 1),
            ("computed", "computed", 0), ("cached", "cached", 0)]
    rows = [r.row() for r in cmp.results]
    # Drop columns that are empty for every row (e.g. rank-k outside identity datasets).
    cols = [c for c in cols if c[0] in ("model", "task") or any(r.get(c[0]) not in (None, "") for r in rows if not r["error"])]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        if r["error"]:
            cells.append([r["model"], r["task"], "error: " + r["error"]])
            continue
        cells.append([_fmt(r[k], nd) for k, _, nd in cols])
    widths = [max(len(c[i]) for c in cells if len(c) == len(cols)) for i in range(len(cols))]
    lines = []
    for c in cells:
        if len(c) != len(cols):
            lines.append(f"{c[0]:<{widths[0]}}  {c[1]:<{widths[1]}}  {c[2]}")
        else:
            lines.append("  ".join(f"{x:<{w}}" if i < 2 else f"{x:>{w}}" for i, (x, w) in enumerate(zip(c, widths))))
    return "\n".join(lines)


def _models(args, settings: Settings) -> list[str]:
    """``--models a,b``, else the default model (``--model``, $FACESEARCH_MODEL or sface)."""
    return [m for m in str(args.models).split(",") if m.strip()] if args.models else [settings.model]


def cmd_evaluate(args) -> int:
    """``facesearch evaluate``: print the table, write ``--out`` files, apply ``--apply``."""
    from facesearch.evaluation.pairs import evaluate, propose_thresholds

    settings = _settings(args)
    if getattr(args, "open_set", False):
        return _cmd_open_set(args, settings)
    if args.dataset == "fiw" and args.task == "retrieval":
        return _cmd_retrieval(args, settings)
    cmp = evaluate(args.dataset, args.path, _models(args, settings), settings, task=args.task, seed=args.seed,
                   limit=args.limit, target_precision=args.target_precision, target_fmr=args.target_fmr,
                   progress=progress_bar(args.quiet, stages=True),
                   crop_fallback=getattr(args, "crop_fallback", None),
                   max_photos_per_member=getattr(args, "max_photos", None),
                   workers=getattr(args, "workers", None), dask=getattr(args, "dask", None))
    print(f"dataset {cmp.dataset} ({cmp.path}), detector {settings.detector}, seed {args.seed}"
          + (f", limit {args.limit}" if args.limit else "")
          + f"; thr@P: target precision {args.target_precision}, thr@FMR: target FMR {args.target_fmr}")
    print(format_table(cmp))
    for r in cmp.results:
        if r.kfold and r.kfold.get("threshold_on_test"):
            print(f"note: {r.model}: a single fold, so the accuracy threshold was chosen on the test pairs "
                  "(optimistic)")
            break
    for r in cmp.results:
        if r.by_relation:
            print(f"\n{r.model} {r.task} by relation (at its best-F1 threshold {r.summary['best_f1']['threshold']:.3f}):")
            for b in r.by_relation:
                print(f"  {b['relation']:<6} pos {b['pos']:>4} neg {b['neg']:>4}  AUC {_fmt(b['roc_auc'])}  "
                      f"P {_fmt(b['precision'])} R {_fmt(b['recall'])} F1 {_fmt(b['f1'])}")
        if r.heldout:
            print(f"\n{r.model} kinship on the held-out families (even numbers; threshold chosen on the training "
                  "families, RFIW's accuracy):")
            scorers = list(dict.fromkeys(h["scorer"] for h in r.heldout))
            print(f"  {'relation':<9}{'pos':>5}{'neg':>5}  " + "  ".join(f"{sc + ' AUC':>18}{'acc':>7}" for sc in scorers))
            for rel in dict.fromkeys(h["relation"] for h in r.heldout):
                cells = {h["scorer"]: h for h in r.heldout if h["relation"] == rel}
                first = next(iter(cells.values()))
                print(f"  {rel:<9}{first['pos']:>5}{first['neg']:>5}  " + "  ".join(
                    f"{_fmt(cells[sc]['roc_auc']) if sc in cells else '-':>18}"
                    f"{_fmt(cells[sc]['accuracy']) if sc in cells else '-':>7}" for sc in scorers))
    print(f"\nembeddings computed this run: {cmp.n_computed}; from cache: {sum(r.n_cached for r in cmp.results)}")
    if args.out:
        out = _out_prefix(args.out)
        j = out.with_name(out.name + ".json")
        j.write_text(cmp.to_json())
        written = [j, *cmp.to_csv(out)]
        print("wrote " + ", ".join(str(p) for p in written))
    if args.apply:
        tf = getattr(args, "target_fpir", None)
        previews = propose_thresholds(cmp, args.apply, args.task, getattr(args, "apply_at", "f1") or "f1", settings,
                                      tf, _gallery_size(args.apply, settings) if tf is not None else 0)
        if not _confirm_save(previews, getattr(args, "yes", False), settings):
            return 1
        print(f"saved {args.apply} verify threshold {previews[0].proposed:.4f} (used by verify from now on)"
              + (f"; gallery searches now call about {tf:.2%} of people not in the gallery a match" if tf else "")
              + f"; 'facesearch thresholds --restore {args.apply}' puts the previous one back")
    if all(not r.ok for r in cmp.results):
        print("error: no model could be evaluated", file=sys.stderr)
        return 1
    return 0


def _cmd_retrieval(args, settings: Settings) -> int:
    """``evaluate --dataset fiw --task retrieval``: the reunification search's figures."""
    from facesearch.evaluation.kinship import evaluate_retrieval
    from facesearch.evaluation.vectors import dataset_path

    res = evaluate_retrieval(dataset_path("fiw", args.path), _models(args, settings), settings,
                             progress_bar(args.quiet, stages=True))
    print(f"FIW reunification search ({res['path']}); queries: members with kin of the {res['split']}, their own "
          "photos left out, every family ranked")
    for model, by in res["models"].items():
        if "error" in by:
            print(f"{model}: error: {by['error']}")
            continue
        for scorer, r in by.items():
            print(f"{model:<14} {scorer:<20} n {r['n']:>4}  top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  "
                  f"top-10 {r['top10']:.3f}  MRR {r['mrr']:.3f}")
            for rel, x in r["by_relation"].items():
                print(f"    {rel:<6} n {x['n']:>4}  top-1 {x['top1']:.3f}  top-5 {x['top5']:.3f}  MRR {x['mrr']:.3f}")
    if args.out:
        out = _out_prefix(args.out)
        j = out.with_name(out.name + ".json")
        j.write_text(json.dumps(res, indent=2))
        print(f"wrote {j}")
    return 0 if any("error" not in v for v in res["models"].values()) else 1


def _gallery_size(model: str, settings: Settings) -> int:
    """Faces in ``model``'s gallery with the chosen detector (0 before its first)."""
    from store import list_galleries

    return sum(int(g["count"]) for g in list_galleries(settings)
               if g["model"] == model and g["detector"] == settings.detector)


def _confirm_save(previews: list, yes: bool, settings: Settings) -> bool:
    """Print what ``previews`` would change, then save them if ``yes`` or the user says so
    on a terminal; without a terminal and without ``yes``, refuse. False: declined."""
    from facesearch.search.thresholds import save

    print("\n" + "\n".join(line for p in previews for line in p.lines()))
    for p in previews:
        p.check()
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError("not saved: confirm on a terminal, or add --yes to save without asking")
        if input("Save? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not saved", file=sys.stderr)
            return False
    save(previews, settings)
    return True


def cmd_thresholds(args) -> int:
    """``facesearch thresholds``: every model's thresholds and the saves behind them;
    ``--restore MODEL`` puts back what MODEL's last save replaced."""
    from facesearch.models.registry import MODELS
    from facesearch.search.thresholds import history, history_line, restore_previous, threshold_info

    s = _settings(args)
    if args.restore:
        last = restore_previous(args.restore, s)
        info = threshold_info(args.restore, s)
        print(f"{info['model']}: restored verify threshold {info['verify_threshold']:.4f}, search target "
              f"{info['target_fpir']:.2%} ({info['source']}); undone: {history_line(last)}")
        return 0
    for name in MODELS:
        info = threshold_info(name, s)
        print(f"{name:<16} verify {info['verify_threshold']:.4f}  search target {info['target_fpir']:.2%}  "
              f"({info['source']})")
        for h in reversed(history(name, s)):
            print(f"    {history_line(h)}")
    return 0


def format_open_set_table(cmp: OpenSetComparison) -> str:
    """One row per model: FPIR and FNIR at its threshold, FNIR at FPIR 1% / 0.1%, rank-k."""
    head = ["model", "FPIR", "FNIR", "threshold", "ids", "faces", "FNIR@FPIR1%", "FNIR@FPIR0.1%", "rank1",
            "rank5", "pred.FPIR", "mated", "nonmated", "noface"]
    cells = [head]
    errors = []
    for r in cmp.results:
        if not r.ok:
            errors.append(f"{r.model}  error: {r.error}")
            continue
        f1, f01 = r.fnir_at_fpir.get("1pct") or {}, r.fnir_at_fpir.get("01pct") or {}
        cells.append([r.model, _pct(r.fpir), _pct(r.fnir), _fmt(r.threshold, 4), str(r.gallery_identities),
                      str(r.gallery_faces), _pct(f1.get("fnir")),
                      _pct(f01.get("fnir")) + ("" if f01.get("resolved") else "*"),
                      _fmt(r.rank1), _fmt(r.rank5), _pct(r.predicted_fpir), str(r.n_mated), str(r.n_nonmated),
                      str(r.n_no_face)])
    w = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(c)) for c in cells]
    return "\n".join(lines + errors)


def format_fpir_vs_size(r: Any) -> str:
    """FPIR against the number of enrolled identities for one model, measured and predicted."""
    if not r.fpir_vs_size:
        return ""
    preds = [k for k in r.fpir_vs_size[0] if k.startswith("predicted_fpir_")]
    head = ["threshold", "value", "ids", "faces", "subsets", "measured"] + [k.removeprefix("predicted_fpir_")
                                                                          for k in preds]
    cells = [head]
    for row in r.fpir_vs_size:
        cells.append([row["threshold_name"], _fmt(row["threshold"], 4), str(row["identities"]), str(row["faces"]),
                      str(row["subsets"]), _pct(row["measured_fpir"])] + [_pct(row[k]) for k in preds])
    w = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join("  ".join(x.ljust(w[i]) if i == 0 else x.rjust(w[i]) for i, x in enumerate(c))
                     for c in cells)


def _cmd_open_set(args, settings: Settings) -> int:
    """``facesearch evaluate --open-set``: the open-set table, FPIR against gallery size,
    ``--out PREFIX`` writes ``PREFIX.json`` (key ``open_set``) and ``PREFIX.csv``."""
    from facesearch.evaluation.identification import evaluate_open_set

    if getattr(args, "apply", None):
        raise ConfigError("--apply saves a 1:1 threshold from the pair evaluation; it does not combine with "
                          "--open-set (search thresholds come from the calibration and its target FPIR)")
    if getattr(args, "limit", None):
        raise ConfigError("--limit counts pairs; with --open-set use --max-identities N")
    cmp = evaluate_open_set(args.dataset, args.path, _models(args, settings), settings, seed=args.seed,
                            enroll=getattr(args, "enroll", 1) or 1,
                            max_identities=getattr(args, "max_identities", None),
                            progress=progress_bar(args.quiet, stages=True),
                            workers=getattr(args, "workers", None), dask=getattr(args, "dask", None))
    print(f"open-set identification: dataset {cmp.dataset} ({cmp.path}), detector {settings.detector}, "
          f"seed {args.seed}, {cmp.params['enroll']} photo(s) enrolled per identity"
          + (f", {cmp.params['max_identities']} identities at most" if cmp.params["max_identities"] else ""))
    print(format_open_set_table(cmp))
    ok = [r for r in cmp.results if r.ok]
    if any(not (r.fnir_at_fpir.get("01pct") or {}).get("resolved") for r in ok):
        print("* fewer than 1,000 non-mated probes: FNIR at FPIR 0.1% is read at FPIR 0 (an upper bound)")
    for r in ok:
        print(f"{r.model}: threshold from {r.threshold_source}"
              + (f"; calibration: {r.calibration}" if r.calibration else "")
              + f"; verify threshold {r.verify_threshold:.4f}")
    for r in ok:
        print(f"\n{r.model}: FPIR against the number of enrolled identities (fixed thresholds; "
              "predicted = 1-(1-FMR(t))^faces, FMR from the calibration / this data's impostor pairs)")
        print(format_fpir_vs_size(r))
    print(f"\nembeddings computed this run: {cmp.n_computed}; from cache: {cmp.n_cached}")
    if args.out:
        out = _out_prefix(args.out)
        j, c = out.with_name(out.name + ".json"), out.with_name(out.name + ".csv")
        j.write_text(cmp.to_json())
        c.write_text(cmp.table_csv())
        print(f"wrote {j}, {c}")
    if not ok:
        print("error: no model could be evaluated", file=sys.stderr)
        return 1
    return 0


def cmd_calibrate(args) -> int:
    from facesearch.search.calibration import calibrate

    s = _settings(args)
    cal, path = calibrate(args.path, args.format, s.model, s, progress=progress_bar(args.quiet, stages=True),
                          workers=args.workers, dask=args.dask)
    print(f"{cal.model}: {cal.n_pairs:,} impostor pairs from {cal.source}; saved {path}")
    for n in (100, 10_000, 1_000_000):
        print(f"  gallery of {n:>9,} faces: match at distance <= {cal.threshold_for_fpir(0.01, n):.3f} "
              "for 1% of strangers called a match")
    return 0


def register(sub, common: argparse.ArgumentParser) -> None:
    """This module's sub-commands, on ``sub`` (``common``: the options every command takes)."""
    e = sub.add_parser("evaluate", parents=[common], help="compare models on a labelled dataset")
    e.add_argument("--dataset", required=True, choices=["fiw", "lfw", "folder", "master"],
                   help="fiw (kinship + same-person), lfw (pairs.txt protocol), folder (CelebA, NAME/*.jpg "
                        "or path,label csv: pairs + rank-1/5), master (deepface master.csv)")
    e.add_argument("path", nargs="?", help="dataset folder or pairs file (default: from ../shared/data)")
    e.add_argument("--models", help="comma-separated model names to compare (default: the --model one)")
    e.add_argument("--task", default=None, help="fiw: kinship | same-person (default both) | retrieval (the "
                   "reunification search on the held-out families)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--limit", type=int, help="at most N pairs per task (half same, half different)")
    e.add_argument("--max-photos", type=int, help="fiw kinship: use at most N photos per member")
    e.add_argument("--no-crop-fallback", dest="crop_fallback", action="store_false", default=None,
                   help="fiw: skip photos with no detected face instead of embedding the whole crop")
    e.add_argument("--target-precision", type=float, default=0.95)
    e.add_argument("--target-fmr", type=float, default=0.01)
    e.add_argument("--target-fpir", type=float, default=None,
                   help="with --apply: the share of people not in a gallery that a search may call a match "
                        "(default: keep the model's, 0.01 unless changed)")
    e.add_argument("--out", help="write PREFIX.json, PREFIX.csv (table) and PREFIX.pairs.csv")
    e.add_argument("--apply", metavar="MODEL", help="use this evaluation for MODEL: preview, then save once confirmed, its "
                   "1:1 verify threshold (same-person task unless --task kinship) and its search target FPIR "
                   "(--target-fpir); refused when too few different-person pairs lie under the threshold to know "
                   "its false match rate")
    e.add_argument("--apply-at", choices=["f1", "precision", "fmr"], default="f1",
                   help="which 1:1 threshold --apply saves: best F1 (default), target precision or target FMR")
    e.add_argument("--yes", "-y", action="store_true",
                   help="with --apply: save without asking (needed without a terminal)")
    e.add_argument("--open-set", action="store_true",
                   help="folder/lfw: open-set identification (1:N search): half the people enrolled, the other "
                        "photos searched; FPIR, FNIR, FNIR@FPIR, rank-1/5 and FPIR against gallery size")
    e.add_argument("--enroll", type=int, default=1, metavar="K",
                   help="--open-set: photos enrolled per identity (default 1)")
    e.add_argument("--max-identities", type=int, metavar="N",
                   help="--open-set: use a seeded random subset of N identities")
    add_worker_options(e)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    th = sub.add_parser("thresholds", parents=[common], help="each model's verify threshold and search target, "
                        "with the saves behind them")
    th.add_argument("--restore", metavar="MODEL", help="put back what MODEL's last threshold save replaced")
    th.set_defaults(func=cmd_thresholds)

    c = sub.add_parser("calibrate", parents=[common], help="measure a model's impostor distances on a labelled set",
                       description="Embeds every photo (largest face) and keeps the distances between photos of "
                                   "different people: search thresholds for a target share of strangers called "
                                   "a match come from it. Saved in the data folder; replaces the shipped one.")
    c.add_argument("path")
    c.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    add_worker_options(c)
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_calibrate)
