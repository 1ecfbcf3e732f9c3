"""A saved KV cache that lies is never used: the file is deleted and the turn prefilled in full.

Each case saves a conversation's first turn as the app does (``ConversationCaches.keep``), makes
the file lie (other data under the same metadata, a flipped bit, layers holding more or fewer
positions than the conversation has tokens, a metadata bomb, a header claiming 128 GB, a file
from before the checksum), reopens the conversation with the engine's cache emptied, and checks
that the file is gone and the next answer is token for token the answer without any cache.
"""

import mlx.core as mx
import pytest

from models.inference.conversation_caches import ConversationCaches
from models.inference.engine import GenerationSettings
from models.inference.prompt import ChatMessage
from models.inference.prompt_cache_files import LoadOutcome, save_cache_file
from models.inference.prompt_cache_keeper import PromptCacheKeeper
from tests.support.hostile_files import memory_cap
from tests.support.tampered_caches import (
    flip_a_bit,
    read_header,
    replace_tensor_data,
    rewrite_header,
    spy_on_tensor_reads,
    spy_on_tree_unflatten,
)

GREEDY = GenerationSettings(max_tokens=6, temperature=0.0)
FIRST = [ChatMessage("user", "Tell me about the harbour: the boats, the gulls and the evening light.")]


def turn(engine, messages):
    final = list(engine.generate(messages, GREEDY))[-1]
    assert final.finish_reason in ("stop", "length"), final.error
    return final


def then(messages, final, question):
    return messages + [ChatMessage("assistant", "", token_ids=final.token_ids), ChatMessage("user", question)]


@pytest.fixture
def saved(engine_4bit, tmp_path):
    """The first turn's cache saved in ``tmp_path``; (its file, the next turn, its cold answer)."""
    engine = engine_4bit
    engine.reset_cache()
    caches = ConversationCaches(PromptCacheKeeper(tmp_path))
    first = turn(engine, FIRST)
    caches.keep(engine, 1, first).result()
    second = then(FIRST, first, "And the birds?")
    engine.reset_cache()
    cold = turn(engine, second)
    assert cold.cached_tokens == 0
    path = tmp_path / "1.safetensors"
    assert path.is_file()
    return path, second, cold


def reopen(engine, folder):
    """Open conversation 1 as the window does after a restart (nothing in the engine's cache)."""
    engine.reset_cache()
    return ConversationCaches(PromptCacheKeeper(folder)).open(engine, 1, GREEDY)


def assert_refused_and_prefilled(engine, path, second, cold, outcome):
    assert outcome is LoadOutcome.UNREADABLE
    assert not path.exists()
    warm = turn(engine, second)
    assert warm.cached_tokens == 0  # prefilled in full
    assert warm.token_ids == cold.token_ids


def test_an_honest_file_is_used(engine_4bit, saved):
    path, second, cold = saved
    assert reopen(engine_4bit, path.parent) is LoadOutcome.LOADED
    warm = turn(engine_4bit, second)
    assert warm.cached_tokens > 0 and warm.token_ids == cold.token_ids


def test_other_data_under_the_same_metadata_is_refused(engine_4bit, saved):
    path, second, cold = saved
    replace_tensor_data(path)
    outcome = reopen(engine_4bit, path.parent)
    assert_refused_and_prefilled(engine_4bit, path, second, cold, outcome)


def test_a_flipped_bit_is_refused(engine_4bit, saved):
    path, second, cold = saved
    flip_a_bit(path)
    outcome = reopen(engine_4bit, path.parent)
    assert_refused_and_prefilled(engine_4bit, path, second, cold, outcome)


def _resized(layer, positions: int):
    """A copy of an mlx-lm ``KVCache`` layer whose keys and values hold ``positions`` positions
    (cut, or padded with zeros) while its offset still says the conversation's length."""
    from mlx_lm.models.cache import KVCache

    keys, values, offset = layer.state

    def fit(x):
        if positions <= x.shape[2]:
            return mx.contiguous(x[..., :positions, :])
        pad = mx.zeros((*x.shape[:2], positions - x.shape[2], x.shape[3]), dtype=x.dtype)
        return mx.concatenate([x, pad], axis=2)

    out = KVCache.__new__(KVCache)
    out.state = (fit(keys), fit(values), offset)
    mx.eval(out.state[:2])
    return out


