"""The conversation sidebar: newest first, a search box over every message, and the actions.

``ConversationListModel`` adapts the conversation store (a list of conversations, or, while
searching, a list of hits with their snippets); ``Sidebar`` draws it and reports what the
person chose. The window does the work. Searches run on Qt's thread pool (``search_messages``,
with its own connection), never on the UI thread; a result that arrives after a newer query
was typed is dropped. Esc in the search box clears it (before any window shortcut on Esc), and
so does a conversation becoming the open one while the search hides it (a chat just started), so
the open conversation stays listed. ``focus_search`` is Edit ▸ Find… (Ctrl/Cmd+F or K). In the
list, the Menu key opens the current conversation's menu and Delete (or Cmd+Backspace) deletes it.

Signals (Sidebar):
    new_requested(): "New Chat" pressed.
    conversation_selected(int): a conversation was clicked.
    hit_selected(int, int): a search hit was clicked (conversation id, message id).
    rename_requested(int), delete_requested(int): from the context menu.
    export_requested(int, str): export a conversation as "md" or "json".
    notice(str): a search failed (e.g. a damaged database); one line to show.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QObject,
    QPoint,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QContextMenuEvent, QFontMetrics, QKeyEvent, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QLineEdit,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QVBoxLayout,
)

from desktop.workers.background_task import run_in_background

SEARCH_DELAY_MS = 200


@dataclass(frozen=True)
class SidebarRow:
    conversation_id: int
    title: str
    detail: str  # when it was last used, or the matching snippet
    message_id: int | None = None  # set for search hits


def _when(timestamp: float, now: float | None = None) -> str:
    """How long ago ``timestamp`` was, in words (a date once it is a week old)."""
    now = time.time() if now is None else now
    if not math.isfinite(timestamp):
        return "date unknown"
    age = max(0.0, now - timestamp)
    if age < 60:
        return "just now"
    if age < 3600:
        return f"{int(age // 60)} min ago"
    if age < 86400:
        return f"{int(age // 3600)} h ago"
    if age < 7 * 86400:
        return f"{int(age // 86400)} d ago"
    try:
        return time.strftime("%d %b %Y", time.localtime(timestamp))
    except (OverflowError, OSError, ValueError):
        return "date unknown"


def _conversation_row(conversation, now: float) -> SidebarRow:
    """A damaged conversation (see ``Conversation.damaged``) is listed as such, so it can be
    deleted from its context menu."""
    if conversation.damaged:
        reason = conversation.damaged[:1].upper() + conversation.damaged[1:]
        return SidebarRow(conversation.id, conversation.display_title, f"{reason}; right-click to delete.")
    return SidebarRow(conversation.id, conversation.display_title, _when(conversation.updated, now))


def search_messages(folder: str | Path, text: str) -> list:
    """Search the store in ``folder`` on the calling (pool) thread, with its own connection."""
    from models.chats.store import ConversationStore

    with ConversationStore(folder) as store:
        return store.search(text, start="«", end="»")


class ConversationListModel(QAbstractListModel):
    ConversationIdRole = Qt.ItemDataRole.UserRole + 1
    MessageIdRole = Qt.ItemDataRole.UserRole + 2

    def __init__(self, parent=None):
        super().__init__(parent)
        self._rows: list[SidebarRow] = []
        self.searching = False

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008,N802 - Qt override
        return 0 if parent.isValid() else len(self._rows)

    TitleRole = Qt.ItemDataRole.UserRole + 3
    DetailRole = Qt.ItemDataRole.UserRole + 4

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{row.title}\n{row.detail}"
        if role == self.TitleRole:
            return row.title
        if role == self.DetailRole:
            return row.detail
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.detail if row.message_id is not None else row.title
        if role == self.ConversationIdRole:
            return row.conversation_id
        if role == self.MessageIdRole:
            return row.message_id
        return None

    def row(self, index: int) -> SidebarRow:
        return self._rows[index]

    def rows(self) -> list[SidebarRow]:
        return list(self._rows)

    def _reset(self, rows: list[SidebarRow], searching: bool) -> None:
        self.beginResetModel()
        self._rows = rows
        self.searching = searching
        self.endResetModel()

    def show_conversations(self, store) -> None:
        now = time.time()
        self._reset([_conversation_row(c, now) for c in store.list_conversations()], searching=False)

    def show_hits(self, hits: list) -> None:
        """Show search hits (``SearchHit``s, snippets marked with « and »)."""
        self._reset(
            [
                SidebarRow(
                    h.conversation_id, h.title or "Untitled", " ".join(h.snippet.split()), h.message_id
                )
                for h in hits
            ],
            searching=True,
        )

    def index_of(self, conversation_id: int) -> QModelIndex:
        for i, row in enumerate(self._rows):
            if row.conversation_id == conversation_id and row.message_id is None:
                return self.index(i)
        return QModelIndex()


class ConversationDelegate(QStyledItemDelegate):
    """Draws a row as its title over a smaller, greyer line (the time, or the matching text)."""

    PADDING = 8

    def paint(self, painter, option, index) -> None:
        self.initStyleOption(option, index)
        option.text = ""
        option.state &= ~QStyle.StateFlag.State_HasFocus
        style = option.widget.style() if option.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        title = index.data(ConversationListModel.TitleRole) or ""
        detail = index.data(ConversationListModel.DetailRole) or ""
        rect = option.rect.adjusted(self.PADDING, 6, -self.PADDING, -6)
        painter.save()
        title_font = option.font
        title_font.setWeight(title_font.Weight.DemiBold)
        painter.setFont(title_font)
        color = option.palette.color(QPalette.ColorRole.Text)
        painter.setPen(color)
        metrics = QFontMetrics(title_font)
        painter.drawText(
            QRect(rect.left(), rect.top(), rect.width(), metrics.height()),
            Qt.AlignmentFlag.AlignLeft,
            metrics.elidedText(title, Qt.TextElideMode.ElideRight, rect.width()),
        )
        detail_font = option.font
        detail_font.setWeight(detail_font.Weight.Normal)
        detail_font.setPointSizeF(max(7.0, option.font.pointSizeF() - 1.5))
        painter.setFont(detail_font)
        grey = QColor(color)
        grey.setAlphaF(0.85)  # 4.5:1 on the sidebar in light and dark (test_appearance_contrast)
        painter.setPen(grey)
        detail_metrics = QFontMetrics(detail_font)
        top = rect.top() + metrics.height() + 2
        lines = 2 if index.data(ConversationListModel.MessageIdRole) is not None else 1
        painter.drawText(
            QRect(rect.left(), top, rect.width(), detail_metrics.height() * lines),
            Qt.TextFlag.TextWordWrap,
            detail,
        )
        painter.restore()

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt override
        metrics = QFontMetrics(option.font)
        lines = 2 if index.data(ConversationListModel.MessageIdRole) is not None else 1
        return QSize(option.rect.width(), 12 + metrics.height() * (1 + lines) + 4)


class Sidebar(QFrame):
    new_requested = Signal()
    conversation_selected = Signal(int)
    hit_selected = Signal(int, int)
    rename_requested = Signal(int)
    delete_requested = Signal(int)
    export_requested = Signal(int, str)
    notice = Signal(str)

    def __init__(self, store, parent=None):
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.store = store
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 10)
        layout.setSpacing(8)
        self.new_button = QPushButton("New Chat")
        self.new_button.setObjectName("newChatButton")
        self.new_button.clicked.connect(self.new_requested)
        layout.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setObjectName("searchBox")
        self.search.setPlaceholderText("Search all chats")
        self.search.setAccessibleName("Search all chats")
        self.search.setClearButtonEnabled(True)
        self.search.installEventFilter(self)
        layout.addWidget(self.search)
        self.model = ConversationListModel(self)
        self.view = QListView()
        self.view.setObjectName("conversationList")
        self.view.setAccessibleName("Conversations")
        self.view.setModel(self.model)
        self.view.setItemDelegate(ConversationDelegate(self.view))
        self.view.setWordWrap(True)
        self.view.setUniformItemSizes(False)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._on_view_context_menu_requested)
        self.view.clicked.connect(self._on_view_clicked)
        self.view.activated.connect(self._on_view_clicked)
        self.view.installEventFilter(self)
        layout.addWidget(self.view, 1)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(self._on_search_text_changed)
        self.current_id: int | None = None
        self._search_serial = 0  # the latest query's number; older results are dropped
        self.refresh()

    def refresh(self) -> None:
        """Re-read the list from the store, or start the search in the background."""
        self._search_serial += 1
        text = self.search.text().strip()
        if text:
            serial = self._search_serial
            run_in_background(
                partial(search_messages, self.store.folder, text),
                partial(self._on_search_done, serial),
                partial(self._on_search_failed, serial),
                owner=self,
            )
            return
        self.model.show_conversations(self.store)
        self._show_current()

    def _on_search_done(self, serial: int, hits: list) -> None:
        if serial == self._search_serial:
            self.model.show_hits(hits)

    def _on_search_failed(self, serial: int, message: str) -> None:
        if serial == self._search_serial:
            self.model.show_hits([])
            self.notice.emit(f"The search failed: {message}")

    def set_current(self, conversation_id: int | None) -> None:
        self.current_id = conversation_id
        if (
            conversation_id is not None
            and self.search.text().strip()
            and not self._among_hits(conversation_id)
        ):
            self.clear_search()  # the search would hide the open conversation (a chat just started)
        self._show_current()

    def _among_hits(self, conversation_id: int) -> bool:
        model = self.model
        shown = (model.row(i).conversation_id for i in range(model.rowCount()))
        return model.searching and conversation_id in shown

    def clear_search(self) -> None:
        """Empty the search box and list every conversation again, now."""
        self._search_timer.stop()
        self.search.blockSignals(True)
        self.search.clear()
        self.search.blockSignals(False)
        self.refresh()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is not self.search and self._on_view_key(event):  # the list (set up after)
            return True
        if (
            watched is self.search
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
            and self.search.text()
        ):
            if event.type() == QEvent.Type.ShortcutOverride:
                event.accept()  # Esc is the search's here, not Stop Answer's
                return True
            if event.type() == QEvent.Type.KeyPress:
                self.clear_search()  # Esc clears the search
                return True
        return super().eventFilter(watched, event)

    def focus_search(self) -> None:
        """Put the keyboard in the search box, its text selected (Find…)."""
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _show_current(self) -> None:
        if self.model.searching:
            return
        index = self.model.index_of(self.current_id) if self.current_id is not None else QModelIndex()
        self.view.setCurrentIndex(index)

    def _on_search_text_changed(self, _text: str) -> None:
        self._search_timer.start()

    def _on_view_clicked(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        row = self.model.row(index.row())
        if row.message_id is not None:
            self.hit_selected.emit(row.conversation_id, row.message_id)
        else:
            self.conversation_selected.emit(row.conversation_id)

    def _on_view_key(self, event: QEvent) -> bool:
        """The list's keys: Menu (or a keyboard context menu) and Delete, on the current row."""
        current = self.view.currentIndex()
        if not current.isValid():
            return False
        keyboard_menu = isinstance(event, QContextMenuEvent) and (
            event.reason() == QContextMenuEvent.Reason.Keyboard
        )
        key = event.key() if isinstance(event, QKeyEvent) and event.type() == QEvent.Type.KeyPress else None
        if keyboard_menu or key == Qt.Key.Key_Menu:
            rect = self.view.visualRect(current)
            self._conversation_menu(current.row()).exec(self.view.viewport().mapToGlobal(rect.center()))
            return True
        command = Qt.KeyboardModifier.ControlModifier
        held = event.modifiers() if isinstance(event, QKeyEvent) else Qt.KeyboardModifier.NoModifier
        if key == Qt.Key.Key_Delete or (key == Qt.Key.Key_Backspace and held & command):
            self.delete_requested.emit(self.model.row(current.row()).conversation_id)
            return True
        return False

    def _on_view_context_menu_requested(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if index.isValid():
            self._conversation_menu(index.row()).exec(self.view.viewport().mapToGlobal(pos))

    def _conversation_menu(self, row: int) -> QMenu:
        conversation_id = self.model.row(row).conversation_id
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename_requested.emit(conversation_id))
        menu.addAction("Export as Markdown…", lambda: self.export_requested.emit(conversation_id, "md"))
        menu.addAction("Export as JSON…", lambda: self.export_requested.emit(conversation_id, "json"))
        menu.addSeparator()
        menu.addAction("Delete", lambda: self.delete_requested.emit(conversation_id))
        return menu
