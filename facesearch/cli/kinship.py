"""Commands on relatives: ``relatives`` (the reunification search of a photo) and
``kinship-train`` (learn a model's kinship space from an FIW-layout folder)."""

from __future__ import annotations

import json
from pathlib import Path

from facesearch.cli.common import _settings, progress_bar


def cmd_relatives(args) -> int:
    from facesearch.kinship.search import find_relatives

    s = _settings(args)
    r = find_relatives(args.image, settings=s, families=args.families, wait_calibration=True)
    if args.json:
        out = []
        for f in r.faces:
            fm = f.person
            out.append({
                "face": fm.face.index, "box": list(fm.face.face.box),
                "person": {"verdict": fm.verdict, "identity": fm.best.identity if fm.best else None,
                           "distance": round(fm.best.distance, 4) if fm.best else None, "why": fm.sentence},
                "left_out": f.left_out,
                "families": [{"family": x.family.family, "score": round(x.family.score, 4),
                              "member": x.family.member, "kinship": round(x.kinship, 4), "band": x.band,
                              "unrelated_share": None if x.unrelated_share is None else round(x.unrelated_share, 4),
                              "related_share": None if x.related_share is None else round(x.related_share, 4),
                              "why": x.meaning} for x in f.families]})
        print(json.dumps({"faces": out, "families": r.n_families, "members": r.n_members, "scores": r.space},
                         indent=2))
        return 0
    print(f"{len(r.faces)} face(s) in {r.match.analysis.source}; {r.n_families} families, {r.n_members} members in the "
          f"gallery; scores: {r.space}.")
    for note in r.notes:
        print(note)
    for f in r.faces:
        fm = f.person
        x, y, w, h = fm.face.face.box
        print(f"\nface {fm.face.index + 1} at x={x} y={y} w={w} h={h}")
        print(f"  same person: {fm.sentence}")
        if f.left_out:
            print(f"  ({f.left_out} is this person: left out of the relatives)")
        for rank, fam in enumerate(f.families, 1):
            print(f"  {rank}. family {fam.family.family:<16} {fam.band:<20} {fam.meaning}")
    return 0


def cmd_kinship_train(args) -> int:
    from facesearch.kinship.training import train

    s = _settings(args)
    space, path = train(args.path, s.model, s, Path(args.out) if args.out else None,
                        training_only=not args.all_families, progress=progress_bar(args.quiet, stages=True))
    print(f"kinship space for {space.model} ({space.model_key}) from {space.source}: possible relative at kinship "
          f"score >= {space.possible:.3f}; written to {path}")
    return 0


def register(sub, common) -> None:
    r = sub.add_parser("relatives", parents=[common], help="which of the gallery's families could each face of a "
                       "photo belong to (and who it is)")
    r.add_argument("image")
    r.add_argument("--families", type=int, default=5, help="families shown per face (default 5)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_relatives)
    t = sub.add_parser("kinship-train", parents=[common], help="learn the model's kinship space from an FIW folder "
                       "(its training families only, unless --all-families)")
    t.add_argument("path", help="an FIW folder (train-faces/F*/MID*/ and train-pairs.csv)")
    t.add_argument("--all-families", action="store_true", help="fit on every family, held-out ones included")
    t.add_argument("--out", help="folder to write <model>.json to (default: the data folder's kinship/)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_kinship_train)
