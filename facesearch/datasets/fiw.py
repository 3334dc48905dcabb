"""Families in the Wild: ``ROOT/train-faces/F0001/MID1/*.jpg``, a ``mid.csv`` per family
(name, gender, the relationship matrix: a child's ``parents`` are kept in ``extra``) and
``train-pairs.csv`` (kin pairs ``p1,p2,ptype``).

:func:`fiw_same_person_pairs` samples same-person photo pairs of FIW members;
:func:`fiw_kin_pairs` returns :class:`MemberPair` records between *members*
(``"F0001/MID1"``), not photos. The positives are the kin pairs of ``train-pairs.csv``
whose two members both have photos; the negatives pair members of *different*
families and are matched to each positive's relation: same relation group
(parent-child, siblings, grandparent-grandchild), the elder side drawn from members
who are the elder (``p1``) in some pair of that group and the younger side from the
younger (``p2``), and the same genders as the positive's two members. Without this
matching a model could separate kin from non-kin by age gap or gender alone.

How a member pair is scored (done by the evaluation code, not here): each member is
represented by the mean of the unit-normalised embeddings of all of that member's
photos (re-normalised), and the pair's distance is the cosine distance between the
two members' mean vectors. This costs one embedding per photo plus O(members) work,
instead of the O(photos_a x photos_b) comparisons of scoring every photo pair (FIW
members have up to hundreds of photos, so the full photo-pair set of ``train-pairs.csv``
is tens of thousands of comparisons even on this slice), and one blurred or
mis-detected photo moves the mean a little instead of producing an outlier
pair score.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.datasets.base import (
    LabeledImage, MemberPair, Pair, _check_count, _csv_rows, _image_names, _need_folder, _rng, _subdirs,
)
from facesearch.datasets.pairs import _unrank_pairs
from facesearch.errors import DatasetError

log = logging.getLogger(__name__)

_FIW_FACES_DIR = "train-faces"
_FIW_PAIRS_FILE = "train-pairs.csv"
_MID_RE = re.compile(r"^MID\d+$", re.IGNORECASE)
# mid.csv's relationship codes: 1 child, 2 sibling, 3 grandchild, 4 parent, 5 spouse,
# 6 grandparent, 7 great-grandchild, 8 great-grandparent.
_PARENT_CODE = "4"
# A member's parents in ``extra``/the gallery's metadata (``"parents"``): their
# identities joined by this (FIW ids hold none).
PARENTS_SEP = ";"


def is_layout(root: Path) -> bool:
    return _fiw_faces_dir(root) is not None


def _fiw_faces_dir(root: Path) -> Path | None:
    if (root / _FIW_FACES_DIR).is_dir():
        return root / _FIW_FACES_DIR
    if root.name == _FIW_FACES_DIR:
        return root
    # A folder of families under another name: F0001/ holding MID1/ (or a mid.csv).
    for fam in _subdirs(root)[:5]:
        if re.fullmatch(r"F\d+", fam) and (
            (root / fam / "mid.csv").is_file() or any(_MID_RE.match(s) for s in _subdirs(root / fam))
        ):
            return root
    return None


@dataclass(frozen=True)
class _FiwIndex:
    faces_dir: Path
    photos: dict[str, list[Path]]  # member id -> sorted photos (members with >= 1 photo)
    info: dict[str, dict[str, str]]  # member id -> {"name": ..., "gender": ...} from mid.csv


def _read_mid_csv(path: Path, family: str) -> dict[str, dict[str, str]]:
    header, rows = _csv_rows(path)
    if "mid" not in header:
        raise DatasetError(f"{path}: expected a 'MID' column in the header, got {header}")
    out: dict[str, dict[str, str]] = {}
    parents: dict[str, list[str]] = defaultdict(list)
    matrix = [h for h in header if h.isdigit()]
    for lineno, row in rows:
        mid = row.get("mid", "")
        if not mid.isdigit():
            raise DatasetError(f"{path}:{lineno}: MID must be a number, got {mid!r}")
        info = {}
        if row.get("name"):
            info["name"] = row["name"]
        if row.get("gender"):
            info["gender"] = row["gender"].lower()
        me = f"{family}/MID{int(mid)}"
        out[me] = info
        # The relationship matrix: row i, column j holds what i is to j; 4 = parent (on
        # the shared slice every fs/fd/ms/md pair of train-pairs.csv is one of these).
        for col in matrix:
            if row.get(col) == _PARENT_CODE and int(col) != int(mid):
                parents[f"{family}/MID{int(col)}"].append(me)
    for child, who in parents.items():
        out.setdefault(child, {})["parents"] = PARENTS_SEP.join(sorted(set(who)))
    return out


def read_parents(mid_csv: str | Path, family: str) -> dict[str, list[str]]:
    """Child member (``"F0001/MID3"``) -> its parents' member ids, from one family's
    ``mid.csv`` relationship matrix."""
    info = _read_mid_csv(Path(mid_csv), family)
    return {m: i["parents"].split(PARENTS_SEP) for m, i in info.items() if i.get("parents")}


def _fiw_index(root: str | Path) -> _FiwIndex:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    faces = _fiw_faces_dir(root)
    if faces is None:
        raise DatasetError(f"{root}: not an FIW folder (no {_FIW_FACES_DIR}/ with F*/MID*/ inside).")
    photos: dict[str, list[Path]] = {}
    info: dict[str, dict[str, str]] = {}
    for fam in _subdirs(faces):
        fam_dir = faces / fam
        if (fam_dir / "mid.csv").is_file():
            info.update(_read_mid_csv(fam_dir / "mid.csv", fam))
        for mid in _subdirs(fam_dir):
            # Other folders (e.g. "unrelated_and_nonfaces" in the full release) are not members.
            if not _MID_RE.match(mid):
                continue
            names = _image_names(fam_dir / mid)
            if names:
                photos[f"{fam}/MID{int(mid[3:])}"] = [fam_dir / mid / n for n in names]
    if not photos:
        raise DatasetError(f"{faces}: no member photos found (expected F*/MID*/<photo>.jpg)")
    return _FiwIndex(faces, photos, info)


def load(root: Path, limit: int | None = None) -> list[LabeledImage]:
    _need_folder(root, "fiw")
    idx = _fiw_index(root)
    out: list[LabeledImage] = []
    for member_id, paths in idx.photos.items():
        family, member = member_id.split("/", 1)
        meta = idx.info.get(member_id, {})
        extra = tuple((k, meta[k]) for k in ("name", "gender", "parents") if k in meta)
        out.extend(
            LabeledImage(path=p, identity=member_id, family=family, member=member, extra=extra)
            for p in paths
        )
    return out


def fiw_members(root: str | Path) -> dict[str, list[Path]]:
    """Member id (``"F0001/MID1"``) -> sorted photo paths, for members with photos.

    ``root`` is the FIW folder holding ``train-faces/``, or ``train-faces/`` itself.
    """
    return dict(_fiw_index(root).photos)


# Relation groups: negatives are matched within a group, elder (p1) vs younger (p2).
_PARENT = {"fs": ("m", "m"), "fd": ("m", "f"), "ms": ("f", "m"), "md": ("f", "f")}
_GRAND = {"gfgs": ("m", "m"), "gfgd": ("m", "f"), "gmgs": ("f", "m"), "gmgd": ("f", "f")}
_SIBLING = {"bb": ("m", "m"), "ss": ("f", "f"), "sibs": (None, None)}


def _relation_group(ptype: str) -> str:
    if ptype in _PARENT:
        return "parent-child"
    if ptype in _SIBLING:
        return "siblings"
    if ptype in _GRAND:
        return "grandparent"
    # Unknown types (e.g. great-grandparents in other releases) form their own group.
    return ptype


def _implied_genders(ptype: str) -> tuple[str | None, str | None]:
    return {**_PARENT, **_GRAND, **_SIBLING}.get(ptype, (None, None))


def _fits_genders(ptype: str, g1: str | None, g2: str | None) -> bool:
    """Whether known genders ``g1``/``g2`` agree with the type (``sibs``: one of each)."""
    if g1 is None or g2 is None:
        return False
    if ptype == "sibs":
        return g1 != g2
    return _implied_genders(ptype) == (g1, g2)


def _fiw_pairs_path(idx: _FiwIndex, root: Path, pairs_file: str | Path | None) -> Path:
    if pairs_file is not None:
        pf = Path(pairs_file).expanduser()
        if not pf.is_file():
            raise DatasetError(f"{pf}: no such FIW pairs file")
        return pf
    for cand in (root / _FIW_PAIRS_FILE, idx.faces_dir.parent / _FIW_PAIRS_FILE):
        if cand.is_file():
            return cand
    raise DatasetError(f"{root}: {_FIW_PAIRS_FILE} not found beside {idx.faces_dir.name}/")


def _member_id(raw: str) -> str:
    fam, _, mid = raw.strip().replace("\\", "/").partition("/")
    if not mid or not _MID_RE.match(mid):
        return raw.strip()
    return f"{fam}/MID{int(mid[3:])}"


def _fiw_positives(idx: _FiwIndex, pf: Path) -> list[tuple[str, str, str]]:
    """Kin pairs ``(p1, p2, ptype)`` with photos on both sides, one per member pair, sorted."""
    header, rows = _csv_rows(pf)
    if "p1" not in header or "p2" not in header:
        raise DatasetError(f"{pf}: expected columns p1,p2,ptype in the header, got {header}")
    listed: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    skipped = 0
    for _, row in rows:
        p1, p2 = _member_id(row.get("p1", "")), _member_id(row.get("p2", ""))
        ptype = row.get("ptype", "").lower() or "kin"
        if p1 == p2 or p1 not in idx.photos or p2 not in idx.photos:
            skipped += 1
            continue
        listed[(min(p1, p2), max(p1, p2))].append((p1, p2, ptype))
    if skipped:
        log.info("%s: %d kin pairs skipped (a member has no photos here, or p1 == p2)", pf, skipped)

    out: list[tuple[str, str, str]] = []
    for key in sorted(listed):
        cands = sorted(set(listed[key]), key=lambda t: t[2])
        # RFIW lists every sibling pair once as "bb" AND once as "ss" (plus "sibs" when
        # mixed): keep one row per member pair, the type that fits the members' genders.
        fitting = [c for c in cands if _fits_genders(c[2], _gender(idx, c[0]), _gender(idx, c[1]))]
        out.append((fitting or cands)[0])
    return out


def fiw_kin_pairs(
    root: str | Path,
    seed: int = 0,
    negatives_per_positive: int = 1,
    pairs_file: str | Path | None = None,
) -> list[MemberPair]:
    """Kin (positive) and matched non-kin (negative) member pairs for FIW.

    Positives: the rows of ``train-pairs.csv`` (or ``pairs_file``) whose two members
    both have photos, one per member pair; where a pair is listed under several types
    (RFIW repeats each sibling pair as ``bb`` and ``ss``), the type that agrees with
    the genders in ``mid.csv`` is kept.

    Negatives: ``negatives_per_positive`` per positive, two members of different
    families, matched to that positive:

    1. same relation group (parent-child / siblings / grandparent; other types each form
       their own group); the first member is drawn from members that are the elder
       (``p1``) in some positive of the group, the second from the younger ones
       (``p2``); siblings draw both from all members of sibling pairs;
    2. the same genders as the positive's members per ``mid.csv`` (in this release the
       letters of the grandparent types disagree with ``mid.csv``, so the recorded
       genders win), falling back to the genders the type implies (``fd``: m, f);
    3. relaxations, in order, when no candidate exists: any gender within the group's
       roles, then any two members with photos from different families.

    No negative repeats (in either order). Positives come first (sorted), then the
    negatives; each negative's ``kind`` is its positive's type. Deterministic for a seed.
    """
    n_neg = _check_count(negatives_per_positive, "negatives_per_positive")
    rng = _rng(seed)
    root = Path(root).expanduser()
    idx = _fiw_index(root)
    positives = _fiw_positives(idx, _fiw_pairs_path(idx, root, pairs_file))
    if not positives:
        raise DatasetError(f"{root}: no kin pair has photos of both members")
    out = [MemberPair(a=a, b=b, same=True, kind=t) for a, b, t in positives]
    if n_neg == 0:
        return out
    return out + _matched_negatives(idx, positives, n_neg, rng)


def _gender(idx: _FiwIndex, member: str) -> str | None:
    """``"m"`` or ``"f"`` as ``mid.csv`` records it; None when it is missing or anything else."""
    g = idx.info.get(member, {}).get("gender")
    return g if g in ("m", "f") else None


def _family(member: str) -> str:
    return member.split("/", 1)[0]


def _matched_negatives(
    idx: _FiwIndex, positives: list[tuple[str, str, str]], n_neg: int, rng: np.random.Generator
) -> list[MemberPair]:
    """``n_neg`` negatives per positive, each matched to it (see :func:`fiw_kin_pairs`)."""
    pools = _role_pools(idx, positives)
    everyone = sorted(idx.photos)
    used: set[tuple[str, str]] = set()
    negatives: list[MemberPair] = []
    for a, b, t in positives:
        stages = _candidate_stages(idx, (a, b, t), pools, everyone)
        for _ in range(n_neg):
            pair = _draw_cross_family(stages, used, rng)
            if pair is None:
                log.info("fiw_kin_pairs: no unused cross-family negative left for %s-%s", a, b)
                continue
            used.add((min(pair), max(pair)))
            negatives.append(MemberPair(a=pair[0], b=pair[1], same=False, kind=t))
    return negatives


def _role_pools(idx: _FiwIndex, positives: list[tuple[str, str, str]]) -> dict[tuple[str, int, str | None], list[str]]:
    """Candidate members (sorted) per (relation group, role, gender); role 0 = elder, 1 =
    younger; gender ``"*"`` pools every gender. Siblings fill both roles."""
    pools: dict[tuple[str, int, str | None], set[str]] = defaultdict(set)
    for a, b, t in positives:
        grp = _relation_group(t)
        for role, m in ((0, a), (1, b)):
            roles = (0, 1) if grp == "siblings" else (role,)
            for r in roles:
                pools[(grp, r, _gender(idx, m))].add(m)
                pools[(grp, r, "*")].add(m)
    return {k: sorted(v) for k, v in pools.items()}


def _candidate_stages(
    idx: _FiwIndex,
    positive: tuple[str, str, str],
    pools: dict[tuple[str, int, str | None], list[str]],
    everyone: list[str],
) -> list[tuple[list[str], list[str]]]:
    """(elders, youngers) to draw a negative for ``positive`` from, strictest first: the
    group's roles with the positive's genders, the group's roles, any two members."""
    a, b, t = positive
    grp = _relation_group(t)
    implied = _implied_genders(t)
    ga, gb = _gender(idx, a) or implied[0], _gender(idx, b) or implied[1]
    return [
        (
            pools.get((grp, 0, ga), []) if ga else [],
            pools.get((grp, 1, gb), []) if gb else [],
        ),
        (pools.get((grp, 0, "*"), []), pools.get((grp, 1, "*"), [])),
        (everyone, everyone),
    ]


