"""An image of a message shown larger: a dialog with the image scaled to fit, closed by Esc.

The transcript shows thumbnails; clicking one opens this. The picture is scaled from the
message's decoded image off the UI thread (``show_image_preview``), to at most the screen's
size, then fitted to the dialog as it is resized (never enlarged past its own size).
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QDialog, QLabel, QVBoxLayout, QWidget

from desktop.workers.background_task import run_in_background
from desktop.workers.image_loader import thumbnail_qimage
from models.inference.images import ChatImage

MARGIN = 12


class ImagePreview(QDialog):
    """One image, scaled to fit; Esc (or closing the window) closes it."""

    def __init__(self, image: QImage, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("imagePreview")
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._pixmap = QPixmap.fromImage(image)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.picture.setMinimumSize(1, 1)
        self.picture.setAccessibleName(title)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(MARGIN, MARGIN, MARGIN, MARGIN)
        layout.addWidget(self.picture)
        self.resize(self._initial_size(parent))

    def _initial_size(self, parent: QWidget | None) -> QSize:
        screen = (parent.screen() if parent is not None else None) or QGuiApplication.primaryScreen()
        room = screen.availableGeometry().size() * 0.85 if screen is not None else QSize(1200, 900)
        fitted = self._pixmap.size().scaled(
            room - QSize(2 * MARGIN, 2 * MARGIN), Qt.AspectRatioMode.KeepAspectRatio
        )
        if fitted.width() > self._pixmap.width():  # never enlarged
            fitted = self._pixmap.size()
        return fitted.expandedTo(QSize(160, 120)) + QSize(2 * MARGIN, 2 * MARGIN)

    def shown_size(self) -> QSize:
        """The size the picture is shown at now."""
        return self.picture.pixmap().size()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        room = self.picture.size()
        if self._pixmap.width() <= room.width() and self._pixmap.height() <= room.height():
            self.picture.setPixmap(self._pixmap)
        else:
            self.picture.setPixmap(
                self._pixmap.scaled(
                    room, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
            )


def show_image_preview(image: ChatImage, parent: QWidget) -> None:
    """Scale ``image`` off the UI thread to at most the screen's size, then show it larger."""
    screen = parent.screen() or QGuiApplication.primaryScreen()
    side = max(screen.availableGeometry().width(), screen.availableGeometry().height()) if screen else 2048

    def done(scaled: QImage) -> None:
        preview = ImagePreview(scaled, image.name, parent)
        preview.open()

    run_in_background(lambda: thumbnail_qimage(image, side), done, lambda _message: None, owner=parent)
