"""The composer's text box: Enter sends, Shift+Enter is a new line, Tab leaves it, and what is
pasted or dropped into it that can be attached (files, images, PDFs) goes to the composer.

Signals:
    submit(): Enter.
    escape(): Esc.
    images_offered(QMimeData): a paste or drop of something to attach.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QPlainTextEdit, QWidget

from desktop.widgets.attachment_sources import mime_has_images


class PromptEdit(QPlainTextEdit):
    """The text box: Enter sends, Shift+Enter is a newline, Tab leaves it (Ctrl+Tab types a tab),
    images go to the composer."""

    submit = Signal()
    escape = Signal()
    images_offered = Signal(QMimeData)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self.setAccessibleName("Message")

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        key = event.key()
        if key == Qt.Key.Key_Tab and event.modifiers() & (
            Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.MetaModifier
        ):
            self.insertPlainText("\t")  # Tab itself moves focus on
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submit.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.escape.emit()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802
        return mime_has_images(source) or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802
        if mime_has_images(source):
            self.images_offered.emit(source)
            return
        super().insertFromMimeData(source)
