"""Labelled face datasets and evaluation pairs: CelebA, LFW, FIW, folder-per-person, csv.

Everything here only reads directory listings and small text files; no image is opened.
Results are sorted (by path components) so the same folder always gives the same list,
and every random choice uses ``numpy.random.Generator(seed)`` over sorted inputs, so the
same seed always gives the same pairs.

Image lists
    :func:`load_images` returns :class:`LabeledImage` records for one of :data:`FORMATS`
    (or ``"auto"``, see :func:`detect_format`). CelebA's 202,599-line identity file is
    parsed in one pass and checked against a single directory listing, never one
    ``stat`` per image.

Pairs for verification
    :class:`Pair` is two image paths and whether they show the same person.
    :func:`read_lfw_pairs` reads the official LFW ``pairs.txt`` (``10\\t300`` header:
    10 folds of 300 same + 300 different pairs; a single-number header ``N`` as in
    ``pairsDevTrain.txt``: one fold of N + N); :func:`read_master_csv` reads deepface's
    ``master.csv``; :func:`identity_pairs` samples genuine/impostor pairs from any
    labelled image list; :func:`fiw_same_person_pairs` does the same for FIW members.

FIW kinship pairs
    :func:`fiw_kin_pairs` returns :class:`MemberPair` records between *members*
    (``"F0001/MID1"``), not photos. The positives are the kin pairs of ``train-pairs.csv``
    whose two members both have photos; the negatives pair members of *different*
    families and are matched to each positive's relation: same relation group
    (parent-child, siblings, grandparent-grandchild), the elder side drawn from members
    who are the elder (``p1``) in some pair of that group and the younger side from the
    younger (``p2``), and the same genders as the positive's two members. Without this
    matching a model could separate kin from non-kin by age gap or gender alone.

    How a member pair is scored (done by the evaluation code, not here): each member is
    represented by the mean of the unit-normalised embeddings of all of that member's
    photos (re-normalised), and the pair's distance is the cosine distance between the
    two members' mean vectors. This costs one embedding per photo plus O(members) work,
    instead of the O(photos_a x photos_b) comparisons of scoring every photo pair (FIW
    members have up to hundreds of photos, so the full photo-pair set of ``train-pairs.csv``
    is tens of thousands of comparisons even on this slice), and one blurred or
    mis-detected photo moves the mean a little instead of producing an outlier
    pair score.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "IMAGE_EXTENSIONS",
    "MAX_LABEL_CHARS",
    "clean_label",
    "label_problem",
    "LabeledImage",
    "Pair",
    "MemberPair",
    "detect_format",
    "load_images",
    "lfw_pairs_file",
    "read_lfw_pairs",
    "read_master_csv",
    "identity_pairs",
    "gallery_probe_split",
    "fiw_members",
    "fiw_kin_pairs",
    "fiw_same_person_pairs",
]

FORMATS = ("folders", "celeba", "lfw", "fiw", "csv")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

_CELEBA_IDENTITY_FILE = "identity_CelebA.txt"
# Official archive names first; Kaggle's zips add one more level of the same name.
_CELEBA_IMAGE_DIRS = (
    "img_celeba",
    "img_align_celeba",
    "img_celeba/img_celeba",
    "img_align_celeba/img_align_celeba",
)
_LFW_IMAGE_DIRS = (
    "lfw-deepfunneled/lfw-deepfunneled",
    "lfw-deepfunneled",
    "lfw_funneled",
    "lfw/lfw",
    "lfw",
)
_FIW_FACES_DIR = "train-faces"
_FIW_PAIRS_FILE = "train-pairs.csv"
_MID_RE = re.compile(r"^MID\d+$", re.IGNORECASE)

_LAYOUT_HELP = (
    "Expected one of:\n"
    "  folders: ROOT/<person>/<photo>.jpg (one sub-folder per identity)\n"
    "  celeba:  ROOT/identity_CelebA.txt + ROOT/img_celeba/ (or img_align_celeba/)\n"
    "  lfw:     ROOT/lfw-deepfunneled/<Name>/<Name>_0001.jpg (or ROOT/lfw/), pairs.txt beside it\n"
    "  fiw:     ROOT/train-faces/F0001/MID1/*.jpg (+ mid.csv per family, train-pairs.csv)\n"
    "  csv:     a .csv file with a header and columns path,label"
)


# --------------------------------------------------------------------------- identity labels

# Three times what a passport holds (its machine-readable line has 39 characters for the
# whole name; the longest LFW name in ../shared/data has 28): a longer label is a mistake
# or an attack, and it would fill every screen it is shown on.
MAX_LABEL_CHARS = 128
# Embedding, override and isolate controls reorder the text around them on screen: a
# label could display as another person's name.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _shown(text: str) -> str:
    """A label as a message quotes it: escaped, at most 60 characters."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


@lru_cache(maxsize=65536)
def _check_label(text: str) -> tuple[str, str | None]:
    """``(cleaned label, None)`` or ``(text, why it is refused)``; cached because a
    dataset repeats each label over all of that person's photos."""
    label = unicodedata.normalize("NFC", text).strip()
    if not label:
        return text, "the name is empty"
    for ch in label:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            return text, f"it contains a control character ({ch!r})"
        if cat == "Cs":
            return text, "it contains bytes that are not text (a file name in another encoding?)"
        if ch in _BIDI_CONTROLS:
            return text, f"it contains a text-direction override (U+{ord(ch):04X}) that changes how it displays"
    if not any(unicodedata.category(ch)[0] in "LN" for ch in label):
        return text, "it has no letter or digit"
    if len(label) > MAX_LABEL_CHARS:
        return text, f"it is {len(label):,} characters long; at most {MAX_LABEL_CHARS} are allowed"
    return label, None


