"""One exception tree for everything a user can get wrong or the machine can refuse.

The core raises these; pages show them with ``st.error`` and the CLI prints them to stderr
and exits non-zero. Anything that is *not* a ``FaceSearchError`` is a bug and may show a
traceback.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Iterator


class FaceSearchError(Exception):
    """Base class: a message meant for the user, no traceback needed."""

    exit_code = 1


class ConfigError(FaceSearchError):
    """A setting or argument is invalid."""

    exit_code = 2


class TooFewPairsError(ConfigError):
    """A threshold chosen on too few pairs to know its false match rate: the rate's
    confidence interval is wider than the rate itself."""


class UnknownModelError(ConfigError):
    """A model name that is not in the registry."""

    def __init__(self, name: str, valid: list[str]):
        self.name, self.valid = name, list(valid)
        super().__init__(f"Unknown model {name!r}. Valid models: {', '.join(self.valid)}")


class UnknownDetectorError(ConfigError):
    """A detector name that is not in the registry."""

    def __init__(self, name: str, valid: list[str]):
        self.name, self.valid = name, list(valid)
        super().__init__(f"Unknown detector {name!r}. Valid detectors: {', '.join(self.valid)}")


class WeightsMissingError(FaceSearchError):
    """Model weights are not on disk and cannot be downloaded (no network)."""

    def __init__(self, what: str, filename: str, folder: str, detail: str = ""):
        self.what, self.filename, self.folder = what, filename, folder
        msg = (
            f"{what}: weights file {filename!r} is missing and could not be downloaded. "
            f"Put it in {folder}"
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class PermissionDeniedError(FaceSearchError):
    """A visitor of a hosted dashboard asked for an admin action."""

    exit_code = 3


class ImageError(FaceSearchError):
    """A file that cannot be read as an image (not an image, truncated, unsupported)."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, reason
        super().__init__(f"{source}: {reason}")


class NoFaceError(FaceSearchError):
    """An image in which no face was detected where one was required."""

    def __init__(self, source: str):
        self.source = source
        super().__init__(f"{source}: no face detected")


class DatasetError(FaceSearchError):
    """A dataset folder or pairs file that does not have the expected layout."""


class StoreError(FaceSearchError):
    """Gallery (ChromaDB) problems."""


class GalleryMismatchError(StoreError):
    """Writing or querying a collection with another model, dimension or metric."""


class GalleryBusyError(StoreError):
    """Another process holds the gallery's write lock."""


class DatabaseRestartingError(StoreError):
    """The data folder's database server died and its supervisor (``facesearch serve``,
    ``make run``) is starting it again: a wait of seconds, not a failure."""


class StorageFullError(StoreError):
    """The disk is full; nothing was half-written."""


# Below this many free bytes a folder's disk counts as full: SQLite then fails to grow its
# WAL index ("disk I/O error") before any write says "disk is full".
_NEARLY_FULL = 1 << 20


def _no_room(folder) -> bool:
    import os

    try:
        st = os.statvfs(folder)
    except (OSError, TypeError, ValueError):
        return False
    return st.f_bavail * st.f_frsize < _NEARLY_FULL


def is_disk_full(exc: BaseException, folder=None) -> bool:
    """ENOSPC, or the words SQLite and Chroma use for it ("database or disk is full";
    Chroma's Rust layer reports a full disk as "Error in compaction"). With ``folder``,
    an I/O error there while its disk has no room left counts too: SQLite says "disk I/O
    error" when it cannot grow the shared-memory file of a WAL database on a full disk."""
    text = str(exc).lower()
    if getattr(exc, "errno", None) == errno.ENOSPC or "disk is full" in text or "no space left" in text:
        return True
    if "error in compaction" in text or "disk i/o error" in text or getattr(exc, "errno", None) == errno.EIO:
        return folder is not None and _no_room(folder)
    return False


@contextlib.contextmanager
def disk_full_raises(message: str, folder=None) -> Iterator[None]:
    """Turn a full disk inside the block into ``StorageFullError(message)``; other errors
    pass. ``folder``: where the block writes (see :func:`is_disk_full`)."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc, folder):
            raise StorageFullError(message) from None
        raise


class EmptyGalleryError(StoreError):
    """A query against a gallery with no faces."""


class ArchiveError(StoreError):
    """A gallery archive that cannot be restored: not one, damaged, or from elsewhere."""
