"""LFW: ``ROOT/lfw-deepfunneled/<Name>/<Name>_0001.jpg`` (or ``ROOT/lfw/``), and its
official pairs files.

:func:`read_lfw_pairs` reads the official LFW ``pairs.txt`` (``10\\t300`` header: 10
folds of 300 same + 300 different pairs; a single-number header ``N`` as in
``pairsDevTrain.txt``: one fold of N + N).
"""

from __future__ import annotations

from pathlib import Path

from facesearch.datasets.base import _LAYOUT_HELP, LabeledImage, Pair, _has_image, _need_folder, _read_text, _subdirs
from facesearch.datasets.folders import load_identity_folders
from facesearch.errors import DatasetError

_LFW_IMAGE_DIRS = (
    "lfw-deepfunneled/lfw-deepfunneled",
    "lfw-deepfunneled",
    "lfw_funneled",
    "lfw/lfw",
    "lfw",
)


def is_layout(root: Path) -> bool:
    return _lfw_image_dir(root) is not None


def load(root: Path, limit: int | None = None) -> list[LabeledImage]:
    _need_folder(root, "lfw")
    img_dir = _lfw_image_dir(root)
    if img_dir is None:
        raise DatasetError(f"{root}: not an LFW folder.\n{_LAYOUT_HELP}")
    return load_identity_folders(img_dir)


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
