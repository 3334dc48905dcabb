"""The people of a photo library and the user's decisions, in ``$FACESEARCH_HOME/people.sqlite``.

One row per library face (its person, whether a user put it there, its photo, path,
box, quality), one per person (name or none, cover face), one per "not this person"
(a face and a person it must never join again). Rows are per gallery (Chroma
collection), like the ingest ledger's. Every write is one transaction taken under a
file lock beside the database, so two writers (the page and a command, two ingests)
never interleave; readers are never blocked (WAL).

The gallery keeps the vectors and, for a named person's faces, the name as the face's
``identity`` (what Match finds); this file keeps everything else.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock

from facesearch.errors import disk_full_raises

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS persons (id INTEGER PRIMARY KEY AUTOINCREMENT, gallery TEXT NOT NULL, "
    "name TEXT, cover TEXT)",
    "CREATE INDEX IF NOT EXISTS persons_gallery ON persons (gallery)",
    "CREATE TABLE IF NOT EXISTS faces (gallery TEXT NOT NULL, face_id TEXT NOT NULL, photo TEXT NOT NULL, "
    "path TEXT, box TEXT, quality TEXT, person INTEGER, pinned INTEGER NOT NULL DEFAULT 0, "
    "PRIMARY KEY (gallery, face_id))",
    "CREATE INDEX IF NOT EXISTS faces_person ON faces (gallery, person)",
    "CREATE INDEX IF NOT EXISTS faces_photo ON faces (gallery, photo)",
    "CREATE TABLE IF NOT EXISTS rejected (gallery TEXT NOT NULL, face_id TEXT NOT NULL, person INTEGER NOT NULL, "
    "PRIMARY KEY (gallery, face_id, person))",
)


@dataclass(frozen=True)
class FaceRow:
    face_id: str
    photo: str  # the photo's SHA-1
    path: str
    box: str  # "x,y,w,h" in the photo's pixels
    quality: str  # "" or why the face fails the quality gate
    person: int | None
    pinned: bool  # a user put it in its person (named, merged, moved)


class PeopleStore:
    """People and decisions of one gallery (``gallery``: its collection name)."""

    def __init__(self, path: Path, gallery: str):
        self.path, self.gallery = Path(path), gallery
        msg = f"disk full: cannot open the people database {path}; free some space and run again"
        with disk_full_raises(msg):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        self._lock = FileLock(str(self.path) + ".lock", timeout=120)
        with disk_full_raises(msg), self._lock:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA secure_delete=ON")  # an erased person's rows leave no bytes behind
            for stmt in _SCHEMA:
                self.db.execute(stmt)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One transaction under the file lock: all of it, or (an error) none of it."""
        with disk_full_raises(f"disk full while writing the people database {self.path}"), self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- reads ---------------------------------------------------------------------------
    def faces(self, person: int | None = None, *, ids: Iterable[str] | None = None,
              photos: Iterable[str] | None = None, waiting: bool = False) -> list[FaceRow]:
        """Faces of the gallery: all, one person's, the given ids, those of some photos,
        or (``waiting``) those in no person."""
        q, args = "SELECT face_id, photo, path, box, quality, person, pinned FROM faces WHERE gallery=?", [self.gallery]
        if person is not None:
            q += " AND person=?"
            args.append(int(person))
        if waiting:
            q += " AND person IS NULL"
        rows: list = []
        for col, keys in (("face_id", ids), ("photo", photos)):
            if keys is not None:
                keys = sorted(set(keys))
                for i in range(0, len(keys), 500):
                    part = keys[i:i + 500]
                    rows += self.db.execute(q + f" AND {col} IN ({','.join('?' * len(part))})", [*args, *part]).fetchall()
                return [FaceRow(*r[:6], bool(r[6])) for r in sorted(rows)]
        return [FaceRow(*r[:6], bool(r[6])) for r in self.db.execute(q + " ORDER BY face_id", args)]

    def persons(self) -> dict[int, tuple[str | None, str | None]]:
        """person id -> (name or None, cover face id or None)."""
        return {int(i): (n, c) for i, n, c in
                self.db.execute("SELECT id, name, cover FROM persons WHERE gallery=?", (self.gallery,))}

    def counts(self) -> dict[int, tuple[int, int]]:
        """person id -> (faces, photos)."""
        return {int(p): (int(f), int(ph)) for p, f, ph in self.db.execute(
            "SELECT person, COUNT(*), COUNT(DISTINCT photo) FROM faces WHERE gallery=? AND person IS NOT NULL "
            "GROUP BY person", (self.gallery,))}

    def rejected(self) -> set[tuple[str, int]]:
        """(face id, person id) pairs a user said are not the same person."""
        return {(f, int(p)) for f, p in
                self.db.execute("SELECT face_id, person FROM rejected WHERE gallery=?", (self.gallery,))}

    def by_name(self, name: str) -> int | None:
        r = self.db.execute("SELECT id FROM persons WHERE gallery=? AND name=? ORDER BY id LIMIT 1",
                            (self.gallery, name)).fetchone()
        return int(r[0]) if r else None

    # -- writes (inside write()) -----------------------------------------------------------
    def new_person(self, db: sqlite3.Connection, name: str | None = None, cover: str | None = None) -> int:
        return int(db.execute("INSERT INTO persons (gallery, name, cover) VALUES (?,?,?)",
                              (self.gallery, name, cover)).lastrowid)

    def add_faces(self, db: sqlite3.Connection, rows: Iterable[FaceRow]) -> None:
        db.executemany("INSERT OR REPLACE INTO faces VALUES (?,?,?,?,?,?,?,?)",
                       [(self.gallery, r.face_id, r.photo, r.path, r.box, r.quality, r.person, int(r.pinned))
                        for r in rows])

    def assign(self, db: sqlite3.Connection, face_ids: Iterable[str], person: int | None, pinned: bool) -> None:
        db.executemany("UPDATE faces SET person=?, pinned=? WHERE gallery=? AND face_id=?",
                       [(person, int(pinned), self.gallery, f) for f in face_ids])

    def drop_faces(self, db: sqlite3.Connection, face_ids: Iterable[str]) -> None:
        ids = [(self.gallery, f) for f in face_ids]
        db.executemany("DELETE FROM faces WHERE gallery=? AND face_id=?", ids)
        db.executemany("DELETE FROM rejected WHERE gallery=? AND face_id=?", ids)

    def reject(self, db: sqlite3.Connection, pairs: Iterable[tuple[str, int]]) -> None:
        db.executemany("INSERT OR IGNORE INTO rejected VALUES (?,?,?)", [(self.gallery, f, int(p)) for f, p in pairs])

    def unreject(self, db: sqlite3.Connection, pairs: Iterable[tuple[str, int]]) -> None:
        db.executemany("DELETE FROM rejected WHERE gallery=? AND face_id=? AND person=?",
                       [(self.gallery, f, int(p)) for f, p in pairs])

    def set_person(self, db: sqlite3.Connection, person: int, *, name: str | None = ..., cover: str | None = ...) -> None:
        if name is not ...:
            db.execute("UPDATE persons SET name=? WHERE gallery=? AND id=?", (name, self.gallery, int(person)))
        if cover is not ...:
            db.execute("UPDATE persons SET cover=? WHERE gallery=? AND id=?", (cover, self.gallery, int(person)))

    def drop_person(self, db: sqlite3.Connection, person: int, into: int | None = None) -> None:
        """Remove a person; its "not this person" decisions move to ``into`` (a merge)."""
        if into is not None:
            db.execute("INSERT OR IGNORE INTO rejected SELECT gallery, face_id, ? FROM rejected "
                       "WHERE gallery=? AND person=?", (int(into), self.gallery, int(person)))
        db.execute("DELETE FROM rejected WHERE gallery=? AND person=?", (self.gallery, int(person)))
        db.execute("UPDATE faces SET person=NULL, pinned=0 WHERE gallery=? AND person=?", (self.gallery, int(person)))
        db.execute("DELETE FROM persons WHERE gallery=? AND id=?", (self.gallery, int(person)))


