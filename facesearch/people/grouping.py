"""Faces into people, on arrays only (no gallery, no files): the grouping rule.

A person is a group of faces whose **average** cosine distance to each other stays
under :attr:`Params.threshold` (average linkage, UPGMA), built bottom-up with three
constraints no library clustering takes, which is why it is written here:

* **one face per photo**: two faces of one photo never share a person (the two groups
  holding them may never merge: "cannot-link");
* **user decisions**: faces a user put in a person (named, merged, moved) start
  together as that person and stay there; two such people are never merged by the
  machine; a face a user took out of a person ("not this person") never joins it again;
* **quality gate**: a face too small, blurred or turned (:mod:`facesearch.imaging.quality`),
  or one whose detection is not clearly a face (below the detector's ``clear_score``),
  never founds or links a person; it only joins one it is close to (``ok`` below).

Last, a face still waiting joins the person whose mean direction is within
:attr:`Params.reach` when no other person's comes within :attr:`Params.margin` of it:
one clear candidate, never a choice between look-alikes.

Groups smaller than :attr:`Params.min_faces` are not people yet: their faces wait,
unassigned, for more faces like them.

Average linkage between groups is exact from sums of unit vectors: the mean cosine
distance between groups ``a`` and ``b`` is ``1 - S_a . S_b / (n_a n_b)``. That is how a
new face is compared with every person at once (:func:`place`) without regrouping the
library, and how the matrix is updated after each merge (Lance-Williams).

:func:`group` handles up to :attr:`Params.block` faces exactly (a ``block x block``
float32 matrix); a larger library is grouped block by block, each block placed like new
photos are (:func:`place`), so memory stays flat (docs/BENCHMARKS.md, "People").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["Params", "Groups", "agglomerate", "group", "place", "DEFAULT"]

UNASSIGNED = -1


@dataclass(frozen=True)
class Params:
    """The grouping's parameters (chosen on the LFW fold, judged on CelebA: see
    docs/BENCHMARKS.md, "People")."""

    threshold: float = 0.55  # mean cosine distance under which two groups are one person
    merge: float = 0.50  # second pass: cosine distance between groups' mean directions under which they merge
    attach: float = 0.50  # a face joins a person within this cosine distance of the person's mean direction
    # Last step, for the faces still waiting: one joins the person whose mean direction is
    # within ``reach`` when every other person's is at least ``margin`` farther (one
    # clear candidate, never a choice between look-alikes).
    reach: float = 0.55
    margin: float = 0.15
    min_faces: int = 2  # a smaller group is not a person yet: its faces wait
    block: int = 3000  # faces grouped exactly at once (a block x block float32 matrix)


DEFAULT = Params()


class Groups:
    """People as sums of their faces' unit vectors, for :func:`place`: ``ids`` (each
    person's label), ``sums`` (p, dim) float64, ``counts`` (p,), ``photos`` (each
    person's photo keys). Grows in place as faces join (amortised, like a list)."""

    def __init__(self, dim: int):
        self.ids: list[int] = []
        self.row: dict[int, int] = {}
        self._sums = np.zeros((16, dim))
        self._counts = np.zeros(16)
        self.photos: list[set] = []
        self.by_photo: dict = {}  # photo key -> rows of the people holding a face of it

    @property
    def sums(self) -> np.ndarray:
        return self._sums[: len(self.ids)]

    @property
    def counts(self) -> np.ndarray:
        return self._counts[: len(self.ids)]

    @classmethod
    def of(cls, x: np.ndarray, labels: np.ndarray, photos) -> "Groups":
        """The people of ``labels`` (n,) over faces ``x`` (n, dim); -1 is no person."""
        g = cls(x.shape[1])
        for i in np.flatnonzero(np.asarray(labels) >= 0):
            g.add(int(labels[i]), x[i], photos[i])
        return g

    def add(self, pid: int, v: np.ndarray, photo) -> None:
        r = self.row.get(pid)
        if r is None:
            r = self.row[pid] = len(self.ids)
            self.ids.append(pid)
            self.photos.append(set())
            if r >= len(self._counts):
                self._sums = np.vstack([self._sums, np.zeros_like(self._sums)])
                self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
        self._sums[r] += v
        self._counts[r] += 1
        if photo not in self.photos[r]:
            self.photos[r].add(photo)
            self.by_photo.setdefault(photo, []).append(r)


