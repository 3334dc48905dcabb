"""Right to erasure: remove a person from everything the data folder holds.

:func:`erase_identity` removes, for every face labelled with the name in *every* gallery
(each model and detector; the name's variants too: the same label up to case, spacing,
Unicode normalisation and invisible characters, :func:`label_key`): its vectors and
metadata, its thumbnail, the cached faces and vectors of its photos (under any model or
detector key), the ingest ledger's rows for those photos (so a later ingest of their
folder adds them again), and the copies of those photos that uploads left in
``uploads/`` (an enrollment's folder goes whole, photos without a detected face
included). Exactly the person's: the same photo may also hold a face of another
identity (a face is a photo's face under a label), and what that other face still uses
(its thumbnail, the photo's cached vectors and ledger rows, an uploaded copy its record
points to) stays until its last owner is erased. Then it scrubs the files: Chroma only marks a
deleted vector deleted (its HNSW data file keeps the bytes, its SQLite file keeps them
in free pages and its write log), so each gallery that lost faces is rewritten from the
faces it keeps (:meth:`store.FaceGallery.rebuild`), the dropped collection's folder is
removed and the SQLite files are vacuumed, with their write-ahead logs emptied.

What it cannot reach: a remote Chroma server's files (``FACESEARCH_CHROMA_URL``), an
export archive or backup taken before, the source photos on the server's own folders
(the dataset an admin ingested: never ours to delete), and disk blocks the file system
freed (a journaling file system or an SSD may keep them until they are reused). It
reports what it could not scrub rather than failing.
"""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from facesearch import audit
from facesearch.access import Actor, require_admin
from facesearch.errors import ConfigError
from facesearch.settings import Settings, get_settings


@dataclass
class Erasure:
    identity: str
    faces: int = 0  # vectors removed, all galleries together
    photos: int = 0  # distinct photos (content hashes) whose derived data was removed
    galleries: list[str] = field(default_factory=list)  # collections that held the person
    cache_rows: int = 0
    ledger_rows: int = 0
    uploads: int = 0  # uploaded photo files removed
    not_scrubbed: list[str] = field(default_factory=list)  # sentences: what stays on disk, and why

    @property
    def found(self) -> bool:
        return bool(self.faces or self.cache_rows or self.ledger_rows or self.uploads)

    def summary(self) -> str:
        if not self.found:
            return f"Nothing of {self.identity!r} was found in the galleries, the cache or the uploads."
        s = (f"Deleted {self.faces} faces of {self.identity} from {len(self.galleries)} "
             f"galler{'y' if len(self.galleries) == 1 else 'ies'}, and erased what came from their {self.photos} "
             f"photo(s): {self.cache_rows} cached embedding row(s), {self.ledger_rows} ingest record(s), "
             f"{self.uploads} uploaded file(s).")
        if self.not_scrubbed:
            s += " Not scrubbed: " + "; ".join(self.not_scrubbed) + "."
        return s


def label_key(label: str) -> str:
    """What two spellings of one person's label share: NFKC form, case folded, invisible
    (format) characters dropped, whitespace runs as one space, trimmed: ``"Carol  Smith "``
    and ``"carol smith"`` are one person, as are a decomposed ``"Zoe\u0308"`` and ``"ZOË"``,
    and ``"ca\u200brol"`` and ``"carol"``."""
    text = unicodedata.normalize("NFKC", str(label))
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.casefold().split())


def _sha1_file(p: Path) -> str | None:
    try:
        h = hashlib.sha1()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


