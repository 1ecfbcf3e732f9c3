"""The notice line above the composer (issue 19): one notice per source, notices of different
sources stacked (each with its own ×), a source withdrawing only its own notice."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible

from desktop import notices
from desktop.notices import Notice
from desktop.widgets.notice_bar import NoticeBar

HUB_DOWN = "Cannot reach the Hub at https://huggingface.co: no network connection or the server is down."
REFUSED = "notes.txt is not a supported image."


@pytest.fixture
def bar(qtbot):
    made = NoticeBar()
    qtbot.addWidget(made)
    made.show()
    return made


def test_notices_from_different_sources_are_all_shown(bar):
    bar.show_message(HUB_DOWN, notices.HUB)
    bar.show_message(REFUSED, notices.COMPOSER)
    assert bar.isVisible()
    assert bar.texts() == [HUB_DOWN, REFUSED]  # stacked, the newest nearest the composer
    assert bar.sources() == [notices.HUB, notices.COMPOSER]
    assert all(bar.row(source).isVisible() for source in bar.sources())


def test_the_same_source_twice_gives_one_notice(bar):
    bar.show_message("tiny: download paused; resume it from the Model menu.", notices.download("org/tiny"))
    bar.show_message(REFUSED, notices.COMPOSER)
    bar.show_message("tiny is downloaded and ready.", notices.download("org/tiny"))
    # The later notice replaces the earlier one and, being news, moves nearest the composer.
    assert bar.texts() == [REFUSED, "tiny is downloaded and ready."]


def test_dismissing_one_notice_leaves_the_other(bar, qtbot):
    bar.show_message(HUB_DOWN, notices.HUB)
    bar.show_message(REFUSED, notices.COMPOSER)
    with qtbot.waitSignal(bar.dismissed) as dismissed:
        qtbot.mouseClick(bar.row(notices.HUB).close_button, Qt.MouseButton.LeftButton)
    assert dismissed.args == [notices.HUB]
    assert bar.texts() == [REFUSED] and bar.isVisible()
    qtbot.mouseClick(bar.row(notices.COMPOSER).close_button, Qt.MouseButton.LeftButton)
    assert bar.texts() == [] and bar.text() == "" and not bar.isVisible()


def test_a_withdrawn_source_leaves_the_others(bar):
    bar.show_message(HUB_DOWN, notices.HUB)
    bar.show_message(REFUSED, notices.COMPOSER)
    bar.withdraw(notices.LOAD)  # not shown: nothing changes
    assert bar.texts() == [HUB_DOWN, REFUSED]
    bar.withdraw(notices.HUB)
    assert bar.texts() == [REFUSED] and bar.row(notices.HUB) is None
    bar.withdraw(notices.COMPOSER)
    assert not bar.isVisible()


def test_each_notice_keeps_its_own_action(bar, qtbot):
    undone = []
    bar.show_notice(Notice(notices.DELETED, "Deleted “Kept”.", "Undo", lambda: undone.append(True)))
    bar.show_message(HUB_DOWN, notices.HUB)
    assert not bar.row(notices.HUB).action_button.isVisibleTo(bar)
    qtbot.mouseClick(bar.row(notices.DELETED).action_button, Qt.MouseButton.LeftButton)
    assert undone == [True] and bar.texts() == [HUB_DOWN]  # acted on: that notice is done


def test_a_notice_needs_a_source(bar):
    with pytest.raises(ValueError):
        bar.show_message("Who said this?", "")


def test_each_close_button_is_named_for_its_notice(bar):
    bar.show_message(HUB_DOWN, notices.HUB)
    bar.show_message(REFUSED, notices.COMPOSER)
    names = [
        QAccessible.queryAccessibleInterface(bar.row(source).close_button).text(QAccessible.Text.Name)
        for source in bar.sources()
    ]
    assert names[0].startswith("Dismiss") and "Cannot reach the Hub" in names[0]
    assert names[1] == f"Dismiss “{REFUSED}”"
    assert [w for w in bar.focus_widgets() if w.isVisibleTo(bar)] == [
        bar.row(notices.HUB).close_button,
        bar.row(notices.COMPOSER).close_button,
    ]