def agglomerate(x: np.ndarray, photos, threshold: float, init: np.ndarray | None = None,
                forbid: set[tuple[int, int]] | frozenset = frozenset()) -> np.ndarray:
    """Average-linkage groups of ``x`` (n, dim) unit rows, merged while the mean cosine
    distance between two groups is at most ``threshold``.

    ``photos``: (n,) photo key per face (two faces of one photo never share a group), or
    a set of keys per item (a group of faces, in the merge pass).
    ``init``: (n,) ints, faces with the same value >= 0 start as one group that is never
    merged with another such group (people a user made); -1: a free face.
    ``forbid``: (face index, init value) pairs that may never share a group.
    Returns (n,) group labels: the ``init`` value for user groups and the faces that
    joined them, new labels above ``max(init)`` for the others.
    """
    n = len(x)
    init = np.full(n, -1) if init is None else np.asarray(init)
    if n == 0:
        return init.copy()
    # Initial groups: each user group, then each free face.
    user = sorted({int(v) for v in init if v >= 0})
    gid = {u: i for i, u in enumerate(user)}
    member = np.empty(n, np.int64)
    free = np.flatnonzero(init < 0)
    for i in np.flatnonzero(init >= 0):
        member[i] = gid[int(init[i])]
    member[free] = len(user) + np.arange(len(free))
    m = len(user) + len(free)
    sums = np.zeros((m, x.shape[1]), np.float64)
    np.add.at(sums, member, x.astype(np.float64))
    cnt = np.bincount(member, minlength=m).astype(np.float64)
    d = (1.0 - (sums @ sums.T) / np.outer(cnt, cnt)).astype(np.float32)
    np.fill_diagonal(d, np.inf)
    # Cannot-link: groups sharing a photo, two user groups, and "not this person".
    by_photo: dict = {}
    for i, p in enumerate(photos):
        for key in (p if isinstance(p, (set, frozenset)) else (p,)):
            by_photo.setdefault(key, set()).add(int(member[i]))
    for gs in by_photo.values():
        if len(gs) > 1:
            g = np.fromiter(gs, np.int64)
            d[np.ix_(g, g)] = np.inf
    if len(user) > 1:
        u = np.arange(len(user))
        d[np.ix_(u, u)] = np.inf
    for face, person in forbid:
        if person in gid and 0 <= face < n:
            a, b = int(member[face]), gid[person]
            d[a, b] = d[b, a] = np.inf
    alive = np.ones(m, bool)
    nn = np.argmin(d, axis=1)
    nd = d[np.arange(m), nn]
    while True:
        a = int(np.argmin(nd))
        if not nd[a] <= threshold:
            break
        b = int(nn[a])
        if a >= len(user) and b < len(user):
            a, b = b, a  # a user group keeps its label
        # Lance-Williams for average linkage; an infinity (a conflict) stays one.
        row = (cnt[a] * d[a] + cnt[b] * d[b]) / (cnt[a] + cnt[b])
        d[a] = row
        d[:, a] = row
        d[a, a] = np.inf
        d[b] = np.inf
        d[:, b] = np.inf
        cnt[a] += cnt[b]
        alive[b] = False
        member[member == b] = a
        nd[b] = np.inf
        # Rows whose nearest group was a or b look again; the rest only compare with a.
        stale = np.flatnonzero(alive & ((nn == a) | (nn == b)))
        if stale.size:
            nn[stale] = np.argmin(d[stale], axis=1)
            nd[stale] = d[stale, nn[stale]]
        closer = alive & (d[:, a] < nd)
        nn[closer] = a
        nd[closer] = d[closer, a]
    out = np.empty(n, np.int64)
    base = max(user, default=-1) + 1
    rename = {}
    for i in range(n):
        g = int(member[i])
        if g < len(user):
            out[i] = user[g]
        else:
            out[i] = rename.setdefault(g, base + len(rename))
    return out