def _draw_cross_family(
    stages: list[tuple[list[str], list[str]]], used: set[tuple[str, str]], rng: np.random.Generator
) -> tuple[str, str] | None:
    """An (elder, younger) pair of members of different families, not in ``used`` (in
    either order), from the first stage that yields one; None when none does."""
    for elders, youngers in stages:
        if not elders or not youngers:
            continue
        # Rejection sampling: few candidates share a family, so a handful of
        # tries almost always succeeds; the cap only guards tiny pools.
        for _try in range(64):
            x = elders[int(rng.integers(len(elders)))]
            y = youngers[int(rng.integers(len(youngers)))]
            if _family(x) != _family(y) and (min(x, y), max(x, y)) not in used:
                return x, y
    return None


def fiw_same_person_pairs(root: str | Path, seed: int = 0, max_per_member: int | None = 3) -> list[Pair]:
    """Same-person photo pairs of FIW members and as many cross-family negatives.

    Positives: up to ``max_per_member`` distinct photo pairs of each member with at
    least two photos (``None``: all of them), drawn uniformly. Negatives: for each
    positive, its first photo against a random photo of a random member of another
    family (different families, so certainly different people, while keeping each
    member's share of the negatives equal to its share of the positives). Positives
    come first; ``kind`` is ``"same"`` / ``"different"``. Deterministic for a seed.
    """
    if max_per_member is not None:
        max_per_member = _check_count(max_per_member, "max_per_member")
    rng = _rng(seed)
    idx = _fiw_index(root)
    members = sorted(idx.photos)
    positives: list[Pair] = []
    for m in members:
        photos = idx.photos[m]
        cap = len(photos) * (len(photos) - 1) // 2
        q = cap if max_per_member is None else min(cap, max_per_member)
        if q == 0:
            continue
        i, j = _unrank_pairs(np.sort(rng.choice(cap, size=q, replace=False)))
        positives.extend(Pair(a=photos[x], b=photos[y], same=True, kind="same") for x, y in zip(i, j))
    if len({_family(m) for m in members}) < 2:
        raise DatasetError(f"{root}: negatives need members of at least two families")

    by_path = {p: m for m in members for p in idx.photos[m]}
    seen: set[tuple[Path, Path]] = set()
    negatives: list[Pair] = []
    for pos in positives:
        fam = _family(by_path[pos.a])
        for _try in range(64):
            other = members[int(rng.integers(len(members)))]
            if _family(other) == fam:
                continue
            photos = idx.photos[other]
            b = photos[int(rng.integers(len(photos)))]
            key = (min(pos.a, b), max(pos.a, b))
            if key not in seen:
                seen.add(key)
                negatives.append(Pair(a=pos.a, b=b, same=False, kind="different"))
                break
    return positives + negatives
