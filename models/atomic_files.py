"""Replacing a file all at once: written beside it, synced, renamed over it.

Readers see the old file or the new one, never half of one, and a crash or a full disk leaves
the old file as it was (the temporary file is removed).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

_WRITE_CHUNK = 1024 * 1024


def replace_file(path: Path, data: bytes, prefix: str | None = None) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same folder (named ``prefix``...,
    by default ``.<name>.``), written in chunks, synced, renamed over ``path``; then the folder is
    synced so the rename survives a power cut. Raises ``OSError`` (the old file unchanged)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:_WRITE_CHUNK]) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, where POSIX allows it."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