def forget_person_named(path: Path, name: str) -> tuple[int, str | None]:
    """Erasure (:func:`facesearch.admin.privacy.erase_identity`): every person called
    ``name`` in every gallery, with their faces' rows (photo, path, box) and decisions,
    then the file scrubbed. Returns (rows deleted, None or why it could not be scrubbed)."""
    from facesearch.embedding.cache import scrub_sqlite

    if not Path(path).is_file():
        return 0, None
    st = PeopleStore(path, "")
    try:
        n = 0
        with st.write() as db:
            for gallery, pid in db.execute("SELECT gallery, id FROM persons WHERE name=?", (name,)).fetchall():
                faces = [r[0] for r in db.execute("SELECT face_id FROM faces WHERE gallery=? AND person=?",
                                                  (gallery, pid))]
                for f in faces:
                    n += db.execute("DELETE FROM faces WHERE gallery=? AND face_id=?", (gallery, f)).rowcount
                    db.execute("DELETE FROM rejected WHERE gallery=? AND face_id=?", (gallery, f))
                db.execute("DELETE FROM rejected WHERE gallery=? AND person=?", (gallery, pid))
                n += db.execute("DELETE FROM persons WHERE gallery=? AND id=?", (gallery, pid)).rowcount
        return n, (scrub_sqlite(st.db, path) if n else None)
    finally:
        st.close()
