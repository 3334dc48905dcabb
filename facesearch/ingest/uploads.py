"""Files people upload, checked before anything reaches the disk: zips of identity folders,
and the names that become folder names.

Uploads live under ``$FACESEARCH_HOME/uploads/`` (the one place besides the configured
ingest roots that :mod:`facesearch.access` lets an ingest read). A zip is unpacked into
``uploads/zip-<hash of its bytes>/``: the same zip uploaded twice is the same folder, so
the ingest ledger skips what is done. Every refusal is a :class:`DatasetError` (or
:class:`ConfigError` for a typed name) and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from facesearch.datasets.base import IMAGE_EXTENSIONS, label_problem
from facesearch.datasets.registry import load_images
from facesearch.errors import ConfigError, DatasetError, StorageFullError, is_disk_full

# The dashboard takes uploads up to 50 MB (.streamlit/config.toml). The smallest useful
# face photos are about 5 KB (FIW's 108 x 124 crops), so an honest zip holds fewer than
# 10,000 of them; a bigger gallery is a folder on the server.
MAX_ZIP_ENTRIES = 10_000
# Ten times the upload limit: JPEG and PNG do not shrink in a zip (BMP about 3x), while a
# deflate bomb expands 1,000-fold.
MAX_ZIP_UNPACKED = 512 * 2**20
# And at most this many times the zip's own size: photos barely compress (JPEG, PNG,
# WebP: 1.0-1.1x; an uncompressed BMP or TIFF about 3x), so an honest zip of photos
# unpacks to little more than it weighs, while a 518 KB deflate bomb under the absolute
# cap unpacked to 501 MB. 8x leaves room for folders of BMPs and for zips whose few
# photos sit among text files; the floor lets a tiny zip of a few photos through.
MAX_ZIP_RATIO = 8
_MIN_ZIP_ALLOWANCE = 4 * 2**20
# Python builds an object per central-directory entry (some hundred bytes each) before we
# can count them, so the count and the directory's size are read from the zip's end
# record first. A real entry takes 46 bytes plus its name and extras: 512 on average
# leaves room for long non-Latin names.
_MAX_CENTRAL_DIRECTORY = MAX_ZIP_ENTRIES * 512
_CHUNK = 1 << 20
# Longest file name Linux and macOS store: 255 bytes of UTF-8.
_MAX_NAME_BYTES = 255


def uploads_dir(home: Path) -> Path:
    return home / "uploads"


# --------------------------------------------------------------------------- names


def safe_name(name: str) -> str:
    """A person's name as one folder name under ``uploads/enroll/``; the identity label
    stays the name as typed (:func:`facesearch.datasets.base.clean_label`).

    The name must be a usable label (else :class:`ConfigError` with the reason: empty,
    no letter or digit, control characters, too long, ...). Letters and digits of every
    script are kept (``"王小明"`` stays ``"王小明"``); runs of anything else (spaces,
    ``/``, ``\\``, ``..``, ``:``) become one ``_``, with no dot or ``_`` at either end,
    so the result can never be ``..``, hidden, or a path. A name over 100 bytes of UTF-8
    is cut there and given 8 hex digits of its hash, so two long names stay two folders.
    """
    why = label_problem(name)
    if why is not None:
        raise ConfigError(f"the name {_quoted(name)} cannot be used: {why}")
    s = re.sub(r"[^\w.-]+", "_", name.strip()).strip("._-")
    s = re.sub(r"\.{2,}", ".", s) or "person"
    if len(s.encode()) > 100:
        digest = hashlib.sha1(name.strip().encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cut = s.encode()[:90].decode("utf-8", "ignore").rstrip("._-")
        s = f"{cut}-{digest}"
    return s


def _quoted(text: object) -> str:
    t = str(text)
    return repr(t if len(t) <= 60 else t[:57] + "...")


# --------------------------------------------------------------------------- zips


def _end_record(data: bytes) -> tuple[int, int] | None:
    """``(entries, central directory bytes)`` from a zip's end record (ZIP64 if present),
    or None where there is none to read (zipfile then says what is wrong)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if at < 0 or at + 22 > len(data):
        return None
    entries, size = struct.unpack_from("<HI", data, at + 10)
    loc = at - 20
    if (entries == 0xFFFF or size == 0xFFFFFFFF) and loc >= 0 and data[loc:loc + 4] == b"PK\x06\x07":
        rec = struct.unpack_from("<Q", data, loc + 8)[0]
        if data[rec:rec + 4] == b"PK\x06\x06" and rec + 56 <= len(data):
            entries, size = struct.unpack_from("<QQ", data, rec + 32)
    return entries, size


