"""Code blocks in the transcript never wrap: a block wider than the card scrolls sideways inside
it (its scroll bar dragged, Shift+wheel or a sideways wheel over it, Left/Right when the keyboard
is on it), each block on its own, and a streaming answer's growing block goes on working."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QRect, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.widgets.markdown_view import CODE_HEADER, CODE_PAD_X, code_block_groups
from desktop.widgets.transcript_view import TranscriptView
from tests.support import contrast

LONG = "".join(chr(ord("a") + n % 26) for n in range(400))  # 400 characters, no space
SHORT = "print(1)"


def _fence(code: str) -> str:
    return f"```\n{code}\n```\n"


@pytest.fixture
def view(qtbot):
    transcript = TranscriptView()
    transcript.set_model(TranscriptModel())
    transcript.resize(800, 700)
    qtbot.addWidget(transcript)
    transcript.show()
    qtbot.waitExposed(transcript)
    return transcript


def _shown(view, *answers: str) -> None:
    entries = []
    for answer in answers:
        entries += [TranscriptEntry("user", "q"), TranscriptEntry("assistant", answer, finish_reason="stop")]
    view.model().set_entries(entries)
    for row in range(len(entries)):
        view.rendered(row)  # laid out exactly, as painting it would
    view.scheduleDelayedItemsLayout()
    view.executeDelayedItemsLayout()


def _rect(view, row: int) -> QRect:
    return view.visualRect(view.model().index(row))


def _box(view, row: int, block: int) -> QRect:
    return view.delegate.code_box(_rect(view, row), row, block)


def _points(view, row: int, wanted) -> list[QPoint]:
    rect = _rect(view, row)
    return [
        QPoint(x, y)
        for y in range(rect.top(), rect.bottom(), 2)
        for x in range(rect.left(), rect.right(), 2)
        if view.delegate.hit(rect, row, QPoint(x, y)) == wanted
    ]


def _wheel(view, point: QPoint, angle: QPoint, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    where = QPointF(point)
    event = QWheelEvent(
        where,
        QPointF(view.viewport().mapToGlobal(point)),
        QPoint(),
        angle,
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), event)


def _ink(image: np.ndarray, rect: QRect, background: np.ndarray) -> int:
    """How many pixels of ``rect`` are far from ``background`` (glyphs, not the box's fill)."""
    area = image[rect.top() : rect.bottom() + 1, rect.left() : rect.right() + 1]
    return int((np.abs(area - background).max(axis=2) > 60).sum())


def _tab_in(view, qtbot) -> None:
    """Focus the transcript as Tab from elsewhere does (it lands on the last message)."""
    view.window().activateWindow()
    qtbot.waitActive(view.window())
    view.clearFocus()
    view.setFocus(Qt.FocusReason.TabFocusReason)


def test_a_long_code_line_is_not_wrapped(view):
    _shown(view, _fence(LONG), _fence("x"))
    assert _rect(view, 1).height() == _rect(view, 3).height()  # as tall as a one-line block
    document = view.rendered(1).document
    (group,) = code_block_groups(document)
    assert document.findBlockByNumber(group.first).layout().lineCount() == 1
    assert group.text(document) == LONG


def test_a_long_block_scrolls_to_its_end_by_its_scroll_bar_clipped_to_its_box(view, qtbot):
    _shown(view, _fence(LONG))
    offset, maximum = view.delegate.code_scroll(1, 0)
    assert offset == 0 < maximum
    box = _box(view, 1, 0)
    line = QRect(box.left(), box.top() + CODE_HEADER + 2, box.width(), 10)
    right_pad = QRect(box.right() - CODE_PAD_X + 3, line.top(), CODE_PAD_X - 5, line.height())
    outside = QRect(box.right() + 2, line.top(), 4, line.height())
    view.viewport().repaint()
    before = contrast.pixels(view.viewport().grab().toImage())
    fill = before[box.top() + 8, box.left() + 12]
    assert _ink(before, right_pad, fill) > 0  # the line runs on under the box's edge
    beside = before[outside.top() : outside.bottom() + 1, outside.left() : outside.right() + 1]
    assert len(np.unique(beside.reshape(-1, 3), axis=0)) == 1  # past the box: only the card

    bar = _points(view, 1, ("code_bar", 0))
    assert bar and all(box.contains(p) for p in bar)
    start = min(bar, key=lambda p: p.x())
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view.viewport(), start + QPoint(box.width() // 3, 0))
    middle = view.delegate.code_scroll(1, 0)[0]
    assert 0 < middle < maximum  # it follows the mouse
    qtbot.mouseMove(view.viewport(), QPoint(box.right() + 300, start.y()))
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(box.right() + 300, start.y()))
    assert view.delegate.code_scroll(1, 0) == (maximum, maximum)

    view.viewport().repaint()
    after = contrast.pixels(view.viewport().grab().toImage())
    end = QRect(right_pad.left() - 24, line.top(), 20, line.height())
    assert _ink(after, right_pad, fill) == 0 and _ink(after, end, fill) > 0  # its end, then padding
    assert (after[outside.top() : outside.bottom() + 1, outside.left() : outside.right() + 1] == beside).all()


def test_copy_and_the_scroll_bar_are_apart_and_a_short_block_has_no_bar(view):
    _shown(view, _fence(SHORT) + "\nThen:\n\n" + _fence(LONG))
    assert view.delegate.code_scroll(1, 0) == (0, 0)
    hits = {hit for hit in (view.delegate.hit(_rect(view, 1), 1, p) for p in _grid(view, 1)) if hit}
    assert hits == {("copy_code", 0), ("copy_code", 1), ("code_bar", 1)}


def _grid(view, row: int) -> list[QPoint]:
    rect = _rect(view, row)
    return [
        QPoint(x, y) for y in range(rect.top(), rect.bottom(), 2) for x in range(rect.left(), rect.right(), 2)
    ]


def test_shift_wheel_or_a_sideways_wheel_scrolls_only_the_block_under_the_mouse(view):
    _shown(view, _fence(LONG) + "\nBetween.\n\n" + _fence(LONG))
    bar = view.verticalScrollBar()
    top = bar.value()
    first, second = _box(view, 1, 0), _box(view, 1, 1)
    _wheel(view, first.center(), QPoint(0, -120), Qt.KeyboardModifier.ShiftModifier)
    scrolled = view.delegate.code_scroll(1, 0)[0]
    assert scrolled > 0 and view.delegate.code_scroll(1, 1)[0] == 0
    _wheel(view, first.center(), QPoint(-120, 0))  # a sideways wheel, a trackpad's swipe
    assert view.delegate.code_scroll(1, 0)[0] > scrolled
    _wheel(view, first.center(), QPoint(120, 0))
    assert view.delegate.code_scroll(1, 0)[0] == scrolled
    assert bar.value() == top  # no sideways scroll moved the transcript
    _wheel(view, second.center(), QPoint(-240, 0))
    assert view.delegate.code_scroll(1, 0)[0] == scrolled and view.delegate.code_scroll(1, 1)[0] > 0


def test_the_keyboard_reaches_each_block_scrolls_it_and_copies_it(view, qtbot):
    _shown(view, "One:\n\n```python\n" + LONG + "\n```\n\nTwo:\n\n" + _fence(SHORT))
    _tab_in(view, qtbot)
    assert view.currentIndex().row() == 1
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    code = view.code_focus
    assert QApplication.focusWidget() is code and (code.row, code.block) == (1, 0)
    assert code.accessibleName() == "Code block 1 of 2, python"
    assert "Left and Right" in code.accessibleDescription()
    assert code.geometry() == _box(view, 1, 0)
    qtbot.keyClick(code, Qt.Key.Key_Right)
    offset, maximum = view.delegate.code_scroll(1, 0)
    assert 0 < offset < maximum
    qtbot.keyClick(code, Qt.Key.Key_End)
    assert view.delegate.code_scroll(1, 0) == (maximum, maximum)
    qtbot.keyClick(code, Qt.Key.Key_Left)
    assert view.delegate.code_scroll(1, 0)[0] < maximum
    qtbot.keyClick(code, Qt.Key.Key_Home)
    assert view.delegate.code_scroll(1, 0)[0] == 0

    hints = []
    view.action_requested.connect(lambda action, row: hints.append((action, row, view.code_block_hint(row))))
    qtbot.keyClick(code, Qt.Key.Key_Tab)  # the next block, which has nothing to scroll
    assert QApplication.focusWidget() is code and code.block == 1
    assert code.accessibleName() == "Code block 2 of 2" and "Left" not in code.accessibleDescription()
    qtbot.keyClick(code, Qt.Key.Key_Return)
    assert hints == [("copy_code", 1, 1)]
    qtbot.keyClick(code, Qt.Key.Key_Tab)  # then the message's actions
    assert QApplication.focusWidget() is view.action_bar.buttons["copy"]
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert QApplication.focusWidget() is code and code.block == 1
    qtbot.keyClick(code, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert code.block == 0
    qtbot.keyClick(code, Qt.Key.Key_Backtab, Qt.KeyboardModifier.ShiftModifier)
    assert QApplication.focusWidget() is view
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    qtbot.keyClick(code, Qt.Key.Key_Escape)  # back to the messages
    assert QApplication.focusWidget() is view and view.currentIndex().row() == 1
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    qtbot.keyClick(code, Qt.Key.Key_Up)  # the rows move on, the keyboard with them
    assert QApplication.focusWidget() is view and view.currentIndex().row() == 0


def test_a_message_without_code_is_passed_by_the_keyboard(view, qtbot):
    _shown(view, "No code here.")
    _tab_in(view, qtbot)
    qtbot.keyClick(view, Qt.Key.Key_Tab)
    assert QApplication.focusWidget() is view.action_bar.buttons["copy"]


def test_a_streaming_answer_growing_a_long_line_stays_one_line_and_keeps_its_scroll(view, monkeypatch):
    from desktop.widgets import message_delegate
    from models.chats.answer_run import AnswerEnded, EndReason, TextGenerated
    from tests.desktop.widgets.test_transcript_view import step

    made: list[str] = []
    render = message_delegate.untrusted_document

    def counting(text, *args, **kwargs):
        made.append(text)
        return render(text, *args, **kwargs)

    monkeypatch.setattr(message_delegate, "untrusted_document", counting)
    model = view.model()
    model.session.ask("q", settings=None)
    row = model.session.answer_row

    def append(text):
        model.session.apply(TextGenerated(text))

    append("Code:\n\n```\n")
    append("y")
    view.flush()
    view.executeDelayedItemsLayout()
    height = _rect(view, row).height()
    renders = len(made)
    for _ in range(20):
        append("y" * 20)
        view.flush()
        view.executeDelayedItemsLayout()
    assert _rect(view, row).height() == height
    assert len(made) == renders + 20  # once per refresh
    offset, maximum = view.delegate.code_scroll(row, 0)
    assert offset == 0 < maximum
    _wheel(view, _box(view, row, 0).center(), QPoint(0, -120), Qt.KeyboardModifier.ShiftModifier)
    scrolled = view.delegate.code_scroll(row, 0)[0]
    assert scrolled > 0
    append("y" * 200 + "\nsecond line\n")
    view.flush()
    view.executeDelayedItemsLayout()
    assert view.delegate.code_scroll(row, 0)[0] == scrolled  # the new text keeps where it was
    assert view.delegate.code_scroll(row, 0)[1] > maximum
    append("```\n\nDone.")
    model.session.apply(AnswerEnded(EndReason.FINISHED, step("", "stop")))
    view.flush()
    document = view.rendered(row).document
    (group,) = code_block_groups(document)
    assert group.text(document) == "y" * 601 + "\nsecond line"
