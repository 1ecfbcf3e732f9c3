"""The engine host: many callers' answers at once on one engine, each as it would be alone.

On the tests' 4-bit checkpoint: concurrent jobs (different prompts, lengths, an image, one
cancelled) get the greedy answers they get alone; the window's question is admitted past the
parallel limit and answered while API jobs stream; a full queue refuses with ``QueueFull``; an
API request that continues a stored conversation, then the window's next question in it, both
reuse the conversation's cache; a conversation's cache is restored from its saved file after a
restart of the host.
"""

from __future__ import annotations

import queue
import threading

import pytest

from models.inference.engine import GenerationSettings
from models.inference.images import load_image_bytes
from models.inference.prompt import ChatMessage
from models.serving.engine_host import EngineHost
from models.serving.jobs import EventKind, QueueFull
from tests.conftest import image_bytes

CHUNK = 64  # attention_chunk_size of the tests' checkpoints
GREEDY = GenerationSettings(max_tokens=12, temperature=0.0, prefill_step_size=16)


@pytest.fixture(scope="module")
def host(checkpoints):
    host = EngineHost(checkpoints["4bit"], parallel=4, queue_limit=8)
    host.start(timeout=120)
    yield host
    host.close()


def conversations(n):
    out = []
    for i in range(n):
        images = ()
        if i == 2:
            images = (load_image_bytes(image_bytes(112, 56, "PNG", (10, 200, 30)), "p.png"),)
        out.append([ChatMessage("user", " ".join(["tell me more"] * (1 + 4 * i)) + f" #{i}", images)])
    return out


def answer(host, messages, settings=GREEDY, **kwargs):
    steps = list(host.generate(messages, settings, **kwargs))
    assert steps[-1].finish_reason in ("length", "stop"), steps[-1].error
    return steps[-1]


class Collect:
    """A job's events, gathered on the host's thread; ``wait`` for the end."""

    def __init__(self):
        self.events = queue.Queue()
        self.steps = []
        self.first = threading.Event()

    def deliver(self, event):
        if event.kind is EventKind.STEP and event.step.finish_reason is None:
            self.first.set()
        self.events.put(event)

    def wait(self, timeout=120):
        while True:
            event = self.events.get(timeout=timeout)
            if event.kind is EventKind.STEP:
                self.steps.append(event.step)
                if event.step.finish_reason is not None:
                    return event.step
            elif event.kind in (EventKind.REJECTED, EventKind.FAILED):
                return event


def test_concurrent_jobs_get_the_answers_they_get_alone(host):
    chats = conversations(6)
    alone = [answer(host, messages).token_ids for messages in chats]
    collectors = [Collect() for _ in chats]
    jobs = [host.submit(m, GREEDY, c.deliver) for m, c in zip(chats, collectors, strict=True)]
    finals = [c.wait() for c in collectors]
    assert [f.token_ids for f in finals] == alone
    assert all(job.done.is_set() for job in jobs)
    assert host.running == 0 and host.waiting == 0


def test_one_cancelled_midway_leaves_the_others_alone(host):
    chats = conversations(3)
    alone = [answer(host, m).token_ids for m in chats]
    long = GenerationSettings(max_tokens=400, temperature=0.0, prefill_step_size=16)
    collectors = [Collect() for _ in chats]
    jobs = [host.submit(chats[0], long, collectors[0].deliver)]
    jobs += [host.submit(m, GREEDY, c.deliver) for m, c in zip(chats[1:], collectors[1:], strict=True)]
    assert collectors[0].first.wait(60)
    jobs[0].cancel()
    finals = [c.wait() for c in collectors]
    assert finals[0].finish_reason == "cancelled" and finals[0].generation_tokens < 400
    assert [f.token_ids for f in finals[1:]] == alone[1:]


def test_the_windows_question_does_not_wait_behind_api_jobs(checkpoints):
    host = EngineHost(checkpoints["4bit"], parallel=1, queue_limit=4)
    host.start(timeout=120)
    try:
        long = GenerationSettings(max_tokens=2000, temperature=0.0)
        api = [Collect() for _ in range(3)]
        jobs = [host.submit([ChatMessage("user", f"api {i}")], long, c.deliver) for i, c in enumerate(api)]
        assert api[0].first.wait(60)
        assert host.waiting == 2 and host.position(jobs[2]) == 1
        final = answer(host, [ChatMessage("user", "window question")], conversation=1)
        assert not jobs[0].done.is_set()  # answered while the API job streamed
        assert "Answering 1 request, 2 waiting" == host.activity() or host.activity().startswith("Answering")
    finally:
        for job in jobs:
            job.cancel()
        host.close()
    assert final.generation_tokens == GREEDY.max_tokens


