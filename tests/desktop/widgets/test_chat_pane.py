"""The chat column follows an answer controller: what it sends, what it shows of an answer's
course, and the question being edited (a stand-in controller; no model, no worker)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QObject, Signal

from desktop import notices
from desktop.controllers.answer_controller import Draft
from desktop.controllers.model_library import ModelLibrary
from desktop.qtmodels.transcript_model import TranscriptModel
from desktop.widgets.chat_pane import ChatPane
from models.chats.turns import Turn


class StubAnswers(QObject):
    """``AnswerController``'s signals, and a record of what it was asked."""

    question_taken = Signal(object)
    answer_started = Signal()
    answer_ended = Signal(object)
    draft_returned = Signal(object)
    notice = Signal(str, str)

    def __init__(self):
        super().__init__()
        self.generating = False
        self.editing_row: int | None = None
        self.asked: list[Draft] = []
        self.regenerated: list[int] = []

    def ask(self, draft: Draft) -> bool:
        self.asked.append(draft)
        return True

    def regenerate(self, row: int) -> None:
        self.regenerated.append(row)


def show_question(pane: ChatPane, text: str) -> None:
    """Open a conversation that holds one question (as the sidebar opens a stored one)."""
    pane.transcript_model.session.show([Turn("user", text)], conversation_id=1)


@pytest.fixture
def pane(qtbot):
    library = ModelLibrary()  # the first-run panel's; never refreshed here
    made = ChatPane(library, TranscriptModel())
    qtbot.addWidget(made)
    made.answers_stub = StubAnswers()
    made.follow(made.answers_stub)
    made.show()
    yield made
    library.shutdown()  # its download thread ends before the library goes


def test_the_placeholder_says_whether_a_model_is_loading_missing_or_ready(pane):
    pane.show_model_state(None, loading=True)
    assert pane.transcript.placeholder.text() == "Loading the model…"
    pane.show_model_state(None, loading=False)
    assert pane.transcript.placeholder.text().startswith("No model loaded.")
    pane.show_model_state("tiny", loading=False)
    assert pane.transcript.placeholder.text().startswith("tiny is ready.")


def test_a_sent_draft_leaves_the_composer_and_comes_back_if_the_answer_fails(pane, qtbot):
    answers = pane.answers_stub
    pane.send()  # nothing written: nothing asked
    assert answers.asked == []
    qtbot.keyClicks(pane.composer.edit, "Hello")
    pane.send()
    assert answers.asked == [Draft("Hello", [], [], 0)]

    answers.question_taken.emit(answers.asked[0])
    assert pane.composer.text() == "" and not pane.notice.isVisible()
    answers.answer_started.emit()
    assert pane.composer.send_button.text() == "Stop"
    answers.answer_ended.emit(None)
    assert pane.composer.send_button.text() == "Send"
    answers.draft_returned.emit(answers.asked[0])
    assert pane.composer.text() == "Hello"
    answers.notice.emit("The answer failed.", notices.ANSWER)
    assert pane.notice.texts() == ["The answer failed."]
    answers.answer_started.emit()  # the next answer: that failure is past
    assert not pane.notice.isVisible()


def test_editing_puts_the_question_back_until_the_draft_is_cleared(pane, qtbot):
    answers = pane.answers_stub
    show_question(pane, "One")
    qtbot.keyClicks(pane.composer.edit, "half-written")
    pane.edit_message(0)
    assert answers.editing_row is None and pane.composer.text() == "half-written"  # refused

    pane.composer.clear_draft()
    pane.edit_message(0)
    assert answers.editing_row == 0 and pane.composer.text() == "One"
    pane.composer.edit.clear()
    qtbot.waitUntil(lambda: answers.editing_row is None, timeout=5_000)


def test_message_buttons_wait_for_the_answer_in_progress(pane):
    answers = pane.answers_stub
    pane.transcript_model.session.ask("One", settings=None)  # a question and its answer, streaming
    row = pane.transcript_model.session.answer_row
    answers.generating = True
    pane.transcript.action_requested.emit("regenerate", row)
    assert answers.regenerated == [] and pane.notice.isVisible()
    answers.generating = False
    pane.transcript.action_requested.emit("regenerate", row)
    assert answers.regenerated == [row]


@pytest.mark.parametrize("how", ["close the notice", "Esc"])
def test_closing_the_editing_notice_or_esc_cancels_the_edit(pane, qtbot, how):
    from PySide6.QtCore import Qt

    answers = pane.answers_stub
    show_question(pane, "One")
    pane.edit_message(0)
    assert answers.editing_row == 0 and pane.notice.text().startswith("Editing a question")
    if how == "Esc":
        qtbot.keyClick(pane.composer.edit, Qt.Key.Key_Escape)
    else:
        qtbot.mouseClick(pane.notice.row(notices.EDIT).close_button, Qt.MouseButton.LeftButton)
    assert answers.editing_row is None  # Send now asks a new question, it replaces nothing
    assert pane.composer.text() == "" and not pane.notice.isVisible()


def test_closing_another_notice_keeps_the_edit(pane, qtbot):
    from PySide6.QtCore import Qt

    answers = pane.answers_stub
    show_question(pane, "One")
    pane.edit_message(0)
    answers.notice.emit("Something else happened.", notices.ANSWER)
    assert pane.notice.texts()[-1] == "Something else happened."  # below the editing notice
    qtbot.mouseClick(pane.notice.row(notices.ANSWER).close_button, Qt.MouseButton.LeftButton)
    assert answers.editing_row == 0 and pane.composer.text() == "One"
    assert pane.notice.text().startswith("Editing a question")
