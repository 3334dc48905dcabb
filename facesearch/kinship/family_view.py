"""The mom / dad / child question for one family of the gallery: each child's kinship score
with each parent beside the plain same-person similarity, and every pair of members.

Who is a parent of whom comes from the gallery's metadata ``parents`` (a child's
parents' identities joined by ``;``): FIW's ingest fills it from each family's
``mid.csv`` relationship matrix (:mod:`facesearch.datasets.fiw`), a CSV may give it as a
``parents`` column. An FIW gallery ingested before ``parents`` was kept has none: its
faces' paths lead to the family's ``mid.csv``, read instead while it is still there.
Where a family has no such record (a ``FAMILY/PERSON/`` folder), only the matrix of every
pair is given: the gallery does not say who is the parent, and guessing it from the
faces would be circular.

Each member is the normalised mean of its faces' unit vectors
(:func:`facesearch.kinship.space.member_means`); the same-person similarity is the
model's cosine between two members, the kinship score the cosine in the model's kinship
space (:func:`facesearch.kinship.space.load`), None for a model without one. No UI here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facesearch.datasets.fiw import PARENTS_SEP
from facesearch.errors import ConfigError
from facesearch.kinship import space as KS
from facesearch.settings import Settings, get_settings

PARENTS_KEY = "parents"

# What the measurements support (held-out FIW families, the fixed even/odd split of
# facesearch.kinship.space.held_out; docs/BENCHMARKS.md, "Relatives").
CAVEAT = ("A kinship score is a likelihood, not proof. On FIW families held out from every choice, kin and "
          "matched unrelated pairs are told apart with ROC AUC 0.835 by the kinship score and 0.810 by the plain "
          "same-person similarity; for parent and child 0.78 (father-daughter), 0.81 (father-son), 0.85 "
          "(mother-son) and 0.87 (mother-daughter); grandparents near chance. A child scoring closer to one "
          "parent resembles that parent more in this model's eyes: it does not make the child more related to "
          "that parent, nor the other parent less a parent.")
# ROC AUC on held-out parent-child pairs, by FIW relation (for the words beside each pair).
RELATION_AUC = {"fd": 0.78, "fs": 0.81, "ms": 0.85, "md": 0.87}


@dataclass
class ParentChild:
    """One child and one of its parents: ``relation`` as FIW writes it (``"fd"``:
    father-daughter, ...; ``"parent-child"`` when a gender is unknown)."""

    child: str
    parent: str
    relation: str
    kinship: float | None
    same_person: float

    @property
    def role(self) -> str:
        """The parent's role in words: father, mother or parent."""
        return {"f": "father", "m": "mother"}.get(self.relation[:1], "parent") if len(self.relation) == 2 else "parent"

    @property
    def auc(self) -> float | None:
        return RELATION_AUC.get(self.relation)


@dataclass
class FamilyView:
    """One family: ``members`` (sorted identities with faces), ``faces`` per member,
    ``names`` (member -> name from the metadata, if any), ``same_person`` and ``kinship``
    ``(u, u)`` cosine matrices over ``members`` (``kinship`` None without a kinship
    space), the ``parent_child`` pairs the gallery records, and ``space``: what the
    kinship scores rest on, in words."""

    family: str
    members: list[str]
    faces: dict[str, int]
    face_ids: dict[str, str]  # member -> one of its faces (for a thumbnail)
    names: dict[str, str]
    genders: dict[str, str]
    same_person: np.ndarray
    kinship: np.ndarray | None
    parent_child: list[ParentChild] = field(default_factory=list)
    space: str = ""
    caveat: str = CAVEAT

    @property
    def children(self) -> list[str]:
        return sorted({p.child for p in self.parent_child})

    def pairs(self) -> list[tuple[str, str, str, float | None, float]]:
        """Every pair of members ``(a, b, relation, kinship, same_person)``, kinship
        highest first (relation ``""`` unless the gallery records one)."""
        out = []
        for i, a in enumerate(self.members):
            for j in range(i + 1, len(self.members)):
                b = self.members[j]
                r = ""
                if any(p.parent == a and p.child == b for p in self.parent_child):
                    r = f"{a} is {_role(self.genders.get(a))} of {b}"
                elif any(p.parent == b and p.child == a for p in self.parent_child):
                    r = f"{b} is {_role(self.genders.get(b))} of {a}"
                k = float(self.kinship[i, j]) if self.kinship is not None else None
                out.append((a, b, r, k, float(self.same_person[i, j])))
        out.sort(key=lambda t: (-(t[3] if t[3] is not None else t[4]), t[0], t[1]))
        return out


