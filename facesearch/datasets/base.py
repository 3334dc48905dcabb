"""What every dataset format shares: the records (:class:`LabeledImage`, :class:`Pair`,
:class:`MemberPair`), the identity-label rule (:func:`clean_label`) and small helpers.

Everything in facesearch.datasets only reads directory listings and small text files;
no image is opened. Results are sorted (by path components) so the same folder always
gives the same list, and every random choice uses ``numpy.random.Generator(seed)`` over
sorted inputs, so the same seed always gives the same pairs.
"""

from __future__ import annotations

import csv
import os
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import ConfigError, DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

_LAYOUT_HELP = (
    "Expected one of:\n"
    "  folders: ROOT/<person>/<photo>.jpg (one sub-folder per identity)\n"
    "  celeba:  ROOT/identity_CelebA.txt + ROOT/img_celeba/ (or img_align_celeba/)\n"
    "  lfw:     ROOT/lfw-deepfunneled/<Name>/<Name>_0001.jpg (or ROOT/lfw/), pairs.txt beside it\n"
    "  fiw:     ROOT/train-faces/F0001/MID1/*.jpg (+ mid.csv per family, train-pairs.csv)\n"
    "  csv:     a .csv file with a header and columns path,label (and optionally family)\n"
    "  photos:  ROOT/<photo>.jpg, a photo library with no labels (faces grouped into people)\n"
    "  families: ROOT/<family>/<person>/<photo>.jpg (chosen with --families, never detected)"
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
        if cat == "Cf":
            # Zero-width space, soft hyphen, RLM, BOM...: invisible, so "ob\u200bama" would
            # show as "obama" yet be another identity.
            return text, (f"it contains an invisible format character (U+{ord(ch):04X} "
                          f"{unicodedata.name(ch, 'unnamed')}): it would look like another name")
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
      make a label display as another; invisible format characters (Unicode category
      Cf: zero-width space, soft hyphen, RLM, BOM...), with which ``"ob\u200bama"`` would
      look like ``"obama"`` yet be another identity; more than :data:`MAX_LABEL_CHARS`
      characters.

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
    by :func:`clean_label` (which raises DatasetError for an unusable one). FIW and the
    families layout (``"<family>/<person>"``) also fill ``family``/``member``, a csv its
    ``family`` column (each checked by the same rule); FIW adds, from ``mid.csv``,
    ``extra`` such as ``(("name", "amina"), ("gender", "f"))``.
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


def path_text(path: str | os.PathLike) -> str:
    """A file's path as text every store takes (valid UTF-8: Chroma's metadata, SQLite,
    JSON, the terminal). A path that is valid UTF-8 is returned as it is. Linux allows
    any bytes in a name (``caf\\xe9.jpg``, Latin-1): each byte that is not UTF-8 is then
    written ``\\xNN`` and a backslash ``\\\\``, so :func:`disk_path` gives the path back."""
    s = os.fsdecode(path)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return os.fsencode(s).replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def disk_path(text: str) -> str:
    """The path (``str``, with ``os.fsdecode``'s surrogates for bytes that are not UTF-8)
    that :func:`path_text` wrote as ``text``."""
    if "\\x" not in text or os.path.lexists(text):
        return text
    import codecs

    try:
        return os.fsdecode(codecs.escape_decode(text.encode("utf-8"))[0])
    except (ValueError, UnicodeDecodeError):
        return text


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


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {n!r}")
    return int(n)


def _need_folder(path: Path, fmt: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: the {fmt} format needs a folder")