def _merge_pass(x: np.ndarray, photos, labels: np.ndarray, init: np.ndarray, params: Params,
                forbid: set[tuple[int, int]]) -> np.ndarray:
    """Groups whose mean directions are within ``params.merge`` merge (average linkage
    over the groups, constraints kept). Average linkage splits a person with many,
    varied photos into groups whose faces are far apart on average though their means
    agree: the mean of a group cancels the pose and light of single photos."""
    keys = sorted({int(v) for v in labels})
    row = {k: j for j, k in enumerate(keys)}
    c = np.zeros((len(keys), x.shape[1]))
    np.add.at(c, [row[int(v)] for v in labels], x)
    c /= np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    phs = [set() for _ in keys]
    for i, v in enumerate(labels):
        phs[row[int(v)]].add(photos[i])
    user = {int(v) for v in init if v >= 0}
    merged = agglomerate(c, [frozenset(p) for p in phs], params.merge,
                         np.array([k if k in user else -1 for k in keys], np.int64),
                         {(row[int(labels[f])], p) for f, p in forbid})
    return np.array([merged[row[int(v)]] for v in labels], np.int64)


def _drop_small(labels: np.ndarray, init: np.ndarray, min_faces: int) -> np.ndarray:
    """Groups of fewer than ``min_faces`` (not a user's) are no person: -1."""
    out = labels.copy()
    vals, counts = np.unique(labels[labels >= 0], return_counts=True)
    user = set(int(v) for v in init if v >= 0)
    small = {int(v) for v, c in zip(vals, counts) if c < min_faces and int(v) not in user}
    if small:
        out[np.isin(out, list(small))] = UNASSIGNED
    return out


def group(x: np.ndarray, photos, ok: np.ndarray | None = None, params: Params = DEFAULT,
          init: np.ndarray | None = None, forbid: set[tuple[int, int]] | frozenset = frozenset()) -> np.ndarray:
    """People of a whole library: (n,) labels over faces ``x`` (n, dim) unit rows, -1
    for a face that belongs to no person yet.

    ``photos``: (n,) photo keys; ``ok``: (n,) bool, the face passes the quality gate
    (default all); ``init``/``forbid``: the user's decisions (see :func:`agglomerate`);
    user labels are kept, new people get labels above ``max(init)``. Up to
    ``params.block`` good faces are grouped exactly; the rest of a larger library, block
    by block, as new photos are (:func:`place`); faces failing the gate last, joining
    a person or waiting."""
    n = len(x)
    x = np.asarray(x, np.float32)
    photos = list(photos)
    ok = np.ones(n, bool) if ok is None else np.asarray(ok, bool)
    init = np.full(n, -1, np.int64) if init is None else np.asarray(init, np.int64)
    labels = init.copy()
    # Faces a user placed stay where the user put them, whatever their quality.
    core = np.flatnonzero(ok | (init >= 0))
    first, rest = core[: params.block], core[params.block:]
    pos = {int(f): j for j, f in enumerate(first)}
    lab = agglomerate(x[first], [photos[i] for i in first], params.threshold, init[first],
                      {(pos[f], p) for f, p in forbid if f in pos})
    inner = {(pos[f], p) for f, p in forbid if f in pos}
    labels[first] = _drop_small(_merge_pass(x[first], [photos[i] for i in first], lab, init[first], params, inner),
                                init[first], params.min_faces)
    todo = np.concatenate([rest, np.flatnonzero(~ok & (init < 0))]).astype(np.int64)
    waiting = np.flatnonzero(labels[first] < 0)
    labels = place(x, photos, ok, labels, todo, params, forbid, waiting=first[waiting])
    # Last, the faces still waiting try the people as they now are.
    _join(x, photos, labels, np.flatnonzero(labels < 0), params, forbid, Groups.of(x, labels, photos), reach=True)
    return labels


