"""Draws the transcript: one message widget per row of a ``TranscriptModel``.

The view only draws. Rows that change are marked and redrawn by a ~50 ms timer, so a
streaming answer is re-rendered at most twenty times a second, and only that message: the
rest of the transcript is never rebuilt. While the person is at the bottom, the view follows
the answer; if they scrolled up to read, it stays where they are.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.markdown_view import MarkdownView
from desktop.transcript_model import TranscriptEntry, TranscriptModel

REFRESH_MS = 50
_CODE_BLOCK = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(markdown: str) -> list[str]:
    """The fenced code blocks of a Markdown text, without their fences."""
    return [block.rstrip("\n") for block in _CODE_BLOCK.findall(markdown)]


# (action, label, tooltip): which buttons a message offers; MessageWidget.refresh shows the
# ones that apply.
_ACTIONS = (
    ("copy", "Copy", "Copy the message text"),
    ("copy_code", "Copy code", "Copy the code blocks"),
    ("edit", "Edit", "Edit this question and ask again (later messages are replaced)"),
    ("regenerate", "Regenerate", "Answer this question again"),
    ("continue", "Continue", "Continue the answer past the token limit"),
)


class MessageWidget(QFrame):
    """One turn: who spoke, the images, the text (Markdown for answers), a footer, actions.

    Signals:
        action_triggered(str): one of "copy", "copy_code", "edit", "regenerate", "continue".
    """

    action_triggered = Signal(str)

    def __init__(self, entry: TranscriptEntry, parent=None):
        super().__init__(parent)
        self.setObjectName("userMessage" if entry.role == "user" else "assistantMessage")
        self.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.setSpacing(6)
        self.author = QLabel("You" if entry.role == "user" else "Llama")
        self.author.setTextFormat(Qt.TextFormat.PlainText)
        self.author.setObjectName("messageAuthor")
        layout.addWidget(self.author)
        self.thumbnails: list[QLabel] = []
        if entry.thumbnails:
            row = QHBoxLayout()
            row.setSpacing(8)
            for image in entry.thumbnails:
                label = QLabel()
                label.setObjectName("messageThumbnail")
                label.setPixmap(QPixmap.fromImage(image).scaled(
                    120, 120, Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation))
                row.addWidget(label)
                self.thumbnails.append(label)
            row.addStretch(1)
            layout.addLayout(row)
        self.body = MarkdownView(self)
        self.body.setObjectName("messageBody")
        layout.addWidget(self.body)
        self.footer = QLabel()
        self.footer.setObjectName("messageFooter")
        self.footer.setTextFormat(Qt.TextFormat.PlainText)  # errors can quote model or file text
        bottom = QHBoxLayout()
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.footer, 1)
        self.actions: dict[str, QToolButton] = {}
        for action, label, tooltip in _ACTIONS:
            button = QToolButton()
            button.setObjectName("messageAction")
            button.setText(label)
            button.setToolTip(tooltip)
            button.setAutoRaise(True)
            button.clicked.connect(lambda _checked=False, a=action: self.action_triggered.emit(a))
            bottom.addWidget(button)
            self.actions[action] = button
        layout.addLayout(bottom)
        self.refresh_count = 0
        self.is_last = False
        self.refresh(entry)

    def refresh(self, entry: TranscriptEntry) -> None:
        self.refresh_count += 1
        if entry.role == "assistant":
            self.body.set_markdown(entry.text)
        else:
            self.body.setPlainText(entry.text)
            self.body._fit_height()
        self.body.setVisible(bool(entry.text) or entry.role == "assistant")
        footer = entry.footer()
        self.footer.setText(footer)
        self.footer.setProperty("error", entry.finish_reason == "error")
        answer = entry.role == "assistant"
        idle = not entry.streaming
        shown = {
            "copy": idle and bool(entry.text),
            "copy_code": idle and answer and bool(code_blocks(entry.text)),
            "edit": not answer,
            "regenerate": idle and answer and self.is_last,
            "continue": idle and answer and self.is_last and entry.finish_reason == "length",
        }
        for action, button in self.actions.items():
            button.setVisible(shown[action])


class TranscriptView(QScrollArea):
    """Signals:
        action_requested(str, int): a message's action button was pressed (action, row).
    """

    action_requested = Signal(str, int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("transcript")
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._content = QWidget()
        self._content.setObjectName("transcriptContent")
        self._layout = QVBoxLayout(self._content)
        self._layout.setContentsMargins(16, 16, 16, 16)
        self._layout.setSpacing(10)
        self.placeholder = QLabel()
        self.placeholder.setTextFormat(Qt.TextFormat.PlainText)
        self.placeholder.setObjectName("transcriptPlaceholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.placeholder.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._layout.addWidget(self.placeholder, 10)  # centred while the transcript is empty
        self._layout.addStretch(1)
        self.setWidget(self._content)
        self._widgets: list[MessageWidget] = []
        self._dirty: set[int] = set()
        self._follow = True
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_value_changed)
        self._model: TranscriptModel | None = None

    def set_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)

    def set_model(self, model: TranscriptModel) -> None:
        self._model = model
        model.rowsInserted.connect(self._on_rows_inserted)
        model.rowsRemoved.connect(self._on_rows_removed)
        model.dataChanged.connect(self._on_data_changed)
        model.modelReset.connect(self._on_model_reset)
        self._on_model_reset()

    def message_widget(self, row: int) -> MessageWidget:
        return self._widgets[row]

    def scroll_to(self, row: int) -> None:
        """Bring a message into view (a search hit) and stop following the end."""
        if 0 <= row < len(self._widgets):
            self._follow = False
            self._content.adjustSize()
            self.ensureWidgetVisible(self._widgets[row], 0, 40)

    def _update_last(self) -> None:
        """Only the last answer offers Regenerate/Continue: redraw rows whose lastness changed."""
        for row, widget in enumerate(self._widgets):
            is_last = row == len(self._widgets) - 1
            if widget.is_last != is_last:
                widget.is_last = is_last
                widget.refresh(self._model.entry(row))

    def _on_widget_action(self, widget: MessageWidget, action: str) -> None:
        if widget in self._widgets:
            self.action_requested.emit(action, self._widgets.index(widget))

    def _update_placeholder(self) -> None:
        self.placeholder.setVisible(not self._widgets)

    def _on_rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        for row in range(first, last + 1):
            widget = MessageWidget(self._model.entry(row), self._content)
            widget.action_triggered.connect(lambda action, w=widget: self._on_widget_action(w, action))
            self._layout.insertWidget(1 + row, widget)
            self._widgets.insert(row, widget)
        self._follow = True
        self._update_last()
        self._update_placeholder()

    def _on_rows_removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        for widget in self._widgets[first : last + 1]:
            self._layout.removeWidget(widget)
            widget.deleteLater()
        del self._widgets[first : last + 1]
        self._dirty = {r for r in self._dirty if r < first}
        self._update_last()
        self._update_placeholder()

    def _on_model_reset(self) -> None:
        for widget in self._widgets:
            self._layout.removeWidget(widget)
            widget.deleteLater()
        self._widgets = []
        self._dirty.clear()
        if self._model is not None:
            self._on_rows_inserted(QModelIndex(), 0, self._model.rowCount() - 1)
        self._update_placeholder()

    def _on_data_changed(self, top_left, bottom_right, _roles=()) -> None:
        self._dirty.update(range(top_left.row(), bottom_right.row() + 1))
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Redraw the rows marked as changed now (the timer calls this)."""
        for row in sorted(self._dirty):
            if row < len(self._widgets):
                self._widgets[row].refresh(self._model.entry(row))
        self._dirty.clear()

    def _on_timer_timeout(self) -> None:
        self.flush()

    def _on_value_changed(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 4

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
