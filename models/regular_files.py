"""Opening files a person or a model folder points at: regular files only, never past a limit.

``/dev/zero`` reads without end and a FIFO blocks its reader until something writes to it; both
report a size of 0, so a size check alone lets them through. Every input file Llama Desk reads
(an attached image, a conversation to import, a model's config and weights) is opened here: the
path is resolved (symlinks followed) and stat'ed, anything that is not a regular file is refused
before it is opened, the open itself never blocks (``O_NONBLOCK``), the opened descriptor is
checked again (the path may have been swapped in between), and reads stop one byte past the
limit. Every refusal is an ``InputFileError`` whose text is one line fit to show as is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO


class InputFileError(ValueError):
    """A file that cannot be used as input, with a one-line reason."""


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _require_regular(info: os.stat_result, label: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise InputFileError(f"{label} is a folder, not a file.")
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(f"{label} is {_kind(info.st_mode)}, not a regular file.")


def _unreadable(exc: OSError, label: str) -> InputFileError:
    if isinstance(exc, FileNotFoundError):
        return InputFileError(f"{label} does not exist.")
    if isinstance(exc, PermissionError):
        return InputFileError(f"{label} cannot be read (permission denied).")
    return InputFileError(f"{label} cannot be read ({exc.strerror or exc}).")


def _too_large(label: str, max_bytes: int) -> InputFileError:
    if max_bytes >= 1024 * 1024:
        limit = f"{max_bytes // (1024 * 1024)} MB"
    else:
        limit = f"{max_bytes:,} bytes"
    return InputFileError(f"{label} is larger than {limit}.")


def check_regular_file(path: str | Path, label: str | None = None) -> os.stat_result:
    """Stat ``path`` (following symlinks); raise ``InputFileError`` unless it is a regular file.

    ``label`` names the file in messages (the path itself when not given).
    """
    label = str(path) if label is None else label
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _unreadable(exc, label) from None
    _require_regular(info, label)
    return info


def open_regular_file(path: str | Path, label: str | None = None) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file without blocking.

    The file is checked before it is opened and the opened descriptor again after, so a path
    swapped for a FIFO or a device in between is refused too.
    """
    label = str(path) if label is None else label
    check_regular_file(path, label)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _unreadable(exc, label) from None
    try:
        _require_regular(os.fstat(fd), label)
        os.set_blocking(fd, True)  # a regular file never blocks; plain reads from here on
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | Path, max_bytes: int, label: str | None = None) -> bytes:
    """The whole content of the regular file ``path``, refused when it holds over ``max_bytes``."""
    label = str(path) if label is None else label
    if check_regular_file(path, label).st_size > max_bytes:
        raise _too_large(label, max_bytes)
    with open_regular_file(path, label) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise _unreadable(exc, label) from None
    if len(data) > max_bytes:  # it grew after the stat
        raise _too_large(label, max_bytes)
    return data
