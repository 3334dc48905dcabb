"""Command line: ``facesearch ingest|match|verify|models|stats|evaluate|calibrate|serve``.

User mistakes (a FaceSearchError) print one line to stderr and exit non-zero; only bugs
show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import FaceSearchError
from .settings import Settings, get_settings


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


class _Bar:
    """A one-line progress bar on stderr (no dependency, fine in CI logs)."""

    def __init__(self, quiet: bool):
        self.quiet, self.t0, self.last = quiet, time.perf_counter(), 0.0

    def __call__(self, done: int, total: int, path: str):
        if self.quiet:
            return
        now = time.perf_counter()
        if now - self.last < 0.5 and done < total:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        width = 30
        fill = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {rate:.1f}/s {Path(path).name[:30]:<30}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_ingest(args) -> int:
    from .ingest import ingest

    s = _settings(args)
    rep = ingest(args.path, args.format, settings=s, limit=args.limit, workers=args.workers,
                 all_faces=args.all_faces, progress=_Bar(args.quiet), restart=args.restart, dask=args.dask)
    for p, reason in rep.failed:
        print(f"skipped {p}: {reason}", file=sys.stderr)
    if args.verbose:
        for p in rep.no_face:
            print(f"skipped {p}: no face detected", file=sys.stderr)
    print(rep.summary())
    return 0


def cmd_match(args) -> int:
    from .search import match

    s = _settings(args)
    res = match(args.image, settings=s, k=args.k)
    if args.json:
        out = [{"face": fm.face.index, "box": list(fm.face.face.box), "verdict": fm.verdict,
                "best": fm.best.identity if fm.best else None, "quality": fm.quality_reason,
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
        print(f"\nface {fm.face.index + 1} at x={x} y={y} w={w} h={h}: {fm.verdict}"
              + (f" ({fm.quality_reason})" if fm.quality_reason else ""))
        for rank, ident in enumerate(fm.identities[: args.k], 1):
            print(f"  {rank}. {ident.identity:<30} similarity {ident.similarity:.3f}  distance {ident.distance:.3f}  "
                  f"{ident.verdict}  ({ident.n_hits} of top {len(fm.hits) * 3} faces)")
    return 0


def cmd_verify(args) -> int:
    from .search import verify

    s = _settings(args)
    r = verify(args.image1, args.image2, settings=s)
    word = "SAME person" if r.same else "DIFFERENT people"
    print(f"{word}: distance {r.distance:.4f} vs threshold {r.threshold:.4f} ({r.model}; {r.verdict}; "
          f"similarity {r.similarity:.4f})")
    return 0 if r.same or not args.exit_code else 3


def cmd_models(args) -> int:
    from .detection import DETECTORS, detector_status
    from .models import list_models
    from .calibration import load as load_calibration
    from .thresholds import target_fpir, verify_threshold

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


def cmd_evaluate(args) -> int:
    try:
        from .evaluate import cli_evaluate
    except ImportError:
        raise FaceSearchError("evaluation is not available in this build") from None
    return cli_evaluate(args, _settings(args))


def cmd_calibrate(args) -> int:
    from .calibration import calibrate

    s = _settings(args)
    cal, path = calibrate(args.path, args.format, s.model, s, progress=_Bar(args.quiet))
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
        app = Path(__file__).resolve().parent.parent / "app.py"
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

    sub.add_parser("models", parents=[common], help="list models and detectors, with weights status").set_defaults(func=cmd_models)

    st = sub.add_parser("stats", parents=[common], help="galleries and their sizes")
    st.add_argument("--identities", type=int, default=0, metavar="N", help="also list the N largest identities")
    st.set_defaults(func=cmd_stats)

    e = sub.add_parser("evaluate", parents=[common], help="compare models on a labelled dataset")
    e.add_argument("--dataset", required=True, choices=["fiw", "lfw", "folder", "master"],
                   help="fiw (kinship + same-person), lfw (pairs.txt protocol), folder (CelebA, NAME/*.jpg "
                        "or path,label csv: pairs + rank-1/5), master (deepface master.csv)")
    e.add_argument("path", nargs="?", help="dataset folder or pairs file (default: from ../shared/data)")
    e.add_argument("--models", default="dlib,facenet-casia", help="comma-separated model names")
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
    e.add_argument("--apply", metavar="MODEL", help="use this evaluation for MODEL: save its 1:1 verify threshold "
                   "(same-person task unless --task kinship) and its search target FPIR (--target-fpir)")
    e.add_argument("--apply-at", choices=["f1", "precision", "fmr"], default="f1",
                   help="which 1:1 threshold --apply saves: best F1 (default), target precision or target FMR")
    e.add_argument("--open-set", action="store_true",
                   help="folder/lfw: open-set identification (1:N search): half the people enrolled, the other "
                        "photos searched; FPIR, FNIR, FNIR@FPIR, rank-1/5 and FPIR against gallery size")
    e.add_argument("--enroll", type=int, default=1, metavar="K",
                   help="--open-set: photos enrolled per identity (default 1)")
    e.add_argument("--max-identities", type=int, metavar="N",
                   help="--open-set: use a seeded random subset of N identities")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
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
