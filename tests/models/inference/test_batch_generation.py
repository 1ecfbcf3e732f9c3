"""Continuous batching on synthesized checkpoints: answers in a batch equal the answers alone.

Greedy answers of 2, 4 and 8 sequences that join at different steps (different prompts, lengths,
images, one cancelled midway) are token-identical to the same requests answered one at a time,
across chunk boundaries of the chunked-attention layers (``attention_chunk_size`` 16 here,
8,192 in Scout). They hold in bf16 and 4-bit as well as float32: a sequence's attention is its
own, and MLX's matrix products give each row the same result whatever the number of rows. (On
MLX's CPU backend, where the suite runs, both checkpoints run in float32: the engine casts their
float parameters, see ``models.inference.model_loading.float32_on_cpu``.)
"""

from __future__ import annotations

import threading

import pytest

from models.inference.batch_generation import LiveCache
from models.inference.engine import Engine, GenerationSettings
from models.inference.images import load_image_bytes
from models.inference.prompt import ChatMessage
from tests.conftest import image_bytes
from tests.support.synthetic_checkpoints import TinyShape, quantize_checkpoint, write_checkpoint

CHUNK = 16
GREEDY = GenerationSettings(max_tokens=24, temperature=0.0, prefill_step_size=8)


@pytest.fixture(scope="module", params=["bf16", "4bit"])
def engine(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    path = write_checkpoint(root / "small-chunks-bf16", TinyShape(chunk=CHUNK), seed=7)
    if request.param == "4bit":
        path = quantize_checkpoint(path, root / "small-chunks-4bit", bits=4)
    return Engine.load(path)


def photo(width, height, color):
    return load_image_bytes(image_bytes(width, height, "PNG", color), f"{width}x{height}.png")


def questions(n: int) -> list[list[ChatMessage]]:
    """``n`` different conversations: short and long prompts (some past two chunks), images."""
    out = []
    for i in range(n):
        text = " ".join(["word"] * (3 + 9 * i)) + f" question {i}?"
        images = (photo(56 + 28 * (i % 3), 56, (40 * i % 255, 90, 200)),) if i % 3 == 1 else ()
        out.append([ChatMessage("user", text, images)])
    return out


def alone(engine: Engine, messages, settings=GREEDY) -> tuple[int, ...]:
    return alone_with_text(engine, messages, settings)[0]


def alone_with_text(engine: Engine, messages, settings=GREEDY) -> tuple[tuple[int, ...], str]:
    engine.reset_cache()
    steps = list(engine.generate(messages, settings))
    final = steps[-1]
    assert final.finish_reason in ("length", "stop"), final.error
    return final.token_ids, "".join(s.text for s in steps)


def batched(engine: Engine, conversations, joins, cancel_at=None, settings=GREEDY):
    """Run ``conversations`` in one batch, the i-th joining at step ``joins[i]``; the sequence
    ``cancel_at[0]`` is cancelled once it has ``cancel_at[1]`` tokens. Returns the final steps and
    every sequence's streamed steps."""
    batch = engine.new_batch()
    cancels = [threading.Event() for _ in conversations]
    seqs = [None] * len(conversations)
    finals, streamed = {}, {i: [] for i in range(len(conversations))}
    step = 0
    while len(finals) < len(conversations):
        for i, messages in enumerate(conversations):
            if joins[i] == step:
                prompt = engine.prepare(messages, settings)
                seqs[i] = engine.sequence(prompt, settings, cancels[i], LiveCache([]), tag=i)
                batch.add(seqs[i])
        for seq, event in batch.step():
            streamed[seq.tag].append(event)
            if event.finish_reason is not None:
                finals[seq.tag] = event
            elif cancel_at and seq.tag == cancel_at[0] and event.generation_tokens == cancel_at[1]:
                cancels[seq.tag].set()
        step += 1
        assert step < 2000, "the batch never finished"
    return finals, streamed, seqs


@pytest.mark.parametrize("n", [2, 4, 8])
def test_batched_greedy_answers_equal_the_answers_alone(engine, n):
    conversations = questions(n)
    expected = [alone_with_text(engine, messages) for messages in conversations]
    finals, streamed, seqs = batched(engine, conversations, joins=[3 * i for i in range(n)])
    for i in range(n):
        assert finals[i].token_ids == expected[i][0], i
        assert [s.token for s in streamed[i] if s.finish_reason is None] == list(finals[i].token_ids)
        assert "".join(s.text for s in streamed[i]) == expected[i][1]
    longest = max(len(s.prompt.ids) for s in seqs) + GREEDY.max_tokens
    assert longest > 3 * CHUNK  # the answers crossed chunk boundaries


def test_a_cancelled_sequence_leaves_the_others_unchanged(engine):
    conversations = questions(4)
    expected = [alone(engine, messages) for messages in conversations]
    finals, _, seqs = batched(engine, conversations, joins=[0, 1, 2, 5], cancel_at=(1, 5))
    assert finals[1].finish_reason == "cancelled"
    assert finals[1].token_ids == expected[1][:5]  # stopped within one token
    for i in (0, 2, 3):
        assert finals[i].token_ids == expected[i]
    # The cancelled sequence's cache holds what it was fed, and says so.
    assert seqs[1].cache.tokens == len(seqs[1].prompt.ids) + 5
    assert {c.offset for c in seqs[1].cache.caches} == {seqs[1].cache.tokens}


def test_a_newcomer_is_prefilled_between_the_others_tokens(engine):
    """While a long prompt is prefilled chunk by chunk, the running answer keeps streaming."""
    long_prompt = [ChatMessage("user", " ".join(["word"] * 30))]
    short = [ChatMessage("user", "hi")]
    batch = engine.new_batch()
    settings = GenerationSettings(max_tokens=400, temperature=0.0, prefill_step_size=8)
    running = engine.sequence(engine.prepare(short, settings), settings, threading.Event(), LiveCache([]))
    batch.add(running)
    while running.first_time is None:
        batch.step()
    newcomer = engine.sequence(
        engine.prepare(long_prompt, settings), settings, threading.Event(), LiveCache([])
    )
    batch.add(newcomer)
    tokens_while_prefilling = steps = 0
    while newcomer.prefilling:
        tokens_while_prefilling += sum(
            1 for seq, step in batch.step() if seq is running and step.token is not None
        )
        steps += 1
    assert steps == -(-(len(newcomer.prompt.ids) - 1) // 8) + 1 >= 10  # a chunk a step, then the last token
    assert running.finished is None and tokens_while_prefilling == steps  # a token every step


def test_each_request_keeps_its_own_seed(engine):
    """A seeded request samples the same answer whatever runs beside it."""
    seeded = GenerationSettings(max_tokens=12, temperature=1.0, top_p=0.95, seed=11, prefill_step_size=8)
    conversations = questions(3)
    first, _, _ = batched(engine, conversations[:1], joins=[0], settings=seeded)
    again, _, _ = batched(engine, conversations, joins=[2, 0, 1], settings=seeded)
    assert again[0].token_ids == first[0].token_ids


def test_chunked_layers_hold_only_the_current_chunk(engine):
    settings = GenerationSettings(max_tokens=5, temperature=0.0, prefill_step_size=8)
    engine.reset_cache()
    list(engine.generate([ChatMessage("user", " ".join(["word"] * 40))], settings))
    held = engine.live_cache
    position = held.tokens
    for index, layer in enumerate(held.caches):
        if (index + 1) % 4 != 0:
            assert layer.start_position == (position // CHUNK) * CHUNK
            assert layer.offset - layer.start_position < CHUNK
        else:
            assert layer.offset == position


def test_regenerating_past_a_chunk_boundary_prefills_one_chunk_at_most(engine):
    """The answer crossed a chunk boundary, so the chunked layers no longer hold the prompt's
    last chunk: the cache is cut back to the boundary, not thrown away, and the answer is the same."""
    settings = GenerationSettings(max_tokens=3 * CHUNK, temperature=0.0, prefill_step_size=8)
    question = [ChatMessage("user", " ".join(["word"] * 12))]
    engine.reset_cache()
    first = list(engine.generate(question, settings))[-1]
    prompt = len(first.prompt_token_ids)
    assert (prompt + first.generation_tokens) // CHUNK > prompt // CHUNK  # crossed a boundary
    again = list(engine.generate(question, settings))[-1]
    assert again.cached_tokens == ((prompt - 1) // CHUNK) * CHUNK
    assert again.token_ids == first.token_ids


def test_a_saved_cache_holds_only_the_current_chunk_and_continues_the_same(engine, tmp_path):
    """A conversation several chunks long: the file's chunked layers hold the tokens since the
    last chunk boundary (a sliding window would hold a whole chunk), and a fresh engine that
    adopts it continues with the same greedy tokens as the engine that wrote it."""
    from models.inference.prompt_cache_files import load_cache_file, save_cache_file

    settings = GenerationSettings(max_tokens=10, temperature=0.0, prefill_step_size=8)
    question = [ChatMessage("user", " ".join(["word"] * 25))]
    engine.reset_cache()
    first = list(engine.generate(question, settings))[-1]
    snapshot = engine.snapshot_cache()
    tokens = snapshot.tokens
    assert tokens > 3 * CHUNK and tokens % CHUNK != 0
    held = tokens - (tokens // CHUNK) * CHUNK
    for index, layer in enumerate(snapshot.layers):
        kept = layer.state[0].shape[2]
        assert kept == (held if (index + 1) % 4 != 0 else tokens)
    chunked_bytes = sum(layer.nbytes for i, layer in enumerate(snapshot.layers) if (i + 1) % 4 != 0)
    sliding_bytes = chunked_bytes * CHUNK // held  # what a window of a whole chunk would hold
    assert chunked_bytes < sliding_bytes
    save_cache_file(tmp_path / "c.safetensors", snapshot, engine.identity)

    answer = ChatMessage("assistant", "", token_ids=first.token_ids)
    follow_up = [*question, answer, ChatMessage("user", "more")]
    here = list(engine.generate(follow_up, settings))[-1]
    restarted = Engine.load(engine.checkpoint.path)
    loaded = load_cache_file(tmp_path / "c.safetensors", restarted.identity, None, restarted.cache_layout)
    assert restarted.adopt_cache(loaded.snapshot)
    there = list(restarted.generate(follow_up, settings))[-1]
    assert there.cached_tokens == here.cached_tokens > 0
    assert there.token_ids == here.token_ids
