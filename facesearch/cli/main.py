"""Command line: ``facesearch ingest|match|verify|delete|export|restore|audit|models|stats|
evaluate|thresholds|calibrate|serve``.

``match`` and ``verify`` store nothing of the photos they are given, as on the dashboard
(facesearch.search.identify): the same rule everywhere, though a command-line user owns the data.

User mistakes (a FaceSearchError) print one line to stderr and exit non-zero; only bugs
show a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tqdm import tqdm

from facesearch.errors import ConfigError, FaceSearchError
from facesearch.settings import Settings, get_settings

if TYPE_CHECKING:
    from facesearch.evaluation.evaluate import Comparison, OpenSetComparison


def _settings(args) -> Settings:
    s = get_settings()
    changes = {}
    if getattr(args, "home", None):
        changes["home"] = Path(args.home)
    if getattr(args, "model", None):
        changes["model"] = args.model
    if getattr(args, "detector", None):
        changes["detector"] = args.detector
    if getattr(args, "chroma_url", None):
        changes["chroma_url"] = args.chroma_url
    return s.with_(**changes) if changes else s


def progress_bar(quiet: bool = False, stages: bool = False) -> Callable[[int, int, str], None] | None:
    """The ``progress(done, total, what)`` callback of ingest, calibrate and evaluate as a
    tqdm bar on stderr (count, elapsed and time left); None when ``quiet``. ``what`` is
    the photo, shown after the count; with ``stages`` it names what is counted
    (evaluate's "model, task") in front of the bar. A count that starts over or a new
    stage starts a new bar."""
    if quiet:
        return None
    bar: tqdm | None = None

    def progress(done: int, total: int, what: str) -> None:
        nonlocal bar
        if bar is None or done < bar.n or total != bar.total or (stages and what != bar.desc):
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=what if stages else None, unit="photo", file=sys.stderr, mininterval=0.5,
                       dynamic_ncols=True)
        if not stages:
            bar.set_postfix_str(Path(what).name[:30], refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bar = None

    return progress


def cmd_ingest(args) -> int:
    from facesearch.ingest.run import ingest

    s = _settings(args)
    rep = ingest(args.path, args.format, settings=s, limit=args.limit, workers=args.workers,
                 all_faces=args.all_faces, progress=progress_bar(args.quiet), restart=args.restart, dask=args.dask)
    for p, reason in rep.failed:
        print(f"skipped {p}: {reason}", file=sys.stderr)
    if args.verbose:
        for p in rep.no_face:
            print(f"skipped {p}: no face detected", file=sys.stderr)
    print(rep.summary())
    return 0


def cmd_match(args) -> int:
    from facesearch.search.identify import match

    s = _settings(args)
    res = match(args.image, settings=s, k=args.k)
    if args.json:
        out = [{"face": fm.face.index, "box": list(fm.face.face.box), "verdict": fm.verdict,
                "best": fm.best.identity if fm.best else None, "quality": fm.quality_reason,
                "why": fm.sentence,
                "threshold": round(fm.threshold, 4),
                "possible": round(fm.possible, 4) if fm.possible is not None else None,
                "matches": [{"identity": h.identity, "similarity": round(h.similarity, 4),
                             "distance": round(h.distance, 4), "id": h.id} for h in fm.hits],
                "identities": [{"identity": i.identity, "distance": round(i.distance, 4), "n": i.n_hits,
                                "verdict": i.verdict} for i in fm.identities[: args.k]]}
               for fm in res.faces]
        print(json.dumps(out, indent=2))
        return 0
    print(f"{len(res.faces)} face(s) in {res.analysis.source}  (model {res.model}, detector {res.detector}; "
          f"match at cosine distance <= {res.threshold:.3f}"
          + (f", possible <= {res.possible:.3f}" if res.possible is not None else "") + ")")
    print(f"{res.meaning[0].upper()}{res.meaning[1:]}.")
    for fm in res.faces:
        x, y, w, h = fm.face.face.box
        print(f"\nface {fm.face.index + 1} at x={x} y={y} w={w} h={h}: {fm.verdict}")
        print(f"  {fm.sentence}")
        for rank, ident in enumerate(fm.identities[: args.k], 1):
            print(f"  {rank}. {ident.identity:<30} similarity {ident.similarity:.3f}  distance {ident.distance:.3f}  "
                  f"{ident.verdict}  ({ident.n_hits} of top {len(fm.hits) * 3} faces)")
    return 0


def cmd_verify(args) -> int:
    from facesearch.search.identify import verify

    s = _settings(args)
    r = verify(args.image1, args.image2, settings=s)
    word = "SAME person" if r.same else "DIFFERENT people"
    print(f"{word}: distance {r.distance:.4f} vs threshold {r.threshold:.4f} ({r.model}; {r.verdict}; "
          f"similarity {r.similarity:.4f})")
    return 0 if r.same or not args.exit_code else 3


def cmd_delete(args) -> int:
    from facesearch.admin.privacy import erase_identity

    rep = erase_identity(args.identity, _settings(args))
    print(rep.summary())
    return 0


def cmd_export(args) -> int:
    from store import FaceGallery
    from facesearch.admin.archive import export_gallery

    from facesearch.models.registry import get_model

    s = _settings(args)
    emb = get_model(s.model, s)
    m = export_gallery(FaceGallery(emb.name, emb.dim, s.detector, s, create=False), args.file)
    print(f"exported {m['faces']} faces ({m['thumbnails']} thumbnails) of {m['collection']} to {args.file}")
    return 0


def cmd_restore(args) -> int:
    from facesearch.admin.archive import restore_gallery

    r = restore_gallery(args.file, _settings(args), merge=args.merge)
    print(r.summary())
    return 0


def cmd_audit(args) -> int:
    from facesearch.admin.audit import read_audit

    for e in reversed(read_audit(_settings(args), limit=args.n)):
        rest = {k: v for k, v in e.items() if k not in ("at", "actor", "action", "faces")}
        faces = "" if e.get("faces") is None else f" {e['faces']} faces"
        print(f"{e.get('at')}  {e.get('actor')}: {e.get('action')}{faces}"
              + (f"  {json.dumps(rest, ensure_ascii=False)}" if rest else ""))
    return 0


def cmd_models(args) -> int:
    from facesearch.imaging.detection import DETECTORS, detector_status
    from facesearch.models.registry import list_models
    from facesearch.search.calibration import load as load_calibration
    from facesearch.search.thresholds import target_fpir, verify_threshold

    s = _settings(args)
    print(f"{'model':<16}{'dim':>6}  {'family':<8}{'verify':>7}  {'search (target FPIR)':<21} status")
    for m in list_models(s):
        thr = verify_threshold(m["name"], s)
        cal = load_calibration(m["name"], s)
        search = f"{target_fpir(m['name'], s):.2%} calibrated" if cal else "verify threshold"
        st = "ready" if m["ready"] else "missing weights: " + m["detail"].removeprefix("missing ")
        print(f"{m['name']:<16}{m['dim']:>6}  {m['family']:<8}{thr:>7.3f}  {search:<21} {st}")
    print(f"\n{'detector':<16}status")
    for d in DETECTORS:
        ok, where = detector_status(d, s)
        print(f"{d:<16}{'ready' if ok else 'missing weights: ' + where}")
    print(f"\nweights folder: {s.weights_path}")
    return 0


def cmd_stats(args) -> int:
    from store import FaceGallery, list_galleries

    s = _settings(args)
    gals = list_galleries(s)
    from store.server import find_server

    server = s.chroma_url or find_server(s)
    print(f"data folder: {s.home}  database: {f'server {server}' if server else s.chroma_path}")
    if not gals:
        print("no galleries yet: run 'facesearch ingest PATH'")
        return 0
    for g in gals:
        print(f"{g['name']}: model {g['model']} ({g['dim']}-d), detector {g['detector']}, {g['count']} faces")
        if args.identities:
            gal = FaceGallery(g["model"], g["dim"], g["detector"], s)
            for ident, n in list(gal.identities().items())[: args.identities]:
                print(f"    {ident:<30} {n}")
    return 0


# -- evaluate: tables of facesearch.evaluation.evaluate's results --------------------------------

def _fmt(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


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
    from facesearch.evaluation.evaluate import evaluate, propose_thresholds

    settings = _settings(args)
    if getattr(args, "open_set", False):
        return _cmd_open_set(args, settings)
    cmp = evaluate(args.dataset, args.path, _models(args, settings), settings, task=args.task, seed=args.seed,
                   limit=args.limit, target_precision=args.target_precision, target_fmr=args.target_fmr,
                   progress=progress_bar(args.quiet, stages=True),
                   crop_fallback=getattr(args, "crop_fallback", None),
                   max_photos_per_member=getattr(args, "max_photos", None))
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


def _pct(v: Any, nd: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.{nd}f}%"


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
    from facesearch.evaluation.evaluate import evaluate_open_set

    if getattr(args, "apply", None):
        raise ConfigError("--apply saves a 1:1 threshold from the pair evaluation; it does not combine with "
                          "--open-set (search thresholds come from the calibration and its target FPIR)")
    if getattr(args, "limit", None):
        raise ConfigError("--limit counts pairs; with --open-set use --max-identities N")
    cmp = evaluate_open_set(args.dataset, args.path, _models(args, settings), settings, seed=args.seed,
                            enroll=getattr(args, "enroll", 1) or 1,
                            max_identities=getattr(args, "max_identities", None),
                            progress=progress_bar(args.quiet, stages=True))
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
    cal, path = calibrate(args.path, args.format, s.model, s, progress=progress_bar(args.quiet))
    print(f"{cal.model}: {cal.n_pairs:,} impostor pairs from {cal.source}; saved {path}")
    for n in (100, 10_000, 1_000_000):
        print(f"  gallery of {n:>9,} faces: match at distance <= {cal.threshold_for_fpir(0.01, n):.3f} "
              "for 1% of strangers called a match")
    return 0


def cmd_serve(args) -> int:
    """The data folder's Chroma server, then the dashboard on top of it; the server stops
    when the dashboard does (Ctrl+C, SIGTERM, or the dashboard exiting)."""
    import signal
    import subprocess

    from store.server import die_with_parent, start_server

    s = _settings(args)
    srv = start_server(s, port=args.db_port)
    where = "already running, shared" if not srv.owned else "started"
    print(f"gallery database server {srv.url} ({where}; data {s.chroma_path})", file=sys.stderr, flush=True)

    def _stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    dash = None
    try:
        if args.no_dashboard:
            while srv.proc is None or srv.proc.poll() is None:
                time.sleep(1.0)
            return 0 if srv.proc is None else 1
        app = Path(__file__).resolve().parents[2] / "app.py"
        env = {**os.environ, "FACESEARCH_HOME": str(s.home)}
        dash = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
                                 *args.streamlit_args], env=env, cwd=str(app.parent),
                                preexec_fn=die_with_parent)
        return dash.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if dash is not None and dash.poll() is None:
            dash.terminate()
            try:
                dash.wait(20)
            except subprocess.TimeoutExpired:
                dash.kill()
        srv.stop()


def _out_prefix(given: str) -> Path:
    """``--out PREFIX`` (a trailing .json/.csv dropped), its folder created."""
    out = Path(given)
    if out.suffix.lower() in (".json", ".csv"):
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facesearch", description="Face similarity search over a ChromaDB gallery.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", help="embedding model (see 'facesearch models'); default $FACESEARCH_MODEL or sface")
    common.add_argument("--detector", help="face detector; default $FACESEARCH_DETECTOR or yunet")
    common.add_argument("--home", help="data folder; default $FACESEARCH_HOME or ./data")
    common.add_argument("--chroma-url", help="use a Chroma server (e.g. http://127.0.0.1:8000) instead of the local database")
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("ingest", parents=[common], help="add a labelled dataset to the gallery",
                       description="Formats: folders (NAME/*.jpg), celeba, lfw, fiw, csv (path,label). "
                                   "Resumes where an earlier run stopped.")
    a.add_argument("path")
    a.add_argument("--format", default="auto", choices=["auto", "folders", "celeba", "lfw", "fiw", "csv"])
    a.add_argument("--limit", type=int, help="only the first N photos")
    a.add_argument("--workers", type=int, help="worker processes for detection/embedding (default 1; with "
                   "--dask local, the LocalCluster's workers)")
    a.add_argument("--dask", metavar="local|tcp://HOST:8786",
                   help="detect and embed on a Dask cluster: a LocalCluster of processes, or a scheduler's address")
    a.add_argument("--all-faces", action="store_true", help="store every face of a photo, not only the largest")
    a.add_argument("--restart", action="store_true", help="forget which files earlier runs processed")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    a.add_argument("--verbose", "-v", action="store_true", help="list photos with no face")
    a.set_defaults(func=cmd_ingest)

    m = sub.add_parser("match", parents=[common], help="find every face of a photo in the gallery")
    m.add_argument("image")
    m.add_argument("-k", type=int, default=5, help="matches per face (default 5)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_match)

    v = sub.add_parser("verify", parents=[common], help="are two photos the same person?")
    v.add_argument("image1")
    v.add_argument("image2")
    v.add_argument("--exit-code", action="store_true", help="exit 3 when they are different people")
    v.set_defaults(func=cmd_verify)

    d = sub.add_parser("delete", parents=[common], help="erase a person: their faces in every gallery, thumbnails, "
                       "cached embeddings, ingest records and uploaded photos",
                       description="Right to erasure: every face labelled NAME in every gallery of the data folder, "
                                   "and everything derived from their photos; the database files are rewritten so "
                                   "no deleted vector stays in them.")
    d.add_argument("--identity", required=True, metavar="NAME")
    d.set_defaults(func=cmd_delete)

    ex = sub.add_parser("export", parents=[common], help="write the gallery (--model/--detector) to one archive file",
                        description="A zip with a manifest: vectors, metadata, thumbnails, model, detector and "
                                    "dimension. `facesearch restore FILE` reads it into another data folder.")
    ex.add_argument("file")
    ex.set_defaults(func=cmd_export)

    rs = sub.add_parser("restore", parents=[common], help="read a gallery archive (facesearch export) into this "
                        "data folder")
    rs.add_argument("file")
    rs.add_argument("--merge", action="store_true", help="add to a gallery that already has faces (default: refuse)")
    rs.set_defaults(func=cmd_restore)

    au = sub.add_parser("audit", parents=[common], help="the log of gallery changes: who, when, what, how many faces")
    au.add_argument("-n", type=int, default=50, help="the last N entries (default 50)")
    au.set_defaults(func=cmd_audit)

    sub.add_parser("models", parents=[common], help="list models and detectors, with weights status").set_defaults(func=cmd_models)

    st = sub.add_parser("stats", parents=[common], help="galleries and their sizes")
    st.add_argument("--identities", type=int, default=0, metavar="N", help="also list the N largest identities")
    st.set_defaults(func=cmd_stats)

    e = sub.add_parser("evaluate", parents=[common], help="compare models on a labelled dataset")
    e.add_argument("--dataset", required=True, choices=["fiw", "lfw", "folder", "master"],
                   help="fiw (kinship + same-person), lfw (pairs.txt protocol), folder (CelebA, NAME/*.jpg "
                        "or path,label csv: pairs + rank-1/5), master (deepface master.csv)")
    e.add_argument("path", nargs="?", help="dataset folder or pairs file (default: from ../shared/data)")
    e.add_argument("--models", help="comma-separated model names to compare (default: the --model one)")
    e.add_argument("--task", default=None, help="fiw: kinship | same-person (default both)")
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
    c.add_argument("--format", default="auto", choices=["auto", "folders", "celeba", "lfw", "fiw", "csv"])
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_calibrate)

    sv = sub.add_parser("serve", parents=[common], help="start the gallery's database server and the dashboard "
                        "(what `make run` does); every facesearch command then shares that server")
    sv.add_argument("--port", type=int, default=8501, help="the dashboard's port (default 8501)")
    sv.add_argument("--db-port", type=int, default=None, help="the database server's port (default: a free one)")
    sv.add_argument("--no-dashboard", action="store_true", help="only the database server, until Ctrl+C")
    sv.add_argument("streamlit_args", nargs="*", help="more `streamlit run` options, after --")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    from facesearch.models.weights import quiet_tensorflow

    quiet_tensorflow()  # before any command imports TensorFlow (DeepFace models, mtcnn)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FaceSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
