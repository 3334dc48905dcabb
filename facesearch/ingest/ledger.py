"""The ingest ledger: which files an ingest finished, in ``$FACESEARCH_HOME/ingest.sqlite``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from filelock import FileLock

from facesearch.errors import disk_full_raises


class Ledger:
    """Each file's outcome per collection (path, size, mtime, status, reason, faces, sha1),
    so a later run skips what an earlier one finished."""

    def __init__(self, path: Path, collection: str):
        self.collection = collection
        self.db_path = path
        with disk_full_raises(f"disk full: cannot open the ingest ledger {path}; free some space and run again"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=30)
        # Two ingests opening a new ledger at once (the page's jobs, worker processes):
        # switching it to WAL fails at once with "database is locked" (SQLite's busy
        # timeout does not cover it), so they set it up one at a time.
        with disk_full_raises(f"disk full: cannot open the ingest ledger {path}; free some space and run again"), \
                FileLock(str(path) + ".lock", timeout=60):
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA secure_delete=ON")  # erased photos' rows leave no bytes behind
            self.db.execute("CREATE TABLE IF NOT EXISTS files (collection TEXT, path TEXT, size INTEGER, mtime REAL, "
                            "status TEXT, reason TEXT, faces INTEGER, sha1 TEXT, PRIMARY KEY (collection, path))")
            self.db.commit()

    def done(self) -> dict[str, tuple[int, float, str, str]]:
        """path -> (size, mtime, status, sha1) of every file an earlier run finished."""
        rows = self.db.execute("SELECT path, size, mtime, status, sha1 FROM files WHERE collection=?",
                               (self.collection,))
        return {p: (s, m, st, h or "") for p, s, m, st, h in rows}

    def mark(self, rows: list[tuple[str, int, float, str, str, int, str]]) -> None:
        if not rows:
            return
        # On a full disk the faces are in the gallery; only the bookkeeping is lost, so the
        # next run re-does these files and adds nothing twice (content-hash IDs).
        with disk_full_raises("disk full while recording ingest progress; free some space and run the same "
                              "command again to resume"):
            try:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
                                    [(self.collection, *r) for r in rows])
                self.db.commit()
            except sqlite3.OperationalError:
                self.db.rollback()
                raise

    def forget(self) -> None:
        self.db.execute("DELETE FROM files WHERE collection=?", (self.collection,))
        self.db.commit()

    def paths_of(self, sha1s) -> set[str]:
        """Every path recorded for these photos, in any collection."""
        hs = sorted({str(h) for h in sha1s if h})
        out: set[str] = set()
        for i in range(0, len(hs), 500):
            part = hs[i:i + 500]
            out |= {r[0] for r in self.db.execute(
                f"SELECT path FROM files WHERE sha1 IN ({','.join('?' * len(part))})", part)}
        return out

    def forget_photos(self, sha1s, paths=()) -> tuple[int, str | None]:
        """Delete the rows of these photos (by hash or path) in every collection, so a
        later ingest of their folder adds them again, and scrub the file. Returns (rows
        deleted, None or why the file could not be scrubbed)."""
        from facesearch.embedding.cache import scrub_sqlite

        n = 0
        for col, keys in (("sha1", sorted({str(h) for h in sha1s if h})), ("path", sorted({str(p) for p in paths}))):
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                n += self.db.execute(f"DELETE FROM files WHERE {col} IN ({','.join('?' * len(part))})", part).rowcount
        self.db.commit()
        return n, scrub_sqlite(self.db, self.db_path)
