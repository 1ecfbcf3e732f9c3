"""run_answer: what an answer stores when, and the events it yields (a scripted engine, no MLX)."""

from __future__ import annotations

import pytest

from models.chats.answer_run import (
    AnswerEnded,
    AnswerJob,
    EndReason,
    RowsStored,
    StorageFailed,
    TextGenerated,
    run_answer,
)
from models.chats.store import ConversationSettings, ConversationStore
from models.inference.prompt import ChatMessage
from tests.support.scripted_engine import ScriptedEngine
from tests.support.scripted_engine import step as _step

QUESTION = ("user", "Hi?", None, False)
ANSWER = [_step("Hel"), _step("lo"), _step("", "stop", (1, 2))]


@pytest.fixture
def store(private_data_dir):
    with ConversationStore(private_data_dir) as store:
        yield store


def _run(engine, job, store):
    return list(run_answer(engine, job, lambda: store, coalesce_s=0.0))


def _job(store, conversation_id, question="Hi?", **changes):
    values = dict(
        messages=[ChatMessage("user", question)],
        settings=None,
        conversation_id=conversation_id,
        question=(question, ()) if question is not None else None,
    )
    values.update(changes)
    return AnswerJob(**values)


def _rows(store, conversation_id):
    return [(m.role, m.text, m.finish_reason, m.interrupted) for m in store.messages(conversation_id)]


def test_a_question_is_stored_then_streamed_then_finished(store):
    conversation = store.create()
    events = _run(ScriptedEngine(ANSWER), _job(store, conversation.id), store)
    rows = events[0]
    assert isinstance(rows, RowsStored) and rows.conversation_id == conversation.id
    assert [e.text for e in events if isinstance(e, TextGenerated)] == ["Hel", "lo"]
    end = events[-1]
    assert isinstance(end, AnswerEnded) and end.reason is EndReason.FINISHED
    assert end.stored_answer_id == rows.answer_id
    assert _rows(store, conversation.id) == [QUESTION, ("assistant", "Hello", "stop", False)]
    assert store.message(rows.answer_id).stats["generation_tokens"] == 2


def test_a_questions_documents_are_stored_with_it(store):
    from models.chats.conversation_session import stored_turns
    from tests.models.chats.test_stored_documents import report_document

    report = report_document()
    conversation = store.create()
    _run(ScriptedEngine(ANSWER), _job(store, conversation.id, question_documents=(report,)), store)
    question, _ = stored_turns(store, conversation.id)
    assert question.documents == (report,)


def test_create_with_stores_the_conversation_with_the_question(store):
    settings = ConversationSettings(system_prompt="be brief", max_tokens=9)
    events = _run(ScriptedEngine(ANSWER), _job(store, None, create_with=settings), store)
    rows = events[0]
    assert store.conversation(rows.conversation_id).settings == settings
    assert _rows(store, rows.conversation_id)[0] == ("user", "Hi?", None, False)


def test_a_refused_prompt_stores_nothing(store):
    conversation = store.create()
    events = _run(ScriptedEngine(ANSWER, prompt_error="too long"), _job(store, conversation.id), store)
    assert len(events) == 1 and events[0].reason is EndReason.FAILED and events[0].error == "too long"
    assert events[0].final.prompt_token_ids == (1, 2)
    assert store.messages(conversation.id) == []


def test_a_failure_with_no_text_removes_what_it_added(store):
    conversation = store.create()
    failing = ScriptedEngine([_step("", "error", error="boom")])
    events = _run(failing, _job(store, conversation.id), store)
    assert events[-1].reason is EndReason.FAILED and events[-1].stored_answer_id is None
    with pytest.raises(Exception):  # noqa: B017 - the empty conversation went with it
        store.conversation(conversation.id)


def test_an_engine_exception_keeps_the_partial_answer_marked_interrupted(store):
    conversation = store.create()
    engine = ScriptedEngine(ANSWER, raise_after=2)
    events = _run(engine, _job(store, conversation.id), store)
    assert events[-1].reason is EndReason.FAILED and "GPU" in events[-1].error
    assert engine.closed
    assert _rows(store, conversation.id)[-1] == ("assistant", "Hello", None, True)


def test_closing_the_run_early_leaves_the_answer_interrupted(store):
    conversation = store.create()
    engine = ScriptedEngine(ANSWER)
    run = run_answer(engine, _job(store, conversation.id), lambda: store, coalesce_s=0.0)
    assert isinstance(next(run), RowsStored)
    assert next(run).text == "Hel"
    run.close()  # Ctrl-C in the command line
    assert engine.closed
    assert _rows(store, conversation.id)[-1] == ("assistant", "Hel", None, True)


def test_regenerate_replaces_the_answer_once_the_new_one_has_text(store):
    conversation = store.create()
    _run(ScriptedEngine(ANSWER), _job(store, conversation.id), store)
    old_answer = store.messages(conversation.id)[-1].id
    again = [_step("Hi"), _step(" there", "stop", (3,))]
    events = _run(ScriptedEngine(again), _job(store, conversation.id, None, truncate_from=old_answer), store)
    assert events[0].question_id is None
    assert _rows(store, conversation.id) == [QUESTION, ("assistant", "Hi there", "stop", False)]


def test_a_failed_regenerate_leaves_the_old_answer(store):
    conversation = store.create()
    _run(ScriptedEngine(ANSWER), _job(store, conversation.id), store)
    old_answer = store.messages(conversation.id)[-1].id
    failing = ScriptedEngine([_step("", "error", error="boom")])
    _run(failing, _job(store, conversation.id, None, truncate_from=old_answer), store)
    assert _rows(store, conversation.id) == [QUESTION, ("assistant", "Hello", "stop", False)]


def test_continue_appends_to_the_stored_answer(store):
    conversation = store.create()
    cut = [_step("Hel"), _step("", "length", (1,))]
    _run(ScriptedEngine(cut), _job(store, conversation.id), store)
    answer = store.messages(conversation.id)[-1]
    assert answer.finish_reason == "length"
    more = [_step("lo"), _step("", "stop", (2,))]
    job = _job(store, conversation.id, None, resume_message_id=answer.id, continue_final=True)
    events = _run(ScriptedEngine(more), job, store)
    assert events[-1].stored_answer_id == answer.id
    assert store.message(answer.id).text == "Hello" and store.message(answer.id).token_ids == (1, 2)


def test_stop_keeps_the_answer_so_far(store):
    conversation = store.create()
    stopped = [_step("Hel"), _step("", "cancelled", (1,))]
    events = _run(ScriptedEngine(stopped), _job(store, conversation.id), store)
    assert events[-1].reason is EndReason.STOPPED
    assert _rows(store, conversation.id)[-1] == ("assistant", "Hel", "cancelled", False)


def test_a_store_that_cannot_open_still_streams_the_answer():
    def broken():
        raise OSError("disk full")

    job = AnswerJob([ChatMessage("user", "Hi?")], None, conversation_id=1, question=("Hi?", ()))
    events = list(run_answer(ScriptedEngine(ANSWER), job, broken, coalesce_s=0.0))
    assert isinstance(events[0], StorageFailed) and "disk full" in events[0].message
    assert events[-1].reason is EndReason.FINISHED and events[-1].stored_answer_id is None


def test_no_engine_is_one_failed_end():
    events = list(run_answer(None, AnswerJob(messages=[], settings=None)))
    assert [type(e) for e in events] == [AnswerEnded] and events[0].error == "No model is loaded."
