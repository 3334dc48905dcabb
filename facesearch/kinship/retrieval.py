"""Families ranked for a face: the reunification search's scoring, and its measurement.

A gallery that knows families (``family`` in its faces' metadata, e.g. ingested from
FIW's layout) is seen as members: each identity the normalised mean of its faces' unit
vectors. :class:`FamilyIndex` projects them into the model's kinship space
(:mod:`facesearch.kinship.space`; plain cosine for a model without one), lowers each
member's similarities by its hubness (CSLS), and scores a family for a query as a soft
maximum of its members' scores (``FAMILY_TEMPERATURE``). :func:`retrieval` measures it:
each member with kin, its own photos left out, ranks the families; the rank of its own
family gives top-1/5/10 and the mean reciprocal rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facesearch.kinship.space import CSLS_K, CSLS_WEIGHT, FAMILY_TEMPERATURE, KinshipSpace, member_means, unit


@dataclass
class FamilyScore:
    """One family for one face: ``score`` (higher is closer kin), its best member and that
    member's score, every member's score (best first)."""

    family: str
    score: float
    member: str
    member_score: float
    members: list[tuple[str, float]]


class FamilyIndex:
    """The gallery's members ``(u, d)`` (unit model vectors) with their ``families``, ready
    to rank families for query vectors."""

    def __init__(self, member_vectors: np.ndarray, members: Sequence[str], families: Sequence[str],
                 space: KinshipSpace | None = None, csls: float = CSLS_WEIGHT, temperature: float = FAMILY_TEMPERATURE):
        self.space = space
        self.csls, self.temperature = float(csls), float(temperature)
        self.members = [str(m) for m in members]
        self.families = np.asarray([str(f) for f in families])
        m = unit(member_vectors)
        self.z = space.project(m) if space is not None else m
        s = self.z @ self.z.T
        np.fill_diagonal(s, -np.inf)
        k = min(CSLS_K, max(1, len(self.members) - 1))
        # Each member's mean similarity to its k nearest other members (its hubness).
        self.hub = np.sort(s, axis=1)[:, -k:].mean(1) if len(self.members) > 1 else np.zeros(len(self.members))
        self._fam_rows = {f: np.flatnonzero(self.families == f) for f in np.unique(self.families)}

    @property
    def n_families(self) -> int:
        return len(self._fam_rows)

    def project(self, x: np.ndarray) -> np.ndarray:
        x = unit(np.atleast_2d(x))
        return self.space.project(x) if self.space is not None else x

    def member_scores(self, x: np.ndarray) -> np.ndarray:
        """``(m, u)``: each query's kinship score with each member (hubness-corrected)."""
        return self.project(x) @ self.z.T - self.csls * self.hub[None, :]

    def rank(self, x: np.ndarray, exclude: Sequence[set[str] | None] | None = None, top: int | None = None
             ) -> list[list[FamilyScore]]:
        """Families ranked for each query vector ``(m, d)`` (best first); ``exclude[i]``:
        members left out for query i (the person itself)."""
        scores = self.member_scores(x)
        out = []
        for i, row in enumerate(scores):
            skip = (exclude[i] if exclude is not None else None) or set()
            fams = []
            for f, rows in self._fam_rows.items():
                rows = [r for r in rows if self.members[r] not in skip]
                if not rows:
                    continue
                v = row[rows]
                order = np.argsort(-v)
                best = float(v[order[0]])
                t = self.temperature
                soft = best + (t * float(np.log(np.sum(np.exp((v - best) / t)))) if t > 0 else 0.0)
                fams.append(FamilyScore(str(f), soft, self.members[rows[order[0]]], best,
                                        [(self.members[rows[j]], float(v[j])) for j in order]))
            fams.sort(key=lambda s: (-s.score, s.family))
            out.append(fams[:top] if top else fams)
        return out


@dataclass
class Retrieval:
    """``ranks`` ``(q,)``: the rank of each query member's own family; ``relations``: the
    relation of each query to its nearest-ranked kin in the gallery (``"?"`` unknown)."""

    ranks: np.ndarray
    queries: list[str]
    relations: list[str]

    def top(self, k: int) -> float:
        return float(np.mean(self.ranks <= k)) if self.ranks.size else float("nan")

    @property
    def mrr(self) -> float:
        return float(np.mean(1.0 / self.ranks)) if self.ranks.size else float("nan")

    def summary(self) -> dict:
        return {"n": int(self.ranks.size), "top1": self.top(1), "top5": self.top(5), "top10": self.top(10),
                "mrr": self.mrr}

    def by_relation(self) -> dict[str, dict]:
        out = {}
        for rel in sorted(set(self.relations)):
            sel = np.asarray([r == rel for r in self.relations])
            out[rel] = Retrieval(self.ranks[sel], [q for q, s in zip(self.queries, sel) if s],
                                 [rel] * int(sel.sum())).summary()
        return out


def retrieval(vectors: np.ndarray, members: Sequence[str], families: Sequence[str],
              kin: dict[str, dict[str, str]], space: KinshipSpace | None = None,
              query_ok=lambda family: True, **scoring) -> Retrieval:
    """The reunification search measured: photos ``(n, d)`` (unit) of ``members`` in
    ``families``; ``kin``: member -> {kin member: relation}. Each member with kin in the
    gallery whose family passes ``query_ok`` queries with its own mean vector against every
    other member (its own photos left out), and its family's rank is recorded.
    ``scoring``: ``csls``/``temperature`` for :class:`FamilyIndex` (attempts)."""
    names, m = member_means(vectors, members)
    fam_of = {}
    for mem, f in zip(members, families):
        fam_of.setdefault(str(mem), str(f))
    index = FamilyIndex(m, names, [fam_of[n] for n in names], space, **scoring)
    pos = {n: i for i, n in enumerate(names)}
    qs = [n for n in names if query_ok(fam_of[n]) and any(k in pos for k in kin.get(n, {}))]
    if not qs:
        return Retrieval(np.zeros(0), [], [])
    ranked = index.rank(m[[pos[q] for q in qs]], exclude=[{q} for q in qs])
    ranks, rels = [], []
    for q, fams in zip(qs, ranked):
        own = fam_of[q]
        ranks.append(1 + next(i for i, f in enumerate(fams) if f.family == own))
        mine = next(f for f in fams if f.family == own)
        nearest = next((mem for mem, _ in mine.members if mem in kin.get(q, {})), None)
        rels.append(kin[q][nearest] if nearest else "?")
    return Retrieval(np.asarray(ranks, np.int64), qs, rels)
