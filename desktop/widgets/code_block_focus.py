"""The keyboard's stop on a code block of the transcript: scroll it sideways, copy it.

The transcript paints its code blocks (``message_delegate``), so there is no widget to focus in
them. ``CodeBlockFocus`` is one small widget the view lays over a code block of the row its
action bar is on: Tab from the transcript reaches it before the row's actions, Tab and
Shift+Tab move it from block to block of that row and on, Left/Right (Home/End) scroll the block
sideways, Enter, Space or Ctrl+C copy it, Escape goes back to the messages. It draws only a
focus ring round the block; the mouse goes through it to the view. A screen reader hears which
block it is ("Code block 1 of 2, python") and what the keys do.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QFocusEvent, QKeyEvent, QKeySequence, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

from desktop.widgets.markdown_view import CodeGroup
from desktop.widgets.message_style import TranscriptColours

KEY_STEP = 40.0  # pixels per Left/Right
TO_THE_END = 1e9  # Home/End: as far as it goes


class CodeBlockFocus(QWidget):
    """The focus on one code block of row ``row`` (``block`` of ``blocks``).

    Signals:
        focused(): it took the keyboard focus, or moved to another block (the view places it
            over that block and brings it into view).
        scroll_requested(float): scroll the block sideways by this many pixels.
        copy_requested(): copy the block.
        dismissed(): Escape: the keyboard goes back to the messages.
    """

    focused = Signal()
    scroll_requested = Signal(float)
    copy_requested = Signal()
    dismissed = Signal()

    def __init__(self, colours: TranscriptColours, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("codeBlockFocus")
        self.colours = colours  # the delegate's: the style sheet's colours, when they change
        self.row: int | None = None
        self.block = 0
        self._groups: list[CodeGroup] = []
        self._scrollable: list[bool] = []
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.hide()

    @property
    def blocks(self) -> int:
        return len(self._groups)

    def show_for(self, row: int, groups: list[CodeGroup], scrollable: list[bool]) -> None:
        """Offer the code blocks ``groups`` of ``row`` (which of them are wider than their box);
        the block it is on stays if it is still there."""
        if row != self.row or self.block >= len(groups):
            self.block = 0
        self.row = row
        self._groups, self._scrollable = groups, scrollable
        self._describe()
        self.show()

    def _describe(self) -> None:
        group = self._groups[self.block]
        name = f"Code block {self.block + 1} of {len(self._groups)}"
        self.setAccessibleName(f"{name}, {group.language}" if group.language else name)
        keys = "Enter copies it."
        if self._scrollable[self.block]:
            keys = "Left and Right scroll it sideways, Home and End to its ends. " + keys
        self.setAccessibleDescription(keys)

    def _move_to(self, block: int) -> None:
        self.block = block
        self._describe()
        self.update()
        self.focused.emit()

    # Keys ----------------------------------------------------------------------------------------
    def focusNextPrevChild(self, forward: bool) -> bool:  # noqa: N802 - Qt override (Tab, Shift+Tab)
        step = 1 if forward else -1
        if self.hasFocus() and 0 <= self.block + step < self.blocks:
            self._move_to(self.block + step)
            return True
        return super().focusNextPrevChild(forward)

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802 - Qt override
        if event.reason() == Qt.FocusReason.TabFocusReason:
            self.block = 0
        elif event.reason() == Qt.FocusReason.BacktabFocusReason:
            self.block = max(0, self.blocks - 1)
        if self._groups:
            self._describe()
        super().focusInEvent(event)
        self.focused.emit()

    def focusOutEvent(self, event: QFocusEvent) -> None:  # noqa: N802 - Qt override
        super().focusOutEvent(event)
        self.update()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        key = event.key()
        scroll = {
            Qt.Key.Key_Left: -KEY_STEP,
            Qt.Key.Key_Right: KEY_STEP,
            Qt.Key.Key_Home: -TO_THE_END,
            Qt.Key.Key_End: TO_THE_END,
        }.get(Qt.Key(key))
        if scroll is not None:
            self.scroll_requested.emit(scroll)
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space) or event.matches(
            QKeySequence.StandardKey.Copy
        ):
            self.copy_requested.emit()
        elif key == Qt.Key.Key_Escape:
            self.dismissed.emit()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    # Looks -----------------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        if not self.hasFocus():
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(self.colours.focus, 2))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 6, 6)
