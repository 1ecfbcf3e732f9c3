"""The answer recorder: the question first, the answer flushed while it streams, errors kept."""

from __future__ import annotations

import pytest

from models.chats.answer_recorder import AnswerRecorder
from tests.support.stored_chats import (
    FakeClock,
    FakeStep,
    other_connection,
    picture,
)


def test_recorder_commits_the_question_first_and_flushes_every_two_seconds(store):
    tick = FakeClock(100.0)
    conversation = store.create()
    recorder = AnswerRecorder(store, model="tiny-4bit", clock=tick)
    question = recorder.begin(conversation.id, "What is in the box?", [picture()])
    reader = other_connection(store)
    try:
        question_seen, answer_seen = reader.messages(conversation.id)
        assert question_seen.id == question.id and question_seen.images[0].sha256 == picture().sha256
        assert (answer_seen.role, answer_seen.text, answer_seen.interrupted) == ("assistant", "", True)

        assert recorder.add("A red") is False
        tick.advance(1.9)
        assert recorder.add(" box") is False
        assert reader.message(answer_seen.id).text == ""
        tick.advance(0.1)
        assert recorder.add(",") is True
        assert reader.message(answer_seen.id).text == "A red box,"
        assert reader.message(answer_seen.id).interrupted

        tick.advance(0.5)
        recorder.add(" maybe")
        answer = recorder.finish(FakeStep(" two.", "stop", (1, 2, 3, 4)))
        seen = reader.message(answer.id)
        assert seen.text == "A red box, maybe two." and not seen.interrupted
        assert seen.finish_reason == "stop" and seen.token_ids == (1, 2, 3, 4)
        assert seen.model == "tiny-4bit"
        assert seen.stats == {
            "prompt_tokens": 7,
            "cached_tokens": 0,
            "generation_tokens": 3,
            "ttft_s": 0.25,
            "prompt_tps": 28.0,
            "generation_tps": 40.5,
            "peak_memory_gb": 0.125,
        }
    finally:
        reader.close()
    with pytest.raises(RuntimeError):
        recorder.add("late")


def test_recorder_keeps_errors_and_abandoned_answers(store):
    conversation = store.create()
    recorder = AnswerRecorder(store)
    recorder.begin(conversation.id, "q1")
    failed = recorder.finish(FakeStep("", "error", (), error="Generation failed: out of memory"))
    assert (failed.finish_reason, failed.error, failed.interrupted) == (
        "error",
        "Generation failed: out of memory",
        False,
    )

    recorder.begin(conversation.id, "q2")
    recorder.add("half an ans")
    abandoned = recorder.abandon()
    assert (abandoned.text, abandoned.interrupted, abandoned.finish_reason) == ("half an ans", True, None)
    assert abandoned.can_continue


def test_continue_an_answer_that_stopped_at_the_token_limit(store):
    conversation = store.create()
    recorder = AnswerRecorder(store)
    recorder.begin(conversation.id, "Count to six")
    first = recorder.finish(FakeStep("one two three", "length", (1, 2, 3)))
    assert first.can_continue and store.messages(conversation.id)[-1] == first

    resumed = recorder.resume(first.id)
    assert resumed.interrupted and resumed.finish_reason is None  # a kill now keeps "one two three"
    recorder.add(" four five")
    done = recorder.finish(FakeStep(" six", "stop", (4, 5, 6)))
    assert done.id == first.id and done.text == "one two three four five six"
    assert done.token_ids == (1, 2, 3, 4, 5, 6) and not done.can_continue
    assert len(store.messages(conversation.id)) == 2
