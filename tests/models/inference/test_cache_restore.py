"""A KV cache saved to disk and loaded by a fresh engine answers exactly as a cold prefill does.

The conversation has two images and more tokens than one attention chunk (64 in the synthesized
checkpoints), so the chunked layers' caches have dropped their fronts when they are saved; the
restored start positions and offsets must be exact for the greedy answers to agree token for
token. Also after an edit (the restored cache is trimmed), and with the KV cache in 8 bits.
"""

import pytest

from models.inference.engine import Engine, GenerationSettings
from models.inference.images import load_image_bytes
from models.inference.prompt import ChatMessage
from models.inference.prompt_cache_files import LoadOutcome, load_cache_file, save_cache_file
from tests.conftest import image_bytes
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint

CHUNK = 64
KV8_SHAPE = TinyShape(hidden=128, layers=4, heads=4, kv_heads=2, head_dim=64, dense_intermediate=128)


def photo(width, height, color):
    return load_image_bytes(image_bytes(width, height, "PNG", color), f"{width}x{height}-{color}.png")


def answer(engine, messages, settings):
    final = list(engine.generate(messages, settings))[-1]
    assert final.finish_reason in ("length", "stop"), final.error
    return final


def conversation(engine, settings):
    """Two turns with one image each; returns the history (ending on the second answer)."""
    q1 = ChatMessage("user", "What is in this picture? Tell me in detail.", (photo(112, 56, (200, 30, 30)),))
    a1 = answer(engine, [q1], settings)
    h1 = [q1, ChatMessage("assistant", "", token_ids=a1.token_ids)]
    q2 = ChatMessage("user", "And this one, taller?", (photo(56, 112, (20, 20, 220)),))
    a2 = answer(engine, h1 + [q2], settings)
    return h1 + [q2, ChatMessage("assistant", "", token_ids=a2.token_ids)]


def restored_and_cold(path, folder, settings, next_turn):
    """Answer ``next_turn`` with a fresh engine from the saved cache, then with a cold one."""
    restarted = Engine.load(path)
    loaded = load_cache_file(
        folder / "c.safetensors", restarted.identity, _kv(settings), restarted.cache_layout
    )
    assert loaded.outcome is LoadOutcome.LOADED
    assert restarted.adopt_cache(loaded.snapshot)
    warm = answer(restarted, next_turn, settings)
    cold_engine = Engine.load(path)
    cold = answer(cold_engine, next_turn, settings)
    assert cold.cached_tokens == 0
    return warm, cold, loaded.snapshot


def _kv(settings):
    return (settings.kv_bits, settings.kv_group_size) if settings.kv_bits else None


@pytest.mark.parametrize("kv_bits", [None, 8])
def test_answer_from_a_saved_cache_equals_a_cold_prefill(tmp_path, kv_bits):
    path = write_checkpoint(tmp_path / "kv-restore-bf16", KV8_SHAPE, seed=3)
    settings = GenerationSettings(max_tokens=12, temperature=0.0, prefill_step_size=32, kv_bits=kv_bits)
    engine = Engine.load(path)
    history = conversation(engine, settings)
    snapshot = engine.snapshot_cache()
    assert snapshot.tokens > 2 * CHUNK
    chunked = [layer for layer in snapshot.layers if hasattr(layer, "chunk_size")]
    assert chunked and all(layer.start_position > 0 for layer in chunked)  # fronts dropped
    assert save_cache_file(tmp_path / "c.safetensors", snapshot, engine.identity).bytes > 0

    next_turn = history + [ChatMessage("user", "Compare the two pictures.")]
    warm, cold, restored = restored_and_cold(path, tmp_path, settings, next_turn)
    assert restored.keys == snapshot.keys
    assert warm.cached_tokens == snapshot.tokens
    assert warm.prompt_tokens == len(warm.prompt_token_ids) - snapshot.tokens
    assert warm.token_ids == cold.token_ids

    # Regenerating the second answer: the restored cache is trimmed back to its question.
    save_cache_file(tmp_path / "c.safetensors", snapshot, engine.identity)
    warm, cold, _ = restored_and_cold(path, tmp_path, settings, history[:3])
    assert 0 < warm.cached_tokens < snapshot.tokens
    assert warm.token_ids == cold.token_ids

    # An edit of the second question: trimmed as the in-memory cache would be.
    save_cache_file(tmp_path / "c.safetensors", snapshot, engine.identity)
    edited = history[:2] + [ChatMessage("user", "And this one, wider?", history[2].images)]
    warm, cold, _ = restored_and_cold(path, tmp_path, settings, edited)
    assert warm.token_ids == cold.token_ids
    in_memory = answer(engine, edited, settings)
    assert warm.cached_tokens == in_memory.cached_tokens
    assert warm.token_ids == in_memory.token_ids


def test_restored_chunked_layers_keep_their_positions(tmp_path):
    from mlx_vlm.models.cache import ChunkedKVCache, KVCache

    path = write_checkpoint(tmp_path / "kv-positions-bf16", KV8_SHAPE, seed=4)
    engine = Engine.load(path)
    settings = GenerationSettings(max_tokens=8, temperature=0.0, prefill_step_size=32)
    conversation(engine, settings)
    before = [(type(c), c.offset, getattr(c, "start_position", 0)) for c in engine.cache_layers]
    live = [c.keys[..., : c.offset - getattr(c, "start_position", 0), :] for c in engine.cache_layers]
    save_cache_file(tmp_path / "c.safetensors", engine.snapshot_cache(), engine.identity)

    fresh = Engine.load(path)
    loaded = load_cache_file(tmp_path / "c.safetensors", fresh.identity, None, fresh.cache_layout)
    assert fresh.adopt_cache(loaded.snapshot)
    after = [(type(c), c.offset, getattr(c, "start_position", 0)) for c in fresh.cache_layers]
    assert after == before
    assert {t.__mro__[1] if t is not KVCache else t for t, _, _ in after} == {ChunkedKVCache, KVCache}
    import mlx.core as mx

    for cache, keys in zip(fresh.cache_layers, live, strict=True):
        assert mx.array_equal(cache.keys, keys)
