"""The actions a message offers (Copy, Copy code, Edit, Regenerate, Continue) and the bar of
buttons the transcript shows over the row under the mouse or the current row.

The buttons take focus from the keyboard (Tab from the transcript reaches the current row's
actions; Space presses one), not from a click, so clicking one leaves focus where it was."""

from __future__ import annotations

import re
from functools import partial

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QToolButton, QWidget

from desktop.qtmodels.transcript_model import TranscriptEntry

_CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a Markdown text, without their fences."""
    return [block.rstrip("\n") for block in _CODE_BLOCK.findall(markdown)]


def _as_shown(code: str) -> str:
    """``code`` as a rendered document shows it: tabs in a line's indentation become spaces."""
    lines = []
    for line in code.split("\n"):
        body = line.lstrip(" \t")
        lines.append(line[: len(line) - len(body)].expandtabs(4) + body)
    return "\n".join(lines)


def code_as_written(markdown: str, shown: str, block: int) -> str:
    """The code block ``block`` of ``markdown`` as the model wrote it (its tabs kept), given the
    text its document shows (``shown``); that text itself when no fenced block matches it."""
    written = code_blocks(markdown)
    candidates = written[block : block + 1] + written
    return next((code for code in candidates if _as_shown(code) == shown), shown)


# (action, label, tooltip): which actions a message offers; ``offered_actions`` picks the ones
# that apply.
ACTIONS = (
    ("copy", "Copy", "Copy the message text (Ctrl+C)"),
    ("copy_code", "Copy code", "Copy the code blocks"),
    ("edit", "Edit", "Edit this question and ask again (later messages are replaced)"),
    ("regenerate", "Regenerate", "Answer this question again"),
    ("continue", "Continue", "Continue the answer past the token limit"),
)


def offered_actions(entry: TranscriptEntry, is_last: bool) -> set[str]:
    """The actions that apply to a message (Regenerate/Continue only on the last answer)."""
    answer = entry.role == "assistant"
    idle = not entry.streaming
    shown = {
        "copy": idle and bool(entry.text),
        "copy_code": idle and answer and bool(code_blocks(entry.text)),
        "edit": not answer,
        "regenerate": idle and answer and is_last,
        "continue": idle and answer and is_last and entry.finish_reason == "length",
    }
    return {action for action, offered in shown.items() if offered}


class MessageActionBar(QWidget):
    """The action buttons of one row, shown over that row's footer line.

    Signals:
        action_triggered(str, int): an action button was pressed (action, row).
        focused(): a button got the keyboard focus (the transcript brings the bar into view).
    """

    action_triggered = Signal(str, int)
    focused = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageActions")
        self.row: int | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.buttons: dict[str, QToolButton] = {}  # not `actions`: QWidget.actions() is Qt's
        for action, label, tooltip in ACTIONS:
            button = QToolButton()
            button.setObjectName("messageAction")
            button.setText(label)
            button.setToolTip(tooltip)
            button.setAutoRaise(True)
            button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
            button.clicked.connect(partial(self._on_button_clicked, action))
            button.installEventFilter(self)
            layout.addWidget(button)
            self.buttons[action] = button
        self.hide()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.FocusIn:
            self.focused.emit()
        return super().eventFilter(watched, event)

    def has_focus(self) -> bool:
        """Whether one of the buttons has the keyboard focus (the bar then stays on its row)."""
        return any(button.hasFocus() for button in self.buttons.values())

    def show_for(self, row: int, entry: TranscriptEntry, is_last: bool) -> None:
        """Offer the actions that apply to ``entry`` (at ``row``)."""
        self.row = row
        offered = offered_actions(entry, is_last)
        for action, button in self.buttons.items():
            button.setVisible(action in offered)
        self.adjustSize()
        self.setVisible(bool(offered))

    def _on_button_clicked(self, action: str, _checked: bool = False) -> None:
        if self.row is not None:
            self.action_triggered.emit(action, self.row)
