"""The transcript view on its own: rows drawn lazily, streaming redraws one row, the actions."""

import pytest
from PySide6.QtCore import QEvent, QItemSelectionModel, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QTextEdit, QWidget

from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.widgets import message_delegate
from desktop.widgets.message_delegate import MessageDelegate
from desktop.widgets.shown_rows import EARLIER_ROWS, SHOWN_ROWS
from desktop.widgets.transcript_view import TranscriptView
from models.chats.answer_run import AnswerEnded, EndReason, TextGenerated
from tests.support.scripted_engine import step

ANSWER = "## Part\n\nSome **bold** text.\n\n```python\nprint(1)\n```\n\nA closing line.\n"


@pytest.fixture
def view(qtbot):
    model = TranscriptModel()
    transcript = TranscriptView()
    transcript.set_model(model)
    transcript.resize(800, 600)
    qtbot.addWidget(transcript)
    transcript.show()
    qtbot.waitExposed(transcript)
    return transcript


@pytest.fixture
def documents(monkeypatch) -> list[str]:
    """The texts the delegate renders into documents, in order (its renderer wrapped)."""
    made: list[str] = []
    render = message_delegate.untrusted_document

    def counting(text, *args, **kwargs):
        made.append(text)
        return render(text, *args, **kwargs)

    monkeypatch.setattr(message_delegate, "untrusted_document", counting)
    return made


@pytest.fixture
def size_hints(monkeypatch) -> list[int]:
    """The rows Qt asks the delegate for their size (its ``sizeHint`` wrapped). Ask for it before
    ``view``: Qt looks the method up when the delegate is made."""
    asked: list[int] = []
    size_hint = MessageDelegate.sizeHint

    def counting(self, option, index):
        asked.append(index.row())
        return size_hint(self, option, index)

    monkeypatch.setattr(MessageDelegate, "sizeHint", counting)
    return asked


def ask(model: TranscriptModel, text: str) -> int:
    """Ask ``text`` as the window does (through the session); the streaming answer's row."""
    model.session.ask(text, settings=None)
    assert model.session.answer_row is not None
    return model.session.answer_row


def stream(model: TranscriptModel, text: str) -> None:
    model.session.apply(TextGenerated(text))


def finish(model: TranscriptModel) -> None:
    model.session.apply(AnswerEnded(EndReason.FINISHED, step("", "stop")))


def long_conversation(turns: int) -> list[TranscriptEntry]:
    entries = []
    for n in range(turns):
        entries.append(TranscriptEntry("user", f"Question {n}"))
        entries.append(TranscriptEntry("assistant", ANSWER, finish_reason="stop"))
    return entries


def test_opening_a_long_conversation_draws_only_what_is_on_screen(view, qtbot, documents):
    widgets_before = len(view.findChildren(QWidget))
    view.model().set_entries(long_conversation(150))
    view.executeDelayedItemsLayout()
    view.viewport().repaint()
    assert 0 < len(documents) < 30  # not 300 messages rendered at once
    assert len(view.findChildren(QWidget)) == widgets_before  # no widget per message
    assert not view.findChildren(QTextEdit)
    assert not view.placeholder.isVisible()
    # Only the last SHOWN_ROWS are shown; they are laid out while the event loop is idle, and the
    # view stays at the end.
    assert view.first_shown_row() == 300 - SHOWN_ROWS
    assert view.isRowHidden(0) and view.isRowHidden(300 - SHOWN_ROWS - 1)
    assert not view.isRowHidden(300 - SHOWN_ROWS)
    qtbot.waitUntil(lambda: len(documents) == SHOWN_ROWS, timeout=20_000)
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() > 0, timeout=5_000)
    assert len(documents) == SHOWN_ROWS  # the hidden rows were never rendered


def test_streaming_redraws_only_the_answer_and_once_per_refresh(view, qtbot, documents):
    model = view.model()
    model.set_entries(long_conversation(20))
    row = ask(model, "And now?")
    view.flush()
    earlier = [view.rendered(r).renders for r in range(row)]
    answer_renders = view.rendered(row).renders
    rendered = len(documents)
    for _ in range(40):
        stream(model, "word ")
    assert len(documents) == rendered  # nothing redrawn per token
    view.flush()
    assert view.rendered(row).text == "word " * 40
    assert view.rendered(row).renders == answer_renders + 1
    assert [view.rendered(r).renders for r in range(row)] == earlier


def test_follows_the_answer_unless_scrolled_up(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(10))
    ask(model, "And now?")
    bar = view.verticalScrollBar()
    for _ in range(5):
        stream(model, "line\n\n" * 10)
        view.flush()
        view.executeDelayedItemsLayout()
        assert bar.value() == bar.maximum() > 0
    bar.setValue(0)
    stream(model, "more\n\n" * 30)
    view.flush()
    view.executeDelayedItemsLayout()
    assert bar.value() == 0


