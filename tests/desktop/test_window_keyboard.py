"""The window from the keyboard alone (issue 19): Tab walks every control and comes back, message
actions and the Mac-style shortcuts work without a mouse, the Edit, View and Window menus, the
application-menu roles, a sidebar that hides (and stays hidden next time), and what a screen
reader is told (read through ``QAccessible``). Answers come from the fake engine."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAccessible, QAction, QGuiApplication, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

from desktop import notices
from desktop.main_window import MainWindow
from desktop.qtmodels.transcript_model import TranscriptEntry
from models.inference.engine import GenerationSettings
from tests.support.fake_engine import FakeScript
from tests.support.window_helpers import make_window

TIMEOUT = 60_000
MAX_TABS = 60  # far more than the window has controls: bounds a walk that never comes back
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


@pytest.fixture
def loaded(qtbot, tmp_path, checkpoints, fake_engines):
    window = make_window(qtbot, tmp_path, engine_factory=fake_engines)
    window.activateWindow()
    qtbot.waitActive(window)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    yield window
    window.close()


def ask(qtbot, window, text: str):
    window.composer.edit.setFocus()
    qtbot.keyClicks(window.composer.edit, text)
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    return blocker.args[0]


def focused() -> QWidget | None:
    return QApplication.focusWidget()


def walk(start: QWidget, key: Qt.Key = Qt.Key.Key_Tab) -> list[QWidget]:
    """Press ``key`` from ``start`` until focus comes back to it; the widgets focused on the way."""
    start.setFocus(Qt.FocusReason.TabFocusReason)
    assert focused() is start
    seen: list[QWidget] = []
    for _ in range(MAX_TABS):
        QTest.keyClick(focused(), key)
        widget = focused()
        assert widget is not None, "focus left the window"
        if widget is start:
            return seen
        seen.append(widget)
    raise AssertionError(f"focus never came back: {[w.objectName() or type(w).__name__ for w in seen]}")


def test_tab_walks_every_control_in_order_and_comes_back(loaded, qtbot):
    window = loaded
    ask(qtbot, window, "First question")
    qtbot.keyClicks(window.composer.edit, "a draft, so Send is on")
    window.notice.show_message("Deleted “x”.", notices.DELETED, "Undo", lambda: None)
    sidebar, composer, notice = window.sidebar, window.composer, window.notice.row(notices.DELETED)
    seen = walk(composer.edit)
    bar = window.transcript.action_bar
    expected = [
        composer.attach_button,
        composer.send_button,
        sidebar.new_button,
        sidebar.search,
        sidebar.view,
        window.transcript,
        bar.buttons["copy"],
        bar.buttons["regenerate"],
        notice.action_button,
        notice.close_button,
    ]
    for widget in expected:
        assert widget in seen, f"{widget.objectName()} was not reached"
    order = [seen.index(widget) for widget in expected]
    assert order == sorted(order), [w.objectName() for w in seen]
    # Shift+Tab goes the same way back.
    back = walk(composer.edit, Qt.Key.Key_Backtab)
    assert back == list(reversed(seen))


def test_tab_reaches_each_code_block_of_the_message_before_its_actions(loaded, qtbot):
    window = loaded
    answer = TranscriptEntry(
        "assistant", "```python\nx = 1\n```\n\nThen:\n\n```\ny\n```\n", finish_reason="stop"
    )
    window.transcript_model.set_entries([TranscriptEntry("user", "Code?"), answer])
    view, code = window.transcript, window.transcript.code_focus
    view.executeDelayedItemsLayout()
    seen = walk(view)
    blocks = [index for index, widget in enumerate(seen) if widget is code]
    assert blocks == [0, 1] and seen[2] is view.action_bar.buttons["copy"]
    back = walk(view, Qt.Key.Key_Backtab)
    assert back == list(reversed(seen))


def test_tab_leaves_the_composer_and_ctrl_tab_types_a_tab(loaded, qtbot):
    edit = loaded.composer.edit
    edit.setFocus()
    qtbot.keyClicks(edit, "a")
    qtbot.keyClick(edit, Qt.Key.Key_Tab)
    assert edit.toPlainText() == "a" and focused() is loaded.composer.attach_button
    edit.setFocus()
    qtbot.keyClick(edit, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert edit.toPlainText() == "a" and focused() is not edit
    edit.setFocus()
    qtbot.keyClick(edit, Qt.Key.Key_Tab, Qt.KeyboardModifier.ControlModifier)
    assert edit.toPlainText() == "a\t" and focused() is edit


def test_message_actions_are_reached_by_tab_and_pressed_with_space(loaded, qtbot):
    window = loaded
    ask(qtbot, window, "First question")
    answer = window.transcript_model.entry(1).text
    window.transcript.setFocus(Qt.FocusReason.TabFocusReason)
    assert window.transcript.currentIndex().row() == 1  # the last message is where Tab lands
    QTest.keyClick(window.transcript, Qt.Key.Key_Tab)
    copy = window.transcript.action_bar.buttons["copy"]
    assert focused() is copy and window.transcript.action_bar.row == 1
    QGuiApplication.clipboard().clear()
    QTest.keyClick(copy, Qt.Key.Key_Space)
    assert QGuiApplication.clipboard().text() == answer
    # Up moves to the question, whose bar offers Edit; Tab reaches it and Space edits.
    window.transcript.setFocus(Qt.FocusReason.TabFocusReason)
    QTest.keyClick(window.transcript, Qt.Key.Key_Up)
    QTest.keyClick(window.transcript, Qt.Key.Key_Tab)
    QTest.keyClick(focused(), Qt.Key.Key_Tab)
    assert focused() is window.transcript.action_bar.buttons["edit"]
    QTest.keyClick(focused(), Qt.Key.Key_Space)
    assert window.composer.text() == "First question" and focused() is window.composer.edit


def test_shortcuts_regenerate_and_copy_the_last_answer(loaded, qtbot):
    window = loaded
    ask(qtbot, window, "First question")
    window.generation_settings = GenerationSettings(max_tokens=6, temperature=1.0, seed=11)
    first = window.transcript_model.entry(1).text
    window.composer.edit.setFocus()
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT):
        QTest.keyClick(focused(), Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    model = window.transcript_model
    assert model.rowCount() == 2 and model.entry(1).text != first
    QGuiApplication.clipboard().clear()
    QTest.keyClick(focused(), Qt.Key.Key_C, CTRL_SHIFT)
    assert QGuiApplication.clipboard().text() == model.entry(1).text


def test_ctrl_r_with_nothing_to_regenerate_says_so(loaded, qtbot):
    loaded.composer.edit.setFocus()
    QTest.keyClick(focused(), Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    assert "no answer" in loaded.notice.text().lower()


def test_find_shortcuts_focus_the_search_and_esc_clears_it(loaded, qtbot):
    window = loaded
    for key in (Qt.Key.Key_F, Qt.Key.Key_K):
        window.composer.edit.setFocus()
        QTest.keyClick(focused(), key, Qt.KeyboardModifier.ControlModifier)
        assert focused() is window.sidebar.search
    qtbot.keyClicks(window.sidebar.search, "harbour")
    QTest.keyClick(window.sidebar.search, Qt.Key.Key_Escape)
    assert window.sidebar.search.text() == ""
    window.show_sidebar(False)  # Find shows a hidden sidebar
    QTest.keyClick(window.composer.edit, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.isVisible() and focused() is window.sidebar.search


def test_esc_stops_an_answer_wherever_focus_is(loaded, qtbot, fake_engines):
    window = loaded
    engine = fake_engines.last
    engine.script = FakeScript(hold_after=1)
    window.composer.edit.setFocus()
    qtbot.keyClicks(window.composer.edit, "Long one")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        qtbot.waitUntil(engine.holding.is_set, timeout=TIMEOUT)
        window.sidebar.search.setFocus()
        qtbot.keyClicks(window.sidebar.search, "harbour")
        QTest.keyClick(window.sidebar.search, Qt.Key.Key_Escape)  # the search's Esc, not Stop's
        assert window.sidebar.search.text() == "" and window.generating
        selection = window.transcript.select_text(0)  # the question's text, open for selecting
        QTest.keyClick(selection, Qt.Key.Key_Escape)  # closes it; the answer goes on
        qtbot.waitUntil(lambda: window.transcript.text_selection() is None, timeout=TIMEOUT)
        assert window.generating
        window.transcript.setFocus()
        QTest.keyClick(focused(), Qt.Key.Key_Escape)
    assert blocker.args[0].finish_reason == "cancelled"


def test_settings_has_ctrl_comma_and_the_app_menu_roles(loaded, qtbot, monkeypatch):
    window = loaded
    opened = []
    monkeypatch.setattr(window, "show_settings", lambda: opened.append(True))
    window.menus.settings_requested.disconnect()
    window.menus.settings_requested.connect(window.show_settings)
    window.composer.edit.setFocus()
    QTest.keyClick(focused(), Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    assert opened == [True]
    roles = {}
    for menu_action in window.menuBar().actions():
        for action in menu_action.menu().actions():
            if not action.isSeparator() and action.text():
                roles[action.text()] = action.menuRole()
    assert roles.pop("Settings…") == QAction.MenuRole.PreferencesRole
    assert roles.pop("About Llama Desk") == QAction.MenuRole.AboutRole
    assert roles.pop("Quit") == QAction.MenuRole.QuitRole
    guessed = [text for text, role in roles.items() if role != QAction.MenuRole.NoRole]
    assert guessed == []  # e.g. "Conversation Settings…" must not become Preferences on macOS


def test_edit_view_and_window_menus(loaded, qtbot):
    window = loaded
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "Edit", "View", "Model", "Chat", "Window", "Help"]
    labels = [a.text() for a in menus["Edit"].actions() if not a.isSeparator()]
    assert labels == ["Undo", "Redo", "Cut", "Copy", "Paste", "Select All", "Find…"]
    assert [a.text() for a in menus["Window"].actions()] == ["Minimize", "Zoom"]
    minimize = menus["Window"].actions()[0]
    assert minimize.shortcut() == QKeySequence("Ctrl+M")
    # The Edit menu acts on the focused widget.
    edit = window.composer.edit
    edit.setFocus()
    qtbot.keyClicks(edit, "hello")
    window.menus.select_all_action.trigger()
    window.menus.cut_action.trigger()
    assert edit.toPlainText() == "" and QGuiApplication.clipboard().text() == "hello"
    window.menus.paste_action.trigger()
    window.menus.paste_action.trigger()
    assert edit.toPlainText() == "hellohello"
    window.menus.undo_action.trigger()
    assert edit.toPlainText() == "hello"
    window.menus.find_action.trigger()
    assert focused() is window.sidebar.search


def test_the_sidebar_hides_and_stays_hidden_next_time(loaded, qtbot, tmp_path, fake_engines):
    window = loaded
    toggle = window.menus.sidebar_action
    assert toggle.isCheckable() and toggle.isChecked() and window.sidebar.isVisible()
    window.sidebar.search.setFocus()
    QTest.keyClick(focused(), Qt.Key.Key_S, CTRL_SHIFT)
    assert not window.sidebar.isVisible() and not toggle.isChecked()
    assert focused() is window.composer.edit  # focus does not vanish with the sidebar
    window.close()
    again = MainWindow(
        engine_factory=fake_engines,
        settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
        data_folder=tmp_path / "data",
    )
    qtbot.addWidget(again)
    again.show()
    assert not again.sidebar.isVisible() and not again.menus.sidebar_action.isChecked()
    again.menus.sidebar_action.trigger()
    assert again.sidebar.isVisible()
    again.close()


def accessible_name(widget: QWidget) -> str:
    return QAccessible.queryAccessibleInterface(widget).text(QAccessible.Text.Name)


def test_screen_readers_get_names_and_plain_messages(loaded, qtbot, png_file):
    window = loaded
    composer = window.composer
    assert accessible_name(composer.edit) == "Message"
    assert accessible_name(composer.attach_button) == "Attach images or PDFs"
    assert accessible_name(composer.send_button) == "Send"
    assert accessible_name(window.sidebar.search) == "Search all chats"
    assert accessible_name(window.sidebar.view) == "Conversations"
    assert accessible_name(window.transcript) == "Messages"
    window.notice.show_message("Deleted “x”.", notices.DELETED, "Undo", lambda: None)
    assert accessible_name(window.notice.row(notices.DELETED).close_button) == "Dismiss “Deleted “x”.”"
    window.notice.withdraw(notices.DELETED)
    composer.add_files([png_file("a.png"), png_file("b.png", color=(0, 90, 0))])
    qtbot.waitUntil(lambda: len(composer.images()) == 2, timeout=TIMEOUT)
    ask(qtbot, window, "what is this?")
    window.transcript.flush()
    table = QAccessible.queryAccessibleInterface(window.transcript)
    names = [table.child(i).text(QAccessible.Text.Name) for i in range(table.childCount())]
    assert "You, 2 images: what is this?" in names
    answer = window.transcript_model.entry(1).text
    assert f"Llama: {answer}" in names
