"""Labelled image lists: the dataset formats as data, and :func:`load_images`.

:func:`load_images` returns :class:`~facesearch.datasets.base.LabeledImage` records for
one of :data:`FORMATS` (or ``"auto"``, see :func:`detect_format`). A format is a module
of this package with ``is_layout(path) -> bool`` and ``load(path, limit) -> records``;
adding one is that module and one line in :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from facesearch.datasets import celeba, csvlist, families, fiw, folders, lfw, photos
from facesearch.datasets.base import _LAYOUT_HELP, LabeledImage, _check_limit, _has_image
from facesearch.errors import ConfigError, DatasetError

# name -> (whether a path has this layout, its loader(path, limit), the rank at which
# detect_format tries it), in the order users see. Most specific first when detecting,
# since a CelebA, FIW or LFW folder also has sub-folders of images.
FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[[Path, int | None], list[LabeledImage]], int]] = {
    "folders": (folders.is_layout, folders.load, 4),
    "celeba": (celeba.is_layout, celeba.load, 1),
    "lfw": (lfw.is_layout, lfw.load, 3),
    "fiw": (fiw.is_layout, fiw.load, 2),
    "csv": (csvlist.is_layout, csvlist.load, 0),
    # Never detected (families.is_layout is always False): chosen with --families.
    "families": (families.is_layout, families.load, 5),
    # Unlabelled: every face stored unnamed, grouped into people (facesearch.people).
    # Last when detecting: loose images beside per-person sub-folders stay "folders".
    "photos": (photos.is_layout, photos.load, 6),
}


def detect_format(path: str | Path) -> str:
    """The format of a dataset path: one of :data:`FORMATS`.

    Checks, in order: a ``.csv`` file -> ``csv``; ``identity_CelebA.txt`` -> ``celeba``;
    ``train-faces/`` or family folders -> ``fiw``; ``lfw-deepfunneled/``, ``lfw/``, or
    name folders next to a ``pairs.txt`` -> ``lfw``; sub-folders with images ->
    ``folders``; images directly in the folder (and no pair list) -> ``photos``, a photo
    library with no labels. Raises :class:`DatasetError` describing the expected layouts otherwise.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    if p.is_file() and not csvlist.is_layout(p):
        if p.suffix.lower() == ".txt" and p.name.lower().startswith("pairs"):
            raise DatasetError(
                f"{p} looks like an LFW pairs file: it lists pairs, not labelled images. "
                "Give the LFW folder instead (pairs are read with read_lfw_pairs)."
            )
        raise DatasetError(f"{p}: a dataset must be a folder or a .csv file.\n{_LAYOUT_HELP}")
    for name in sorted(FORMATS, key=lambda f: FORMATS[f][2]):
        if FORMATS[name][0](p):
            return name
    hint = ""
    if _has_image(p):
        hint = (
            "\nThe images are directly in the folder, so they have no identity: put each "
            "person's photos in a sub-folder named after them, or list them in a csv "
            "with columns path,label; or ingest them as a photo library with --format photos."
        )
        if (p / "master.csv").is_file():
            hint += " (master.csv here is a pair list: read it with read_master_csv.)"
    elif families.looks_like(p):
        hint = ("\nIts sub-folders hold folders of photos: if they are families (FAMILY/PERSON/*.jpg), ingest it "
                "with --families (format 'families'); a person's photos sorted into sub-folders are not read.")
    raise DatasetError(f"{p}: no known dataset layout found.\n{_LAYOUT_HELP}{hint}")


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
    images = FORMATS[fmt][1](p, limit)
    if not images and limit != 0:
        raise DatasetError(f"{p}: no images found for format {fmt!r}.\n{_LAYOUT_HELP}")
    # The folder loaders build their lists from sorted listings, already in path order;
    # re-sorting 200k paths by their parts would double CelebA's load time.
    return images if limit is None else images[:limit]
