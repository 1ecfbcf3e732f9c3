"""An attached image in the composer: its thumbnail and the × that removes it.

Signals:
    removed(AttachmentChip): the × was pressed.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

from models.inference.images import ChatImage


class AttachmentChip(QFrame):
    """A thumbnail of an attached image with a button that removes it."""

    removed = Signal(object)

    def __init__(self, image: ChatImage, thumbnail: QImage, parent=None):
        super().__init__(parent)
        self.image = image
        self.setObjectName("attachment")
        self.setToolTip(f"{image.name} — {image.size[0]}×{image.size[1]}")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.picture = QLabel()
        self.picture.setPixmap(
            QPixmap.fromImage(thumbnail).scaled(
                QSize(64, 64), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
        )
        layout.addWidget(self.picture)
        self.remove_button = QToolButton()
        self.remove_button.setObjectName("removeAttachment")
        self.remove_button.setText("×")
        self.remove_button.setToolTip(f"Remove {image.name}")
        self.remove_button.setAccessibleName(f"Remove {image.name}")
        self.remove_button.clicked.connect(lambda: self.removed.emit(self))
        layout.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
