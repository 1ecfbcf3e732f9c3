"""The conversation list from the keyboard: the Menu key opens the current conversation's menu
(rename, export, delete) wherever the list is scrolled, and Delete deletes it (with Undo)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMenu

from desktop.widgets.sidebar import Sidebar
from models.chats.store import ConversationStore


@pytest.fixture
def sidebar(qtbot, tmp_path):
    with ConversationStore(tmp_path / "data") as store:
        ids = []
        for question in ("Where do puffins nest?", "How do penguins swim?"):
            conversation = store.create()
            store.add_message(conversation.id, "user", question)
            ids.append(conversation.id)
        made = Sidebar(store)
        made.ids = ids
        qtbot.addWidget(made)
        made.resize(260, 600)
        made.show()
        made.activateWindow()
        qtbot.waitActive(made)
        yield made


def answer_menu(choose: str | None, seen: list[list[str]]) -> None:
    """Once the menu is open (its own event loop runs), note its items and choose one or close it."""

    def act() -> None:
        menu = QApplication.activePopupWidget()
        assert isinstance(menu, QMenu)
        seen.append([a.text() for a in menu.actions() if a.text()])
        chosen = [a for a in menu.actions() if a.text() == choose]
        menu.close()
        if chosen:
            chosen[0].trigger()

    QTimer.singleShot(0, act)


# A popup menu offscreen: the platform cannot raise it or grab the keyboard for it.
@pytest.mark.qt_log_ignore("does not support raise", "does not support grabbing the keyboard")
def test_the_menu_key_opens_the_current_conversations_menu(sidebar, qtbot):
    sidebar.set_current(sidebar.ids[0])  # the older one: the list's last row, not under the centre
    sidebar.view.setFocus()
    renamed: list[int] = []
    sidebar.rename_requested.connect(renamed.append)
    seen: list[list[str]] = []
    answer_menu(None, seen)
    qtbot.keyClick(sidebar.view, Qt.Key.Key_Menu)
    assert seen == [["Rename…", "Export as Markdown…", "Export as JSON…", "Delete"]]
    answer_menu("Rename…", seen)
    qtbot.keyClick(sidebar.view, Qt.Key.Key_Menu)
    assert renamed == [sidebar.ids[0]]


def test_delete_deletes_the_current_conversation(sidebar, qtbot):
    sidebar.set_current(sidebar.ids[1])
    sidebar.view.setFocus()
    with qtbot.waitSignal(sidebar.delete_requested) as blocker:
        qtbot.keyClick(sidebar.view, Qt.Key.Key_Delete)
    assert blocker.args == [sidebar.ids[1]]
    with qtbot.waitSignal(sidebar.delete_requested) as blocker:
        qtbot.keyClick(sidebar.view, Qt.Key.Key_Backspace, Qt.KeyboardModifier.ControlModifier)  # Cmd+⌫
    assert blocker.args == [sidebar.ids[1]]