def place(x: np.ndarray, photos, ok: np.ndarray, labels: np.ndarray, new: np.ndarray, params: Params = DEFAULT,
          forbid: set[tuple[int, int]] | frozenset = frozenset(), waiting: np.ndarray | None = None) -> np.ndarray:
    """Faces ``new`` (indices into ``x`` (n, dim)) placed among the people of ``labels``
    (n,) without regrouping them; returns the new labels.

    A face joins a person (:func:`_join`: on average within ``params.threshold``, or
    within ``params.attach`` of their mean direction; never a person with a face of its
    photo, nor one it was taken out of); the faces of one photo are placed jointly
    (``linear_sum_assignment``), so two never join one person. The good faces left over,
    with the faces already waiting (``waiting``: indices, default every -1 face not in
    ``new``) that are close to them, are grouped as a library is (:func:`agglomerate`,
    the merge pass); groups of ``params.min_faces`` or more become new people, and the
    faces still waiting try the people once more. More than ``params.block`` new faces
    go block by block."""
    labels = np.asarray(labels, np.int64).copy()
    new = np.asarray(new, np.int64)
    ok = np.asarray(ok, bool)
    if waiting is None:
        waiting = np.setdiff1d(np.flatnonzero(labels < 0), new)
    waiting = np.asarray(waiting, np.int64)
    groups = Groups.of(x, labels, photos)
    for s in range(0, new.size, params.block):
        part = new[s: s + params.block]
        labels = _place_block(x, photos, ok, labels, part, params, forbid, waiting, groups)
        waiting = np.concatenate([waiting[labels[waiting] < 0], part[labels[part] < 0]])
    return labels


def _place_block(x, photos, ok, labels, new, params, forbid, waiting, g: Groups) -> np.ndarray:
    thr = params.threshold
    _join(x, photos, labels, new, params, forbid, g)
    # The rest found new people with the waiting faces close to them: grouped, then the
    # groups merged by their mean directions, as a whole library is (group()).
    left = new[(labels[new] < 0) & ok[new]]
    near = np.zeros(0, np.int64)
    if left.size:
        pool = waiting[ok[waiting]] if waiting.size else waiting
        near = _near(x, left, pool, thr, params.block)
        cand = np.concatenate([left, near])
        cph = [photos[i] for i in cand]
        base = max(int(labels.max()) + 1, max(g.ids, default=-1) + 1)
        free = np.full(len(cand), -1)
        lab = agglomerate(x[cand], cph, thr)
        lab = _drop_small(_merge_pass(x[cand], cph, lab, free, params, set()), free, params.min_faces)
        if (lab >= 0).any():
            lab[lab >= 0] += base - lab[lab >= 0].min()
        for j in np.flatnonzero(lab >= 0):
            i = int(cand[j])
            labels[i] = lab[j]
            g.add(int(labels[i]), x[i], photos[i])
    # Faces still waiting (and new ones the quality gate stops) try the people as they now
    # are, with the last step's rule too (Params.reach).
    again = np.concatenate([new, near])
    _join(x, photos, labels, again[labels[again] < 0], params, forbid, g, reach=True)
    return labels


def _join(x, photos, labels, new, params: Params, forbid, g: Groups, chunk: int = 2048, reach: bool = False) -> None:
    """Faces ``new`` join people of ``g`` (in place, in ``labels`` and ``g``): a face
    joins the person it is close to on average (``params.threshold``) or close to their
    mean direction (``params.attach``: a person of many varied photos is far from any one
    face on average, not from their mean), never a person with a face of its photo nor
    one it was taken out of; the faces of one photo jointly (linear_sum_assignment).
    ``reach``: also the last step's rule (:attr:`Params.reach`, :attr:`Params.margin`).
    ``chunk`` faces at a time (whole photos), so memory stays at ``chunk x people``."""
    if not g.ids or not len(new):
        return
    by_photo = _by_key([photos[i] for i in new])
    part: list[int] = []
    for js in by_photo.values():
        part += [int(new[j]) for j in js]
        if len(part) >= chunk:
            _join_chunk(x, photos, labels, np.asarray(part, np.int64), params, forbid, g, reach)
            part = []
    if part:
        _join_chunk(x, photos, labels, np.asarray(part, np.int64), params, forbid, g, reach)


