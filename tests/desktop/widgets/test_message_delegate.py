"""Message cards: a readable column on wide windows, questions as bubbles as wide as their text,
nothing wider than the card (a wide code line scrolls inside its box), and what lies under a
point (a thumbnail, a code block's Copy)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint

from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.widgets.message_style import MAX_TEXT_WIDTH
from desktop.widgets.transcript_view import TranscriptView
from desktop.workers.image_loader import thumbnail_qimage
from tests.support.stored_chats import picture

WIDE = "numbers = [" + ", ".join(str(n) for n in range(80)) + "]"
ANSWER = f"Here:\n\n```python\n{WIDE}\n```\n\n{'x' * 500}\n\nDone.\n"


@pytest.fixture
def view(qtbot):
    transcript = TranscriptView()
    transcript.set_model(TranscriptModel())
    qtbot.addWidget(transcript)
    transcript.show()
    qtbot.waitExposed(transcript)
    return transcript


def _shown(view, width: int, entries) -> None:
    view.resize(width, 700)
    view.model().set_entries(entries)
    view.executeDelayedItemsLayout()


def _body(view, row: int):
    return view.delegate.body_rect(view.visualRect(view.model().index(row)), row)


def test_on_a_wide_window_the_text_keeps_a_readable_width_centred(view):
    _shown(view, 1600, [TranscriptEntry("user", "hi"), TranscriptEntry("assistant", "word " * 400)])
    body = _body(view, 1)
    assert MAX_TEXT_WIDTH - 20 <= body.width() <= MAX_TEXT_WIDTH
    middle = view.viewport().width() / 2
    assert abs(body.center().x() - middle) < 20


def test_a_question_is_a_bubble_as_wide_as_its_text_at_the_right(view):
    _shown(view, 1200, [TranscriptEntry("user", "hi"), TranscriptEntry("assistant", "word " * 400)])
    question, answer = _body(view, 0), _body(view, 1)
    assert question.width() < answer.width() / 2
    assert abs(question.right() - answer.right()) < 4
    _shown(view, 1200, [TranscriptEntry("user", "a long question " * 60)])
    assert _body(view, 0).width() < view.viewport().width() * 0.8


@pytest.mark.parametrize("width", [500, 800, 1600])
def test_wide_code_and_long_words_stay_inside_the_card(view, width):
    _shown(view, width, [TranscriptEntry("user", "y" * 500), TranscriptEntry("assistant", ANSWER)])
    assert view.rendered(0).document.idealWidth() <= _body(view, 0).width() + 1
    answer, box = _body(view, 1), view.delegate.code_box(view.visualRect(view.model().index(1)), 1, 0)
    assert answer.left() <= box.left() and box.right() <= answer.right() + 1
    assert view.delegate.code_scroll(1, 0)[1] > 0  # the code line is whole: its box scrolls it
    for row in (0, 1):
        assert _body(view, row).right() < view.viewport().width()


def _hits(view, row: int, top: int, bottom: int) -> set:
    delegate, rect = view.delegate, view.visualRect(view.model().index(row))
    return {
        hit
        for x in range(rect.left(), rect.right(), 3)
        for y in range(top, bottom, 3)
        if (hit := delegate.hit(rect, row, QPoint(x, y))) is not None
    }


def test_a_thumbnail_and_a_code_blocks_copy_are_found_under_the_mouse(view):
    images = [picture(size=(400, 300), name="a.png"), picture((20, 200, 20), (200, 300), "b.png")]
    entry = TranscriptEntry(
        "user", "look", images=tuple(images), thumbnails=tuple(map(thumbnail_qimage, images))
    )
    _shown(view, 900, [entry, TranscriptEntry("assistant", "A\n\n```\none\n```\n\nB\n\n```\ntwo\n```\n")])
    question = view.visualRect(view.model().index(0))
    assert _hits(view, 0, question.top(), _body(view, 0).top()) == {("image", 0), ("image", 1)}
    assert _hits(view, 0, _body(view, 0).top(), question.bottom()) == set()  # the text is no thumbnail
    answer = view.visualRect(view.model().index(1))
    assert _hits(view, 1, answer.top(), answer.bottom()) == {("copy_code", 0), ("copy_code", 1)}


def test_five_images_flow_onto_rows_inside_a_narrow_card(view):
    images = [picture(size=(400, 300), name=f"{n}.png") for n in range(5)]
    entry = TranscriptEntry(
        "user", "five", images=tuple(images), thumbnails=tuple(map(thumbnail_qimage, images))
    )
    _shown(view, 500, [entry])
    rect = view.visualRect(view.model().index(0))
    assert _hits(view, 0, rect.top(), _body(view, 0).top()) == {("image", n) for n in range(5)}
