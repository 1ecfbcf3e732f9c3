"""Turns, answer figures and the conversation-size estimate (no Qt, no model)."""

from models.chats.turns import STAT_FIELDS, AnswerStats, Turn, chat_messages
from models.inference.engine import GenerationStep
from models.memory.turn_size import MAX_IMAGE_TOKENS, estimated_text_tokens
from models.memory.turn_size import conversation_tokens as tokens_in_conversation


def _step(**changes) -> GenerationStep:
    values = dict(
        text="",
        token=None,
        prompt_tokens=40,
        cached_tokens=10,
        generation_tokens=5,
        ttft_s=0.5,
        prompt_tps=80.0,
        generation_tps=20.0,
        peak_memory_gb=1.5,
        finish_reason="stop",
        prompt_token_ids=tuple(range(50)),
    )
    values.update(changes)
    return GenerationStep(**values)


def test_stats_round_trip_through_the_stored_form():
    stats = AnswerStats.from_step(_step())
    stored = stats.as_stored()
    assert tuple(stored) == STAT_FIELDS
    assert stored["generation_tokens"] == 5 and stored["peak_memory_gb"] == 1.5
    assert AnswerStats.from_stored(stored) == stats  # the prompt ids are not stored, not compared
    assert AnswerStats.from_stored(None) is None
    assert AnswerStats.from_stored({"generation_tokens": 3, "future_field": 1}).generation_tokens == 3


def test_turns_carry_what_the_conversation_size_reads():
    live = AnswerStats.from_step(_step())
    stored = AnswerStats.from_stored(live.as_stored())
    turns = [Turn("user", "hi"), Turn("assistant", "hello", stats=live)]
    assert tokens_in_conversation(turns) == 50 + 5  # the exact prompt ids, then the answer
    turns[-1] = Turn("assistant", "hello", stats=stored)
    assert tokens_in_conversation(turns) == 40 + 10 + 5  # read back: prefilled + cached + new


def test_conversation_size_is_estimated_without_figures(tiny_image):
    turns = [Turn("user", "x" * 30, images=(tiny_image,)), Turn("assistant", "ignored", token_ids=(1, 2, 3))]
    assert tokens_in_conversation(turns) == estimated_text_tokens("x" * 30) + MAX_IMAGE_TOKENS + 3
    assert estimated_text_tokens("x" * 30) == 30 // 3 + 8
    assert MAX_IMAGE_TOKENS == 17 * 144


def test_messages_leave_out_the_streaming_answer_and_empty_failures(tiny_image):
    turns = [
        Turn("user", "q1", images=(tiny_image,)),
        Turn("assistant", "", finish_reason="error", error="boom"),
        Turn("user", "q2"),
        Turn("assistant", "a2", token_ids=(7, 8), finish_reason="stop"),
        Turn("user", "q3"),
        Turn("assistant", "partial", streaming=True),
    ]
    messages = chat_messages(turns, "be brief")
    assert [(m.role, m.text) for m in messages] == [
        ("system", "be brief"),
        ("user", "q1"),
        ("user", "q2"),
        ("assistant", "a2"),
        ("user", "q3"),
    ]
    assert messages[1].images == (tiny_image,) and messages[3].token_ids == (7, 8)