def _label(text: object) -> tuple[str, str | None]:
    if not isinstance(text, str):
        return str(text), f"a name must be text, got {type(text).__name__}"
    if len(text) > 4 * MAX_LABEL_CHARS:  # not worth normalising, nor keeping in the cache
        return text, f"it is {len(text):,} characters long; at most {MAX_LABEL_CHARS} are allowed"
    return _check_label(text)


def label_problem(text: object) -> str | None:
    """Why ``text`` is not a usable identity label (see :func:`clean_label`), or None."""
    return _label(text)[1]


def clean_label(text: str) -> str:
    """The identity label for ``text`` (a folder name, a csv cell, a typed name).

    A label names a person: it is shown to users and stored in the gallery's metadata,
    and is never used as a path (:func:`facesearch.ingest.uploads.safe_name` makes a folder
    name of it). The rule:

    - every script is kept as written (``"王小明"``, ``"محمد"``, ``"Zoë"``, ``"Ελένη"``),
      as are spaces, ``/``, ``.``, ``'`` and ``-`` inside it (``"F0001/MID1"`` is an FIW
      member, ``"O'Brien"`` a name);
    - Unicode NFC form, leading and trailing whitespace removed: a folder from a Mac
      (whose file names are decomposed) and the same name typed in a browser are one
      person;
    - refused, with the reason: an empty name; one with no letter or digit in any
      script (``".."``, ``"/"``, ``"---"``); control characters (newline, tab, NUL,
      DEL, ...); undecodable bytes of a file name; text-direction overrides, which can
      make a label display as another; more than :data:`MAX_LABEL_CHARS` characters.

    Raises :class:`DatasetError` saying which rule the label breaks.
    """
    label, why = _label(text)
    if why is not None:
        raise DatasetError(f"unusable identity label {_shown(label)}: {why}")
    return label


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class LabeledImage:
    """One photo and who is on it.

    ``identity`` is the label compared for same/different: the CelebA id (``"7201"``),
    the folder name (``"George_W_Bush"``) or the FIW member (``"F0001/MID1"``), cleaned
    by :func:`clean_label` (which raises DatasetError for an unusable one). FIW also
    fills ``family``/``member`` and, from ``mid.csv``, ``extra`` such as
    ``(("name", "amina"), ("gender", "f"))``.
    """

    path: Path
    identity: str
    family: str | None = None
    member: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        # One label rule whatever made the record (loaders, enrollment, callers' lists).
        # Inlined to one cache lookup: CelebA builds 200,000 of these.
        ident = self.identity
        ok_type = type(ident) is str and len(ident) <= 4 * MAX_LABEL_CHARS
        label, why = _check_label(ident) if ok_type else _label(ident)
        if why is not None:
            raise DatasetError(f"unusable identity label {_shown(label)}: {why}")
        if label != ident:
            object.__setattr__(self, "identity", label)

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key`` in ``extra``, or ``default``."""
        for k, v in self.extra:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Pair:
    """Two photos and whether they show the same person.

    ``fold`` is the protocol fold (LFW: 0..9), ``kind`` a free label: ``"same"`` /
    ``"different"``, or a relation type.
    """

    a: Path
    b: Path
    same: bool
    fold: int = 0
    kind: str = ""


@dataclass(frozen=True)
class MemberPair:
    """Two FIW members (``"F0001/MID1"``) and whether they are kin.

    ``kind`` is the relation type (``"fs"``, ``"md"``, ``"sibs"``, ...). A negative
    (``same=False``) carries the relation type of the positive it was matched to.
    """

    a: str
    b: str
    same: bool
    kind: str


# --------------------------------------------------------------------------- small helpers


_EXTS_NO_DOT = frozenset(e[1:] for e in IMAGE_EXTENSIONS)


def _is_image_name(name: str) -> bool:
    # Hidden files include macOS "._x.jpg" resource forks, which are not images.
    return not name.startswith(".") and name.rpartition(".")[2].lower() in _EXTS_NO_DOT


def _image_names(folder: Path) -> list[str]:
    """Sorted image file names directly inside ``folder`` (one listing, no stat per file)."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if _is_image_name(e.name) and e.is_file())
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from None


