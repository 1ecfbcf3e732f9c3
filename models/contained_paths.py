"""Deleting, writing and listing inside a folder we own without ever following a link.

A *root* (the data folder, an export's folder) is trusted as given: it may itself be a link (a
data folder moved to another disk). Every name *below* it is walked one component at a time,
each folder opened with ``O_NOFOLLOW`` relative to its parent's descriptor (``dir_fd``), so a
link anywhere on the way is refused with ``LinkRefused`` (one line naming it) instead of
followed, and a folder swapped for a link between a check and its use is refused too. Files are
created with ``O_CREAT | O_NOFOLLOW`` (and ``O_EXCL`` for temporary files, in
``models.atomic_files``).

What happens to a link that is met:

- a walk (purges, evictions, clearing, accounting: ``regular_files``) skips it: a link is not
  entered, not counted, not removed. It was put there by someone (the person, or someone
  hostile); following it is the bug, and deleting it is not ours to decide.
- a removal of one of our own names (``remove_file``: a conversation's cache, an image by its
  hash) removes whatever has that name, a link as a link (``unlink``), never what it points at;
  a link on a folder on the way is refused.
- a write (``replace_file``, ``open_file``, ``make_folders``) through a linked folder or into a
  linked name that would be followed is refused; ``replace_file`` renames over a link at its
  name, replacing the link itself.

Paths handed on to a library that opens them itself (mlx's cache files, SQLite) are checked with
``check_no_links`` first; that check and the library's open are two steps.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from models.atomic_files import replace_in_folder

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_log = logging.getLogger(__name__)
_reported: set[Path] = set()  # links already logged by a walk (each once per process)


class LinkRefused(OSError):
    """A path below a root we own goes through a link; the message names it in one line."""

    def __init__(self, path: str | Path):
        super().__init__(
            errno.ELOOP, f"{path} is a link; Llama Desk does not write, delete or evict through links"
        )
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.strerror)


def parts_below(root: str | Path, path: str | Path) -> tuple[str, ...]:
    """The names leading from ``root`` to ``path`` (lexically); ``ValueError`` when ``path`` is
    not below ``root`` or names ``..``/``.``."""
    root, path = Path(root).absolute(), Path(path).absolute()
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise ValueError(f"{path} is not inside {root}") from None
    if any(part in ("..", ".", "") for part in parts):
        raise ValueError(f"{path} is not a plain path inside {root}")
    return parts


def _is_link(folder_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_child(folder_fd: int, name: str, shown: Path, create: bool) -> int:
    try:
        return os.open(name, _FOLDER_FLAGS | _NOFOLLOW, dir_fd=folder_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError:
        if _is_link(folder_fd, name):
            raise LinkRefused(shown) from None
        raise
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=folder_fd)
    return _open_child(folder_fd, name, shown, create=False)


def _open_root(root: Path, create: bool) -> int:
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return os.open(root, _FOLDER_FLAGS)


@contextlib.contextmanager
def open_folder(root: str | Path, folder: str | Path, create: bool = False) -> Iterator[int]:
    """A descriptor of ``folder`` (below ``root``, or ``root`` itself), reached without
    following a link; made (with the folders on the way) when ``create``. Raises
    ``LinkRefused``, ``FileNotFoundError``, ``NotADirectoryError``."""
    root = Path(root)
    parts = parts_below(root, folder)
    fd = _open_root(root, create)
    try:
        shown = root
        for part in parts:
            shown = shown / part
            child = _open_child(fd, part, shown, create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def make_folders(root: str | Path, folder: str | Path) -> None:
    """``mkdir -p`` of ``folder`` below ``root``; ``LinkRefused`` if a folder on the way is a link."""
    with open_folder(root, folder, create=True):
        pass


def check_no_links(root: str | Path, path: str | Path) -> None:
    """Raise ``LinkRefused`` if ``path``, or a folder on its way from ``root``, is a link (a
    missing part is fine: nothing there to follow)."""
    path = Path(path)
    try:
        with open_folder(root, path.parent) as fd:
            if _is_link(fd, path.name):
                raise LinkRefused(path)
    except (FileNotFoundError, NotADirectoryError):
        return


def lstat_file(root: str | Path, path: str | Path) -> os.stat_result | None:
    """``path``'s own status (a link is not followed), None when it or its folder is missing."""
    path = Path(path)
    try:
        with open_folder(root, path.parent) as fd:
            return os.stat(path.name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def remove_file(root: str | Path, path: str | Path) -> bool:
    """Remove the file named ``path`` (a link there as a link, never its target); False when
    there is none. ``LinkRefused`` when a folder on the way is a link; a folder there stays."""
    path = Path(path)
    try:
        with open_folder(root, path.parent) as fd:
            if stat.S_ISDIR(os.stat(path.name, dir_fd=fd, follow_symlinks=False).st_mode):
                return False
            os.unlink(path.name, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def replace_file(root: str | Path, path: str | Path, data: bytes, prefix: str | None = None) -> None:
    """Atomically replace ``path`` with ``data`` (``models.atomic_files``), its folders made on
    the way; never through a linked folder (``LinkRefused``)."""
    path = Path(path)
    with open_folder(root, path.parent, create=True) as fd:
        replace_in_folder(fd, path.name, data, prefix)


def write_once(root: str | Path, path: str | Path, data: bytes) -> None:
    """Write ``data`` at ``path`` atomically unless a regular file of its size is there already
    (files named by their content's hash: the same name holds the same bytes)."""
    info = lstat_file(root, path)
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_size == len(data):
        return
    replace_file(root, path, data, prefix=".incoming-")


def open_file(root: str | Path, path: str | Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` of ``path`` below ``root`` (its folders made when ``flags`` has ``O_CREAT``),
    never following a link, and refusing anything but a regular file. Returns the descriptor."""
    path = Path(path)
    with open_folder(root, path.parent, create=bool(flags & os.O_CREAT)) as folder:
        try:
            fd = os.open(
                path.name, flags | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), mode, dir_fd=folder
            )
        except OSError:
            if _is_link(folder, path.name):
                raise LinkRefused(path) from None
            raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def touch(root: str | Path, path: str | Path) -> None:
    """Set the file ``path``'s modification time to now; a link at its name is refused
    (``LinkRefused``), never followed."""
    fd = open_file(root, path, os.O_RDONLY)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def regular_files(root: str | Path, folder: str | Path, depth: int = 0) -> list[tuple[Path, os.stat_result]]:
    """The regular files exactly ``depth`` folders below ``folder`` (itself below ``root``),
    with their own status, sorted by path. Links are skipped, never entered (logged); a
    ``folder`` that is missing or reached through a link gives an empty list."""
    folder = Path(folder)
    try:
        with open_folder(root, folder) as fd:
            return sorted(_walk(fd, folder, depth), key=lambda found: found[0])
    except LinkRefused as exc:
        _report(exc)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return []


def _walk(folder_fd: int, shown: Path, depth: int) -> Iterator[tuple[Path, os.stat_result]]:
    with os.scandir(folder_fd) as entries:
        listed = list(entries)
    for entry in listed:
        try:
            if entry.is_symlink():
                _report(LinkRefused(shown / entry.name))
            elif depth == 0 and entry.is_file(follow_symlinks=False):
                yield shown / entry.name, entry.stat(follow_symlinks=False)
            elif depth > 0 and entry.is_dir(follow_symlinks=False):
                child = _open_child(folder_fd, entry.name, shown / entry.name, create=False)
                try:
                    yield from _walk(child, shown / entry.name, depth - 1)
                finally:
                    os.close(child)
        except LinkRefused as exc:  # swapped for a link since it was listed
            _report(exc)
        except OSError:
            _log.debug("Could not look at %s", shown / entry.name, exc_info=True)


def _report(link: LinkRefused) -> None:
    if link.path not in _reported and len(_reported) < 1000:
        _reported.add(link.path)
        _log.warning("Skipped: %s", link)
