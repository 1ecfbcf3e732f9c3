"""The composer's text box grows with its text up to a third of the window, then scrolls, and
shrinks back when the draft is sent or cleared."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QVBoxLayout, QWidget

from desktop.widgets.composer import MIN_EDIT_HEIGHT, Composer


@pytest.fixture
def window(qtbot):
    host = QWidget()
    layout = QVBoxLayout(host)
    layout.addStretch(1)
    host.composer = Composer()
    layout.addWidget(host.composer)
    qtbot.addWidget(host)
    host.resize(900, 900)
    host.show()
    qtbot.waitExposed(host)
    return host


def test_the_text_box_grows_with_its_text_up_to_a_third_of_the_window(window, qtbot):
    edit = window.composer.edit
    assert edit.height() == MIN_EDIT_HEIGHT
    edit.setPlainText("\n".join(f"line {n}" for n in range(6)))
    qtbot.waitUntil(lambda: edit.height() > MIN_EDIT_HEIGHT, timeout=5_000)
    six_lines = edit.height()
    assert six_lines < 900 // 3
    assert edit.verticalScrollBar().maximum() == 0  # all six lines show
    edit.setPlainText("a long paragraph that wraps " * 60)  # one line, wrapped
    qtbot.waitUntil(lambda: edit.height() > MIN_EDIT_HEIGHT, timeout=5_000)
    edit.setPlainText("\n".join(f"line {n}" for n in range(200)))  # a long paste
    qtbot.waitUntil(lambda: edit.height() == 900 // 3, timeout=5_000)
    assert edit.verticalScrollBar().maximum() > 0  # the rest scrolls
    window.resize(900, 600)
    qtbot.waitUntil(lambda: edit.height() == 600 // 3, timeout=5_000)
    window.composer.clear_draft()  # sent
    qtbot.waitUntil(lambda: edit.height() == MIN_EDIT_HEIGHT, timeout=5_000)
