"""The folder-per-identity layout: ``ROOT/<person>/<photo>.jpg``."""

from __future__ import annotations

from pathlib import Path

from facesearch.datasets.base import (
    LabeledImage, _has_image, _image_names, _need_folder, _shown, _subdirs, label_problem,
)
from facesearch.errors import DatasetError


def is_layout(root: Path) -> bool:
    """Whether a visible sub-folder of ``root`` holds images."""
    return any(_has_image(root / sub) for sub in _subdirs(root))


def load(root: Path, limit: int | None = None) -> list[LabeledImage]:
    _need_folder(root, "folders")
    return load_identity_folders(root)


def load_identity_folders(root: Path) -> list[LabeledImage]:
    """One record per image in each visible sub-folder of ``root``, labelled with the folder name."""
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
