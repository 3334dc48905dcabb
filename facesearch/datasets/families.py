"""Families of identity folders: ``ROOT/<family>/<person>/<photo>.jpg``.

Each person's identity is ``"<family>/<person>"`` (two families may both have a
``mum/``; they are two people), with ``family`` and ``member`` filled as FIW's loader
does, so the gallery knows each identity's family (the relatives search, Explore's
colouring by family).

This layout is chosen explicitly (``--families`` on the command line, the "families"
checkbox or format on the Home page), never detected: a folder of people whose photos
are sorted into sub-folders (``ROOT/<person>/<year>/*.jpg``) has the same shape, and
reading it as families would silently turn each year into a person. :func:`looks_like`
only lets :func:`facesearch.datasets.registry.detect_format` say so in its message.
"""

from __future__ import annotations

from pathlib import Path

from facesearch.datasets.base import (
    LabeledImage, _has_image, _image_names, _need_folder, _shown, _subdirs, clean_label, label_problem,
)
from facesearch.errors import DatasetError


def is_layout(root: Path) -> bool:
    """Never: the layout is not told apart from ``<person>/<event>/`` folders (see above)."""
    return False


def looks_like(root: Path) -> bool:
    """Whether ``root``'s first sub-folders hold no image but sub-folders with images (a
    two-level layout, families or not)."""
    for sub in _subdirs(root)[:5]:
        if _has_image(root / sub):
            return False
        if any(_has_image(root / sub / s) for s in _subdirs(root / sub)):
            return True
    return False


def load(root: Path, limit: int | None = None) -> list[LabeledImage]:
    """One record per image of each ``<family>/<person>/`` folder, sorted by path. Images
    directly in a family folder name nobody and are refused, as are unusable names."""
    _need_folder(root, "families")
    out: list[LabeledImage] = []
    for fam in _subdirs(root):
        fam_dir = root / fam
        people = [p for p in _subdirs(fam_dir) if _image_names(fam_dir / p)]
        if not people:
            continue
        why = label_problem(fam)
        if why is not None:
            raise DatasetError(f"{root}: the folder {_shown(fam)} cannot name a family: {why}. Rename it.")
        loose = _image_names(fam_dir)
        if loose:
            raise DatasetError(f"{fam_dir}: {len(loose)} photo(s) directly in the family folder (e.g. "
                               f"{_shown(loose[0])}) name no person: move them into a person's sub-folder")
        for person in people:
            why = label_problem(person)
            if why is not None:
                raise DatasetError(f"{fam_dir}: the folder {_shown(person)} cannot name a person: {why}. Rename it.")
            # NFC, trimmed: a family folder copied from a Mac is the same family.
            family, member = clean_label(fam), clean_label(person)
            out.extend(LabeledImage(path=fam_dir / person / f, identity=f"{family}/{member}", family=family,
                                    member=member) for f in _image_names(fam_dir / person))
    return out
