"""``facesearch people``: the people of a photo library (``facesearch ingest PATH --format photos``).

``list``, ``show ID``, ``photos ID``, ``waiting`` (the faces in no person yet), ``name ID
--name NAME``, ``merge ID ID... [--name NAME]``, ``move --face FACE... --to ID`` (or
``--out``: not this person), ``new --face FACE...`` (a new person of them), ``regroup``; ``--json`` for a
program. Names are printed as text (JSON escapes them; the terminal gets them with
control characters refused by the label rule when they were set).
"""

from __future__ import annotations

import argparse
import json

from facesearch.cli.common import _settings


def _gallery(args):
    from store import FaceGallery
    from facesearch.models.registry import get_model

    s = _settings(args)
    emb = get_model(s.model, s)
    return FaceGallery(emb.name, emb.dim, s.detector, s, create=False)


def _person(p) -> dict:
    return {"id": p.id, "name": p.name, "faces": p.faces, "photos": p.photos, "cover": p.cover}


def _face(f) -> dict:
    return {"face": f.face_id, "photo": f.photo, "path": f.path, "box": list(f.box), "quality": f.quality or None,
            "pinned": f.pinned}


def _line(p) -> str:
    return f"{p.id:>6}  {p.name if p.name is not None else 'Unnamed':<30} {p.faces:>5} faces {p.photos:>5} photos"


def cmd_people(args) -> int:
    from facesearch.people import service as S

    g = _gallery(args)
    act = args.action
    out = None
    if act == "list":
        people = S.list_people(g, min_faces=args.min_faces)
        if args.json:
            # Every face of every person (and the waiting ones): what an evaluation compares.
            out = {"people": [{**_person(p), "faces_ids": [f.face_id for f in S.show_person(g, p.id).faces],
                               "paths": [f.path for f in S.show_person(g, p.id).faces]} for p in people]
                   if args.with_faces else [_person(p) for p in people]}
        else:
            print(f"{len(people)} people with {args.min_faces}+ faces, most faces first")
            for p in people:
                print(_line(p))
    elif act == "show":
        v = S.show_person(g, args.ids[0])
        if args.json:
            out = {**_person(v.person), "faces": [_face(f) for f in v.faces]}
        else:
            print(_line(v.person))
            for f in v.faces:
                print(f"  {f.face_id}  {f.path}  box {','.join(map(str, f.box))}" + ("  (placed by you)" if f.pinned else "")
                      + (f"  [{f.quality}]" if f.quality else ""))
    elif act == "photos":
        photos = S.person_photos(g, args.ids[0])
        if args.json:
            out = [{"photo": ph.photo, "path": ph.path, "face": _face(ph.face),
                    "others": [{"face": _face(f), "person": _person(p) if p else None} for f, p in ph.others]}
                   for ph in photos]
        else:
            for ph in photos:
                others = ", ".join((p.name if p and p.name is not None else ("Unnamed" if p else "no person"))
                                   for _, p in ph.others)
                print(f"{ph.path}" + (f"  with: {others}" if others else ""))
    elif act == "waiting":
        faces = S.waiting_faces(g)
        if args.json:
            out = {"waiting": [_face(f) for f in faces]}
        else:
            print(f"{len(faces)} faces waiting for a person (move them with 'move --face FACE --to PERSON' "
                  "or make one with 'new --face FACE ...')")
            for f in faces:
                print(f"  {f.face_id}  {f.path}  box {','.join(map(str, f.box))}"
                      + (f"  [{f.quality}]" if f.quality else ""))
    elif act == "new":
        if not args.faces:
            raise _usage("new: give the faces with --face FACE (repeat)")
        out = _person(S.new_person(g, args.faces, args.name))
    elif act == "name":
        if len(args.ids) != 1 or args.name is None:
            raise _usage("name: give one person id and --name NAME")
        out = _person(S.name_person(g, args.ids[0], args.name))
    elif act == "merge":
        out = _person(S.merge_people(g, args.ids, args.name))
    elif act == "move":
        if (args.to is None) == (not args.out):
            raise _usage("move: give --to PERSON or --out (not this person)")
        p = S.move_faces(g, args.faces, None if args.out else args.to)
        out = {"moved": len(args.faces), "to": _person(p) if p else None}
    elif act == "regroup":
        out = {"summary": S.regroup(g).summary()}
    if out is not None:
        if args.json:
            print(json.dumps(out, ensure_ascii=False, indent=1))
        elif act not in ("list", "show", "photos", "waiting"):
            print(out["summary"] if "summary" in out else json.dumps(out, ensure_ascii=False))
    return 0


def _usage(msg: str):
    from facesearch.errors import ConfigError

    return ConfigError(msg)


def register(sub, common: argparse.ArgumentParser) -> None:
    """This module's sub-commands, on ``sub`` (``common``: the options every command takes)."""
    p = sub.add_parser("people", parents=[common], help="the people found in a photo library: list, show, waiting, "
                       "name, merge, move, new",
                       description="People grouped from the faces of photo libraries (facesearch ingest PATH "
                                   "--format photos). Changes are remembered and survive a regroup.")
    p.add_argument("action", nargs="?", default="list", choices=["list", "show", "photos", "waiting", "name", "merge",
                                                                 "move", "new", "regroup"])
    p.add_argument("ids", nargs="*", type=int, metavar="PERSON", help="person ids (show, photos, name, merge)")
    p.add_argument("--name", help="the name to give (name, merge, new)")
    p.add_argument("--face", dest="faces", action="append", default=[], metavar="FACE",
                   help="a face id to move, or of the new person (repeat)")
    p.add_argument("--to", type=int, metavar="PERSON", help="move: the person the faces go to")
    p.add_argument("--out", action="store_true", help="move: take the faces out of their person (not this person)")
    p.add_argument("--min-faces", type=int, default=2, help="list: hide people with fewer faces (default 2)")
    p.add_argument("--faces", dest="with_faces", action="store_true",
                   help="list --json: every person's face ids and photo paths")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_people)
