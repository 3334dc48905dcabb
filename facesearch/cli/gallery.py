"""Commands on the gallery: ingest, match, verify, delete, export, restore, audit, models, stats.

``match`` and ``verify`` store nothing of the photos they are given, as on the dashboard
(facesearch.search.identify): the same rule everywhere, though a command-line user owns the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from facesearch.cli.common import _settings, add_worker_options, progress_bar
from facesearch.datasets.registry import FORMATS


def cmd_ingest(args) -> int:
    from facesearch.ingest.run import ingest

    s = _settings(args)
    fmt = args.format
    if args.families:
        if fmt not in ("auto", "families"):
            from facesearch.errors import ConfigError

            raise ConfigError(f"--families reads FAMILY/PERSON/*.jpg folders; it cannot go with --format {fmt}")
        fmt = "families"
    rep = ingest(args.path, fmt, settings=s, limit=args.limit, workers=args.workers,
                 all_faces=args.all_faces, progress=progress_bar(args.quiet), restart=args.restart, dask=args.dask,
                 waiting=lambda msg: print(msg, file=sys.stderr, flush=True))
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
    res = match(args.image, settings=s, k=args.k, wait_calibration=True)
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
    from facesearch.audit import read_audit

    for e in reversed(read_audit(_settings(args), limit=args.n)):
        rest = {k: v for k, v in e.items() if k not in ("at", "actor", "action", "faces", "op")}
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


# -- evaluate: tables of facesearch.evaluation's results --------------------------------


def register(sub, common: argparse.ArgumentParser) -> None:
    """This module's sub-commands, on ``sub`` (``common``: the options every command takes)."""
    a = sub.add_parser("ingest", parents=[common], help="add a labelled dataset to the gallery",
                       description="Formats: folders (NAME/*.jpg), celeba, lfw, fiw, csv (path,label[,family]), "
                                   "families (FAMILY/PERSON/*.jpg, with --families). "
                                   "Resumes where an earlier run stopped.")
    a.add_argument("path")
    a.add_argument("--format", default="auto", choices=["auto", *FORMATS])
    a.add_argument("--families", action="store_true",
                   help="the folder is FAMILY/PERSON/*.jpg: each person gets a family (format 'families'; never "
                        "detected, since PERSON/EVENT/*.jpg looks the same)")
    a.add_argument("--limit", type=int, help="only the first N photos")
    add_worker_options(a)
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