def _subdirs(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``folder``."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from None


def _has_image(folder: Path) -> bool:
    try:
        with os.scandir(folder) as it:
            return any(_is_image_name(e.name) and e.is_file() for e in it)
    except OSError:
        return False


def _sort_key(im: LabeledImage) -> tuple[str, ...]:
    return im.path.parts


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ConfigError(f"limit must be a non-negative integer or None, got {limit!r}")


def _rng(seed: int) -> np.random.Generator:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng(int(seed))


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: files saved by Excel on Windows start with a BOM that would
        # otherwise become part of the first column name.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text file") from None
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (stripped, lower-case) and ``(line number, row)`` pairs of a csv file."""
    text = _read_text(path)
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty csv file (a header line is required)") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a valid csv file ({exc})") from None
    header = [h.strip().lower() for h in header]
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            rows.append((reader.line_num, {h: v.strip() for h, v in zip(header, values)}))
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: not a valid csv row ({exc})") from None
    return header, rows


# --------------------------------------------------------------------------- layout probes


def _celeba_image_dir(root: Path) -> Path | None:
    for name in _CELEBA_IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    return None


def _lfw_image_dir(root: Path) -> Path | None:
    """The folder of ``<Name>/`` dirs for an LFW root, or None if ``root`` is not LFW."""
    for name in _LFW_IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    # ROOT itself is the folder of names, with a pairs file inside it or beside it.
    if lfw_pairs_file(root) is not None or lfw_pairs_file(root.parent) is not None:
        for sub in _subdirs(root):
            if _has_image(root / sub):
                return root
    return None


def lfw_pairs_file(root: str | Path) -> Path | None:
    """``pairs.txt`` (or ``pairsDevTest.txt``, ``pairsDevTrain.txt``) in ``root``, or None."""
    root = Path(root)
    for name in ("pairs.txt", "pairsDevTest.txt", "pairsDevTrain.txt"):
        if (root / name).is_file():
            return root / name
    return None


def _fiw_faces_dir(root: Path) -> Path | None:
    if (root / _FIW_FACES_DIR).is_dir():
        return root / _FIW_FACES_DIR
    if root.name == _FIW_FACES_DIR:
        return root
    # A folder of families under another name: F0001/ holding MID1/ (or a mid.csv).
    for fam in _subdirs(root)[:5]:
        if re.fullmatch(r"F\d+", fam) and (
            (root / fam / "mid.csv").is_file() or any(_MID_RE.match(s) for s in _subdirs(root / fam))
        ):
            return root
    return None


def detect_format(path: str | Path) -> str:
    """The format of a dataset path: one of :data:`FORMATS`.

    Checks, in order: a ``.csv`` file -> ``csv``; ``identity_CelebA.txt`` -> ``celeba``;
    ``train-faces/`` or family folders -> ``fiw``; ``lfw-deepfunneled/``, ``lfw/``, or
    name folders next to a ``pairs.txt`` -> ``lfw``; sub-folders with images ->
    ``folders``. Raises :class:`DatasetError` describing the expected layouts otherwise.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv"
        if p.suffix.lower() == ".txt" and p.name.lower().startswith("pairs"):
            raise DatasetError(
                f"{p} looks like an LFW pairs file: it lists pairs, not labelled images. "
                "Give the LFW folder instead (pairs are read with read_lfw_pairs)."
            )
        raise DatasetError(f"{p}: a dataset must be a folder or a .csv file.\n{_LAYOUT_HELP}")
    if (p / _CELEBA_IDENTITY_FILE).is_file():
        return "celeba"
    if _fiw_faces_dir(p) is not None:
        return "fiw"
    if _lfw_image_dir(p) is not None:
        return "lfw"
    for sub in _subdirs(p):
        if _has_image(p / sub):
            return "folders"
    hint = ""
    if _has_image(p):
        hint = (
            "\nThe images are directly in the folder, so they have no identity: put each "
            "person's photos in a sub-folder named after them, or list them in a csv "
            "with columns path,label."
        )
        if (p / "master.csv").is_file():
            hint += " (master.csv here is a pair list: read it with read_master_csv.)"
    raise DatasetError(f"{p}: no known dataset layout found.\n{_LAYOUT_HELP}{hint}")


# --------------------------------------------------------------------------- loaders


def _load_folders(root: Path) -> list[LabeledImage]:
    out: list[LabeledImage] = []
    for name in _subdirs(root):
        folder = root / name
        names = _image_names(folder)
        if not names:
            continue
        why = label_problem(name)
        if why is not None:
            raise DatasetError(f"{root}: the folder {_shown(name)} cannot name a person: {why}. Rename it.")
        out.extend(LabeledImage(path=folder / f, identity=name) for f in names)
    return out


def _load_celeba(root: Path, limit: int | None) -> list[LabeledImage]:
    ident_file = root / _CELEBA_IDENTITY_FILE
    if not ident_file.is_file():
        raise DatasetError(f"{root}: {_CELEBA_IDENTITY_FILE} not found.\n{_LAYOUT_HELP}")
    img_dir = _celeba_image_dir(root)
    if img_dir is None:
        raise DatasetError(
            f"{root}: CelebA image folder not found (looked for {', '.join(_CELEBA_IMAGE_DIRS)})"
        )
    # One directory listing instead of one stat per line: 202,599 stats on a network
    # or cloud-synced disk take minutes, the listing takes well under a second.
    try:
        present = set(os.listdir(img_dir))
    except OSError as exc:
        raise DatasetError(f"cannot list {img_dir}: {exc.strerror or exc}") from None
    labels: dict[str, str] = {}
    missing = 0
    for lineno, line in enumerate(_read_text(ident_file).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(
                f"{ident_file}:{lineno}: expected 'filename identity', got {line.strip()!r}"
            )
        fname, ident = parts
        if fname not in present:
            missing += 1
            continue
        labels.setdefault(fname, ident)
    if missing:
        log.info("%s: %d listed images are not in %s; skipped", ident_file, missing, img_dir)
    names = sorted(labels)
    if limit is not None:
        names = names[:limit]
    for ident in {labels[n] for n in names}:
        why = label_problem(ident)
        if why is not None:
            raise DatasetError(f"{ident_file}: identity {_shown(ident)} is not usable: {why}")
    return [LabeledImage(path=img_dir / n, identity=labels[n]) for n in names]


def _load_csv(path: Path) -> list[LabeledImage]:
    header, rows = _csv_rows(path)
    if "path" not in header or "label" not in header:
        hint = ""
        if {"file_x", "file_y"} <= set(header):
            hint = " This looks like a pair list (file_x,file_y,...): read it with read_master_csv."
        raise DatasetError(
            f"{path}: the header must name the columns 'path' and 'label', got {header}.{hint}"
        )
    extra_cols = [h for h in header if h not in ("path", "label") and h]
    base = path.parent
    out: list[LabeledImage] = []
    for lineno, row in rows:
        p, label = row.get("path", ""), row.get("label", "")
        if not p or not label:
            raise DatasetError(f"{path}:{lineno}: empty path or label")
        why = label_problem(label)
        if why is not None:
            raise DatasetError(f"{path}:{lineno}: label {_shown(label)} is not usable: {why}")
        fp = Path(p).expanduser()
        extra = tuple((c, row[c]) for c in extra_cols if row.get(c))
        out.append(LabeledImage(path=fp if fp.is_absolute() else base / fp, identity=label, extra=extra))
    return out


@dataclass(frozen=True)
class _FiwIndex:
    faces_dir: Path
    photos: dict[str, list[Path]]  # member id -> sorted photos (members with >= 1 photo)
    info: dict[str, dict[str, str]]  # member id -> {"name": ..., "gender": ...} from mid.csv


def _read_mid_csv(path: Path, family: str) -> dict[str, dict[str, str]]:
    header, rows = _csv_rows(path)
    if "mid" not in header:
        raise DatasetError(f"{path}: expected a 'MID' column in the header, got {header}")
    out: dict[str, dict[str, str]] = {}
    for lineno, row in rows:
        mid = row.get("mid", "")
        if not mid.isdigit():
            raise DatasetError(f"{path}:{lineno}: MID must be a number, got {mid!r}")
        info = {}
        if row.get("name"):
            info["name"] = row["name"]
        if row.get("gender"):
            info["gender"] = row["gender"].lower()
        out[f"{family}/MID{int(mid)}"] = info
    return out


def _fiw_index(root: str | Path) -> _FiwIndex:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    faces = _fiw_faces_dir(root)
    if faces is None:
        raise DatasetError(f"{root}: not an FIW folder (no {_FIW_FACES_DIR}/ with F*/MID*/ inside).")
    photos: dict[str, list[Path]] = {}
    info: dict[str, dict[str, str]] = {}
    for fam in _subdirs(faces):
        fam_dir = faces / fam
        if (fam_dir / "mid.csv").is_file():
            info.update(_read_mid_csv(fam_dir / "mid.csv", fam))
        for mid in _subdirs(fam_dir):
            # Other folders (e.g. "unrelated_and_nonfaces" in the full release) are not members.
            if not _MID_RE.match(mid):
                continue
            names = _image_names(fam_dir / mid)
            if names:
                photos[f"{fam}/MID{int(mid[3:])}"] = [fam_dir / mid / n for n in names]
    if not photos:
        raise DatasetError(f"{faces}: no member photos found (expected F*/MID*/<photo>.jpg)")
    return _FiwIndex(faces, photos, info)


def _load_fiw(root: Path) -> list[LabeledImage]:
    idx = _fiw_index(root)
    out: list[LabeledImage] = []
    for member_id, paths in idx.photos.items():
        family, member = member_id.split("/", 1)
        meta = idx.info.get(member_id, {})
        extra = tuple((k, meta[k]) for k in ("name", "gender") if k in meta)
        out.extend(
            LabeledImage(path=p, identity=member_id, family=family, member=member, extra=extra)
            for p in paths
        )
    return out


def load_images(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[LabeledImage]:
    """All labelled images of a dataset, sorted by path; ``limit`` keeps the first N.

    ``fmt`` is one of :data:`FORMATS` or ``"auto"`` (:func:`detect_format`). Raises
    :class:`ConfigError` for a bad ``fmt``/``limit`` and :class:`DatasetError` for a
    path that does not have the layout of ``fmt`` or holds no images. Paths in a csv
    are not checked for existence (that would be one ``stat`` per row); an unreadable
    one fails later, when the image is opened.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"unknown dataset format {fmt!r}; valid: auto, {', '.join(FORMATS)}")
    _check_limit(limit)
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if fmt == "auto":
        fmt = detect_format(p)
    if fmt == "csv":
        if not p.is_file():
            raise DatasetError(f"{p}: the csv format needs a .csv file, not a folder")
        images = sorted(_load_csv(p), key=_sort_key)
    elif not p.is_dir():
        raise DatasetError(f"{p}: the {fmt} format needs a folder")
    elif fmt == "celeba":
        # Sorted and limited inside, before building 200k records only to drop most.
        images = _load_celeba(p, limit)
    elif fmt == "fiw":
        images = _load_fiw(p)
    elif fmt == "lfw":
        img_dir = _lfw_image_dir(p)
        if img_dir is None:
            raise DatasetError(f"{p}: not an LFW folder.\n{_LAYOUT_HELP}")
        images = _load_folders(img_dir)
    else:
        images = _load_folders(p)
    if not images and limit != 0:
        raise DatasetError(f"{p}: no images found for format {fmt!r}.\n{_LAYOUT_HELP}")
    # The folder loaders build their lists from sorted listings, already in path order;
    # re-sorting 200k paths by their parts would double CelebA's load time.
    return images if limit is None else images[:limit]


# --------------------------------------------------------------------------- pair lists


def read_lfw_pairs(pairs_file: str | Path, images_root: str | Path | None = None) -> list[Pair]:
    """Pairs of an LFW-format pairs file, with their 0-based fold.

    Header ``F\\tN``: F folds, each N same-person lines (``name i j``) followed by N
    different-person lines (``name1 i name2 j``). Header ``N`` alone (``pairsDevTrain.txt``
    style): one fold. Paths are ``images_root/NAME/NAME_%04d.jpg``; ``images_root``
    defaults to the LFW image folder beside the pairs file (``lfw-deepfunneled/``,
    ``lfw/``, ...). Image files are not checked here. ``kind`` is ``"same"`` or
    ``"different"``. ``pairs_file`` may also be the folder holding ``pairs.txt``.
    """
    pf = Path(pairs_file).expanduser()
    if pf.is_dir():
        found = lfw_pairs_file(pf)
        if found is None:
            raise DatasetError(f"{pf}: no pairs.txt in this folder")
        pf = found
    if not pf.is_file():
        raise DatasetError(f"{pf}: no such pairs file")
    if images_root is None:
        root = next((pf.parent / n for n in _LFW_IMAGE_DIRS if (pf.parent / n).is_dir()), pf.parent)
    else:
        root = Path(images_root).expanduser()

    lines = [(i, ln.split()) for i, ln in enumerate(_read_text(pf).splitlines(), 1) if ln.strip()]
    if not lines:
        raise DatasetError(f"{pf}: empty pairs file")
    head_no, head = lines[0]
    try:
        numbers = [int(t) for t in head]
    except ValueError:
        numbers = []
    if len(numbers) == 2:
        n_folds, n_per = numbers
    elif len(numbers) == 1:
        n_folds, n_per = 1, numbers[0]
    else:
        raise DatasetError(
            f"{pf}:{head_no}: expected a header 'folds<TAB>pairs_per_class' or 'pairs_per_class', "
            f"got {' '.join(head)!r}"
        )
    if n_folds < 1 or n_per < 1:
        raise DatasetError(f"{pf}:{head_no}: fold count and pair count must be positive")
    body = lines[1:]
    expected = n_folds * 2 * n_per
    if len(body) != expected:
        raise DatasetError(
            f"{pf}: header says {n_folds} fold(s) x ({n_per} same + {n_per} different) = "
            f"{expected} pair lines, but the file has {len(body)}"
        )

    def image(name: str, idx: str, lineno: int) -> Path:
        if not idx.isdigit() or int(idx) < 1:
            raise DatasetError(f"{pf}:{lineno}: image number must be a positive integer, got {idx!r}")
        return root / name / f"{name}_{int(idx):04d}.jpg"

    pairs: list[Pair] = []
    for k, (lineno, tok) in enumerate(body):
        fold, within = divmod(k, 2 * n_per)
        same = within < n_per
        if same:
            if len(tok) != 3:
                raise DatasetError(
                    f"{pf}:{lineno}: fold {fold + 1}, line {within + 1} should be a same-person "
                    f"pair 'name i j', got {' '.join(tok)!r}"
                )
            a, b = image(tok[0], tok[1], lineno), image(tok[0], tok[2], lineno)
        else:
            if len(tok) != 4:
                raise DatasetError(
                    f"{pf}:{lineno}: fold {fold + 1}, line {within + 1} should be a different-person "
                    f"pair 'name1 i name2 j', got {' '.join(tok)!r}"
                )
            a, b = image(tok[0], tok[1], lineno), image(tok[2], tok[3], lineno)
        pairs.append(Pair(a=a, b=b, same=same, fold=fold, kind="same" if same else "different"))
    return pairs


_YES = {"yes", "y", "true", "1", "same"}
_NO = {"no", "n", "false", "0", "different"}


def read_master_csv(path: str | Path) -> list[Pair]:
    """Pairs of a deepface-style ``master.csv``: ``file_x,file_y,Decision`` (Yes/No).

    Relative paths are resolved against the csv's folder. ``kind`` is ``"same"`` or
    ``"different"``; ``fold`` is 0.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"{p}: no such file")
    header, rows = _csv_rows(p)
    need = {"file_x", "file_y", "decision"}
    if not need <= set(header):
        raise DatasetError(f"{p}: expected columns file_x,file_y,Decision, got {header}")
    base = p.parent
    pairs: list[Pair] = []
    for lineno, row in rows:
        x, y, dec = row.get("file_x", ""), row.get("file_y", ""), row.get("decision", "").lower()
        if not x or not y:
            raise DatasetError(f"{p}:{lineno}: empty file_x or file_y")
        if dec in _YES:
            same = True
        elif dec in _NO:
            same = False
        else:
            raise DatasetError(f"{p}:{lineno}: Decision must be Yes or No, got {row.get('decision')!r}")
        a, b = Path(x).expanduser(), Path(y).expanduser()
        pairs.append(
            Pair(
                a=a if a.is_absolute() else base / a,
                b=b if b.is_absolute() else base / b,
                same=same,
                kind="same" if same else "different",
            )
        )
    if not pairs:
        raise DatasetError(f"{p}: no pairs")
    return pairs


# --------------------------------------------------------------------------- sampling


def _unrank_pairs(ks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode pair ranks ``(q,)`` into index pairs ``i < j``, both ``(q,)``.

    Colexicographic order: rank ``k = j*(j-1)/2 + i``, so every ``k`` in
    ``[0, n*(n-1)/2)`` is exactly one pair of ``n`` items, and sampling ranks without
    replacement samples distinct pairs without ever listing them all.
    """
    k = np.asarray(ks, dtype=np.int64)
    j = np.floor((1.0 + np.sqrt(1.0 + 8.0 * k)) / 2.0).astype(np.int64)
    # Float sqrt can be off by one for large k; fix it exactly in integers.
    j -= (j * (j - 1) // 2 > k).astype(np.int64)
    j += ((j + 1) * j // 2 <= k).astype(np.int64)
    return k - j * (j - 1) // 2, j


def _water_fill(caps: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` into per-group quotas ``(g,)`` as evenly as ``caps`` ``(g,)`` allow.

    Every group gets ``min(cap, L)`` for the largest level ``L`` that fits, and the
    remainder goes one each to randomly chosen groups that still have room.
    """
    lo, hi = 0, int(caps.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(caps, mid).sum()) <= total:
            lo = mid
        else:
            hi = mid - 1
    quota = np.minimum(caps, lo)
    rest = total - int(quota.sum())
    if rest > 0:
        room = np.nonzero(caps > lo)[0]
        quota[rng.choice(room, size=rest, replace=False)] += 1
    return quota


def _group_by_identity(images: Iterable[LabeledImage]) -> tuple[list[str], list[list[LabeledImage]]]:
    """Identities (sorted) and their images (sorted by path, duplicates removed)."""
    groups: dict[str, dict[Path, LabeledImage]] = defaultdict(dict)
    for im in images:
        groups[im.identity].setdefault(im.path, im)
    names = sorted(groups)
    return names, [sorted(groups[n].values(), key=_sort_key) for n in names]


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def identity_pairs(
    images: Sequence[LabeledImage], n_genuine: int, n_impostor: int, seed: int = 0
) -> list[Pair]:
    """Sample same-identity (genuine) and different-identity (impostor) image pairs.

    Deterministic for a given seed and image set (input order does not matter), no
    pair appears twice (in either order) and no image is paired with itself.

    Genuine pairs are spread as evenly as possible over identities (an identity with
    500 photos would otherwise supply most of them), uniformly among each identity's
    photo pairs. Impostor pairs draw two different identities uniformly, then one photo
    of each. Returns at most the requested counts: fewer when the images do not have
    that many distinct pairs. Genuine pairs come first; ``kind`` is ``"same"`` or
    ``"different"``.
    """
    n_genuine = _check_count(n_genuine, "n_genuine")
    n_impostor = _check_count(n_impostor, "n_impostor")
    rng = _rng(seed)
    _, groups = _group_by_identity(images)
    out: list[Pair] = []

    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    caps = sizes * (sizes - 1) // 2
    if n_genuine and caps.sum() > 0:
        quota = _water_fill(caps, min(n_genuine, int(caps.sum())), rng)
        for g, cap, q in zip(groups, caps, quota):
            if q == 0:
                continue
            i, j = _unrank_pairs(np.sort(rng.choice(int(cap), size=int(q), replace=False)))
            out.extend(Pair(a=g[a].path, b=g[b].path, same=True, kind="same") for a, b in zip(i, j))
    if n_genuine > caps.sum():
        log.info("identity_pairs: only %d genuine pairs exist (asked for %d)", caps.sum(), n_genuine)

    n_ids = len(groups)
    # Distinct impostor pairs: all image pairs minus the same-identity ones.
    n_total = int(sizes.sum())
    available = (n_total * n_total - int((sizes * sizes).sum())) // 2
    want = min(n_impostor, available)
    if want == 0 or n_ids < 2:
        return out
    flat = [im.path for g in groups for im in g]
    offsets = np.r_[0, np.cumsum(sizes)]
    if 2 * want > available:
        # Asked for most of them: listing all (at most 2x the output) beats rejection.
        owner = np.repeat(np.arange(n_ids), sizes)
        i, j = np.triu_indices(n_total, 1)
        keep = owner[i] != owner[j]
        i, j = i[keep], j[keep]
        pick = np.sort(rng.choice(i.shape[0], size=want, replace=False))
        out.extend(
            Pair(a=flat[a], b=flat[b], same=False, kind="different") for a, b in zip(i[pick], j[pick])
        )
        return out
    seen: set[tuple[int, int]] = set()
    while len(seen) < want:
        # Fewer than half the impostor pairs are taken, so each draw is new with
        # probability > 1/2; drawing in batches keeps the Python loop short.
        m = 2 * (want - len(seen)) + 8
        ga = rng.integers(0, n_ids, size=m)
        gb = (ga + rng.integers(1, n_ids, size=m)) % n_ids  # uniform over the other identities
        ia = offsets[ga] + (rng.random(m) * sizes[ga]).astype(np.int64)
        ib = offsets[gb] + (rng.random(m) * sizes[gb]).astype(np.int64)
        for a, b in zip(ia.tolist(), ib.tolist()):
            key = (a, b) if a < b else (b, a)
            if key in seen:
                continue
            seen.add(key)
            out.append(Pair(a=flat[a], b=flat[b], same=False, kind="different"))
            if len(seen) == want:
                break
    return out


def gallery_probe_split(
    images: Sequence[LabeledImage], n_gallery_per_identity: int | float = 1, seed: int = 0
) -> tuple[list[LabeledImage], list[LabeledImage]]:
    """Split images into an enrolment gallery and probe queries, per identity.

    ``n_gallery_per_identity``: an int ``>= 1`` puts that many randomly chosen photos
    of each identity in the gallery; a float in ``(0, 1)`` puts that fraction (at least
    one, and at most all but one, so every identity with two or more photos has a
    probe). Identities with no more photos than the gallery share (in particular those
    with a single photo) go to the gallery only: a probe whose identity is not enrolled
    cannot be identified. Both lists are sorted by path; deterministic for a seed.
    """
    share = n_gallery_per_identity
    bad = f"n_gallery_per_identity must be an int >= 1 or a float in (0, 1), got {share!r}"
    if isinstance(share, bool) or not isinstance(share, (int, float, np.integer, np.floating)):
        raise ConfigError(bad)
    is_fraction = isinstance(share, (float, np.floating))
    if (is_fraction and not 0.0 < share < 1.0) or (not is_fraction and share < 1):
        raise ConfigError(bad)
    rng = _rng(seed)
    _, groups = _group_by_identity(images)
    gallery: list[LabeledImage] = []
    probes: list[LabeledImage] = []
    for g in groups:
        n = len(g)
        if is_fraction:
            k = min(max(1, int(round(float(share) * n))), max(1, n - 1))
        else:
            k = int(share)
        if n <= k:
            gallery.extend(g)
            continue
        order = rng.permutation(n)
        gallery.extend(g[i] for i in order[:k])
        probes.extend(g[i] for i in order[k:])
    gallery.sort(key=_sort_key)
    probes.sort(key=_sort_key)
    return gallery, probes


# --------------------------------------------------------------------------- FIW


def fiw_members(root: str | Path) -> dict[str, list[Path]]:
    """Member id (``"F0001/MID1"``) -> sorted photo paths, for members with photos.

    ``root`` is the FIW folder holding ``train-faces/``, or ``train-faces/`` itself.
    """
    return dict(_fiw_index(root).photos)


# Relation groups: negatives are matched within a group, elder (p1) vs younger (p2).
_PARENT = {"fs": ("m", "m"), "fd": ("m", "f"), "ms": ("f", "m"), "md": ("f", "f")}
_GRAND = {"gfgs": ("m", "m"), "gfgd": ("m", "f"), "gmgs": ("f", "m"), "gmgd": ("f", "f")}
_SIBLING = {"bb": ("m", "m"), "ss": ("f", "f"), "sibs": (None, None)}


def _relation_group(ptype: str) -> str:
    if ptype in _PARENT:
        return "parent-child"
    if ptype in _SIBLING:
        return "siblings"
    if ptype in _GRAND:
        return "grandparent"
    # Unknown types (e.g. great-grandparents in other releases) form their own group.
    return ptype


def _implied_genders(ptype: str) -> tuple[str | None, str | None]:
    return {**_PARENT, **_GRAND, **_SIBLING}.get(ptype, (None, None))


def _fits_genders(ptype: str, g1: str | None, g2: str | None) -> bool:
    """Whether known genders ``g1``/``g2`` agree with the type (``sibs``: one of each)."""
    if g1 is None or g2 is None:
        return False
    if ptype == "sibs":
        return g1 != g2
    return _implied_genders(ptype) == (g1, g2)


def _fiw_pairs_path(idx: _FiwIndex, root: Path, pairs_file: str | Path | None) -> Path:
    if pairs_file is not None:
        pf = Path(pairs_file).expanduser()
        if not pf.is_file():
            raise DatasetError(f"{pf}: no such FIW pairs file")
        return pf
    for cand in (root / _FIW_PAIRS_FILE, idx.faces_dir.parent / _FIW_PAIRS_FILE):
        if cand.is_file():
            return cand
    raise DatasetError(f"{root}: {_FIW_PAIRS_FILE} not found beside {idx.faces_dir.name}/")


def _member_id(raw: str) -> str:
    fam, _, mid = raw.strip().replace("\\", "/").partition("/")
    if not mid or not _MID_RE.match(mid):
        return raw.strip()
    return f"{fam}/MID{int(mid[3:])}"


def _fiw_positives(idx: _FiwIndex, pf: Path) -> list[tuple[str, str, str]]:
    """Kin pairs ``(p1, p2, ptype)`` with photos on both sides, one per member pair, sorted."""
    header, rows = _csv_rows(pf)
    if "p1" not in header or "p2" not in header:
        raise DatasetError(f"{pf}: expected columns p1,p2,ptype in the header, got {header}")
    listed: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
    skipped = 0
    for _, row in rows:
        p1, p2 = _member_id(row.get("p1", "")), _member_id(row.get("p2", ""))
        ptype = row.get("ptype", "").lower() or "kin"
        if p1 == p2 or p1 not in idx.photos or p2 not in idx.photos:
            skipped += 1
            continue
        listed[(min(p1, p2), max(p1, p2))].append((p1, p2, ptype))
    if skipped:
        log.info("%s: %d kin pairs skipped (a member has no photos here, or p1 == p2)", pf, skipped)

    def gender(m: str) -> str | None:
        g = idx.info.get(m, {}).get("gender")
        return g if g in ("m", "f") else None

    out: list[tuple[str, str, str]] = []
    for key in sorted(listed):
        cands = sorted(set(listed[key]), key=lambda t: t[2])
        # RFIW lists every sibling pair once as "bb" AND once as "ss" (plus "sibs" when
        # mixed): keep one row per member pair, the type that fits the members' genders.
        fitting = [c for c in cands if _fits_genders(c[2], gender(c[0]), gender(c[1]))]
        out.append((fitting or cands)[0])
    return out


def fiw_kin_pairs(
    root: str | Path,
    seed: int = 0,
    negatives_per_positive: int = 1,
    pairs_file: str | Path | None = None,
) -> list[MemberPair]:
    """Kin (positive) and matched non-kin (negative) member pairs for FIW.

    Positives: the rows of ``train-pairs.csv`` (or ``pairs_file``) whose two members
    both have photos, one per member pair; where a pair is listed under several types
    (RFIW repeats each sibling pair as ``bb`` and ``ss``), the type that agrees with
    the genders in ``mid.csv`` is kept.

    Negatives: ``negatives_per_positive`` per positive, two members of different
    families, matched to that positive:

    1. same relation group (parent-child / siblings / grandparent; other types each form
       their own group); the first member is drawn from members that are the elder
       (``p1``) in some positive of the group, the second from the younger ones
       (``p2``); siblings draw both from all members of sibling pairs;
    2. the same genders as the positive's members per ``mid.csv`` (in this release the
       letters of the grandparent types disagree with ``mid.csv``, so the recorded
       genders win), falling back to the genders the type implies (``fd``: m, f);
    3. relaxations, in order, when no candidate exists: any gender within the group's
       roles, then any two members with photos from different families.

    No negative repeats (in either order). Positives come first (sorted), then the
    negatives; each negative's ``kind`` is its positive's type. Deterministic for a seed.
    """
    n_neg = _check_count(negatives_per_positive, "negatives_per_positive")
    rng = _rng(seed)
    root = Path(root).expanduser()
    idx = _fiw_index(root)
    positives = _fiw_positives(idx, _fiw_pairs_path(idx, root, pairs_file))
    if not positives:
        raise DatasetError(f"{root}: no kin pair has photos of both members")
    out = [MemberPair(a=a, b=b, same=True, kind=t) for a, b, t in positives]
    if n_neg == 0:
        return out

    def gender(m: str) -> str | None:
        g = idx.info.get(m, {}).get("gender")
        return g if g in ("m", "f") else None

    # Candidate pools per (group, role, gender); role 0 = elder, 1 = younger.
    pools: dict[tuple[str, int, str | None], set[str]] = defaultdict(set)
    for a, b, t in positives:
        grp = _relation_group(t)
        for role, m in ((0, a), (1, b)):
            roles = (0, 1) if grp == "siblings" else (role,)
            for r in roles:
                pools[(grp, r, gender(m))].add(m)
                pools[(grp, r, "*")].add(m)
    pool_lists = {k: sorted(v) for k, v in pools.items()}
    everyone = sorted(idx.photos)

    def family(m: str) -> str:
        return m.split("/", 1)[0]

    used: set[tuple[str, str]] = set()
    negatives: list[MemberPair] = []
    for a, b, t in positives:
        grp = _relation_group(t)
        implied = _implied_genders(t)
        ga, gb = gender(a) or implied[0], gender(b) or implied[1]
        stages = [
            (
                pool_lists.get((grp, 0, ga), []) if ga else [],
                pool_lists.get((grp, 1, gb), []) if gb else [],
            ),
            (pool_lists.get((grp, 0, "*"), []), pool_lists.get((grp, 1, "*"), [])),
            (everyone, everyone),
        ]
        for _ in range(n_neg):
            pair = None
            for elders, youngers in stages:
                if not elders or not youngers:
                    continue
                # Rejection sampling: few candidates share a family, so a handful of
                # tries almost always succeeds; the cap only guards tiny pools.
                for _try in range(64):
                    x = elders[int(rng.integers(len(elders)))]
                    y = youngers[int(rng.integers(len(youngers)))]
                    key = (min(x, y), max(x, y))
                    if family(x) != family(y) and key not in used:
                        pair = (x, y, key)
                        break
                if pair is not None:
                    break
            if pair is None:
                log.info("fiw_kin_pairs: no unused cross-family negative left for %s-%s", a, b)
                continue
            used.add(pair[2])
            negatives.append(MemberPair(a=pair[0], b=pair[1], same=False, kind=t))
    return out + negatives


def fiw_same_person_pairs(root: str | Path, seed: int = 0, max_per_member: int | None = 3) -> list[Pair]:
    """Same-person photo pairs of FIW members and as many cross-family negatives.

    Positives: up to ``max_per_member`` distinct photo pairs of each member with at
    least two photos (``None``: all of them), drawn uniformly. Negatives: for each
    positive, its first photo against a random photo of a random member of another
    family (different families, so certainly different people, while keeping each
    member's share of the negatives equal to its share of the positives). Positives
    come first; ``kind`` is ``"same"`` / ``"different"``. Deterministic for a seed.
    """
    if max_per_member is not None:
        max_per_member = _check_count(max_per_member, "max_per_member")
    rng = _rng(seed)
    idx = _fiw_index(root)
    members = sorted(idx.photos)
    positives: list[Pair] = []
    for m in members:
        photos = idx.photos[m]
        cap = len(photos) * (len(photos) - 1) // 2
        q = cap if max_per_member is None else min(cap, max_per_member)
        if q == 0:
            continue
        i, j = _unrank_pairs(np.sort(rng.choice(cap, size=q, replace=False)))
        positives.extend(Pair(a=photos[x], b=photos[y], same=True, kind="same") for x, y in zip(i, j))
    if len({m.split("/", 1)[0] for m in members}) < 2:
        raise DatasetError(f"{root}: negatives need members of at least two families")

    by_path = {p: m for m in members for p in idx.photos[m]}
    seen: set[tuple[Path, Path]] = set()
    negatives: list[Pair] = []
    for pos in positives:
        fam = by_path[pos.a].split("/", 1)[0]
        for _try in range(64):
            other = members[int(rng.integers(len(members)))]
            if other.split("/", 1)[0] == fam:
                continue
            photos = idx.photos[other]
            b = photos[int(rng.integers(len(photos)))]
            key = (min(pos.a, b), max(pos.a, b))
            if key not in seen:
                seen.add(key)
                negatives.append(Pair(a=pos.a, b=b, same=False, kind="different"))
                break
    return positives + negatives
