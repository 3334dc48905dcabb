"""Files written whole or not at all: a reader (another process, a crash) sees the old
version or the new one, never half of one, and a full disk leaves no partial file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from facesearch.errors import disk_full_raises


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and ``os.replace``;
    the folder is made if needed. A full disk raises StorageFullError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with disk_full_raises(f"disk full while saving {path}"):
        try:
            tmp.write_text(text)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
    return path


def first_present(folders, name: str) -> tuple[str, int] | None:
    """``(path, mtime_ns)`` of ``name`` in the first of ``folders`` that holds it (a data
    folder's own file before the shipped one); None when none does. The mtime keys a
    parse cache, so a file written again is read again."""
    for folder in folders:
        p = Path(folder) / name
        try:
            return str(p), p.stat().st_mtime_ns
        except OSError:
            continue
    return None
