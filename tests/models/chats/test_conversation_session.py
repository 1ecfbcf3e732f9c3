"""ConversationSession: the turns and their events for each action, in step with the store."""

from __future__ import annotations

import pytest

from models.chats.answer_run import AnswerEnded, EndReason, TextGenerated, run_answer
from models.chats.conversation_session import (
    ConversationSession,
    TurnAdded,
    TurnChanged,
    TurnsRemoved,
    TurnsReset,
)
from models.chats.store import ConversationNotFound, ConversationStore, StoreError
from models.chats.turns import Turn
from tests.support.scripted_engine import ScriptedEngine, step

ANSWER = [step("Hel"), step("lo"), step("", "stop", (1, 2))]


@pytest.fixture
def store(private_data_dir):
    with ConversationStore(private_data_dir) as store:
        yield store


@pytest.fixture
def session():
    events = []
    session = ConversationSession(events.append)
    session.events = events
    return session


def _answer(session, job, steps, store):
    """Run the job to its end and feed every event to the session; the last apply's result."""
    gave_back = False
    for event in run_answer(ScriptedEngine(steps), job, lambda: store, coalesce_s=0.0):
        gave_back = session.apply(event)
    return gave_back


def _view(session):
    return [(t.role, t.text, t.finish_reason, t.streaming) for t in session.turns]


def _stored(store, conversation_id):
    return [(m.role, m.text, m.finish_reason) for m in store.messages(conversation_id)]


def test_ask_adds_the_question_and_a_streaming_answer_then_follows_the_run(session, store):
    conversation = store.create()
    job = session.ask("Hi?", settings=None, system_prompt="be brief", conversation_id=conversation.id)
    assert [(m.role, m.text) for m in job.messages] == [("system", "be brief"), ("user", "Hi?")]
    assert session.events == [
        TurnAdded(0, Turn("user", "Hi?")),
        TurnAdded(1, Turn("assistant", streaming=True)),
    ]
    assert session.answering and session.answer_row == 1
    session.events.clear()
    assert not _answer(session, job, ANSWER, store)
    assert not session.answering
    assert _view(session) == [("user", "Hi?", None, False), ("assistant", "Hello", "stop", False)]
    assert [m.id for m in store.messages(conversation.id)] == [t.message_id for t in session.turns]
    appended = [e.appended for e in session.events if isinstance(e, TurnChanged) and e.appended]
    assert appended == ["Hel", "lo"]  # streaming changes one row, with the new text
    assert session.turn(1).stats.generation_tokens == 2 and session.turn(1).token_ids == (1, 2)
    assert _stored(store, conversation.id) == [("user", "Hi?", None), ("assistant", "Hello", "stop")]


def test_only_one_answer_at_a_time(session):
    session.ask("Hi?", settings=None)
    with pytest.raises(RuntimeError):
        session.ask("Again?", settings=None)


def test_edit_and_resend_replaces_the_question_and_what_follows(session, store):
    conversation = store.create()
    _answer(session, session.ask("One?", settings=None, conversation_id=conversation.id), ANSWER, store)
    _answer(session, session.ask("Two?", settings=None), ANSWER, store)
    session.events.clear()
    job = session.ask("Two, edited?", settings=None, replacing_row=2)
    assert job.truncate_from == session.turn(0).message_id + 2
    assert session.events[0] == TurnsRemoved(2, 3)
    assert [m.text for m in job.messages] == ["One?", "Hello", "Two, edited?"]
    _answer(session, job, [step("Sure"), step("", "stop", (5,))], store)
    assert [t.text for t in session.turns] == ["One?", "Hello", "Two, edited?", "Sure"]
    assert [m.text for m in store.messages(conversation.id)] == ["One?", "Hello", "Two, edited?", "Sure"]


def test_regenerate_replaces_the_last_answer(session, store):
    conversation = store.create()
    _answer(session, session.ask("One?", settings=None, conversation_id=conversation.id), ANSWER, store)
    with pytest.raises(ValueError):
        session.regenerate(0, settings=None)
    job = session.regenerate(1, settings=None)
    assert [m.text for m in job.messages] == ["One?"]
    _answer(session, job, [step("Again"), step("", "stop", (9,))], store)
    assert _view(session) == [("user", "One?", None, False), ("assistant", "Again", "stop", False)]
    assert _stored(store, conversation.id) == [("user", "One?", None), ("assistant", "Again", "stop")]
    assert session.turn(1).message_id == store.messages(conversation.id)[1].id


def test_continue_carries_on_the_answer_and_its_token_ids(session, store):
    conversation = store.create()
    cut = [step("Hel"), step("", "length", (1,))]
    _answer(session, session.ask("One?", settings=None, conversation_id=conversation.id), cut, store)
    job = session.continue_answer(1, settings=None)
    assert job.continue_final and [m.text for m in job.messages] == ["One?", "Hel"]
    assert session.turn(1).streaming
    _answer(session, job, [step("lo"), step("", "stop", (2,))], store)
    assert session.turn(1).text == "Hello" and session.turn(1).token_ids == (1, 2)
    assert _stored(store, conversation.id)[-1] == ("assistant", "Hello", "stop")


