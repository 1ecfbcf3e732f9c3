"""The transcript model follows its ConversationSession: one Qt change per session event."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from models.chats.answer_run import AnswerEnded, EndReason, RowsStored, TextGenerated
from models.chats.conversation_session import ConversationSession
from models.chats.turns import Turn
from models.inference.images import load_image_bytes
from tests.conftest import image_bytes
from tests.support.scripted_engine import step


def _record(model):
    seen = []
    model.rowsInserted.connect(lambda _parent, first, last: seen.append(("inserted", first, last)))
    model.rowsRemoved.connect(lambda _parent, first, last: seen.append(("removed", first, last)))
    model.dataChanged.connect(lambda top, bottom, *_: seen.append(("changed", top.row(), bottom.row())))
    model.modelReset.connect(lambda: seen.append(("reset",)))
    return seen


def test_the_model_shows_what_the_session_holds(qapp):
    session = ConversationSession()
    session.append(Turn("user", "before"))
    model = TranscriptModel(session)
    assert model.rowCount() == 1 and model.entry(0).text == "before"
    seen = _record(model)

    session.ask("Hi?", settings=None, conversation_id=3)
    assert seen == [("inserted", 1, 1), ("inserted", 2, 2)]
    assert model.entry(2).streaming and model.entry(2).footer() == "Thinking…"
    seen.clear()

    session.apply(RowsStored(3, 10, 11))  # stored ids are not drawn: no redraw
    assert seen == [] and (model.entry(1).message_id, model.entry(2).message_id) == (10, 11)
    revision = model.entry(2).revision
    session.apply(TextGenerated("Hel"))
    session.apply(TextGenerated("lo"))
    assert seen == [("changed", 2, 2), ("changed", 2, 2)]  # the streaming row only
    assert model.entry(2).text == "Hello" and model.entry(2).revision == revision + 2
    session.apply(AnswerEnded(EndReason.FINISHED, step("", "stop", (1, 2))))
    assert model.entry(2).footer() == "2 tokens · 20.0 tok/s" and model.entry(2).token_ids == (1, 2)
    seen.clear()

    session.regenerate(2, settings=None)
    assert seen == [("removed", 2, 2), ("inserted", 2, 2)]
    session.apply(AnswerEnded(EndReason.FAILED, step("", "error", error="boom")))
    assert [e.text for e in model.entries()] == ["before", "Hi?", "Hello"]  # put back
    assert seen[-1] == ("reset",)


def test_showing_entries_and_clearing_go_through_the_session(qapp):
    model = TranscriptModel()
    seen = _record(model)
    answer = TranscriptEntry("assistant", "A", finish_reason="stop")
    model.set_entries([TranscriptEntry("user", "Question"), answer], conversation_id=4)
    assert seen == [("reset",)] and model.session.conversation_id == 4
    assert [m.text for m in model.session.messages("sys")] == ["sys", "Question", "A"]
    assert model.entries() == [TranscriptEntry("user", "Question"), answer]
    model.clear()
    assert model.rowCount() == 0 and model.session.turns == () and model.session.conversation_id is None


def test_thumbnails_made_elsewhere_are_reused(qapp):
    image = load_image_bytes(image_bytes(16, 16), "tiny.png")
    thumbnail = QImage(4, 4, QImage.Format.Format_RGB888)
    model = TranscriptModel()
    model.remember_thumbnails([image], [thumbnail])  # as the chat pane does with the composer's
    model.session.ask("look", [image], settings=None)
    assert model.entry(0).thumbnails[0] is thumbnail
    other = TranscriptModel()
    other.session.ask("look", [image], settings=None)  # none given: made here
    assert other.entry(0).thumbnails[0].width() > 0


def test_a_row_reads_to_a_screen_reader_as_who_wrote_it_and_its_plain_text(qapp):
    picture = load_image_bytes(image_bytes(8, 8), "a.png")
    model = TranscriptModel()
    model.set_entries(
        [
            TranscriptEntry(
                "user", "what is **this**?", images=(picture, picture), thumbnails=(QImage(), QImage())
            ),
            TranscriptEntry(
                "assistant",
                "## What I see\n\n| Photo | Colour |\n|---|---|\n| 1 | **red** |\n\n![x](file:///dev/zero)",
                finish_reason="stop",
            ),
            TranscriptEntry("assistant", "", streaming=True),
        ]
    )
    spoken = [model.data(model.index(row), Qt.ItemDataRole.AccessibleTextRole) for row in range(3)]
    assert spoken == [
        "You, 2 images: what is **this**?",  # a question is shown as typed, so it is read so
        "Llama: What I see\nPhoto\nColour\n1\nred",
        "Llama: Thinking…",
    ]
    assert model.data(model.index(2), Qt.ItemDataRole.AccessibleDescriptionRole) == "Thinking…"
