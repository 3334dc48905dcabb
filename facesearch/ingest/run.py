"""Build a gallery from a labelled dataset (folders, CelebA, LFW, FIW, CSV).

* Face IDs are ``<image sha1[:20]>-<face index>-<label hash>``: a face is a photo's face
  *under a label*, so the same photo in ``alice/`` and in ``bob/`` gives two faces (and
  erasing one leaves the other); ingesting the same photo twice under the same label, from
  any path, adds nothing. Faces already stored (under any id, older ids included) are not
  written again, so the report and the audit log count only what was really written.
* Ingests of one gallery queue: a second one waits, saying so, for the first to finish,
  then decides what is left to do (two runs of the same folder add each face once).
* A ledger (SQLite, ``$FACESEARCH_HOME/ingest.sqlite``) records each file's outcome
  after its faces are written, so a second run resumes where the first stopped, and
  files with no face or unreadable files are not re-tried unless they change.
* Every failed file is reported with its reason and skipped; nothing stops the run but
  a full disk or another writer, and then everything written so far stays consistent.
* With ``workers > 1`` detection and embedding run in worker processes (models load once
  per worker) while this process writes batches to Chroma.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from store import FaceGallery

from facesearch import audit
from facesearch.access import Actor, check_ingest_path, require_admin
from facesearch.datasets.base import LabeledImage, path_text
from facesearch.datasets.photos import UnlabeledImage
from facesearch.datasets.registry import load_images
from facesearch.errors import FaceSearchError, GalleryBusyError, ImageError, StorageFullError
from facesearch.imaging.decode import to_jpeg
from facesearch.embedding.pipeline import Pipeline
from facesearch.embedding.workers import PhotoWorkers, Work
from facesearch.ingest.ledger import Ledger
from facesearch.settings import Settings, get_settings

Progress = Callable[[int, int, str], None]  # (done, total, current path)

log = logging.getLogger(__name__)


@dataclass
class IngestReport:
    total: int = 0  # files in the dataset (after limit)
    processed: int = 0  # files looked at in this run
    skipped: int = 0  # already done in an earlier run
    images_with_faces: int = 0
    faces_added: int = 0
    no_face: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped early, if it did

    @property
    def photos_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        s = (f"{self.processed} photos processed ({self.skipped} already done), {self.faces_added} faces added "
             f"from {self.images_with_faces} photos, {len(self.no_face)} with no face, {len(self.failed)} failed, "
             f"in {self.seconds:.1f} s ({self.photos_per_second:.2f} photos/s)")
        if self.stopped:
            s += f"; stopped early: {self.stopped}"
        return s


def _stat(p: Path) -> tuple[int, float]:
    try:
        st = p.stat()
        return st.st_size, st.st_mtime
    except OSError:
        return -1, 0.0


def face_id(sha1: str, index: int, identity: str) -> str:
    """The id of face ``index`` of the photo ``sha1`` labelled ``identity``: the label is
    part of it, so one photo under two names is two faces, neither overwriting the other."""
    label = hashlib.sha1(str(identity).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{sha1[:20]}-{index}-{label}"


def _label_key(md: dict) -> str:
    """The label a face was ingested under: a photo library's face (``people``) was
    ingested unnamed and stays that face when its person is named."""
    return "" if md.get("people") else str(md.get("identity"))


def _face_key(md: dict) -> tuple[str, int, str]:
    """What makes a stored face the same face, whatever its id: (photo, face index, label)."""
    return str(md.get("image_sha1")), int(md.get("face_index", 0)), _label_key(md)


# -- the job each photo gets, in a worker process or this one (facesearch.embedding.workers) --
def _process(pipe: Pipeline, path: str, data: bytes | None = None, max_faces: int | None = None) -> dict:
    """Detect + embed one file (or its bytes, read by the client, for a cluster whose
    workers do not see the client's disk, and then without the embedding cache).
    ``max_faces``: only the largest faces get a thumbnail and a quality check (the rest
    would be thrown away). Returns a plain, picklable dict."""
    try:
        a = pipe.analyze(data if data is not None else path, path, thumbs=True, max_faces=max_faces,
                         cache=data is None)
    except ImageError as exc:
        return {"path": path, "error": exc.reason}
    except FaceSearchError:
        raise
    except Exception as exc:  # a decoder or model crash on one file must not end the run
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "path": path, "sha1": a.sha1,
        "faces": [({**fr.face.to_dict(), "quality": "" if fr.quality is None or fr.quality.ok else fr.quality.kind},
                   fr.embedding, to_jpeg(fr.thumb)) for fr in a.faces],
    }


def _metadata(item: LabeledImage, sha1: str, idx: int, face: dict, source_root: str) -> dict:
    md = {
        # A name that is not UTF-8 (Linux allows any bytes) is stored escaped: Chroma takes only text.
        "identity": item.identity, "path": path_text(item.path), "image_sha1": sha1, "face_index": idx,
        "box": ",".join(str(int(v)) for v in face["box"]), "det_confidence": float(face["confidence"]),
        "dataset": source_root,
    }
    if item.family:
        md["family"] = item.family
    if item.member:
        md["member"] = item.member
    for k, v in item.extra:
        md.setdefault(k, v)
    if isinstance(item, UnlabeledImage):
        # A photo library's face: unnamed ("") until its person is named, and grouped into
        # people by facesearch.people; "quality" ("" or why it fails the gate) tells the
        # grouping which faces it can trust.
        md["people"] = True
        md["quality"] = str(face.get("quality") or "")
    return md


def ingest(path: str | Path, fmt: str = "auto", *, model: str | None = None, detector: str | None = None,
           settings: Settings | None = None, limit: int | None = None, workers: int | None = None,
           all_faces: bool = False, progress: Progress | None = None, restart: bool = False,
           items: Iterable[LabeledImage] | None = None, stop: threading.Event | None = None,
           dask: str | None = None, actor: Actor | None = None, action: str = "ingest",
           waiting: Callable[[str], None] | None = None) -> IngestReport:
    """Add the photos under ``path`` to the (model, detector) gallery.

    Only the largest face of each labelled photo is stored, since the label names one
    person; ``all_faces=True`` stores every face under the same label. A photo library
    (format ``photos``: no labels) stores every face unnamed, and its new faces then join
    the people already found (:func:`facesearch.people.service.place_new_faces`). ``workers``: local
    worker processes; ``dask``: run detection and embedding on a Dask cluster instead
    (``"local"`` or a scheduler address) while this process writes, as it does for workers.
    ``actor``: who asks (None: the command line); see :mod:`facesearch.access`.
    ``action``: what the audit log calls this run ("ingest", or "enroll" for one
    person's uploaded photos); it gets one line with the faces added.
    ``waiting``: told (one sentence) when another ingest writes this gallery and this one
    waits for it; the wait ends when it finishes, or on ``stop``.
    """
    settings = settings or get_settings()
    who = require_admin(actor, "adding photos to the gallery")
    if path is not None:
        check_ingest_path(settings, path, actor)
    model, detector = model or settings.model, detector or settings.detector
    workers = max(1, workers or settings.workers)
    t0 = time.perf_counter()
    images = list(items) if items is not None else load_images(path, fmt, limit=limit)
    from facesearch.models.registry import get_model

    emb = get_model(model, settings)
    gallery = FaceGallery(emb.name, emb.dim, detector, settings, actor=actor)
    ledger = Ledger(settings.home / "ingest.sqlite", gallery.name)
    if restart:
        ledger.forget()
    report = IngestReport(total=len(images))
    # A photo library (no labels): every face, each its own unnamed face, then grouped.
    library = any(isinstance(it, UnlabeledImage) for it in images)
    all_faces = all_faces or library
    max_faces = None if all_faces else 1
    source = _audit_source(settings, path, action)
    try:
        with audit.operation(settings, who, action, source=source), contextlib.ExitStack() as held:
            if not _wait_for_writer(gallery, held, stop, waiting):
                report.stopped = "stopped on request while waiting for another ingest of this gallery"
                return report
            # Decided only now, holding the lock: what an ingest that ran meanwhile did is done.
            todo = _files_to_do(images, ledger, gallery, report)
            batch = _Batch(gallery, ledger, report, todo, all_faces=all_faces, root=path_text(path) if path else "None",
                           batch_size=settings.batch_size, progress=progress)
            paths = [str(it.path) for it, _, _ in todo]
            pool = held.enter_context(PhotoWorkers(workers, dask))
            results = pool.run(_process, Work(emb.name, detector, settings), paths, max_faces)
            with contextlib.closing(results):
                for res in results:
                    batch.add(res)
                    if stop is not None and stop.is_set():
                        report.stopped = "stopped on request (run it again to go on from there)"
                        break
            batch.flush()
            if library:
                # New faces join the people already found (the library is not regrouped).
                from facesearch.people.service import place_new_faces

                place_new_faces(gallery, settings)
    except StorageFullError as exc:
        report.stopped = str(exc)
        report.seconds = time.perf_counter() - t0
        raise
    finally:
        report.seconds = time.perf_counter() - t0
        ledger.db.close()
    return report


def _wait_for_writer(gallery: FaceGallery, held: contextlib.ExitStack, stop: threading.Event | None,
                     waiting: Callable[[str], None] | None) -> bool:
    """Take the gallery's write lock into ``held``, waiting as long as another writer
    holds it (saying so once). False if ``stop`` was set while waiting."""
    told = False
    while True:
        lock = gallery.writer(wait=1.0)
        try:
            lock.__enter__()
        except GalleryBusyError:
            if stop is not None and stop.is_set():
                return False
            if not told:
                try:
                    holder = Path(gallery._lock.lock_file).read_text().strip()
                except OSError:
                    holder = ""
                msg = (f"another ingest ({holder or 'another process'}) is writing the gallery of model "
                       f"{gallery.model} and detector {gallery.detector}; waiting for it to finish, then this one "
                       f"goes on")
                (waiting or log.warning)(msg)
                told = True
            continue
        held.push(lock)
        return True


def _files_to_do(images: list[LabeledImage], ledger: Ledger, gallery: FaceGallery,
                 report: IngestReport) -> list[tuple[LabeledImage, int, float]]:
    """(image, size, mtime) of each file that no earlier run finished; the others count
    as skipped in ``report``."""
    done = ledger.done()
    # A file done earlier whose faces were deleted since (an identity erased) is done
    # again; one metadata scan of the gallery tells which (photo, label) pairs are still in
    # it: the same photo kept under another label does not make this one done.
    present = {(str(md.get("image_sha1")), _label_key(md)) for _, md in gallery.iter_metadata() if md} \
        if any(v[2] == "ok" for v in done.values()) else set()
    todo: list[tuple[LabeledImage, int, float]] = []
    for it in images:
        size, mtime = _stat(it.path)
        prev = done.get(path_text(it.path))
        if prev is not None and prev[:2] == (size, mtime) and (prev[2] != "ok" or (prev[3], it.identity) in present):
            report.skipped += 1
        else:
            todo.append((it, size, mtime))
    return todo


def _audit_source(settings: Settings, path: str | Path | None, action: str) -> str | None:
    """What the audit log names as the run's source. A server folder is named; an
    upload's path is not (an enrollment's folder carries the person's name, which an
    erasure must not leave behind)."""
    if action != "ingest" or path is None:
        return None
    return "upload" if str(Path(path).resolve()).startswith(str((settings.home / "uploads").resolve())) \
        else path_text(path)


class _Batch:
    """Processed files waiting to be written: their faces (ids, vectors, metadata,
    thumbnails) and their ledger rows, written every ``batch_size`` faces."""

    def __init__(self, gallery: FaceGallery, ledger: Ledger, report: IngestReport,
                 todo: list[tuple[LabeledImage, int, float]], *, all_faces: bool, root: str, batch_size: int,
                 progress: Progress | None):
        self.gallery, self.ledger, self.report = gallery, ledger, report
        self.by_path = {str(it.path): (it, s, m) for it, s, m in todo}
        self.all_faces, self.root, self.batch_size, self.progress = all_faces, root, batch_size, progress
        self.ids: list[str] = []
        self.emb: list[np.ndarray] = []
        self.md: list[dict] = []
        self.thumbs: list[tuple[str, bytes]] = []
        self.ledger_rows: list[tuple] = []
        self.ids_set: set[str] = set()

    def flush(self) -> None:
        if self.ids:
            # Thumbnails first, then vectors, then the ledger: a crash in between leaves
            # at worst a re-done file, never a ledger entry without its faces.
            # Faces already stored (another run of the same folder, the photo under the same
            # label elsewhere, an id from before labels were part of it) are not written
            # again: the report and the audit log count what was really added.
            shas = sorted({str(m["image_sha1"]) for m in self.md})
            stored = {_face_key(m or {}) for m in
                      self.gallery.get(where={"image_sha1": {"$in": shas}})["metadatas"]}
            new = [i for i, m in enumerate(self.md) if _face_key(m) not in stored]
            if new:
                # The audit log's "started" line before anything of the run is written (a run
                # that writes nothing leaves no line).
                audit.begin(self.gallery.settings)
            for i in new:
                self.gallery.save_thumb(*self.thumbs[i])
            if new:
                self.gallery.upsert([self.ids[i] for i in new], np.stack([self.emb[i] for i in new]),
                                    [self.md[i] for i in new], lock=False)
            self.report.faces_added += len(new)
        self.ledger.mark(self.ledger_rows)
        for lst in (self.ids, self.emb, self.md, self.thumbs, self.ledger_rows, self.ids_set):
            lst.clear()

    def add(self, res: dict) -> None:
        """One :func:`_process` result: counted in the report, its faces and ledger row queued."""
        it, size, mtime = self.by_path[res["path"]]
        # The ledger, the report and the progress get the path as text (escaped where the
        # name is not UTF-8); res["path"] is what opens the file.
        text = path_text(res["path"])
        report = self.report
        report.processed += 1
        if "error" in res:
            report.failed.append((text, res["error"]))
            self.ledger_rows.append((text, size, mtime, "failed", res["error"], 0, ""))
        elif not res["faces"]:
            report.no_face.append(text)
            self.ledger_rows.append((text, size, mtime, "no_face", "no face detected", 0, res["sha1"]))
        else:
            report.images_with_faces += 1
            faces = res["faces"] if self.all_faces else res["faces"][:1]
            for idx, (fd, e, jpg) in enumerate(faces):
                fid = face_id(res["sha1"], idx, it.identity)
                if fid in self.ids_set:
                    continue  # the same photo twice in one batch under one label: stored once
                self.ids_set.add(fid)
                self.ids.append(fid)
                self.emb.append(e)
                self.md.append(_metadata(it, res["sha1"], idx, fd, self.root))
                self.thumbs.append((fid, jpg))
            self.ledger_rows.append((text, size, mtime, "ok", "", len(faces), res["sha1"]))
        if self.progress:
            self.progress(report.processed + report.skipped, report.total, text)
        if len(self.ids) >= self.batch_size or len(self.ledger_rows) >= self.batch_size * 4:
            self.flush()
