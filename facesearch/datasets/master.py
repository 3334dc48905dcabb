"""deepface's ``master.csv``: a list of photo pairs with a Yes/No decision."""

from __future__ import annotations

from pathlib import Path

from facesearch.datasets.base import Pair, _csv_rows
from facesearch.errors import DatasetError

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
