"""The dismissible one-line message above the composer (errors, refusals, Undo)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget


class NoticeBar(QFrame):
    """A dismissible one-line message, optionally with one action button (e.g. Undo)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("noticeBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.label, 1)
        self.action_button = QPushButton()
        self.action_button.setObjectName("noticeAction")
        self.action_button.clicked.connect(self._on_action_button_clicked)
        self.action_button.hide()
        layout.addWidget(self.action_button)
        self._action: Callable[[], object] | None = None
        close = QToolButton()
        close.setObjectName("noticeClose")
        close.setText("×")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self.hide()

    def show_message(
        self, text: str, action_label: str | None = None, action: Callable[[], object] | None = None
    ) -> None:
        """Show ``text``; with ``action_label``, a button that calls ``action`` (e.g. Undo)."""
        self.label.setText(text)
        self._action = action
        self.action_button.setText(action_label or "")
        self.action_button.setVisible(bool(action_label and action))
        self.show()

    def _on_action_button_clicked(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()

    def text(self) -> str:
        """The message shown, or "" while hidden."""
        return self.label.text() if self.isVisible() else ""
