"""The fake engine of the window tests keeps the real engine's interface and contract.

The same checks run on both (``engine`` is parametrized): if the real engine's methods,
signatures, attributes or the meaning of its steps change, these fail until the fake follows.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
import weakref

import pytest

from models.inference.checkpoint import CheckpointError
from models.inference.engine import Engine, GenerationSettings, GenerationStep, ModelLoadError, PromptError
from models.inference.images import load_image_bytes
from models.inference.prompt import ChatMessage
from tests.conftest import image_bytes
from tests.support.fake_engine import FakeEngine, FakeEngineFactory, FakeScript

GREEDY = GenerationSettings(max_tokens=4, temperature=0.0)
QUESTION = [ChatMessage("user", "What colour is the harbour?")]


def public_members(cls) -> dict[str, object]:
    return {name: value for name, value in inspect.getmembers(cls) if not name.startswith("_")}


def parameters(function) -> list[tuple]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_the_fake_has_every_public_method_of_the_engine_with_its_signature():
    real, fake = public_members(Engine), public_members(FakeEngine)
    for name, member in real.items():
        assert name in fake, f"FakeEngine lacks Engine.{name}"
        if isinstance(inspect.getattr_static(Engine, name), property):
            assert isinstance(inspect.getattr_static(FakeEngine, name), property), name
            continue
        assert type(inspect.getattr_static(FakeEngine, name)) is type(inspect.getattr_static(Engine, name)), (
            name
        )
        expected, actual = parameters(member), parameters(fake[name])
        assert actual[: len(expected)] == expected, f"FakeEngine.{name}{inspect.signature(fake[name])}"
        extra = actual[len(expected) :]
        assert all(
            p[1] == inspect.Parameter.KEYWORD_ONLY or p[2] is not inspect.Parameter.empty for p in extra
        )


def test_the_fake_has_the_engines_public_attributes(engine_4bit, checkpoints):
    fake = FakeEngine.load(checkpoints["4bit"])
    missing = {name for name in vars(engine_4bit) if not name.startswith("_")} - set(vars(fake))
    assert not missing, f"FakeEngine lacks {missing}"
    for name in ("encode", "decode", "eos_token_ids"):
        assert hasattr(engine_4bit.tokenizer, name) and hasattr(fake.tokenizer, name), name
    assert fake.name == engine_4bit.name and fake.checkpoint.path == engine_4bit.checkpoint.path
    assert fake.max_context == engine_4bit.max_context and fake.identity == engine_4bit.identity


@pytest.fixture(params=["real", "fake"])
def engine(request, checkpoints):
    if request.param == "real":
        return request.getfixturevalue("engine_4bit")
    return FakeEngine.load(checkpoints["4bit"])


def run(engine, messages, settings=GREEDY, cancel=None, continue_final=False):
    return list(engine.generate(messages, settings, cancel, continue_final))


def text_of(steps) -> str:
    return "".join(step.text for step in steps)


def test_steps_stream_token_by_token_and_end_with_the_whole_answer(engine):
    engine.reset_cache()
    steps = run(engine, QUESTION)
    *text_steps, final = steps
    assert all(isinstance(step, GenerationStep) for step in steps)
    assert [s.generation_tokens for s in text_steps] == [1, 2, 3, 4]
    assert all(s.finish_reason is None and s.token is not None for s in text_steps)
    assert final.finish_reason == "length" and final.error is None and final.generation_tokens == 4
    assert final.token_ids == tuple(s.token for s in text_steps)
    assert final.prompt_token_ids == tuple(engine.prepare(QUESTION, GREEDY).ids)
    assert final.cached_tokens == 0 and final.prompt_tokens == len(final.prompt_token_ids)
    assert final.ttft_s >= 0 and final.peak_memory_gb > 0
    assert "".join(s.text for s in steps).strip()
    assert set(dataclasses.asdict(final)) == {f.name for f in dataclasses.fields(GenerationStep)}


def test_the_next_turn_reuses_the_cache_and_continue_computes_only_new_tokens(engine):
    engine.reset_cache()
    steps = run(engine, QUESTION)
    first = steps[-1]
    answer = ChatMessage("assistant", text_of(steps), token_ids=first.token_ids)
    turn = [*QUESTION, answer, ChatMessage("user", "And the boats?")]
    second = list(engine.generate(turn, GREEDY))[-1]
    assert second.cached_tokens >= len(first.prompt_token_ids)  # and the answer, but its last token
    assert second.cached_tokens + second.prompt_tokens == len(second.prompt_token_ids)
    answer = ChatMessage("assistant", "more", token_ids=second.token_ids)
    more = list(engine.generate([*turn, answer], GREEDY, continue_final=True))[-1]
    assert more.finish_reason == "length" and more.prompt_tokens <= 1


def test_a_snapshot_of_the_cache_is_adopted_after_a_reset(engine):
    engine.reset_cache()
    assert engine.snapshot_cache() is None and engine.cache_keys == ()
    run(engine, QUESTION)
    snapshot = engine.snapshot_cache()
    assert snapshot is not None and snapshot.tokens > 0 and snapshot.keys == engine.cache_keys
    engine.reset_cache()
    assert engine.adopt_cache(snapshot) and engine.cache_keys == snapshot.keys
    again = run(engine, QUESTION)[-1]
    assert again.cached_tokens == len(again.prompt_token_ids) - 1  # all but the token it must feed


def test_cancel_stops_within_one_token(engine):
    engine.reset_cache()
    cancel = threading.Event()
    steps = []
    for step in engine.generate(QUESTION, GenerationSettings(max_tokens=50, temperature=0.0), cancel):
        steps.append(step)
        cancel.set()
    assert steps[-1].finish_reason == "cancelled" and steps[-1].generation_tokens == 1
    assert len(steps) == 2 and len(steps[-1].token_ids) == 1


def test_a_cancel_before_the_answer_produces_nothing(engine):
    cancel = threading.Event()
    cancel.set()
    (step,) = run(engine, QUESTION, cancel=cancel)
    assert step.finish_reason == "cancelled" and step.generation_tokens == 0 and step.token_ids == ()


def test_a_prompt_longer_than_the_context_is_refused(engine):
    settings = GenerationSettings(max_tokens=4, context_length=8)
    long = [ChatMessage("user", "far too long for eight tokens " * 4)]
    with pytest.raises(PromptError) as refused:
        engine.prepare(long, settings)
    assert "context length" in str(refused.value) and len(refused.value.prompt_ids) >= 8
    (step,) = engine.generate(long, settings)
    assert step.finish_reason == "error" and "context length" in step.error and step.prompt_token_ids


def test_close_releases_the_model(checkpoints):
    fake = FakeEngine.load(checkpoints["4bit"])
    model = weakref.ref(fake.model)
    fake.close()
    assert model() is None


# -- what only the fake does --------------------------------------------------------------------


@pytest.fixture
def fake(checkpoints):
    return FakeEngine.load(checkpoints["4bit"])


def test_answers_are_deterministic_and_the_seed_changes_a_sampled_one(fake):
    greedy = text_of(run(fake, QUESTION))
    assert greedy == text_of(run(fake, QUESTION))
    sampled = GenerationSettings(max_tokens=4, temperature=1.0, seed=11)
    assert text_of(run(fake, QUESTION, sampled)) != greedy
    assert text_of(run(fake, [ChatMessage("user", "Something else")])) != greedy
    assert fake.tokenizer.decode(fake.tokenizer.encode(" Be terse.\n")) == " Be terse.\n"


def test_a_scripted_length_ends_with_stop(checkpoints):
    fake = FakeEngine.load(checkpoints["4bit"], script=FakeScript(answer_tokens=3))
    *texts, final = fake.generate(QUESTION, GenerationSettings(max_tokens=10))
    assert final.finish_reason == "stop" and len(texts) == 3
    assert final.generation_tokens == 4 and len(final.token_ids) == 3  # "<|eot|>" counted, not kept


def test_images_are_accepted_counted_and_keyed_by_content(fake):
    pictures = [
        load_image_bytes(image_bytes(32, 32, color=(0, 0, 200)), "a.png"),
        load_image_bytes(image_bytes(32, 32, color=(0, 200, 0)), "b.png"),
    ]
    messages = [ChatMessage("user", "Compare them", images=tuple(pictures))]
    final = run(fake, messages)[-1]
    assert final.finish_reason == "length" and fake.calls[-1].images == 2
    prompt = fake.prepare(messages)
    image_keys = [k for k in prompt.keys if isinstance(k, tuple)]
    assert len(image_keys) == 2 * fake.script.image_tokens
    assert {k[1] for k in image_keys} == {p.sha256 for p in pictures}
    assert text_of(run(fake, messages)) != text_of(run(fake, [ChatMessage("user", "Compare them")]))


def test_a_held_answer_waits_and_stops_within_one_token(checkpoints):
    fake = FakeEngine.load(checkpoints["4bit"], script=FakeScript(hold_after=3))
    cancel = threading.Event()
    result = []
    thread = threading.Thread(
        target=lambda: result.extend(fake.generate(QUESTION, GenerationSettings(max_tokens=50), cancel))
    )
    thread.start()
    assert fake.holding.wait(10)
    cancel.set()
    thread.join(10)
    assert result[-1].finish_reason == "cancelled" and result[-1].generation_tokens == 3


def test_a_released_answer_runs_to_its_end(checkpoints):
    fake = FakeEngine.load(checkpoints["4bit"], script=FakeScript(hold_after=1))
    result = []
    thread = threading.Thread(target=lambda: result.extend(fake.generate(QUESTION, GREEDY)))
    thread.start()
    assert fake.holding.wait(10)
    fake.release()
    thread.join(10)
    assert result[-1].finish_reason == "length" and result[-1].generation_tokens == 4


def test_failures_on_load_and_mid_answer(checkpoints, tmp_path):
    stages = []
    with pytest.raises(ModelLoadError, match="^Could not load tiny-llama4-4bit: disk on fire$"):
        FakeEngine.load(checkpoints["4bit"], stages.append, script=FakeScript(fail_on_load="disk on fire"))
    assert stages == ["Reading weights", "Loading tokenizer"]
    with pytest.raises(CheckpointError, match="config.json"):
        FakeEngine.load(tmp_path)

    class Stop(Exception):
        pass

    def refuse(_stage):
        raise Stop

    with pytest.raises(Stop):  # the worker cancels a load this way: it passes through
        FakeEngine.load(checkpoints["4bit"], refuse)

    factory = FakeEngineFactory()
    fake = factory(checkpoints["4bit"])
    assert factory.last is fake
    fake.fail_next_answer("Metal command buffer failed", after_tokens=2)
    steps = fake.generate(QUESTION, GREEDY)
    assert [next(steps).generation_tokens, next(steps).generation_tokens] == [1, 2]
    with pytest.raises(RuntimeError, match="Metal command buffer failed"):
        next(steps)
    assert run(fake, QUESTION)[-1].finish_reason == "length"  # only the next answer fails
