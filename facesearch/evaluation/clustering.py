"""How well faces were grouped into people, against their true identities.

:func:`grouping_scores` compares a grouping (face key -> person id) with the truth (face
key -> identity) over the faces of the truth: pairwise precision, recall and F (over
pairs of faces put in one person / of one identity), BCubed precision, recall and F (Bagga &
Baldwin: per face, the share of its person that is of its identity and the share of its
identity that is in its person, averaged over faces), the number of people found against
the number of identities, and the share of people (with 3+ judged faces) that mix two
identities. A face of the truth that is in no person counts as a person of one face (a
grouping that leaves a face waiting is judged as having put it alone).
"""

from __future__ import annotations

from collections import Counter


def grouping_scores(pred: dict[str, int], true: dict[str, str]) -> dict:
    """Pairwise precision/recall/F, BCubed F, people found and the share of people
    (3+ faces) mixing two identities, over the faces in ``true``; a face in no person is
    a person of one face.

    ``pred``: face key -> person id (faces not in ``true`` are ignored); ``true``: face
    key -> identity. Returns ``precision``, ``recall``, ``f`` (pairwise), ``bcubed_p``,
    ``bcubed_r``, ``bcubed_f``, ``people`` (people of ``pred`` holding a judged face),
    ``true`` (identities), ``mixing`` (share of people with 3+ judged faces holding two or
    more identities) and ``big`` (how many people have 3+ judged faces). With no pair of
    faces in one person (or of one identity) pairwise precision (recall) is 1: nothing
    was claimed (nothing was there to find).
    """
    keys = sorted(true)
    nxt = max(pred.values(), default=0) + 1
    p = []
    for k in keys:
        if k in pred:
            p.append(pred[k])
        else:
            p.append(nxt)
            nxt += 1
    t = [true[k] for k in keys]
    pt, pc, tc = Counter(zip(p, t)), Counter(p), Counter(t)
    pairs = lambda c: sum(v * (v - 1) / 2 for v in c.values())  # noqa: E731
    tp, pp, tt = pairs(pt), pairs(pc), pairs(tc)
    prec, rec = (tp / pp if pp else 1.0), (tp / tt if tt else 1.0)
    n = len(keys)
    bp = sum(c * c / pc[a] for (a, _), c in pt.items()) / n
    br = sum(c * c / tc[b] for (_, b), c in pt.items()) / n
    per: dict = {}
    for (a, _), c in pt.items():
        per.setdefault(a, []).append(c)
    big = [cs for cs in per.values() if sum(cs) >= 3]
    found = set(pred.values())
    return {"precision": prec, "recall": rec, "f": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
            "bcubed_p": bp, "bcubed_r": br, "bcubed_f": 2 * bp * br / (bp + br),
            "people": len([a for a in pc if a in found]), "true": len(tc),
            "mixing": sum(len(cs) > 1 for cs in big) / max(1, len(big)), "big": len(big)}