def test_stop_keeps_the_answer_so_far(session, store):
    conversation = store.create()
    job = session.ask("One?", settings=None, conversation_id=conversation.id)
    _answer(session, job, [step("Hel"), step("", "cancelled", (1,))], store)
    assert _view(session)[-1] == ("assistant", "Hel", "cancelled", False)
    assert _stored(store, conversation.id)[-1] == ("assistant", "Hel", "cancelled")


def test_a_failure_with_text_keeps_it(session, store):
    conversation = store.create()
    job = session.ask("One?", settings=None, conversation_id=conversation.id)
    assert not _answer(session, job, [step("Hel"), step("", "error", error="boom")], store)
    assert _view(session)[-1] == ("assistant", "Hel", "error", False) and session.turn(1).error == "boom"


def test_a_failure_with_nothing_puts_everything_back(session, store):
    conversation = store.create()
    _answer(session, session.ask("One?", settings=None, conversation_id=conversation.id), ANSWER, store)
    before = session.turns
    job = session.ask("Edited?", settings=None, replacing_row=0)
    assert _answer(session, job, [step("", "error", error="boom")], store)  # give the draft back
    assert session.turns == before and isinstance(session.events[-1], TurnsReset)
    assert _stored(store, conversation.id) == [("user", "One?", None), ("assistant", "Hello", "stop")]


def test_a_failed_first_question_leaves_no_conversation(session, store):
    conversation = store.create()
    job = session.ask("One?", settings=None, conversation_id=conversation.id)
    assert _answer(session, job, [step("", "error", error="boom")], store)
    assert session.turns == () and session.conversation_id is None
    with pytest.raises(ConversationNotFound):
        store.conversation(conversation.id)


def test_a_failed_continue_keeps_the_answer(session, store):
    conversation = store.create()
    cut = [step("Hel"), step("", "length", (1,))]
    _answer(session, session.ask("One?", settings=None, conversation_id=conversation.id), cut, store)
    job = session.continue_answer(1, settings=None)
    assert not _answer(session, job, [step("", "error", error="boom")], store)
    assert _view(session)[-1] == ("assistant", "Hel", "error", False)
    assert store.messages(conversation.id)[-1].text == "Hel"


def test_an_unstored_session_answers_too(session):
    job = session.ask("Hi?", settings=None)
    assert not job.stored
    for event in run_answer(ScriptedEngine(ANSWER), job, None, coalesce_s=0.0):
        session.apply(event)
    assert _view(session)[-1] == ("assistant", "Hello", "stop", False)
    assert session.turn(0).message_id is None


def test_carry_over_starts_a_new_conversation_from_the_last_exchange(session, store):
    conversation = store.create()
    _answer(session, session.ask("One?", settings=None, conversation_id=conversation.id), ANSWER, store)
    _answer(session, session.ask("Two?", settings=None), ANSWER, store)
    fresh = store.create()
    assert session.carry_over(store, fresh.id) is None
    assert [t.text for t in session.turns] == ["Two?", "Hello"] and session.conversation_id == fresh.id
    assert all(t.stats is None for t in session.turns)
    assert [t.message_id for t in session.turns] == [m.id for m in store.messages(fresh.id)]
    assert len(store.messages(conversation.id)) == 4  # the old conversation is untouched


def test_carry_over_says_when_the_copies_cannot_be_stored(session, store, monkeypatch):
    _answer(session, session.ask("One?", settings=None, conversation_id=store.create().id), ANSWER, store)

    def refuse(*args, **kwargs):
        raise StoreError("disk full")

    monkeypatch.setattr(store, "add_message", refuse)
    problem = session.carry_over(store, store.create().id)
    assert "disk full" in problem and [t.text for t in session.turns] == ["One?", "Hello"]


def test_events_after_the_end_are_ignored(session):
    assert not session.apply(TextGenerated("late"))
    assert not session.apply(AnswerEnded(EndReason.FINISHED, step("", "stop")))
    assert session.turns == ()


def test_a_question_with_a_pdf_is_stored_with_it_and_carried_over(session, store):
    from models.chats.conversation_session import stored_turns
    from models.documents.chat_documents import read_document
    from models.inference.preprocess import ProcessorConfig
    from tests.support.pdf_files import text_pdf

    document = read_document(
        text_pdf(["Pangolin", "Quokka"]),
        "animals.pdf",
        image_pages=1,
        processor=ProcessorConfig(tile=56, max_patches=2),
    )
    conversation = store.create()
    job = session.ask("Which?", documents=(document,), settings=None, conversation_id=conversation.id)
    assert (
        job.messages[-1].expanded().images == document.images
        and "[Page 2]\nQuokka" in job.messages[-1].expanded().text
    )
    _answer(session, job, ANSWER, store)
    question = stored_turns(store, conversation.id)[0]
    assert question.documents == (document,) and question.text == "Which?"
    fresh = store.create()
    assert session.carry_over(store, fresh.id) is None
    assert stored_turns(store, fresh.id)[0].documents == (document,)
