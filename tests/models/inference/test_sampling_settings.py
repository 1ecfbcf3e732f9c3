"""min_p and repetition_penalty on a random-weight checkpoint (whose greedy answer here falls into
a loop of two tokens), on both decoding paths: a batch of one (``Batch``) and mlx-lm's
``generate_step`` (the path a pipeline across a cluster takes).

The bf16 checkpoint, not the 4-bit copy: min_p 1.0 keeps every token tied with the most likely
one, and the 4-bit copy's bf16 log-probabilities tie within this answer, where greedy takes the
lower id and sampling either."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.inference.engine import Engine, GenerationSettings
from models.inference.prompt import ChatMessage
from models.inference.settings_spec import REPETITION_CONTEXT

GREEDY = GenerationSettings(max_tokens=40, temperature=0.0)
QUESTION = [ChatMessage("user", "Tell me a long story about a lighthouse keeper.")]


def answer(engine: Engine, messages, settings) -> tuple[int, ...]:
    engine.reset_cache()
    steps = list(engine.generate(messages, settings))
    assert steps[-1].finish_reason in ("length", "stop"), steps[-1].error
    return steps[-1].token_ids


def repeats(tokens: tuple[int, ...]) -> int:
    """How many tokens already appeared earlier in the answer."""
    return len(tokens) - len(set(tokens))


@pytest.fixture(scope="module")
def engine_bf16(checkpoints):
    return Engine.load(checkpoints["bf16"])


@pytest.fixture
def stepwise(monkeypatch):
    """Engines answer through ``generate_step``, as a pipeline does."""
    monkeypatch.setattr(Engine, "batched", property(lambda self: False))


def test_the_random_checkpoint_repeats_and_the_penalty_changes_its_greedy_answer(engine_bf16):
    plain = answer(engine_bf16, QUESTION, GREEDY)
    assert repeats(plain) > len(plain) // 4  # what the penalty is for
    penalized = answer(engine_bf16, QUESTION, replace(GREEDY, repetition_penalty=2.0))
    assert penalized != plain and repeats(penalized) < repeats(plain)
    assert answer(engine_bf16, QUESTION, replace(GREEDY, repetition_penalty=1.0)) == plain


def test_min_p_of_one_is_greedy_whatever_the_temperature(engine_bf16):
    plain = answer(engine_bf16, QUESTION, GREEDY)
    hot = replace(GREEDY, temperature=1.5, seed=3)
    assert answer(engine_bf16, QUESTION, hot) != plain  # sampling alone wanders off
    assert answer(engine_bf16, QUESTION, replace(hot, min_p=1.0)) == plain


@pytest.mark.parametrize("penalty", [1.0, 1.3, 2.0])
def test_both_paths_give_the_same_answer_with_a_cached_prompt(engine_bf16, monkeypatch, penalty):
    """The penalty sees the prompt's tail even when the KV cache already held it."""
    settings = replace(GREEDY, repetition_penalty=penalty, max_tokens=30)
    first = answer(engine_bf16, QUESTION, settings)
    follow_up = [
        *QUESTION,
        ChatMessage("assistant", engine_bf16.tokenizer.decode(list(first)), token_ids=first),
        ChatMessage("user", "Go on."),
    ]

    def two_turns() -> tuple[tuple[int, ...], int]:
        engine_bf16.reset_cache()
        list(engine_bf16.generate(QUESTION, settings))
        steps = list(engine_bf16.generate(follow_up, settings))
        return steps[-1].token_ids, steps[-1].cached_tokens

    batched, cached = two_turns()
    assert cached > REPETITION_CONTEXT // 2
    monkeypatch.setattr(Engine, "batched", property(lambda self: False))
    assert answer(engine_bf16, QUESTION, settings) == first
    assert two_turns() == (batched, cached)


def test_penalty_and_min_p_are_applied_on_the_stepwise_path(engine_bf16, stepwise):
    plain = answer(engine_bf16, QUESTION, GREEDY)
    assert answer(engine_bf16, QUESTION, replace(GREEDY, repetition_penalty=2.0)) != plain
    hot = replace(GREEDY, temperature=1.5, seed=3)
    assert answer(engine_bf16, QUESTION, replace(hot, min_p=1.0)) == plain


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "stepwise"])
def test_off_means_no_extra_work(engine_bf16, monkeypatch, batched):
    """With min_p 0 and repetition_penalty 1 neither filter is built or run."""
    import mlx_lm.sample_utils as sample_utils

    monkeypatch.setattr(Engine, "batched", property(lambda self: batched))
    hot = replace(GREEDY, temperature=1.0, top_p=0.9, seed=5)
    plain, sampled = answer(engine_bf16, QUESTION, GREEDY), answer(engine_bf16, QUESTION, hot)

    def refuse(*_args, **_kwargs):
        raise AssertionError("a filter that is off was used")

    monkeypatch.setattr(sample_utils, "apply_min_p", refuse)
    monkeypatch.setattr(sample_utils, "make_repetition_penalty", refuse)
    assert answer(engine_bf16, QUESTION, GREEDY) == plain
    assert answer(engine_bf16, QUESTION, hot) == sampled