def _entry_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The relative path an entry unpacks to, or None for entries that are skipped
    (folders, macOS resource forks). Raises DatasetError for anything that could write
    outside the target folder or is not a plain file."""
    name = info.filename
    if not info.flag_bits & 0x800:
        # No UTF-8 flag: zipfile decoded the name as cp437, but Linux and macOS tools
        # write UTF-8 without setting it, which would turn "王小明" into mojibake.
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        raise DatasetError(f"the zip holds a symbolic link, {_quoted(name)}: links are not unpacked; "
                           "zip the photos themselves")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DatasetError(f"the zip holds {_quoted(name)}, which is not a file or a folder")
    if "\x00" in name:
        raise DatasetError(f"the zip has an unsafe path: {_quoted(name)}")
    # Windows tools sometimes write "\" between folders; treated as "/" so "..\\x" is
    # caught on every system.
    parts_raw = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise DatasetError(f"the zip has an absolute path: {_quoted(name)}; paths must stay inside the zip's folder")
    if ".." in parts_raw:
        raise DatasetError(f"the zip has a path that leads out of its folder: {_quoted(name)}")
    parts = [p for p in parts_raw if p not in ("", ".")]
    if info.is_dir() or kind == stat.S_IFDIR or not parts:
        return None
    if parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None
    for p in parts:
        if any(ord(c) < 32 or ord(c) == 127 for c in p):
            raise DatasetError(f"the zip has a name with control characters: {_quoted(name)}")
        if len(p.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
            raise DatasetError(f"the zip has a name longer than {_MAX_NAME_BYTES} bytes: {_quoted(p)}")
    return PurePosixPath(*parts)


def unpacked_limit(zip_bytes: int) -> int:
    """The most bytes a zip of ``zip_bytes`` may unpack to: :data:`MAX_ZIP_RATIO` times its
    size (at least :data:`_MIN_ZIP_ALLOWANCE`), never more than :data:`MAX_ZIP_UNPACKED`."""
    return min(MAX_ZIP_UNPACKED, max(_MIN_ZIP_ALLOWANCE, MAX_ZIP_RATIO * zip_bytes))


def _too_much(limit: int, zip_bytes: int) -> str:
    why = (f"{MAX_ZIP_RATIO} times the zip's {zip_bytes / 2**20:,.1f} MB: photos barely compress"
           if limit < MAX_ZIP_UNPACKED else "the most an upload may hold")
    return f"at most {limit / 2**20:,.0f} MB are accepted ({why})"


def _plan(zf: zipfile.ZipFile, zip_bytes: int | None = None) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every file to unpack with its path, after checking the whole zip: nothing is
    written unless every entry is acceptable. ``zip_bytes``: the zip's size, which bounds
    what it may unpack to (:func:`unpacked_limit`)."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise DatasetError(f"the zip holds {len(infos):,} entries; at most {MAX_ZIP_ENTRIES:,} are accepted. "
                           "Ingest a bigger gallery from a folder on the server")
    plan, seen = [], set()
    for info in infos:
        path = _entry_path(info)
        if path is None:
            continue
        if path in seen:
            raise DatasetError(f"the zip holds {_quoted(str(path))} twice")
        seen.add(path)
        if info.flag_bits & 0x1:
            raise DatasetError(f"the zip is encrypted ({_quoted(str(path))}); upload an unencrypted one")
        plan.append((info, path))
    declared = sum(i.file_size for i, _ in plan)
    if declared > MAX_ZIP_UNPACKED:
        raise DatasetError(f"the zip would unpack to {declared / 2**20:,.0f} MB; at most "
                           f"{MAX_ZIP_UNPACKED // 2**20} MB are accepted")
    if zip_bytes is not None and declared > unpacked_limit(zip_bytes):
        raise DatasetError(f"the zip would unpack to {declared / 2**20:,.0f} MB, a zip bomb or not photos; "
                           + _too_much(unpacked_limit(zip_bytes), zip_bytes))
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS for _, p in plan):
        raise DatasetError("the zip holds no photos (expected NAME/photo.jpg folders)")
    return plan


def _unpack(zf: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, PurePosixPath]], tmp: Path,
            zip_bytes: int | None = None) -> None:
    """Stream every planned entry into ``tmp`` a chunk at a time (never a whole entry in
    memory), counting the bytes that actually come out: a header can understate an
    entry's size, so the limits hold on what is written, not only on what the zip
    declares."""
    limit = MAX_ZIP_UNPACKED if zip_bytes is None else unpacked_limit(zip_bytes)
    total = 0
    for info, rel in plan:
        target = tmp.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                total += len(chunk)
                if written > info.file_size:
                    raise DatasetError(f"the zip's entry {_quoted(str(rel))} unpacks to more than its header says "
                                       f"({info.file_size:,} bytes): a zip bomb or a damaged zip; nothing was kept")
                if total > limit:
                    raise DatasetError(f"the zip unpacks to more than {limit / 2**20:,.0f} MB: a zip bomb or a "
                                       f"damaged zip; nothing was kept ({_too_much(limit, zip_bytes or 0)})")
                out.write(chunk)


def _disk_error(exc: OSError) -> Exception:
    if is_disk_full(exc):
        return StorageFullError("the disk is full: the zip was not unpacked. Free some space and upload it again.")
    return DatasetError(f"the zip cannot be unpacked: {exc.strerror or exc}")


def _root(dest: Path) -> Path:
    """The dataset root: ``dest``, or its one top folder when the zip wraps everything in
    one (``people/NAME/*.jpg``)."""
    kids = [p for p in dest.iterdir() if not p.name.startswith(".")]
    if len(kids) == 1 and kids[0].is_dir() and any(c.is_dir() for c in kids[0].iterdir()):
        return kids[0]
    return dest


def extract_zip(data: bytes, home: Path) -> Path:
    """Unpack an uploaded zip of identity folders (``NAME/photo.jpg``, or any layout
    :func:`facesearch.datasets.registry.load_images` reads); returns the dataset root.

    Refused with a :class:`DatasetError`, before anything is written: not a zip; more
    than :data:`MAX_ZIP_ENTRIES` entries (counted from the end record, before Python
    parses them); more bytes declared than :func:`unpacked_limit` allows (a ratio to the
    zip's size, and :data:`MAX_ZIP_UNPACKED`); a path that is
    absolute or leads out with ``..`` (``/`` and ``\\`` alike); symbolic links and other
    special files; names with control characters or over 255 bytes; the same name twice;
    encryption; no photo at all. While unpacking (into a ``.part`` folder), an entry that
    yields more bytes than it declares, or a total past the limit, stops everything. Then the layout and its labels
    are checked as an ingest would (:func:`~facesearch.datasets.registry.load_images`). On any
    refusal the ``.part`` folder is removed: nothing is left on disk.
    """
    end = _end_record(data)
    if end is not None and (end[0] > MAX_ZIP_ENTRIES or end[1] > _MAX_CENTRAL_DIRECTORY):
        raise DatasetError(f"the zip lists {end[0]:,} entries; at most {MAX_ZIP_ENTRIES:,} are accepted. "
                           "Ingest a bigger gallery from a folder on the server")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error):
        raise DatasetError("the upload is not a zip file, or a damaged one") from None
    digest = hashlib.sha1(data).hexdigest()[:16]
    dest = uploads_dir(home) / f"zip-{digest}"
    with zf:
        plan = _plan(zf, len(data))
        if not dest.is_dir():
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                # A folder of its own per call: two sessions uploading the same zip at
                # once must not write into each other's half.
                tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent))
            except OSError as exc:
                raise _disk_error(exc) from None
            try:
                _unpack(zf, plan, tmp, len(data))
                try:
                    tmp.rename(dest)
                except OSError:
                    if not dest.is_dir():  # else: the same bytes, unpacked by another session
                        raise
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError,
                    ValueError, struct.error, zlib.error, lzma.LZMAError) as exc:
                raise DatasetError(f"the zip is damaged and cannot be unpacked ({exc})") from None
            except OSError as exc:
                raise _disk_error(exc) from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    root = _root(dest)
    try:
        load_images(root)
    except DatasetError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise DatasetError(f"the zip's contents cannot be ingested: {exc}") from None
    return root
