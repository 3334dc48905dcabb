"""The People actions, one function each, UI-free: what the People page and
``facesearch people`` call.

Reads: :func:`list_people`, :func:`show_person`, :func:`person_photos`,
:func:`waiting_faces`, :func:`person_named`. Changes (admin only, like every gallery
change; each is one audit line): :func:`name_person`, :func:`merge_people`,
:func:`move_faces` (to another person, or out: "not this person"), :func:`new_person`,
:func:`regroup` (:func:`start_regroup`: in a background thread, for the page);
:func:`place_new_faces` runs after every photo-library ingest.

Every function takes the gallery (:class:`store.FaceGallery`, whose ``actor`` says who
asks) and works on its photo-library faces (metadata ``people``). The decisions are
kept so that no later grouping undoes them:

* a face a user put in a person (naming it, merging, moving) is *pinned* there, and so
  are the faces left in a person a face was taken out of (the user looked at them);
* two people a user made are never merged by the machine;
* a face taken out of a person ("not this person", or moved elsewhere) never joins it
  again, whichever grouping runs;
* a named person is an identity of the gallery: its faces' ``identity`` is the name,
  so Match finds it like any labelled identity. An unnamed face's ``identity`` is ``""``,
  which Match, listings and evaluation never show as a person. Naming a person with a
  name another person has merges the two (one name, one identity).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
from filelock import FileLock, Timeout

from store import FaceGallery

from facesearch import audit
from facesearch.access import require_admin
from facesearch.datasets.base import clean_label
from facesearch.errors import ConfigError
from facesearch.imaging.detection import clear_score
from facesearch.jobs import BackgroundJob
from facesearch.people.grouping import DEFAULT, Params, group, place
from facesearch.people.store import FaceRow, PeopleStore

__all__ = ["Person", "PersonFace", "PersonView", "PhotoView", "list_people", "show_person", "person_photos",
           "waiting_faces", "person_named", "name_person", "merge_people", "move_faces", "new_person", "regroup",
           "place_new_faces", "open_store", "RegroupJob", "start_regroup", "running_regroup"]


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None  # None: unnamed (shown as "Unnamed", never as a file name)
    faces: int
    photos: int
    cover: str | None  # a face id: its thumbnail is FaceGallery.thumb_path(cover)


@dataclass(frozen=True)
class PersonFace:
    face_id: str
    photo: str  # the photo's SHA-1
    path: str  # the photo's path as text (datasets.base.path_text)
    box: tuple[int, int, int, int]  # x, y, w, h in the photo's pixels
    quality: str  # "" or why it fails the quality gate
    pinned: bool  # a user put it here


@dataclass(frozen=True)
class PersonView:
    person: Person
    faces: list[PersonFace]


@dataclass(frozen=True)
class PhotoView:
    """One photo a person appears in, with everyone else found in it."""

    photo: str
    path: str
    face: PersonFace  # the person's face in it
    others: list[tuple[PersonFace, Person | None]]  # the other faces, each with its person (None: none yet)


def _db(gallery: FaceGallery):
    return gallery.settings.home / "people.sqlite"


def open_store(gallery: FaceGallery) -> PeopleStore:
    return PeopleStore(_db(gallery), gallery.name)


def _face(r: FaceRow) -> PersonFace:
    try:
        box = tuple(int(v) for v in r.box.split(","))
    except (AttributeError, ValueError):
        box = (0, 0, 0, 0)
    return PersonFace(r.face_id, r.photo, r.path or "", box if len(box) == 4 else (0, 0, 0, 0), r.quality or "",
                      r.pinned)


def _people(st: PeopleStore) -> dict[int, Person]:
    counts = st.counts()
    return {pid: Person(pid, name, *counts.get(pid, (0, 0)), cover) for pid, (name, cover) in st.persons().items()}


# -- reads ---------------------------------------------------------------------------------
def list_people(gallery: FaceGallery, *, min_faces: int = 2, named: bool | None = None) -> list[Person]:
    """The people, most faces first (named first among equals). ``min_faces``: hide
    smaller ones (people of one face are hidden by default); ``named``: only named
    (True) or unnamed (False) ones."""
    st = open_store(gallery)
    try:
        out = [p for p in _people(st).values() if p.faces >= min_faces and (named is None or (p.name is not None) == named)]
    finally:
        st.close()
    return sorted(out, key=lambda p: (-p.faces, p.name is None, p.name or "", p.id))


def _get(people: dict[int, Person], person: int) -> Person:
    if isinstance(person, bool) or not isinstance(person, (int, np.integer)) or int(person) not in people:
        raise ConfigError(f"no person {person!r} in this gallery (see 'facesearch people list')")
    return people[int(person)]


def show_person(gallery: FaceGallery, person: int) -> PersonView:
    """A person and all their faces (user-placed first, then by photo)."""
    st = open_store(gallery)
    try:
        p = _get(_people(st), person)
        faces = [_face(r) for r in st.faces(p.id)]
    finally:
        st.close()
    return PersonView(p, sorted(faces, key=lambda f: (not f.pinned, f.path, f.face_id)))


def person_photos(gallery: FaceGallery, person: int) -> list[PhotoView]:
    """Every photo the person appears in, with the other people in each photo."""
    st = open_store(gallery)
    try:
        people = _people(st)
        p = _get(people, person)
        mine = st.faces(p.id)
        everyone = st.faces(photos=[r.photo for r in mine])
    finally:
        st.close()
    out = []
    for r in sorted(mine, key=lambda r: (r.path or "", r.face_id)):
        others = [(_face(o), people.get(o.person) if o.person is not None else None)
                  for o in everyone if o.photo == r.photo and o.face_id != r.face_id]
        out.append(PhotoView(r.photo, r.path or "", _face(r), others))
    return out


def waiting_faces(gallery: FaceGallery) -> list[PersonFace]:
    """Faces in no person yet (too few like them so far, or taken out of one)."""
    st = open_store(gallery)
    try:
        return [_face(r) for r in st.faces(waiting=True)]
    finally:
        st.close()


def person_named(gallery: FaceGallery, name: str) -> int | None:
    """The person called ``name`` (a Match result's identity), or None: for "show this
    person's photos"."""
    if not _db(gallery).is_file():  # no photo library yet: a read creates nothing (Match asks for every face)
        return None
    st = open_store(gallery)
    try:
        return st.by_name(name)
    finally:
        st.close()


# -- changes ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _change(gallery: FaceGallery, what: str, **details):
    """Admin check, the gallery's write lock (before the people database's, always in that
    order: an ingest holds the first when it places its faces), one audit line."""
    who = require_admin(gallery.actor, what)
    with audit.operation(gallery.settings, who, "people", change=what, **details) as op, gallery.writer():
        op.always = True
        st = open_store(gallery)
        try:
            yield st
        finally:
            st.close()


def _sync_names(gallery: FaceGallery, st: PeopleStore, face_ids: Iterable[str]) -> int:
    """Each face's ``identity`` in the gallery: its person's name, or "" (unnamed)."""
    names = {pid: name for pid, (name, _) in st.persons().items()}
    want = {r.face_id: (names.get(r.person) or "") if r.person is not None else "" for r in st.faces(ids=face_ids)}
    return gallery.relabel(want, lock=False)


def _no_photo_clash(st: PeopleStore, person: int, rows: Sequence[FaceRow]) -> None:
    held = {r.photo: r.face_id for r in st.faces(person)}
    seen: dict[str, str] = {}
    for r in rows:
        if r.person == person:
            continue
        other = held.get(r.photo) or seen.get(r.photo)
        if other is not None:
            raise ConfigError(f"face {r.face_id} and face {other} are in the same photo: one person has at most one "
                              "face per photo (move the other face out first)")
        seen[r.photo] = r.face_id


def name_person(gallery: FaceGallery, person: int, name: str) -> Person:
    """Name or rename a person (the name is checked like any identity label, and kept as
    text). Their faces are pinned to them and carry the name in the gallery. A name
    another person already has merges the two."""
    label = clean_label(name)
    with _change(gallery, "name", person=int(person) if isinstance(person, (int, np.integer)) else None) as st:
        people = _get(_people(st), person)
        other = st.by_name(label)
        with st.write() as db:
            if other is not None and other != people.id:
                _merge(st, db, other, [people.id])
                target = other
            else:
                st.set_person(db, people.id, name=label)
                target = people.id
            st.assign(db, [r.face_id for r in st.faces(target)], target, True)
        _sync_names(gallery, st, [r.face_id for r in st.faces(target)])
        return _people(st)[target]


def _merge(st: PeopleStore, db, target: int, others: Sequence[int]) -> None:
    rows = [r for o in others for r in st.faces(o)]
    _no_photo_clash(st, target, rows)
    st.assign(db, [r.face_id for r in rows], target, True)
    for o in others:
        st.drop_person(db, o, into=target)


def merge_people(gallery: FaceGallery, people: Sequence[int], name: str | None = None) -> Person:
    """Merge several people into one: the first named one (else the largest) keeps its
    id; ``name`` (optional) names the result. Every face is pinned to it, and what was
    taken out of any of them stays out of the merged person. Refused when two of them
    have a face in the same photo."""
    label = clean_label(name) if name is not None else None
    ids = list(dict.fromkeys(int(p) for p in people))
    if len(ids) < 2:
        raise ConfigError("merge needs two or more different people")
    with _change(gallery, "merge", people=ids) as st:
        all_people = _people(st)
        chosen = [_get(all_people, p) for p in ids]
        target = sorted(chosen, key=lambda p: (p.name is None, -p.faces, p.id))[0].id
        with st.write() as db:
            _merge(st, db, target, [p for p in ids if p != target])
            if label is not None:
                other = st.by_name(label)
                if other is not None and other != target:
                    _merge(st, db, other, [target])
                    target = other
                st.set_person(db, target, name=label)
            st.assign(db, [r.face_id for r in st.faces(target)], target, True)
        _sync_names(gallery, st, [r.face_id for r in st.faces(target)])
        return _people(st)[target]


def move_faces(gallery: FaceGallery, face_ids: Sequence[str], to: int | None) -> Person | None:
    """Move faces to person ``to`` (pinned there), or out of their person with ``to=None``
    ("not this person": they wait for a place). Either way each face is remembered as
    not being the person it left, and never returns there. Returns ``to``'s person."""
    ids = list(dict.fromkeys(str(f) for f in face_ids))
    if not ids:
        raise ConfigError("move: give one or more face ids")
    with _change(gallery, "move" if to is not None else "not this person", moved=len(ids)) as st:
        rows = st.faces(ids=ids)
        missing = sorted(set(ids) - {r.face_id for r in rows})
        if missing:
            raise ConfigError(f"no photo-library face {missing[0]!r} in this gallery")
        people = _people(st)
        if to is not None:
            to = _get(people, to).id
            _no_photo_clash(st, to, rows)
        with st.write() as db:
            st.reject(db, [(r.face_id, r.person) for r in rows if r.person is not None and r.person != to])
            if to is not None:
                st.unreject(db, [(r.face_id, to) for r in rows])
            st.assign(db, ids, to, to is not None)
            # The people the faces left were looked at by the user: what stays in them is
            # pinned there, so a regroup keeps them as they are and keeps the faces out.
            left = {r.person for r in rows if r.person is not None and r.person != to}
            for p in left:
                st.assign(db, [r.face_id for r in st.faces(p)], p, True)
            _drop_empty(st, db, left)
        _sync_names(gallery, st, ids)
        return _people(st).get(to) if to is not None else None


def new_person(gallery: FaceGallery, face_ids: Sequence[str], name: str | None = None) -> Person:
    """A new person of the given faces (split out of theirs, which they never rejoin)."""
    label = clean_label(name) if name is not None else None
    if not face_ids:
        raise ConfigError("a new person needs one or more faces")
    with _change(gallery, "new person") as st:
        if label is not None and st.by_name(label) is not None:
            raise ConfigError("a person already has that name: move the faces to them instead")
        with st.write() as db:
            pid = st.new_person(db, label, str(face_ids[0]) if face_ids else None)
    return move_faces(gallery, face_ids, pid)


def _drop_empty(st: PeopleStore, db, people: Iterable[int]) -> None:
    counts = {p: n for p, (n, _) in st.counts().items()}
    for p in people:
        if counts.get(p, 0) == 0:
            st.drop_person(db, p)


# -- grouping ---------------------------------------------------------------------------------
def _library(gallery: FaceGallery, page: int = 5000) -> tuple[list[str], np.ndarray, list[dict]]:
    """Every photo-library face of the gallery: (ids, (n, dim) float32 unit rows, metadata)."""
    ids, embs, mds, offset = [], [], [], 0
    while True:
        r = gallery.get(where={"people": True}, limit=page, offset=offset, embeddings=True)
        if not r["ids"]:
            break
        ids += r["ids"]
        embs.append(r["embeddings"])
        mds += [m or {} for m in r["metadatas"]]
        offset += len(r["ids"])
    x = np.concatenate(embs) if embs else np.zeros((0, gallery.dim), np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return ids, x / np.where(norms > 0, norms, 1), mds


def _row(fid: str, md: dict, person: int | None, pinned: bool) -> FaceRow:
    return FaceRow(fid, str(md.get("image_sha1", "")), str(md.get("path", "")), str(md.get("box", "")),
                   str(md.get("quality", "") or ""), person, pinned)


def _covers(st: PeopleStore, db, x: np.ndarray, index: dict[str, int], ok: np.ndarray) -> None:
    """Each person's cover: their good face nearest their mean."""
    by: dict[int, list[int]] = {}
    for r in st.faces():
        if r.person is not None and r.face_id in index:
            by.setdefault(r.person, []).append(index[r.face_id])
    ids = {i: f for f, i in index.items()}
    for p, rows in by.items():
        rows = np.asarray(rows)
        good = rows[ok[rows]] if ok[rows].any() else rows
        mean = x[good].sum(axis=0)
        st.set_person(db, p, cover=ids[int(good[np.argmax(x[good] @ mean)])])


@dataclass(frozen=True)
class GroupingReport:
    faces: int  # photo-library faces in the gallery
    placed: int  # faces that joined or founded a person in this run
    people: int  # people now
    new_people: int
    waiting: int  # faces in no person
    reruns: int = 0  # regroup: times it started over because people changed while it ran

    def summary(self) -> str:
        return (f"{self.faces} faces: {self.people} people ({self.new_people} new), {self.placed} faces placed, "
                f"{self.waiting} waiting for more faces like them"
                + (f"; grouped again {self.reruns}× to keep the changes made meanwhile" if self.reruns else ""))


def _state(gallery: FaceGallery, st: PeopleStore):
    ids, x, mds = _library(gallery)
    index = {f: i for i, f in enumerate(ids)}
    known = {r.face_id: r for r in st.faces()}
    photos = [str(m.get("image_sha1", "")) for m in mds]
    # A face may found or link a person if it passed the quality gate and its detection
    # is a clear face (the detector's clear_score): see facesearch.people.grouping.
    sure = clear_score(gallery.detector)
    ok = np.array([not m.get("quality") and (sure is None or float(m.get("det_confidence", 1.0)) >= sure)
                   for m in mds], bool)
    forbid = {(index[f], p) for f, p in st.rejected() if f in index}
    return ids, x, mds, index, known, photos, ok, forbid


def place_new_faces(gallery: FaceGallery, settings=None, params: Params = DEFAULT) -> GroupingReport:
    """The library's faces that are in no person yet and were never placed join the
    people already found, or found new ones with faces waiting like them (see
    :func:`facesearch.people.grouping.place`); nobody else moves. Faces gone from the
    gallery (erased) are forgotten. Called by every photo-library ingest."""
    with _change(gallery, "place new faces") as st:
        ids, x, mds, index, known, photos, ok, forbid = _state(gallery, st)
        labels = np.array([known[f].person if f in known and known[f].person is not None else -1 for f in ids],
                          np.int64)
        new = np.array([i for i, f in enumerate(ids) if f not in known], np.int64)
        before = set(int(v) for v in labels if v >= 0)
        out = place(x, photos, ok, labels, new, params, forbid)
        return _write(gallery, st, ids, x, mds, index, known, ok, out, before, placed_from=new)


REGROUP_TRIES = 3  # snapshots tried without the lock before the last try holds it throughout
REGROUP_LOCK_WAIT = 300.0  # s a regroup waits for the gallery's write lock (an ingest): it runs in the background


def _regroup_lock(gallery: FaceGallery) -> FileLock:
    """One regroup of a gallery at a time, across threads and processes (the page's job,
    ``facesearch people regroup``): a lock file beside the people database."""
    key = hashlib.sha1(gallery.name.encode()).hexdigest()[:16]
    return FileLock(str(_db(gallery)) + f".regroup-{key}.lock", timeout=0)


def _decisions(gallery: FaceGallery, st: PeopleStore) -> tuple:
    """Everything a regroup's result rests on besides the vectors: the gallery's version
    (faces added, erased, renamed) and every row of the people database (each face's
    person and pin, the people and their names, the "not this person" pairs)."""
    return (gallery.version(), tuple(st.faces()), frozenset(st.rejected()), tuple(sorted(st.persons().items())))


def regroup(gallery: FaceGallery, params: Params = DEFAULT, progress=None) -> GroupingReport:
    """Group the whole library again (after new parameters, or to let early faces find
    each other). Every user decision stays: pinned faces stay with their person (and
    that person's name), user-made people are never merged, "not this person" holds.
    People the user never touched keep their id when most of their faces stay together.

    Decisions made while it runs are **kept, by re-running**: the grouping is computed
    on a snapshot without holding the gallery's write lock, so names, merges, moves and
    ingests go through meanwhile; the result is written (under the lock) only when
    nothing changed since the snapshot (:func:`_decisions`). Otherwise the snapshot is
    taken again and the grouping re-run on it, at most ``REGROUP_TRIES`` times; the last
    try holds the lock from snapshot to write, so a decision made then waits for it (or,
    after the lock's wait, is refused with GalleryBusyError: never silently lost). The
    report's ``reruns`` says how many times it started over.

    Only one regroup of a gallery runs at a time (any thread or process): a second one
    is refused with ConfigError. ``progress(stage)``, optional, is told each stage as a
    sentence ("reading the library", "grouping N faces", ...)."""
    say = progress or (lambda stage: None)
    who = require_admin(gallery.actor, "regroup")
    lock = _regroup_lock(gallery)
    try:
        lock.acquire()
    except Timeout:
        raise ConfigError(f"a regroup of gallery {gallery.name} is already running; wait for it to finish") from None
    try:
        with audit.operation(gallery.settings, who, "people", change="regroup") as op:
            op.always = True
            st = open_store(gallery)
            try:
                for attempt in range(REGROUP_TRIES + 1):
                    last = attempt == REGROUP_TRIES
                    with gallery.writer(REGROUP_LOCK_WAIT) if last else contextlib.nullcontext():
                        say("reading the library" if not attempt else
                            "people changed meanwhile: grouping again, with their changes")
                        before_state = _decisions(gallery, st)
                        ids, x, mds, index, known, photos, ok, forbid = _state(gallery, st)
                        init = np.array([known[f].person if f in known and known[f].pinned
                                         and known[f].person is not None else -1 for f in ids], np.int64)
                        before = set(int(v) for v in init if v >= 0)
                        say(f"grouping {len(ids):,} faces")
                        out = group(x, photos, ok, params, init, forbid)
                        say("writing the people")
                        with contextlib.nullcontext() if last else gallery.writer(REGROUP_LOCK_WAIT):
                            if last or _decisions(gallery, st) == before_state:
                                rep = _write(gallery, st, ids, x, mds, index, known, ok, out, before,
                                             placed_from=np.arange(len(ids)), reuse=True)
                                return replace(rep, reruns=attempt)
                raise AssertionError("unreachable: the last try always writes")
            finally:
                st.close()
    finally:
        lock.release()


def _write(gallery, st, ids, x, mds, index, known, ok, labels, keep: set[int], placed_from, reuse=False):
    """Store ``labels`` (person ids in ``keep``, new labels for new people)."""
    old_people = st.persons()
    with st.write() as db:
        gone = [f for f in known if f not in index]
        st.drop_faces(db, gone)
        # New groups: an untouched old person whose faces most of them hold keeps its id.
        mapping: dict[int, int] = {}
        new_labels = sorted({int(v) for v in labels if v >= 0} - keep)
        if reuse:
            votes: dict[int, dict[int, int]] = {}
            for i, f in enumerate(ids):
                lab, r = int(labels[i]), known.get(f)
                if lab in new_labels and r is not None and r.person is not None and r.person not in keep:
                    votes.setdefault(lab, {}).setdefault(r.person, 0)
                    votes[lab][r.person] += 1
            taken: set[int] = set()
            for lab in sorted(votes, key=lambda l: -max(votes[l].values())):
                best = max(votes[lab], key=lambda p: votes[lab][p])
                if best not in taken and best in old_people and old_people[best][0] is None:
                    mapping[lab] = best
                    taken.add(best)
        for lab in new_labels:
            if lab not in mapping:
                mapping[lab] = st.new_person(db)
        rows = []
        for i, f in enumerate(ids):
            lab = int(labels[i])
            person = None if lab < 0 else (lab if lab in keep else mapping[lab])
            r = known.get(f)
            pinned = bool(r is not None and r.pinned and r.person == person)
            rows.append(_row(f, mds[i], person, pinned))
        st.add_faces(db, rows)
        counts = {p: n for p, (n, _) in st.counts().items()}
        for p, (name, _) in old_people.items():
            if counts.get(p, 0) == 0 and name is None:
                st.drop_person(db, p)
        _covers(st, db, x, index, ok)
    changed = [f for i, f in enumerate(ids) if (known.get(f).person if f in known else None) != rows[i].person]
    _sync_names(gallery, st, changed)
    placed = sum(1 for i in placed_from if labels[int(i)] >= 0)
    people = st.counts()
    return GroupingReport(len(ids), placed, len(people), len([l for l in new_labels if mapping[l] not in old_people]),
                          int((labels < 0).sum()))


# -- regroup in the background (the page) ---------------------------------------------------
@dataclass
class RegroupJob(BackgroundJob):
    """:func:`regroup` in a background thread (:class:`facesearch.jobs.BackgroundJob`):
    ``stage`` while ``running``, then ``report`` (a GroupingReport) or ``error``."""

    gallery: FaceGallery | None = None
    params: Params = DEFAULT
    stage: str = "starting"
    report: GroupingReport | None = field(default=None, kw_only=True)

    kind = "regroup"

    def _work(self) -> GroupingReport:
        return regroup(self.gallery, self.params, progress=self._stage)

    def _stage(self, stage: str) -> None:
        self.stage = stage


_jobs: dict[str, RegroupJob] = {}
_jobs_lock = threading.Lock()


def _job_key(gallery: FaceGallery) -> str:
    return f"{gallery.settings.home}|{gallery.name}"


def start_regroup(gallery: FaceGallery, params: Params = DEFAULT) -> RegroupJob:
    """Start :func:`regroup` in the background and return its job (admin only). Refused
    with ConfigError while a regroup of this gallery runs: this process's job, or
    another process's (``facesearch people regroup``) holding the regroup lock now; one
    that takes the lock between this check and the job's start makes the job's ``error``
    say so."""
    require_admin(gallery.actor, "regroup")
    key = _job_key(gallery)
    with _jobs_lock:
        running = _jobs.get(key)
        if running is not None and running.running:
            raise ConfigError(f"a regroup of this gallery is already running ({running.stage}); wait for it to "
                              "finish")
        probe = _regroup_lock(gallery)
        try:
            probe.acquire()
        except Timeout:
            raise ConfigError("a regroup of this gallery is already running elsewhere (the command line?); wait "
                              "for it to finish") from None
        probe.release()
        job = RegroupJob("Regrouping the library", gallery=gallery, params=params)
        _jobs[key] = job
        job.start()
    return job


def running_regroup(gallery: FaceGallery) -> RegroupJob | None:
    """The regroup of this gallery running in this process (any session's), or None."""
    with _jobs_lock:
        job = _jobs.get(_job_key(gallery))
    return job if job is not None and job.running else None