def test_placeholder_only_when_empty(view):
    view.set_placeholder("Nothing yet")
    assert view.placeholder.isVisible() and view.placeholder.text() == "Nothing yet"
    ask(view.model(), "hi")
    assert not view.placeholder.isVisible()
    view.model().clear()
    assert view.placeholder.isVisible()


def test_actions_by_bar_menu_and_keys(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(2))
    last = model.rowCount() - 1
    assert [a.text() for a in view.action_menu(last).actions()] == ["Copy", "Copy code", "Regenerate"]
    assert [a.text() for a in view.action_menu(1).actions()] == ["Copy", "Copy code"]
    assert [a.text() for a in view.action_menu(0).actions()] == ["Copy", "Edit"]
    with qtbot.waitSignal(view.action_requested) as blocker:
        view.action_menu(last).actions()[1].trigger()
    assert blocker.args == ["copy_code", last]

    bar = view.row_actions(0)
    shown = [name for name, button in bar.buttons.items() if button.isVisibleTo(view)]
    assert shown == ["copy", "edit"] and bar.isVisible()
    assert view.viewport().rect().contains(bar.geometry())
    with qtbot.waitSignal(view.action_requested) as blocker:
        qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == ["copy", 0]

    # Hovering another message moves the bar there.
    rect = view.visualRect(model.index(last))
    point = QPointF(rect.center())
    QApplication.sendEvent(
        view.viewport(),
        QMouseEvent(
            QEvent.Type.MouseMove,
            point,
            view.viewport().mapToGlobal(point),
            Qt.MouseButton.NoButton,
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
        ),
    )
    assert bar.row == last
    assert bar.buttons["regenerate"].isVisibleTo(view)


def test_a_streaming_answer_offers_no_actions(view):
    model = view.model()
    row = ask(model, "hi")
    stream(model, "partial")
    assert view.action_menu(row).actions() == []
    assert not view.row_actions(row).isVisible()


def test_double_click_opens_the_text_for_selection(view, qtbot):
    model = view.model()
    row = ask(model, "hi")
    stream(model, "Some **bold** and <b>raw</b>\n\n```py\nx = 1\n```\n")
    finish(model)
    view.flush()
    view.executeDelayedItemsLayout()
    point = view.visualRect(model.index(row)).center()
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point)
    selection = view.text_selection()
    assert selection is not None and selection.isVisible()
    assert selection.toPlainText() == view.rendered(row).document.toPlainText()
    assert "<b>raw</b>" in selection.toPlainText() and "**" not in selection.toPlainText()
    selection.selectAll()
    selection.copy()
    assert "x = 1" in QApplication.clipboard().text()
    qtbot.keyClick(selection, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: view.text_selection() is None, timeout=5_000)
    view.select_text(0)
    assert view.text_selection().toPlainText() == "hi"
    model.clear()
    assert view.text_selection() is None


def test_scrolling_to_the_top_shows_earlier_rows_without_moving_the_view(view, qtbot):
    view.model().set_entries(long_conversation(150))
    first = view.first_shown_row()
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() > 0, timeout=5_000)
    bar.setValue(0)  # the person scrolls to the top
    qtbot.waitUntil(lambda: view.first_shown_row() == first - EARLIER_ROWS, timeout=5_000)
    # The row that was at the top is still where it was; the new rows are above it.
    assert view.visualRect(view.model().index(first)).top() == 0
    assert bar.value() > 0 and not view.isRowHidden(first - EARLIER_ROWS)
    # Scrolling all the way up shows everything, a page at a time.
    while view.first_shown_row() > 0:
        shown = view.first_shown_row()
        bar.setValue(0)
        qtbot.waitUntil(lambda s=shown: view.first_shown_row() < s, timeout=5_000)
    assert not any(view.isRowHidden(r) for r in range(300))


def test_a_search_hit_or_an_action_on_a_hidden_row_shows_it(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(150))
    view.scroll_to(3)
    assert view.first_shown_row() == 3
    assert view.viewport().rect().intersects(view.visualRect(model.index(3)))
    model.set_entries(long_conversation(150))
    bar = view.row_actions(10)
    assert view.first_shown_row() == 10 and bar.isVisible() and bar.row == 10


