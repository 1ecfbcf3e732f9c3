"""The images of stored conversations: files in the data folder named by their content hash.

An image is written once however many messages attach it: ``images/ab/<sha256>.<ext>``. It is
kept as the original bytes, or, above ``max_bytes`` (20 MB by default), as a downscaled JPEG
(the hash is then the copy's; ``original_sha256`` remembers the attachment's, so attaching the
same large image again finds the copy instead of downscaling anew).

Files are written atomically (temporary file, fsync, rename) *before* the database row that
refers to them is committed, so after a crash the database never points at a missing or
half-written file; at worst a file is left over, and ``remove_orphans`` clears those.

No link in the folder is followed (``models.contained_paths``, from the data folder down): a
write through a linked folder is refused in one line, and the purge skips links.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models import contained_paths
from models.chats.database import StoreError
from models.inference.images import ChatImage, load_image_bytes

MAX_STORED_BYTES = 20 * 1024 * 1024
MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredImageFile:
    """What the ``images`` table records about one stored file."""

    sha256: str
    media_type: str
    size: int
    width: int
    height: int
    original_sha256: str
    original_size: int

    @property
    def downscaled(self) -> bool:
        return self.sha256 != self.original_sha256


def media_type_of(data: bytes) -> str:
    """The MIME type of encoded image ``data`` (``application/octet-stream`` if unknown)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return MEDIA_TYPES.get(probe.format or "", "application/octet-stream")
    except (OSError, ValueError):
        return "application/octet-stream"


def downscale(image: ChatImage, max_bytes: int) -> bytes:
    """A JPEG of ``image`` no larger than ``max_bytes``, as large in pixels as that allows."""
    picture = image.image.convert("RGB")
    scale = 1.0
    for _ in range(24):
        width = max(1, round(picture.width * scale))
        height = max(1, round(picture.height * scale))
        resized = picture if scale == 1.0 else picture.resize((width, height), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        resized.save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        if len(data) <= max_bytes or (width == 1 and height == 1):
            return data
        scale *= max(0.5, min(0.9, (max_bytes / len(data)) ** 0.5 * 0.95))
    return data


class ImageFolder:
    """The folder of image files; the rows describing them live in the caller's database."""

    def __init__(
        self, root: str | Path, max_bytes: int = MAX_STORED_BYTES, data_root: str | Path | None = None
    ):
        """``data_root``: the trusted folder above ``root`` (default: its parent, the data
        folder); no link below it is followed."""
        self.root = Path(root)
        self.data_root = Path(data_root) if data_root is not None else self.root.parent
        self.max_bytes = max_bytes

    def path(self, sha256: str, media_type: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{SUFFIXES.get(media_type, '.img')}"

    def prepare(self, image: ChatImage) -> tuple[StoredImageFile, bytes]:
        """The record and bytes ``image`` is stored as (downscaled if above the limit)."""
        data = image.data
        if len(data) > self.max_bytes:
            data = downscale(image, self.max_bytes)
            media_type = "image/jpeg"
        else:
            media_type = media_type_of(data)
        sha = hashlib.sha256(data).hexdigest()
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
        record = StoredImageFile(sha, media_type, len(data), width, height, image.sha256, len(image.data))
        return record, data

    def write(self, record: StoredImageFile, data: bytes) -> Path:
        """Write ``data`` under its hash, atomically; an existing identical file is kept."""
        target = self.path(record.sha256, record.media_type)
        try:
            contained_paths.write_once(self.data_root, target, data)
        except OSError as exc:
            raise StoreError(f"The image could not be stored: {exc.strerror or exc}.") from None
        return target

    def read(self, sha256: str, media_type: str) -> bytes:
        return self.path(sha256, media_type).read_bytes()

    def load(self, sha256: str, media_type: str, name: str) -> ChatImage:
        """The stored image as a ``ChatImage`` (its ``sha256`` is the stored bytes')."""
        return load_image_bytes(self.read(sha256, media_type), name or "image")

    def remove(self, sha256: str, media_type: str) -> None:
        """Remove the file of ``sha256`` (a link at its name as a link; never through a linked folder)."""
        try:
            contained_paths.remove_file(self.data_root, self.path(sha256, media_type))
        except OSError as exc:
            _log.warning("Could not remove the image %s: %s", sha256[:12], exc)

    def remove_orphans(self, known: set[str], older_than_s: float = 3600.0) -> int:
        """Delete files whose hash is not in ``known`` and that are older than ``older_than_s``.

        The age guard leaves alone a file another process has just written and not yet committed.
        """
        return remove_orphan_files(self.data_root, self.root, known, older_than_s)


def remove_orphan_files(data_root: Path, root: Path, known: set[str], older_than_s: float) -> int:
    """Delete the files of ``root/ab/<sha256>.<ext>`` (below the trusted ``data_root``; links
    skipped) whose hash is not in ``known`` and that are older than ``older_than_s``; leftover
    temporary files too. Returns how many went."""
    cutoff = time.time() - older_than_s
    removed = 0
    for path, info in contained_paths.regular_files(data_root, root, depth=1):
        if len(path.parent.name) != 2:
            continue
        sha = path.name.split(".", 1)[0]
        if sha in known and not path.name.startswith(".incoming-"):
            continue
        with contextlib.suppress(OSError):
            if info.st_mtime < cutoff and contained_paths.remove_file(data_root, path):
                removed += 1
    return removed
