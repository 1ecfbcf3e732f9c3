"""The dismissible one-line message above the composer (errors, refusals, Undo).

A message may name its ``source`` (e.g. "composer", "edit"): its source can withdraw it once
the situation it describes is over, and closing it with × says whose message was dismissed.

Signals:
    dismissed(str): the person closed the message with × (its source, "" when it has none).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget


class NoticeBar(QFrame):
    """A dismissible one-line message, optionally with one action button (e.g. Undo)."""

    dismissed = Signal(str)

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
        self._source = ""
        self.close_button = QToolButton()
        self.close_button.setObjectName("noticeClose")
        self.close_button.setText("×")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setAccessibleName("Dismiss")
        self.close_button.clicked.connect(self._on_close_button_clicked)
        layout.addWidget(self.close_button)
        self.hide()

    def show_message(
        self,
        text: str,
        action_label: str | None = None,
        action: Callable[[], object] | None = None,
        *,
        source: str = "",
    ) -> None:
        """Show ``text``; with ``action_label``, a button that calls ``action`` (e.g. Undo);
        ``source`` names who may withdraw it."""
        self.label.setText(text)
        self._source = source
        self._action = action
        self.action_button.setText(action_label or "")
        self.action_button.setVisible(bool(action_label and action))
        self.show()

    def withdraw(self, source: str) -> None:
        """Hide the message if ``source`` showed it (what it said no longer holds)."""
        if source and self._source == source:
            self.hide()

    @property
    def source(self) -> str:
        """Who showed the message on screen ("" when hidden or unnamed)."""
        return self._source if self.isVisible() else ""

    def _on_close_button_clicked(self) -> None:
        source = self._source
        self.hide()
        self.dismissed.emit(source)

    def _on_action_button_clicked(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()

    def text(self) -> str:
        """The message shown, or "" while hidden."""
        return self.label.text() if self.isVisible() else ""