def _role(gender: str | None) -> str:
    return {"m": "father", "f": "mother"}.get(gender or "", "parent")


def _fiw_parents(family: str, mds: list[dict]) -> dict[str, list[str]]:
    """Parents from the ``mid.csv`` beside an FIW family's member folders
    (``.../F0001/MID3/photo.jpg`` -> ``.../F0001/mid.csv``), if it is still there."""
    from pathlib import Path

    from facesearch.datasets.base import disk_path
    from facesearch.datasets.fiw import read_parents
    from facesearch.errors import DatasetError

    for md in mds:
        if not md.get("path") or not md.get("member"):
            continue
        mid_csv = Path(disk_path(str(md["path"]))).parent.parent / "mid.csv"
        if mid_csv.parent.name == family and mid_csv.is_file():
            try:
                return read_parents(mid_csv, family)
            except DatasetError:
                return {}
    return {}


def families(gallery) -> dict[str, int]:
    """Family -> number of members (identities) in the gallery, largest first; empty when
    no face has a family."""
    members: dict[str, set[str]] = {}
    for _, md in gallery.iter_metadata():
        md = md or {}
        if md.get("family") and md.get("identity"):
            members.setdefault(str(md["family"]), set()).add(str(md["identity"]))
    return dict(sorted(((f, len(m)) for f, m in members.items()), key=lambda kv: (-kv[1], kv[0])))


def family_view(gallery, family: str, settings: Settings | None = None, model_key: str | None = None) -> FamilyView:
    """The members of ``family`` in ``gallery`` with their pairwise scores. ``model_key``:
    the gallery's model version (default: read from the model registry, no weights
    loaded), checked against the kinship space's. Raises ConfigError for a family the
    gallery does not have."""
    from facesearch.models.registry import get_model

    settings = settings or get_settings()
    got = gallery.get(where={"family": family}, embeddings=True)
    mds = [md or {} for md in got.get("metadatas") or []]
    ids = list(got.get("ids") or [])
    keep = [i for i, md in enumerate(mds) if md.get("identity")]
    if not keep:
        raise ConfigError(f"the gallery has no family {family!r}")
    x = got["embeddings"][keep]
    idents = [str(mds[i]["identity"]) for i in keep]
    members, m = KS.member_means(x, idents)
    faces = {n: idents.count(n) for n in members}
    first, face_ids = {}, {}
    for i in keep:
        first.setdefault(str(mds[i]["identity"]), mds[i])
        face_ids.setdefault(str(mds[i]["identity"]), str(ids[i]))
    names = {n: str(first[n]["name"]) for n in members if first[n].get("name")}
    genders = {n: str(first[n]["gender"]).lower() for n in members if first[n].get("gender")}
    same = m @ m.T
    sp = KS.load(gallery.model, settings)
    kin = None
    if sp is not None:
        sp.check(model_key or get_model(gallery.model, settings).key)
        z = sp.project(m)
        kin = z @ z.T
    pos = {n: i for i, n in enumerate(members)}
    parents = {n: sorted({p.strip() for p in str(first[n].get(PARENTS_KEY, "")).split(PARENTS_SEP)} - {""})
               for n in members}
    if not any(parents.values()):
        parents.update(_fiw_parents(family, [first[n] for n in members]))
    pcs = []
    for child in members:
        for parent in parents.get(child, []):
            if parent not in pos or parent == child:
                continue  # a parent with no face here (or none recorded)
            i, j = pos[parent], pos[child]
            g_p, g_c = genders.get(parent), genders.get(child)
            rel = (f"{'f' if g_p == 'm' else 'm'}{'s' if g_c == 'm' else 'd'}"
                   if g_p in ("m", "f") and g_c in ("m", "f") else "parent-child")
            pcs.append(ParentChild(child, parent, rel, float(kin[i, j]) if kin is not None else None,
                                   float(same[i, j])))
    said = (f"kinship space of {sp.model} learned on {sp.source}" if sp is not None else
            f"no kinship space for {gallery.model}: only the same-person similarity is shown")
    return FamilyView(family, members, faces, face_ids, names, genders, same, kin, pcs, said)
