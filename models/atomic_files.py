"""Replacing a file all at once: written beside it, synced, renamed over it.

Readers see the old file or the new one, never half of one, and a crash or a full disk leaves
the old file as it was (the temporary file is removed). The temporary file is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name, so a link planted at its name is never
written through (another name is drawn); the rename replaces a link at the target's name
itself, never what it points at. ``replace_in_folder`` does the same inside a folder already
opened (``models.contained_paths`` opens one without following links).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

_WRITE_CHUNK = 1024 * 1024
_ATTEMPTS = 32
_CREATE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _random_part() -> str:
    return secrets.token_hex(6)


def replace_file(path: Path, data: bytes, prefix: str | None = None) -> None:
    """Replace ``path`` with ``data``: a temporary file in the same folder (named ``prefix``...,
    by default ``.<name>.``), written in chunks, synced, renamed over ``path``; then the folder is
    synced so the rename survives a power cut. Raises ``OSError`` (the old file unchanged)."""
    path = Path(path)
    folder = os.open(path.parent, _FOLDER_FLAGS)
    try:
        replace_in_folder(folder, path.name, data, prefix)
    finally:
        os.close(folder)


def replace_in_folder(folder_fd: int, name: str, data: bytes, prefix: str | None = None) -> None:
    """``replace_file`` for the entry ``name`` of the open folder ``folder_fd``."""
    prefix = prefix or f".{name}."
    for _ in range(_ATTEMPTS):
        temporary = f"{prefix}{_random_part()}.tmp"
        try:
            fd = os.open(temporary, _CREATE_FLAGS, 0o600, dir_fd=folder_fd)
            break
        except FileExistsError:  # a file, or a link planted at this name: draw another
            continue
    else:
        raise FileExistsError(f"No free temporary name for {name}.")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:_WRITE_CHUNK]) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder_fd)
        raise
    with contextlib.suppress(OSError):
        os.fsync(folder_fd)


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
