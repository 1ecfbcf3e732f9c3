"""The documents (PDFs) of stored conversations: files in the data folder named by their hash.

A PDF is written once however many messages attach it: ``documents/ab/<sha256>.pdf``, its bytes
as attached (they are what the hash names). As for images (``models.chats.images``), a file is
written atomically *before* the row that refers to it is committed, no link below the data
folder is followed (to write, read or delete), and ``remove_orphans`` clears files no row names.
Its pages' images are ordinary stored images (``ImageFolder``).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from models import contained_paths
from models.chats.database import StoreError
from models.chats.images import remove_orphan_files
from models.documents.pdf_reading import MAX_DOCUMENT_BYTES

PDF_MEDIA_TYPE = "application/pdf"
_log = logging.getLogger(__name__)


def read_contained_file(root: str | Path, path: str | Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` below ``root``, reached without following a link;
    ``OSError`` (``LinkRefused``, ``FileNotFoundError``, ``EFBIG`` past ``max_bytes``) if not."""
    fd = contained_paths.open_file(root, path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > max_bytes:
            raise OSError(errno.EFBIG, f"{Path(path).name} is larger than {max_bytes:,} bytes")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise OSError(errno.EFBIG, f"{Path(path).name} is larger than {max_bytes:,} bytes")
    return data


class DocumentFolder:
    """The folder of PDF files; the rows describing them live in the caller's database."""

    def __init__(self, root: str | Path, data_root: str | Path | None = None):
        """``data_root``: the trusted folder above ``root`` (default: its parent, the data
        folder); no link below it is followed."""
        self.root = Path(root)
        self.data_root = Path(data_root) if data_root is not None else self.root.parent

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.pdf"

    def exists(self, sha256: str) -> bool:
        try:
            info = contained_paths.lstat_file(self.data_root, self.path(sha256))
        except OSError:
            return False
        return info is not None and stat.S_ISREG(info.st_mode)

    def write(self, sha256: str, data: bytes) -> Path:
        """Write ``data`` under its hash, atomically; an existing file of that size is kept."""
        target = self.path(sha256)
        try:
            contained_paths.write_once(self.data_root, target, data)
        except OSError as exc:
            raise StoreError(f"The document could not be stored: {exc.strerror or exc}.") from None
        return target

    def read(self, sha256: str) -> bytes:
        """The stored PDF's bytes (``OSError`` when missing, linked or too large)."""
        return read_contained_file(self.data_root, self.path(sha256), MAX_DOCUMENT_BYTES)

    def remove(self, sha256: str) -> None:
        """Remove the file of ``sha256`` (a link at its name as a link; never through a linked folder)."""
        try:
            contained_paths.remove_file(self.data_root, self.path(sha256))
        except OSError as exc:
            _log.warning("Could not remove the document %s: %s", sha256[:12], exc)

    def remove_orphans(self, known: set[str], older_than_s: float = 3600.0) -> int:
        """Delete files whose hash is not in ``known`` and that are older than ``older_than_s``
        (the age guard leaves alone a file another process has just written, not yet committed)."""
        return remove_orphan_files(self.data_root, self.root, known, older_than_s)
