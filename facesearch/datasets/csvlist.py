"""A csv list of photos: a header naming the columns ``path`` and ``label`` (others are kept
as ``extra``); relative paths are resolved against the csv's folder. An optional
``family`` column gives each identity its family (checked like a label; one identity,
one family; an empty cell: family unknown)."""

from __future__ import annotations

from pathlib import Path

from facesearch.datasets.base import LabeledImage, _csv_rows, _shown, _sort_key, clean_label, label_problem
from facesearch.errors import DatasetError


def is_layout(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def load(path: Path, limit: int | None = None) -> list[LabeledImage]:
    """Sorted by path. Paths are not checked for existence (that would be one ``stat``
    per row); an unreadable one fails later, when the image is opened."""
    if not path.is_file():
        raise DatasetError(f"{path}: the csv format needs a .csv file, not a folder")
    return sorted(_load_csv(path), key=_sort_key)


def _load_csv(path: Path) -> list[LabeledImage]:
    header, rows = _csv_rows(path)
    if "path" not in header or "label" not in header:
        hint = ""
        if {"file_x", "file_y"} <= set(header):
            hint = " This looks like a pair list (file_x,file_y,...): read it with read_master_csv."
        raise DatasetError(
            f"{path}: the header must name the columns 'path' and 'label', got {header}.{hint}"
        )
    extra_cols = [h for h in header if h not in ("path", "label", "family") and h]
    family_of: dict[str, tuple[str, int]] = {}  # identity -> (family, first line saying so)
    base = path.parent
    out: list[LabeledImage] = []
    for lineno, row in rows:
        p, label = row.get("path", ""), row.get("label", "")
        if not p or not label:
            raise DatasetError(f"{path}:{lineno}: empty path or label")
        why = label_problem(label)
        if why is not None:
            raise DatasetError(f"{path}:{lineno}: label {_shown(label)} is not usable: {why}")
        family = row.get("family") or None
        if family is not None:
            why = label_problem(family)
            if why is not None:
                raise DatasetError(f"{path}:{lineno}: family {_shown(family)} is not usable: {why}")
            family, ident = clean_label(family), clean_label(label)
            seen = family_of.setdefault(ident, (family, lineno))
            if seen[0] != family:
                raise DatasetError(f"{path}:{lineno}: {_shown(ident)} is in family {_shown(family)} here but in "
                                   f"{_shown(seen[0])} on line {seen[1]}: one person, one family")
        fp = Path(p).expanduser()
        extra = tuple((c, row[c]) for c in extra_cols if row.get(c))
        out.append(LabeledImage(path=fp if fp.is_absolute() else base / fp, identity=label, family=family,
                                extra=extra))
    return out
