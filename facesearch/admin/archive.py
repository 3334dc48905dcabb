"""A gallery in one file: export it, restore it in another data folder.

The archive is a zip:

* ``manifest.json``: ``format`` ("facesearch-gallery"), ``version``, the collection's
  ``model``, ``detector``, ``dim`` and ``metric``, the number of faces and thumbnails,
  and the SHA-256 of the two data members;
* ``faces.jsonl``: one ``{"id", "metadata"}`` line per face, in the vectors' order;
* ``vectors.npy``: ``(faces, dim)`` float32 (``numpy.save``, no pickle);
* ``thumbs/<id>.jpg``: each face's thumbnail, where it had one.

A restore reads and checks the whole archive before it writes anything: a file that is
not such an archive, a damaged one, a newer version, a model this installation does not
know or vectors of the wrong dimension get an :class:`ArchiveError` and leave the data
folder as it was. Export and restore are admin actions and go into the audit log.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from facesearch import audit
from facesearch.access import Actor, require_admin
from facesearch.errors import ArchiveError, FaceSearchError, disk_full_raises
from facesearch.settings import Settings, get_settings

from store.gallery import METRIC, FaceGallery, collection_name, list_galleries

FORMAT = "facesearch-gallery"
VERSION = 1
MANIFEST, FACES, VECTORS, THUMBS = "manifest.json", "faces.jsonl", "vectors.npy", "thumbs/"
# Bounds a hostile archive cannot push a restore past (sizes as the zip declares them,
# which zipfile enforces while reading).
MAX_FACES = 5_000_000
MAX_MANIFEST = 1 << 20
MAX_FACE_LINE = 16 << 10  # one face's metadata as JSON
MAX_THUMB = 1 << 20
# Face ids become file names (thumbs/<detector>/<id[:2]>/<id>.jpg): no separators, no dots
# that could climb out.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


@dataclass
class RestoreReport:
    collection: str
    model: str
    detector: str
    dim: int
    faces: int
    thumbnails: int
    merged: bool = False

    def summary(self) -> str:
        return (f"restored {self.faces} faces ({self.thumbnails} thumbnails) into {self.collection} "
                f"(model {self.model}, {self.dim}-d, detector {self.detector})"
                + ("; merged with the faces already there" if self.merged else ""))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_gallery(gallery: FaceGallery, dest: str | Path | BinaryIO) -> dict:
    """Write ``gallery`` (vectors, metadata, thumbnails) to ``dest``, a path (written
    whole or not at all) or a binary file object. Returns the manifest."""
    actor = require_admin(gallery.actor, "exporting the gallery")
    ids, x, mds = gallery.all_embeddings()
    faces = "".join(json.dumps({"id": i, "metadata": m or {}}, ensure_ascii=False) + "\n"
                    for i, m in zip(ids, mds)).encode()
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
    vectors = buf.getvalue()
    col_md = gallery.col.metadata or {}
    thumbs = {}
    for i in ids:
        try:
            thumbs[i] = gallery.thumb_path(i).read_bytes()
        except OSError:
            pass  # a face without a thumbnail still restores; the Match page shows none
    manifest = {
        "format": FORMAT, "version": VERSION, "collection": gallery.name, "model": gallery.model,
        "detector": gallery.detector, "dim": gallery.dim, "metric": METRIC, "faces": len(ids),
        "thumbnails": len(thumbs), "created": col_md.get("created"),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sha256": {FACES: _sha256(faces), VECTORS: _sha256(vectors)},
    }

    def write(f) -> None:
        with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2), compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(FACES, faces, compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(VECTORS, vectors, compress_type=zipfile.ZIP_STORED)  # floats do not compress
            for i, jpg in thumbs.items():
                zf.writestr(f"{THUMBS}{i}.jpg", jpg, compress_type=zipfile.ZIP_STORED)

    try:
        with disk_full_raises(f"disk full while writing the archive {dest}; nothing was kept"):
            if isinstance(dest, (str, Path)):
                dest = Path(dest)
                tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
                try:
                    with open(tmp, "wb") as f:
                        write(f)
                    os.replace(tmp, dest)
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                write(dest)
    except OSError as exc:
        raise ArchiveError(f"cannot write the archive {dest}: {exc.strerror or exc}") from None
    audit.record(gallery.settings, actor, "export", len(ids), galleries=[gallery.name])
    return manifest


def _read(zf: zipfile.ZipFile, name: str, limit: int) -> bytes:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ArchiveError(f"the archive has no {name}") from None
    if info.file_size > limit:
        raise ArchiveError(f"the archive's {name} is too large ({info.file_size:,} bytes)")
    return zf.read(info)


def _load(src) -> tuple[dict, list[str], np.ndarray, list[dict], dict[str, bytes]]:
    """Everything an archive holds, checked: (manifest, ids, vectors, metadatas, thumbs)."""
    what = "the upload" if not isinstance(src, (str, Path)) else str(src)
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(bytes(src))
    try:
        zf = zipfile.ZipFile(src)
    except FileNotFoundError:
        raise ArchiveError(f"{what}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ArchiveError(f"{what} is not a gallery archive (not a zip file)") from None
    try:
        with zf:
            if MANIFEST not in zf.namelist():
                raise ArchiveError(f"{what} is not a gallery archive from `facesearch export` (no {MANIFEST})")
            try:
                m = json.loads(_read(zf, MANIFEST, MAX_MANIFEST))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ArchiveError(f"{what}: its {MANIFEST} is not JSON") from None
            if not isinstance(m, dict) or m.get("format") != FORMAT:
                raise ArchiveError(f"{what} is not a facesearch gallery archive (format {m.get('format')!r})"
                                   if isinstance(m, dict) else f"{what}: its {MANIFEST} is not a manifest")
            version = m.get("version")
            if not isinstance(version, int) or version < 1:
                raise ArchiveError(f"{what}: its manifest has no valid version")
            if version > VERSION:
                raise ArchiveError(f"{what} was written by a newer facesearch (archive version {version}; "
                                   f"this one reads up to {VERSION}): update facesearch to restore it")
            model, detector, dim, n = m.get("model"), m.get("detector"), m.get("dim"), m.get("faces")
            if not (isinstance(model, str) and isinstance(detector, str) and isinstance(dim, int)
                    and isinstance(n, int) and 0 < dim <= 65536 and 0 <= n <= MAX_FACES):
                raise ArchiveError(f"{what}: its manifest lacks a valid model, detector, dimension or face count")
            if m.get("metric", METRIC) != METRIC:
                raise ArchiveError(f"{what} holds {m.get('metric')} vectors; galleries here use {METRIC}")
            _check_model(what, model, detector, dim)

            raw_faces = _read(zf, FACES, max(1, n) * MAX_FACE_LINE)
            raw_vectors = _read(zf, VECTORS, 4096 + n * dim * 4)
            sums = m.get("sha256") if isinstance(m.get("sha256"), dict) else {}
            for name, data in ((FACES, raw_faces), (VECTORS, raw_vectors)):
                if sums.get(name) is not None and sums[name] != _sha256(data):
                    raise ArchiveError(f"{what} is damaged: {name} does not match its checksum")
            ids, mds = _faces(what, raw_faces, n)
            x = _vectors(what, raw_vectors, n, dim)
            known = set(ids)
            thumbs: dict[str, bytes] = {}
            for info in zf.infolist():
                if not info.filename.startswith(THUMBS) or info.is_dir():
                    continue
                fid = info.filename[len(THUMBS):].removesuffix(".jpg")
                if fid not in known or not info.filename.endswith(".jpg"):
                    raise ArchiveError(f"{what}: unexpected member {info.filename!r}")
                data = _read(zf, info.filename, MAX_THUMB)
                if not data.startswith(b"\xff\xd8"):
                    raise ArchiveError(f"{what}: {info.filename} is not a JPEG")
                thumbs[fid] = data
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{what} is damaged ({exc})") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(f"{what} cannot be read ({exc})") from None
    return m, ids, x, mds, thumbs


def _check_model(what: str, model: str, detector: str, dim: int) -> None:
    from facesearch.imaging.detection import check_detector_name
    from facesearch.models.registry import check_model_name, get_model

    try:
        name = check_model_name(model)
        check_detector_name(detector)
    except FaceSearchError as exc:
        raise ArchiveError(f"{what} holds a gallery this installation cannot use: {exc}") from None
    want = get_model(name).dim
    if want and want != dim:
        raise ArchiveError(f"{what} says its {model} vectors have {dim} dimensions; {model} gives {want}")


def _faces(what: str, raw: bytes, n: int) -> tuple[list[str], list[dict]]:
    ids, mds = [], []
    try:
        lines = raw.decode().splitlines()
    except UnicodeDecodeError:
        raise ArchiveError(f"{what}: {FACES} is not UTF-8 text") from None
    for k, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ArchiveError(f"{what}: line {k} of {FACES} is not JSON") from None
        fid = rec.get("id") if isinstance(rec, dict) else None
        md = rec.get("metadata") if isinstance(rec, dict) else None
        if not isinstance(fid, str) or not _ID.match(fid):
            raise ArchiveError(f"{what}: line {k} of {FACES} has no valid face id")
        if not isinstance(md, dict) or not isinstance(md.get("identity"), str) or not md["identity"]:
            raise ArchiveError(f"{what}: face {fid} has no identity")
        if not all(isinstance(kk, str) and isinstance(v, (str, int, float, bool)) for kk, v in md.items()):
            raise ArchiveError(f"{what}: face {fid} has metadata that is not plain text or numbers")
        ids.append(fid)
        mds.append(md)
    if len(ids) != n:
        raise ArchiveError(f"{what}: the manifest counts {n} faces, {FACES} has {len(ids)}")
    if len(set(ids)) != len(ids):
        raise ArchiveError(f"{what}: {FACES} lists a face id twice")
    return ids, mds


def _vectors(what: str, raw: bytes, n: int, dim: int) -> np.ndarray:
    try:
        x = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise ArchiveError(f"{what}: {VECTORS} is not a numpy array") from None
    if x.dtype != np.float32 or x.shape != (n, dim):
        raise ArchiveError(f"{what}: {VECTORS} is {x.dtype} {x.shape}, the manifest says float32 ({n}, {dim})")
    if not np.isfinite(x).all():
        raise ArchiveError(f"{what}: {VECTORS} contains NaN or infinity")
    return x


def read_manifest(src: str | Path | bytes | BinaryIO) -> dict:
    """The archive's manifest, after checking the whole archive (ArchiveError if bad)."""
    return _load(src)[0]