def test_a_full_queue_refuses_with_retry_after(checkpoints):
    host = EngineHost(checkpoints["4bit"], parallel=1, queue_limit=1)
    host.start(timeout=120)
    try:
        long = GenerationSettings(max_tokens=2000, temperature=0.0)
        first, second = Collect(), Collect()
        jobs = [host.submit([ChatMessage("user", "one")], long, first.deliver)]
        assert first.first.wait(60)
        jobs.append(host.submit([ChatMessage("user", "two")], long, second.deliver))
        with pytest.raises(QueueFull) as refused:
            host.submit([ChatMessage("user", "three")], long, Collect().deliver)
        assert refused.value.retry_after_s >= 1
        host.submit([ChatMessage("user", "window")], GREEDY, Collect().deliver, priority=1)  # never refused
    finally:
        for job in jobs:
            job.cancel()
        host.close()


def test_api_requests_in_a_conversation_then_the_window_reuse_its_cache(host):
    question = [ChatMessage("user", "What is a llama? " * 6)]
    first = answer(host, question, conversation="c-1")
    assert first.cached_tokens == 0
    turn = question + [ChatMessage("assistant", "", token_ids=first.token_ids)]
    api = answer(host, turn + [ChatMessage("user", "And an alpaca?")], priority=0)
    assert api.cached_tokens >= len(first.prompt_token_ids)  # continued the conversation's cache
    window = answer(host, turn + [ChatMessage("user", "Where do they live?")], conversation="c-1")
    # The API's turn went past a chunk boundary (64 tokens in the tests' checkpoint): the chunked
    # layers hold only the current chunk, so the cache is reused up to the boundary before the
    # prompts part, and at most one chunk is prefilled again.
    shared = len(first.prompt_token_ids) + len(first.token_ids)
    assert window.cached_tokens == (shared // CHUNK) * CHUNK > 0


def test_a_conversation_cache_is_restored_from_its_file(checkpoints, tmp_path):
    from models.inference.prompt_cache_keeper import PromptCacheKeeper

    keeper = PromptCacheKeeper(tmp_path / "kv-caches")
    question = [ChatMessage("user", "Describe the Andes. " * 5)]
    host = EngineHost(checkpoints["4bit"], keeper=keeper)
    host.start(timeout=120)
    try:
        first = answer(host, question, conversation=42)
    finally:
        host.close()
    keeper.wait_for_saves() if hasattr(keeper, "wait_for_saves") else None
    again = EngineHost(checkpoints["4bit"], keeper=PromptCacheKeeper(tmp_path / "kv-caches"))
    again.start(timeout=120)
    try:
        turn = question + [
            ChatMessage("assistant", "", token_ids=first.token_ids),
            ChatMessage("user", "More."),
        ]
        second = answer(again, turn, conversation=42)
    finally:
        again.close()
    assert second.cached_tokens >= len(first.prompt_token_ids)


def test_an_answer_that_would_not_fit_in_memory_waits_its_turn(checkpoints):
    """Slots are free, but the planner says two answers of this context do not fit at once: the
    second waits (with its position) and starts when the first ends."""
    seen = []

    def fits(contexts):
        seen.append(list(contexts))
        return len(contexts) < 2

    host = EngineHost(checkpoints["4bit"], parallel=4, fits=fits)
    host.start(timeout=120)
    try:
        long = GenerationSettings(max_tokens=2000, temperature=0.0, context_length=4096)
        first, second = Collect(), Collect()
        jobs = [host.submit([ChatMessage("user", "one")], long, first.deliver)]
        assert first.first.wait(60)
        jobs.append(host.submit([ChatMessage("user", "two")], GREEDY, second.deliver))
        host.call(lambda _engine: None).result(30)  # the host looked at its queue since
        assert host.waiting == 1 and host.position(jobs[1]) == 0 and not second.first.is_set()
        assert [4096, GREEDY.context_length or 131072] in seen
        jobs[0].cancel()
        assert second.wait().finish_reason == "length"
    finally:
        for job in jobs:
            job.cancel()
        host.close()


def test_the_memory_gate_plans_the_loaded_model(checkpoints):
    from models.serving.slot_memory import memory_gate

    fits = memory_gate(checkpoints["4bit"])
    assert fits is not None and fits([32768] * 4)  # a tiny model: four long answers fit
    assert not fits([10**9] * 2) or memory_gate(checkpoints["4bit"], max_context=1000)([10**9] * 2)
