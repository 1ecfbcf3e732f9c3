"""Decodes attached images off the UI thread and makes their thumbnails.

Files and pasted/dropped image data are read and decoded in ``QThreadPool`` tasks; results
come back as signals on the UI thread, with the thumbnail already scaled, so the window never
waits on disk or Pillow.

Each ``load_*`` call returns a ticket that its result carries, so the caller can place results
in the order it asked for them (they end in any order).

Signals:
    loaded(int, object, QImage): a ticket, its ChatImage and the thumbnail.
    failed(int, str): a ticket, and the one-line reason its attachment was refused.
"""

from __future__ import annotations

import itertools

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from models.inference.images import ChatImage, ImageError, load_image_bytes, load_image_file

THUMBNAIL_SIDE = 160


def thumbnail_qimage(image: ChatImage, side: int = THUMBNAIL_SIDE) -> QImage:
    """A QImage copy of ``image`` fitted into ``side`` x ``side`` pixels."""
    thumb = image.image.copy()
    thumb.thumbnail((side, side))
    thumb = thumb.convert("RGB")
    data = thumb.tobytes()
    return QImage(data, thumb.width, thumb.height, 3 * thumb.width, QImage.Format.Format_RGB888).copy()


class _Relay(QObject):
    loaded = Signal(int, object, QImage)
    failed = Signal(int, str)


class _DecodeTask(QRunnable):
    def __init__(self, relay: _Relay, ticket: int, path: str | None, data: bytes | None, name: str):
        super().__init__()
        self._relay, self._ticket = relay, ticket
        self._path, self._data, self._name = path, data, name

    def run(self) -> None:
        try:
            if self._path is not None:
                image = load_image_file(self._path)
            else:
                image = load_image_bytes(self._data or b"", self._name)
            self._relay.loaded.emit(self._ticket, image, thumbnail_qimage(image))
        except ImageError as exc:
            self._relay.failed.emit(self._ticket, str(exc))
        except Exception as exc:  # noqa: BLE001 - Pillow can raise anything on hostile input
            self._relay.failed.emit(self._ticket, f"{self._name} could not be opened ({exc}).")


class ImageLoader(QObject):
    loaded = Signal(int, object, QImage)
    failed = Signal(int, str)

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None):
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._relay = _Relay()
        self._relay.loaded.connect(self._on_loaded)
        self._relay.failed.connect(self._on_failed)
        self.pending = 0
        self._tickets = itertools.count(1)

    def load_file(self, path: str) -> int:
        """Decode the file at ``path``; return the ticket its result will carry."""
        from pathlib import Path

        return self._start(path, None, Path(path).name)

    def load_data(self, data: bytes, name: str = "pasted image") -> int:
        """Decode image bytes (a paste or a drop of image data); return the result's ticket."""
        return self._start(None, bytes(data), name)

    def _start(self, path: str | None, data: bytes | None, name: str) -> int:
        ticket = next(self._tickets)
        self.pending += 1
        self._pool.start(_DecodeTask(self._relay, ticket, path, data, name))
        return ticket

    def _on_loaded(self, ticket: int, image: ChatImage, thumbnail: QImage) -> None:
        self.pending -= 1
        self.loaded.emit(ticket, image, thumbnail)

    def _on_failed(self, ticket: int, message: str) -> None:
        self.pending -= 1
        self.failed.emit(ticket, message)