def restore_gallery(src: str | Path | bytes | BinaryIO, settings: Settings | None = None,
                    actor: Actor | None = None, *, merge: bool = False) -> RestoreReport:
    """Restore an archive of :func:`export_gallery` into ``settings``' data folder: the
    (model, detector) gallery it names, with its thumbnails. Refuses a gallery that
    already has faces unless ``merge`` (face ids are content hashes, so a face present
    on both sides is stored once). An admin action."""
    settings = settings or get_settings()
    actor = require_admin(actor, "restoring a gallery")
    m, ids, x, mds, thumbs = _load(src)
    name = collection_name(m["model"], m["detector"])
    existing = {g["name"]: g for g in list_galleries(settings)}.get(name)
    if existing is not None:
        if existing["dim"] != m["dim"]:
            raise ArchiveError(f"gallery {name} here holds {existing['dim']}-d vectors; the archive's are "
                               f"{m['dim']}-d")
        if existing["count"] and not merge:
            raise ArchiveError(f"gallery {name} here already has {existing['count']:,} faces: restore into an "
                               "empty data folder, or merge (--merge) to add the archive's faces to them")
    with audit.operation(settings, actor, "restore"):
        gallery = FaceGallery(m["model"], m["dim"], m["detector"], settings, actor=actor)
        # Thumbnails first, as an ingest does: a restore cut short leaves thumbnails
        # without faces (harmless, and the re-run fills in), never faces without them.
        for fid, jpg in thumbs.items():
            gallery.save_thumb(fid, jpg)
        gallery.upsert(ids, x, mds)
    return RestoreReport(gallery.name, gallery.model, gallery.detector, gallery.dim, len(ids), len(thumbs),
                         merged=bool(existing and existing["count"]))