def _under(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def _still_stored(galleries, hashes: set[str]) -> set[str]:
    """The photos among ``hashes`` some gallery still holds (under another name)."""
    kept: set[str] = set()
    if not hashes:
        return kept
    for gal in galleries:
        r = gal.get(where={"image_sha1": {"$in": sorted(hashes)}})
        kept |= {str((m or {}).get("image_sha1")) for m in r["metadatas"]}
    return kept


def _still_referenced(galleries, paths: set[str]) -> set[str]:
    """The paths among ``paths`` that some face in some gallery still points to."""
    kept: set[str] = set()
    if not paths:
        return kept
    for gal in galleries:
        r = gal.get(where={"path": {"$in": sorted(paths)}})
        kept |= {str((m or {}).get("path")) for m in r["metadatas"]}
    return kept


def _rebuild_leftovers(client, prefix: str, gallery_cls, settings: Settings, actor) -> set[str]:
    """Names of copies left by a rebuild cut off midway. One whose original is gone is
    complete: opening its gallery gives it the name back (so the gallery is listed)."""
    try:
        cols = {c if isinstance(c, str) else c.name: c for c in client.list_collections()}
    except Exception:
        return set()
    out = set()
    for name, col in cols.items():
        if not name.startswith(prefix):
            continue
        out.add(name)
        if name[len(prefix):] not in cols and not isinstance(col, str):
            md = col.metadata or {}
            with contextlib.suppress(Exception):
                gallery_cls(md["model"], md["dim"], md["detector"], settings, create=False, actor=actor)
    return out


def erase_identity(identity: str, settings: Settings | None = None, actor: Actor | None = None) -> Erasure:
    """Erase every trace of ``identity`` from the data folder (see the module's doc).
    An admin action; one audit line ("delete", the faces removed; the name is not
    logged). Raises GalleryBusyError while an ingest writes a gallery."""
    from store.gallery import REBUILD_PREFIX, FaceGallery, get_client, list_galleries, scrub_database

    from facesearch.ingest.ledger import Ledger
    from facesearch.embedding.cache import get_cache

    settings = settings or get_settings()
    actor = require_admin(actor, "erasing a person from the gallery")
    identity = str(identity)
    if not identity.strip():
        raise ConfigError("give the name of the identity to erase")
    rep = Erasure(identity)
    with audit.operation(settings, actor, "delete") as op:
        leftovers = _rebuild_leftovers(get_client(settings), REBUILD_PREFIX, FaceGallery, settings, actor)
        galleries = [FaceGallery(g["model"], g["dim"], g["detector"], settings, create=False, actor=actor)
                     for g in list_galleries(settings)]
        sha1s, paths, rebuilt = _delete_faces(galleries, identity, leftovers, REBUILD_PREFIX, rep)
        rep.photos = len(sha1s)
        # A gallery's own calibration lists identities by name ("may be one person"):
        # measured again, without the person, at the next search.
        from facesearch.search.gallery_calibration import forget

        for name in rep.galleries:
            forget(settings, name)
        # What another identity's face still uses stays: the photo's cached vectors and
        # ledger rows (by hash), an uploaded copy its record points to (by path).
        gone = sha1s - _still_stored(galleries, sha1s)
        paths -= _still_referenced(galleries, paths)

        ledger = None
        if (settings.home / "ingest.sqlite").is_file():
            ledger = Ledger(settings.home / "ingest.sqlite", "")
        try:
            if ledger is not None:
                paths |= ledger.paths_of(gone) - _still_referenced(galleries, ledger.paths_of(gone))
            doomed, folders, extra = _uploaded_copies(settings.home / "uploads", galleries, gone, paths)
            _remove_uploads(doomed, folders, paths, rep)
            gone |= extra

            if ledger is not None:
                rep.ledger_rows, why = ledger.forget_photos(gone, paths)
                if why:
                    rep.not_scrubbed.append(why)
        finally:
            if ledger is not None:
                ledger.db.close()

        # A named person of a photo library: their people rows (photo paths, boxes) go too.
        from facesearch.people.store import forget_person_named

        rep.ledger_rows += forget_person_named(settings.home / "people.sqlite", identity)[0]
        if (settings.cache_path / "embeddings.sqlite").is_file():
            rep.cache_rows, why = get_cache(settings).forget(gone)
            if why:
                rep.not_scrubbed.append(why)
        if rebuilt:
            why = scrub_database(settings)
            if why:
                rep.not_scrubbed.append(why)
        op.always = rep.found
        if sha1s:
            op.details["photos"] = len(sha1s)
    return rep


def _delete_faces(galleries, identity: str, leftovers: set[str], rebuild_prefix: str,
                  rep: Erasure) -> tuple[set[str], set[str], bool]:
    """Delete the identity's faces (every variant of its label, :func:`label_key`) from
    every gallery, then their thumbnails that no gallery still uses (galleries of one
    detector share them), and rewrite each gallery that lost faces (or whose earlier
    rebuild was cut off). Returns the photos' content hashes and paths, and whether any
    gallery was rebuilt."""
    sha1s: set[str] = set()
    paths: set[str] = set()
    thumbs: dict[Path, str] = {}  # thumbnail -> the face id it belongs to
    rebuilt = False
    key = label_key(identity)
    for gal in galleries:
        with gal.writer():
            names = [n for n in gal.identities() if label_key(n) == key]
            r = gal.get(where={"identity": {"$in": names}}) if names else {"ids": [], "metadatas": []}
            if r["ids"]:
                thumbs.update({gal.thumb_path(i): i for i in r["ids"]})
                for m in r["metadatas"]:
                    m = m or {}
                    if m.get("image_sha1"):
                        sha1s.add(str(m["image_sha1"]))
                    if m.get("path"):
                        paths.add(str(m["path"]))
                rep.faces += gal.delete(ids=r["ids"], lock=False, thumbs=False)
                rep.galleries.append(gal.name)
            if r["ids"] or rebuild_prefix + gal.name in leftovers:
                gal.rebuild(lock=False)
                rebuilt = True
    still: set[Path] = set()  # thumbnails a face with the same id still uses (in any gallery)
    ids = sorted(set(thumbs.values()))
    for gal in galleries if ids else ():
        still |= {gal.thumb_path(i) for i in gal.get(ids=ids)["ids"]}
    for p in set(thumbs) - still:
        with contextlib.suppress(OSError):
            p.unlink()
    return sha1s, paths, rebuilt


def _uploaded_copies(uploads: Path, galleries, sha1s: set[str],
                     paths: set[str]) -> tuple[set[Path], set[Path], set[str]]:
    """Copies that uploads made: the photos themselves, and an enrollment's whole folder
    (one person each), photos with no detected face included, except those some gallery
    still holds under another name. Returns (files to remove, enrollment folders, content
    hashes of the folders' other files removed)."""
    doomed: set[Path] = set()
    folders: set[Path] = set()
    for p in map(Path, paths):
        if _under(p, uploads) and p.is_file():
            doomed.add(p)
            if _under(p, uploads / "enroll") and p.parent.resolve() != (uploads / "enroll").resolve():
                folders.add(p.parent)
    extra: set[str] = set()
    for folder in folders:
        files = {f: _sha1_file(f) for f in folder.rglob("*") if f.is_file()}
        # A file of the folder that some face still points to is that face's; the others
        # (photos with no face detected included) were the erased person's.
        kept = _still_referenced(galleries, {str(f) for f in files})
        for f, h in files.items():
            if str(f) not in kept:
                doomed.add(f)
                if h and not _still_stored(galleries, {h}):
                    extra.add(h)
    return doomed, folders, extra


def _remove_uploads(doomed: set[Path], folders: set[Path], paths: set[str], rep: Erasure) -> None:
    """Delete the files (adding their paths to ``paths``, for the ledger), then the
    folders that are left empty."""
    for f in doomed:
        with contextlib.suppress(OSError):
            f.unlink()
            rep.uploads += 1
            paths.add(str(f))
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: someone else's kept photo stays
