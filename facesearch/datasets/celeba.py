"""CelebA: ``ROOT/identity_CelebA.txt`` and ``ROOT/img_celeba/`` (or ``img_align_celeba/``).

The 202,599-line identity file is parsed in one pass and checked against a single
directory listing, never one ``stat`` per image.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from facesearch.datasets.base import _LAYOUT_HELP, LabeledImage, _need_folder, _read_text, _shown, label_problem
from facesearch.errors import DatasetError

log = logging.getLogger(__name__)

_CELEBA_IDENTITY_FILE = "identity_CelebA.txt"
# Official archive names first; Kaggle's zips add one more level of the same name.
_CELEBA_IMAGE_DIRS = (
    "img_celeba",
    "img_align_celeba",
    "img_celeba/img_celeba",
    "img_align_celeba/img_align_celeba",
)


def is_layout(root: Path) -> bool:
    return (root / _CELEBA_IDENTITY_FILE).is_file()


def _celeba_image_dir(root: Path) -> Path | None:
    for name in _CELEBA_IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    return None


def load(root: Path, limit: int | None = None) -> list[LabeledImage]:
    """Sorted by file name and cut to ``limit`` here, before building 200k records only to drop most."""
    _need_folder(root, "celeba")
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
