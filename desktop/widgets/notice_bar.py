"""The notice line above the composer: dismissible one-line messages (errors, refusals, Undo).

Every notice names its ``source`` (``desktop.notices``): one notice per source, a later one
from the same source replacing it; notices from different sources are stacked, one row each,
the newest nearest the composer, each with its own × (and its own action button, e.g. Undo). A
source withdraws its notice once the situation it describes is over; the others stay. Closing a
notice with × says whose notice was dismissed. The bar is hidden while it holds none.

Signals:
    dismissed(str): the person closed a notice with × (its source).
    changed(): a notice was added, replaced or removed (the window redoes its Tab order).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.notices import Notice

_NAME_CHARS = 80  # how much of a notice its × button's accessible name repeats


def _dismiss_name(text: str) -> str:
    """The accessible name of a notice's ×: which notice it dismisses."""
    short = text if len(text) <= _NAME_CHARS else text[: _NAME_CHARS - 1].rstrip() + "…"
    return f"Dismiss “{short}”"


class NoticeRow(QFrame):
    """One notice: its text, an optional action button and ×.

    Signals:
        close_clicked(): × was pressed.
        action_clicked(): the action button was pressed.
    """

    close_clicked = Signal()
    action_clicked = Signal()

    def __init__(self, source: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.source = source
        self.action: Callable[[], object] | None = None
        self.setObjectName("notice")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.label, 1)
        self.action_button = QPushButton()
        self.action_button.setObjectName("noticeAction")
        self.action_button.clicked.connect(self.action_clicked)
        self.action_button.hide()
        layout.addWidget(self.action_button)
        self.close_button = QToolButton()
        self.close_button.setObjectName("noticeClose")
        self.close_button.setText("×")
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.close_clicked)
        layout.addWidget(self.close_button)

    def set_notice(self, notice: Notice) -> None:
        self.label.setText(notice.text)
        self.setAccessibleName(notice.text)
        self.close_button.setAccessibleName(_dismiss_name(notice.text))
        self.action = notice.action
        self.action_button.setText(notice.action_label or "")
        self.action_button.setVisible(bool(notice.action_label and notice.action))

    def text(self) -> str:
        return self.label.text()

    def focus_widgets(self) -> list[QWidget]:
        """Its buttons in Tab order (the action button even while hidden: Tab skips it then)."""
        return [self.action_button, self.close_button]


class NoticeBar(QFrame):
    """The stack of notices, one per source."""

    dismissed = Signal(str)
    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self._rows: dict[str, NoticeRow] = {}  # in the order shown, top to bottom
        self.hide()

    def show_message(
        self,
        text: str,
        source: str,
        action_label: str | None = None,
        action: Callable[[], object] | None = None,
    ) -> None:
        """Show ``text`` as ``source``'s notice (replacing its earlier one); with
        ``action_label``, a button that calls ``action`` (e.g. Undo)."""
        self.show_notice(Notice(source, text, action_label, action))

    def show_notice(self, notice: Notice) -> None:
        """Show ``notice``, replacing the one its source showed before; it goes to the bottom."""
        if not notice.source:
            raise ValueError("a notice needs a source, to be replaced and withdrawn by it")
        row = self._rows.pop(notice.source, None)
        if row is None:
            row = NoticeRow(notice.source, self)
            row.close_clicked.connect(lambda row=row: self._on_row_close_clicked(row))
            row.action_clicked.connect(lambda row=row: self._on_row_action_clicked(row))
        else:
            self._layout.removeWidget(row)
        row.set_notice(notice)
        self._rows[notice.source] = row
        self._layout.addWidget(row)
        row.show()
        self.show()
        self.changed.emit()

    def withdraw(self, *sources: str) -> None:
        """Remove the notices of ``sources`` (what they said no longer holds); others stay."""
        removed = False
        for source in sources:
            row = self._rows.get(source)
            if row is not None:
                self._remove(row)
                removed = True
        if removed:
            self.changed.emit()

    def _remove(self, row: NoticeRow) -> None:
        """Take ``row`` away; focus on it moves to a neighbouring notice's × if there is one."""
        order = list(self._rows.values())
        focus = QApplication.focusWidget()
        had_focus = focus is not None and row.isAncestorOf(focus)
        del self._rows[row.source]
        if had_focus and self._rows:
            index = min(order.index(row), len(order) - 2)
            order.remove(row)
            order[index].close_button.setFocus(Qt.FocusReason.OtherFocusReason)
        if not self._rows:
            self.hide()
        row.hide()
        self._layout.removeWidget(row)
        row.deleteLater()

    def _on_row_close_clicked(self, row: NoticeRow) -> None:
        if self._rows.get(row.source) is row:
            self.withdraw(row.source)
            self.dismissed.emit(row.source)

    def _on_row_action_clicked(self, row: NoticeRow) -> None:
        if self._rows.get(row.source) is not row:
            return
        action, row.action = row.action, None
        self.withdraw(row.source)  # acted on: done (the action may show a new notice)
        if action is not None:
            action()

    # What is shown -----------------------------------------------------------------------------
    def rows(self) -> list[NoticeRow]:
        """The notices shown, top to bottom."""
        return list(self._rows.values())

    def row(self, source: str) -> NoticeRow | None:
        """``source``'s notice, or None."""
        return self._rows.get(source)

    def sources(self) -> list[str]:
        """Whose notices are shown, top to bottom."""
        return list(self._rows)

    def texts(self) -> list[str]:
        """The notices' texts, top to bottom."""
        return [row.text() for row in self._rows.values()]

    def text(self) -> str:
        """The notices' texts, one a line ("" when none is shown)."""
        return "\n".join(self.texts())

    def focus_widgets(self) -> list[QWidget]:
        """Every notice's buttons, top to bottom: where Tab goes through the notices."""
        return [widget for row in self._rows.values() for widget in row.focus_widgets()]
