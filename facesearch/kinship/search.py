"""The reunification search: for each face of a photo, who in the gallery it is (the one
search path, :func:`facesearch.search.identify.match`) and, apart from that, which of
the gallery's families it could belong to.

Families come from the gallery's faces (``family`` in their metadata: FIW's layout, a
``FAMILY/PERSON/`` folder or a CSV ``family`` column). Each family is scored by
:class:`facesearch.kinship.retrieval.FamilyIndex` in the model's kinship space; the
person the face *is* (its best identity when that is a ``match``) is left out of its
own family's members, since nobody is their own relative. A family is a "possible
relative" (never a "match") when its best member's kinship score is one that at most
:data:`~facesearch.kinship.space.POSSIBLE_FMR` of matched unrelated pairs reach; the
words say how often unrelated pairs and relatives score that high.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from facesearch.errors import ConfigError
from facesearch.imaging.decode import ImageSource
from facesearch.kinship import space as KS
from facesearch.kinship.retrieval import FamilyIndex, FamilyScore
from facesearch.search.identify import FaceMatches, MatchResult, match
from facesearch.settings import Settings, get_settings

# Bands, never "match": the first family above the kinship threshold is a possible
# relative (its own family for 42% of held-out people); the next ones, right for 3-7%
# each, less likely; below the threshold, no sign.
POSSIBLE, LESS_LIKELY, UNLIKELY = "possible relative", "less likely relative", "no sign of kinship"
# Families shown per face.
TOP_FAMILIES = 5


@dataclass
class RelativeFamily:
    """One family for one face: its score, best member, band and meaning in words."""

    family: FamilyScore
    kinship: float  # the best member's kinship score (cosine in the kinship space)
    band: str  # POSSIBLE or UNLIKELY
    unrelated_share: float | None  # share of matched unrelated pairs scoring as high
    related_share: float | None  # share of kin pairs scoring as high
    rank: int = 1  # 1 = the family ranked first for this face
    rank_share: float | None = None  # on held-out families: how often the own family came at this rank
    heldout_people: int = 0
    n_unrelated: int = 0  # matched unrelated pairs the shares were read from

    @property
    def meaning(self) -> str:
        if self.unrelated_share is None:
            return (f"kinship score {self.kinship:.3f} with {self.family.member}; this model has no kinship "
                    "measurement, so what the score means is not known")
        none = f"none of {self.n_unrelated} measured" if self.n_unrelated else "none"
        unrel = none if self.unrelated_share <= 0 else _share(self.unrelated_share)
        said = (f"kinship score {self.kinship:.3f} with {self.family.member}; unrelated pairs scoring this high: "
                f"{unrel}; relatives: {_share(self.related_share)}")
        if self.rank_share is not None:
            said += (f". On {self.heldout_people} people of held-out families, the own family came "
                     f"{_ordinal(self.rank)} for {self.rank_share:.0%}")
        return said


@dataclass
class FaceRelatives:
    """A face: who it is (``person``: the same-person search, shown first) and its families."""

    person: FaceMatches
    families: list[RelativeFamily]
    left_out: str | None = None  # the identity left out of the families (the face is that person)


@dataclass
class RelativesResult:
    match: MatchResult
    faces: list[FaceRelatives]
    n_families: int
    n_members: int
    space: str = ""  # what the kinship scores rest on, in words
    notes: list[str] = field(default_factory=list)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _share(x: float) -> str:
    """A share in words that never rounds a few to none."""
    if x <= 0:
        return "none"
    return f"{x:.0%}" if x >= 0.01 else "under 1%"


_index_memo: dict[str, tuple[str, FamilyIndex | None]] = {}
_index_lock = threading.Lock()


def family_index(gallery, settings: Settings, model_key: str = "") -> FamilyIndex | None:
    """The gallery's members and families, in the model's kinship space; None when no face
    of the gallery has a family. Built once per gallery version in this process."""
    version = gallery.version()
    key = f"{settings.home}|{gallery.name}"
    with _index_lock:
        hit = _index_memo.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    _, x, mds = gallery.all_embeddings()
    keep = [i for i, md in enumerate(mds) if (md or {}).get("family") and (md or {}).get("identity")]
    index = None
    if keep:
        members = [str(mds[i]["identity"]) for i in keep]
        names, m = KS.member_means(x[keep], members)
        fam_of = {}
        for i in keep:
            fam_of.setdefault(str(mds[i]["identity"]), str(mds[i]["family"]))
        sp = KS.load(gallery.model, settings)
        if sp is not None and model_key:
            sp.check(model_key)
        index = FamilyIndex(m, names, [fam_of[n] for n in names], sp)
    with _index_lock:
        _index_memo[key] = (version, index)
    return index


def find_relatives(src: ImageSource, name: str | None = None, *, model: str | None = None,
                   detector: str | None = None, k: int | None = None, families: int = TOP_FAMILIES,
                   settings: Settings | None = None, gallery=None, pipeline=None,
                   wait_calibration: bool = False) -> RelativesResult:
    """Every face of ``src`` with its same-person matches and the gallery's ``families``
    most likely families. Raises ConfigError when the gallery knows no family."""
    from facesearch.embedding.pipeline import get_pipeline
    from facesearch.search.identify import open_gallery
    from facesearch.search.verdicts import MATCH

    settings = settings or get_settings()
    pipe = pipeline or get_pipeline(model, detector, settings)
    gallery = gallery if gallery is not None else open_gallery(pipe)
    res = match(src, name, settings=settings, k=k, gallery=gallery, pipeline=pipe,
                wait_calibration=wait_calibration)
    index = family_index(gallery, settings, pipe.model.key)
    if index is None:
        raise ConfigError("this gallery knows no families: ingest an FIW folder, a FAMILY/PERSON/ folder or a CSV "
                          "with a family column to search for relatives")
    sp = index.space
    faces = []
    if res.faces:
        x = np.stack([fm.face.embedding for fm in res.faces])
        left = [fm.best.identity if fm.best is not None and fm.verdict == MATCH else None for fm in res.faces]
        ranked = index.rank(x, exclude=[{p} if p else None for p in left], top=families)
        z = index.project(x)
        pos = {n: i for i, n in enumerate(index.members)}
        for fm, fams, zq, who in zip(res.faces, ranked, z, left):
            out = []
            for rank, f in enumerate(fams, 1):
                raw = float(zq @ index.z[pos[f.member]])
                if sp is None:
                    out.append(RelativeFamily(f, raw, UNLIKELY, None, None, rank))
                    continue
                share = sp.rank_share[rank - 1] if rank <= len(sp.rank_share) else None
                band = UNLIKELY if raw < sp.possible else (POSSIBLE if rank == 1 else LESS_LIKELY)
                out.append(RelativeFamily(f, raw, band, sp.unrelated_share(raw), sp.related_share(raw), rank, share,
                                          sp.heldout_people, int(sp.unrelated.size)))
            faces.append(FaceRelatives(fm, out, who))
    said = (f"kinship space of {sp.model} learned on {sp.source}" if sp is not None else
            f"{pipe.model.name}'s cosine (no kinship space for this model: scores have no measured meaning)")
    notes = ["Kinship is a likelihood, never proof: on held-out families the own family is in the top 5 for about "
             "6 in 10 people (docs/BENCHMARKS.md, Relatives)."]
    return RelativesResult(res, faces, index.n_families, len(index.members), said, notes)
