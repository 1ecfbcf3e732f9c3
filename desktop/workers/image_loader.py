"""Decodes attached images off the UI thread and makes their thumbnails.

Files and pasted/dropped image data are read and decoded in ``QThreadPool`` tasks; results
come back as signals on the UI thread, with the thumbnail already scaled, so the window never
waits on disk or Pillow.

Signals:
    loaded(object, QImage): a ChatImage and its thumbnail.
    failed(str): a one-line reason an attachment was refused.
"""

from __future__ import annotations

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
    loaded = Signal(object, QImage)
    failed = Signal(str)


class _DecodeTask(QRunnable):
    def __init__(self, relay: _Relay, path: str | None, data: bytes | None, name: str):
        super().__init__()
        self._relay, self._path, self._data, self._name = relay, path, data, name

    def run(self) -> None:
        try:
            if self._path is not None:
                image = load_image_file(self._path)
            else:
                image = load_image_bytes(self._data or b"", self._name)
            self._relay.loaded.emit(image, thumbnail_qimage(image))
        except ImageError as exc:
            self._relay.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - Pillow can raise anything on hostile input
            self._relay.failed.emit(f"{self._name} could not be opened ({exc}).")


class ImageLoader(QObject):
    loaded = Signal(object, QImage)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None):
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._relay = _Relay()
        self._relay.loaded.connect(self._on_loaded)
        self._relay.failed.connect(self._on_failed)
        self.pending = 0

    def load_file(self, path: str) -> None:
        from pathlib import Path

        self.pending += 1
        self._pool.start(_DecodeTask(self._relay, path, None, Path(path).name))

    def load_data(self, data: bytes, name: str = "pasted image") -> None:
        self.pending += 1
        self._pool.start(_DecodeTask(self._relay, None, bytes(data), name))

    def _on_loaded(self, image: ChatImage, thumbnail: QImage) -> None:
        self.pending -= 1
        self.loaded.emit(image, thumbnail)

    def _on_failed(self, message: str) -> None:
        self.pending -= 1
        self.failed.emit(message)
