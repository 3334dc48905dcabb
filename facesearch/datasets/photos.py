"""A photo library: ``ROOT/**/<photo>.jpg`` with no per-person layout and no labels.

A family's or an archive's photos, a shelter's intake photos, an event's photos: nobody
has said who is in them. Each record is an :class:`UnlabeledImage` (``identity == ""``):
the ingest stores every face of such a photo unnamed, and :mod:`facesearch.people`
groups the faces into people a user can name (see docs/ARCHITECTURE.md, "People").

Auto-detection calls a folder a photo library when images lie directly in it (a
labelled layout keeps them in per-person sub-folders) and it holds no pair list
(``master.csv``, ``pairs.txt``: those name the photos' people elsewhere). The folder is
read recursively with ``--format photos``, so a library kept in date or event
sub-folders is ingested too: the sub-folder names are never taken for names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facesearch.datasets.base import LabeledImage, _has_image, _is_image_name, _need_folder
from facesearch.errors import DatasetError

# Files whose presence says the folder's photos are labelled elsewhere (pair lists).
_PAIR_LISTS = ("master.csv", "pairs.txt")


@dataclass(frozen=True)
class UnlabeledImage(LabeledImage):
    """A photo with nobody named on it: ``identity`` is ``""`` (never a file or folder
    name), and every face found in it is stored unnamed."""

    identity: str = ""

    def __post_init__(self) -> None:
        # No label to check: the faces get a name only when a user names their person.
        if self.identity != "":
            raise DatasetError("a photo-library image has no identity label")


def is_layout(root: Path) -> bool:
    """Whether ``root`` is a folder with images directly in it and no pair list."""
    return root.is_dir() and _has_image(root) and not any((root / f).is_file() for f in _PAIR_LISTS)


def load(root: Path, limit: int | None = None) -> list[UnlabeledImage]:
    """Every image under ``root`` (hidden files and folders skipped), sorted by path."""
    _need_folder(root, "photos")
    out: list[UnlabeledImage] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        folder = Path(dirpath)
        out.extend(UnlabeledImage(folder / f) for f in sorted(filenames) if _is_image_name(f))
        if limit is not None and len(out) >= limit:
            break
    return out


def _raise(exc: OSError) -> None:
    raise DatasetError(f"cannot list {exc.filename}: {exc.strerror or exc}")