def test_removing_rows_from_a_hidden_one_shows_the_last_rows_again(view):
    model = view.model()
    model.set_entries(long_conversation(150))
    assert view.first_shown_row() == 300 - SHOWN_ROWS > 150
    model.session.remove_from(150)  # e.g. editing a question that was hidden until the person scrolled up
    assert model.rowCount() == 150
    assert view.first_shown_row() == 150 - SHOWN_ROWS
    assert [view.isRowHidden(r) for r in range(150)] == [r < 150 - SHOWN_ROWS for r in range(150)]


def test_a_relayout_while_streaming_asks_only_the_shown_rows_for_their_size(size_hints, view):
    model = view.model()
    model.set_entries(long_conversation(500))
    ask(model, "And now?")
    view.flush()
    view.executeDelayedItemsLayout()
    size_hints.clear()
    stream(model, "a line that makes the answer taller\n\n" * 5)
    view.flush()
    view.executeDelayedItemsLayout()
    assert view.first_shown_row() == model.rowCount() - 2 - SHOWN_ROWS  # shown when it opened
    shown = model.rowCount() - view.first_shown_row()
    assert 0 < len(size_hints) <= shown + 2  # the shown rows (and row 0, Qt's scroll step), not all 1,002


def test_home_or_typing_shows_a_hidden_row_before_it_becomes_current(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(150))
    view.executeDelayedItemsLayout()
    view.setFocus()
    view.selectionModel().setCurrentIndex(model.index(200), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    qtbot.keyClick(view, Qt.Key.Key_Home)
    assert view.currentIndex().row() == 0 and view.first_shown_row() == 0
    assert view.viewport().rect().intersects(view.visualRect(model.index(0)))
    assert view.viewport().rect().contains(view.action_bar.geometry())
    with qtbot.waitSignal(view.action_requested) as blocker:
        qtbot.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == ["copy", 0]  # the message the person now sees


def test_edit_near_the_first_shown_row_keeps_the_last_rows_shown(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(150))
    assert view.first_shown_row() == 300 - SHOWN_ROWS
    model.session.remove_from(300 - SHOWN_ROWS + 3)  # edit and resend the fourth shown message
    assert view.first_shown_row() == model.rowCount() - SHOWN_ROWS
    view.executeDelayedItemsLayout()
    bar = view.verticalScrollBar()
    assert bar.maximum() > 0  # enough shown to scroll (and reach the earlier ones)


def test_showing_earlier_rows_while_following_the_end_keeps_the_row_in_view(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(150))
    model.session.remove_from(300 - SHOWN_ROWS + 3)
    view.executeDelayedItemsLayout()
    first = view.first_shown_row()
    view.verticalScrollBar().setValue(0)
    qtbot.waitUntil(lambda: view.first_shown_row() < first, timeout=5_000)
    assert view.visualRect(model.index(first)).top() == 0  # not thrown to the end


def test_a_new_message_hides_again_what_was_shown_far_above(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(150))
    view.scroll_to(0)  # e.g. a search hit in the first message: everything is shown
    assert view.first_shown_row() == 0
    answer = ask(model, "And now?")  # the view follows the new question to the end
    assert view.first_shown_row() == answer - SHOWN_ROWS  # the question's last rows, and its answer
    view.executeDelayedItemsLayout()
    bar = view.verticalScrollBar()
    assert bar.value() == bar.maximum()


def test_tab_into_a_tall_answer_brings_its_focused_action_into_view(view, qtbot):
    long_answer = "\n\n".join(f"Paragraph {n} of a long answer." for n in range(120))
    answer = TranscriptEntry("assistant", long_answer, finish_reason="stop")
    view.model().set_entries([TranscriptEntry("user", "Tell me a lot"), answer])
    view.executeDelayedItemsLayout()
    view.scrollToTop()
    view.window().activateWindow()
    qtbot.waitActive(view.window())
    view.clearFocus()
    view.setFocus(Qt.FocusReason.TabFocusReason)
    assert view.currentIndex().row() == 1  # focus from the keyboard lands on the last message
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    copy = view.action_bar.buttons["copy"]
    assert QApplication.focusWidget() is copy
    centre = copy.mapTo(view.viewport(), copy.rect().center())
    assert view.viewport().rect().contains(centre), "the focused button is scrolled out of sight"


def test_focus_from_the_keyboard_lands_on_a_message_in_view_without_scrolling(view, qtbot):
    model = view.model()
    model.set_entries(long_conversation(150))
    view.executeDelayedItemsLayout()
    bar = view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)  # the person reads somewhere in the middle
    value = bar.value()
    view.window().activateWindow()
    qtbot.waitActive(view.window())
    view.clearFocus()
    view.setFocus(Qt.FocusReason.TabFocusReason)  # or the window is activated late
    assert bar.value() == value  # not thrown to the end
    current = view.currentIndex()
    assert current.isValid() and view.viewport().rect().intersects(view.visualRect(current))