@pytest.mark.parametrize("positions", [300, 47, 30])
def test_layers_holding_other_than_the_conversations_positions_are_refused(
    engine_4bit, saved, monkeypatch, positions
):
    from mlx_lm.models.cache import KVCache

    path, second, cold = saved
    engine = engine_4bit
    assert reopen(engine, path.parent) is LoadOutcome.LOADED
    snapshot = engine.snapshot_cache()
    assert snapshot.tokens not in (300, 47, 30)
    layers = list(snapshot.layers)
    for i, layer in enumerate(layers):
        if type(layer) is KVCache:  # the global layers: they must hold every position
            layers[i] = _resized(layer, positions)
    lying = type(snapshot)(tuple(layers), snapshot.keys, snapshot.kv)
    save_cache_file(path, lying, engine.identity)  # consistent in itself: only the shapes lie

    reads = spy_on_tensor_reads(monkeypatch)
    outcome = reopen(engine, path.parent)
    assert reads.calls == 0  # refused from the header, before any tensor was read
    monkeypatch.undo()
    assert_refused_and_prefilled(engine, path, second, cold, outcome)
    third = then(second, cold, "Which of them fly furthest?")
    later = turn(engine, third)
    engine.reset_cache()
    assert later.token_ids == turn(engine, third).token_ids


def test_a_metadata_bomb_is_refused_without_unflattening(engine_4bit, saved, monkeypatch):
    path, second, cold = saved
    header, _ = read_header(path)
    header["__metadata__"]["2.100000000.0"] = "0.2"  # tree_unflatten: a list of 10**8 entries
    header["__metadata__"]["1.99999999"] = "KVCache"
    rewrite_header(path, header)
    unflatten = spy_on_tree_unflatten(monkeypatch)
    reads = spy_on_tensor_reads(monkeypatch)
    with memory_cap(1024**3):
        outcome = reopen(engine_4bit, path.parent)
    assert unflatten.calls == 0 and reads.calls == 0
    monkeypatch.undo()
    assert_refused_and_prefilled(engine_4bit, path, second, cold, outcome)


def test_a_header_claiming_128_gb_is_refused_without_reading(engine_4bit, saved, monkeypatch):
    path, second, cold = saved
    header, start = read_header(path)
    data = path.read_bytes()[start:]
    name = next(n for n, e in header.items() if n != "__metadata__" and len(e["shape"]) == 4)
    entry = header[name]
    itemsize = 4 if entry["dtype"] in ("F32", "U32") else 2
    per_position = entry["shape"][1] * entry["shape"][3] * itemsize
    positions = 128 * 1024**3 // per_position
    entry["shape"][2] = positions
    entry["data_offsets"] = [len(data), len(data) + positions * per_position]
    rewrite_header(path, header, data)
    with open(path, "r+b") as handle:  # a sparse file as long as the header says
        handle.truncate(read_header(path)[1] + entry["data_offsets"][1])
    reads = spy_on_tensor_reads(monkeypatch, refuse=True)
    outcome = reopen(engine_4bit, path.parent)
    assert reads.calls == 0
    monkeypatch.undo()
    assert_refused_and_prefilled(engine_4bit, path, second, cold, outcome)


def test_a_file_from_before_the_checksum_is_treated_as_damaged(engine_4bit, saved):
    """Version 1 files (mlx-lm's ``save_prompt_cache``, no checksum) cannot be told from damaged
    ones: deleted, and the turn prefilled in full."""
    import json

    from mlx_lm.models.cache import save_prompt_cache

    path, second, cold = saved
    engine = engine_4bit
    assert reopen(engine, path.parent) is LoadOutcome.LOADED
    snapshot = engine.snapshot_cache()
    metadata = {
        "format_version": "1",
        "model_name": engine.identity.name,
        "model_digest": engine.identity.digest,
        "kv": "none",
        "tokens": str(snapshot.tokens),
        "keys": json.dumps(list(snapshot.keys), separators=(",", ":")),
    }
    save_prompt_cache(str(path), list(snapshot.layers), metadata)
    outcome = reopen(engine, path.parent)
    assert_refused_and_prefilled(engine, path, second, cold, outcome)