def _join_chunk(x, photos, labels, new, params: Params, forbid, g: Groups, reach: bool = False) -> None:
    thr, att = params.threshold, params.attach
    counts = g.counts
    norms = np.maximum(np.linalg.norm(g.sums, axis=1), 1e-12)
    dots = x[new] @ g.sums.T.astype(np.float32)  # (len(new), people) float32
    # Admitted by either rule: 1 - dot/n <= thr (average) or 1 - dot/|S| <= attach (mean
    # direction). Only those pairs are looked at further: a face is near few people.
    need = np.minimum((1.0 - thr) * counts, (1.0 - att) * norms).astype(np.float32)
    hit = dots >= need[None, :]
    if reach and len(g.ids) > 0:
        # The last step's rule: the nearest mean direction within reach, the second one
        # at least margin farther (over every person, whatever they hold: a clash with
        # the second one still counts as a rival, which only makes the rule stricter).
        cos = dots / norms[None, :].astype(np.float32)  # (len(new), people)
        rows = np.arange(len(new))
        top = cos.argmax(axis=1)
        best = cos[rows, top]
        cos[rows, top] = -np.inf
        second = cos.max(axis=1)
        del cos
        clear = np.flatnonzero((best >= 1.0 - params.reach) & (best - second >= params.margin))
        hit[clear, top[clear]] = True
    jj, rr = np.nonzero(hit)
    del hit
    if jj.size == 0:
        return
    d = dots[jj, rr].astype(np.float64)
    del dots
    # The smaller, the closer; both rules on the average rule's scale.
    dist = np.minimum(1.0 - d / counts[rr], 1.0 - d / norms[rr] + (thr - att))
    photo_of = [photos[int(i)] for i in new]
    banned = set(forbid) if forbid else ()
    cands: dict = {}
    for j, r, dv in zip(jj.tolist(), rr.tolist(), dist.tolist()):
        # A person holding a face of the same photo, or one the face was taken out of.
        if r in g.by_photo.get(photo_of[j], ()) or (banned and (int(new[j]), g.ids[r]) in banned):
            continue
        cands.setdefault(photo_of[j], {}).setdefault(j, []).append((r, dv))
    # Per photo, jointly: each face its own person (or none).
    for faces in cands.values():
        js = list(faces)
        people = sorted({r for j in js for r, _ in faces[j]})
        if len(js) == 1 and len(people) >= 1:
            r, _ = min(faces[js[0]], key=lambda t: t[1])
            pairs = [(js[0], r)]
        else:
            col = {r: c for c, r in enumerate(people)}
            cost = np.full((len(js), len(people)), 1e6)
            for a, j in enumerate(js):
                for r, dv in faces[j]:
                    cost[a, col[r]] = dv
            ra, ca = linear_sum_assignment(cost)
            pairs = [(js[a], people[c]) for a, c in zip(ra, ca) if cost[a, c] < 1e6]
        for j, r in pairs:
            i, pid = int(new[j]), g.ids[r]
            labels[i] = pid
            g.add(pid, x[i], photos[i])


def _by_key(keys) -> dict:
    out: dict = {}
    for j, k in enumerate(keys):
        out.setdefault(k, []).append(j)
    return out


def _near(x: np.ndarray, left: np.ndarray, pool: np.ndarray, thr: float, most: int, chunk: int = 256) -> np.ndarray:
    """Faces of ``pool`` within cosine distance ``thr`` of a face of ``left`` (indices),
    at most ``most`` of them (the nearest)."""
    if pool.size == 0 or left.size == 0:
        return np.zeros(0, np.int64)
    best = np.full(pool.size, -np.inf, np.float32)
    xp = x[pool]
    for s in range(0, left.size, chunk):
        np.maximum(best, (x[left[s: s + chunk]] @ xp.T).max(axis=0), out=best)  # (chunk, len(pool)) at a time
    hit = np.flatnonzero(best >= 1.0 - thr)
    if hit.size > most:
        hit = hit[np.argsort(-best[hit])[:most]]
    return pool[hit]
