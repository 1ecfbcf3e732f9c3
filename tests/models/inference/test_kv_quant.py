"""KV-cache quantization through GenerationSettings.kv_bits, and the planner's account of it.

mlx-lm's ``maybe_quantize_kv_cache`` calls ``to_quantized`` on each cache that has it: mlx-vlm's
global-layer ``KVCache`` does, its ``ChunkedKVCache`` does not. These tests pin that behaviour
(the memory planner relies on it) and check the planner's cache bytes against the real caches.
"""

import mlx.core as mx
import pytest

from models.inference.engine import Engine, GenerationSettings
from models.inference.prompt import ChatMessage
from models.memory.planner import plan_model
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint

# head_dim 64 so keys and values can be quantized in groups of 64; 8 layers: 2 global.
SHAPE = TinyShape(
    hidden=128,
    layers=8,
    heads=4,
    kv_heads=2,
    head_dim=64,
    experts=2,
    expert_intermediate=64,
    dense_intermediate=128,
    chunk=64,
)
PROMPT = "The quick brown fox jumps over the lazy dog. " * 12


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = write_checkpoint(tmp_path_factory.mktemp("kvq") / "kvq-bf16", SHAPE, seed=1)
    return Engine.load(path)


def run(engine, kv_bits, max_tokens=6):
    engine.reset_cache()
    settings = GenerationSettings(
        max_tokens=max_tokens, temperature=0.0, kv_bits=kv_bits, prefill_step_size=32
    )
    steps = list(engine.generate([ChatMessage("user", PROMPT)], settings))
    final = steps[-1]
    assert final.finish_reason == "length", final.error
    return final


@pytest.mark.parametrize("bits", [8, 4])
def test_only_the_global_layers_are_quantized(engine, bits):
    from mlx_vlm.models.cache import QuantizedKVCache

    from models.inference.chunk_cache import current_chunk_cache_class

    chunked = current_chunk_cache_class()
    final = run(engine, bits)
    kinds = [type(c) for c in engine.cache_layers]
    assert kinds == [chunked, chunked, chunked, QuantizedKVCache] * 2
    assert all(c.bits == bits for c in engine.cache_layers if isinstance(c, QuantizedKVCache))
    written = final.prompt_tokens + final.generation_tokens
    assert engine.cache_layers[3].offset in (written - 1, written)  # mlx-lm computes one token ahead
    assert final.prompt_tokens > SHAPE.chunk  # the chunked caches were trimmed


def test_planner_counts_the_caches_mlx_allocates(engine):
    for bits in (None, 8, 4):
        final = run(engine, bits)
        tokens = engine.cache_layers[3].offset
        plan = plan_model(engine.checkpoint.path, kv_bits=bits, backend="cpu")
        actual = sum(c.nbytes for c in engine.cache_layers)
        predicted = plan.kv_cache_held_bytes(tokens)
        assert predicted == pytest.approx(actual, rel=0.15), (bits, final.prompt_tokens)
        assert plan.kv_cache_bytes(tokens) >= actual  # what must fit: a full chunk at most
        global_actual = engine.cache_layers[3].nbytes + engine.cache_layers[7].nbytes
        per_token = plan.kv_bytes_per_token
        assert global_actual / (-(-tokens // 256) * 256) == pytest.approx(per_token, rel=0.01)


def test_quantized_cache_is_smaller_and_answers_stay_close(engine):
    sizes = {}
    answers = {}
    for bits in (None, 8, 4):
        final = run(engine, bits, max_tokens=4)
        sizes[bits] = engine.cache_layers[3].nbytes
        answers[bits] = final.token_ids
    assert sizes[8] < sizes[None] / 3  # float32 on the CPU -> 8 bits + scales
    assert sizes[4] < sizes[8]
    # 8-bit keys and values barely move the logits: the greedy answers agree but for at most one
    # token (random weights leave near-ties that 8-bit rounding can flip, as at this seed).
    assert sum(a == b for a, b in zip(answers[8], answers[None], strict=True)) >= 3


def test_changing_kv_bits_starts_a_fresh_cache(engine):
    from mlx_vlm.models.cache import KVCache, QuantizedKVCache

    run(engine, 8)
    assert isinstance(engine.cache_layers[3], QuantizedKVCache)
    settings = GenerationSettings(max_tokens=2, temperature=0.0)
    final = list(engine.generate([ChatMessage("user", PROMPT)], settings))[-1]
    assert final.cached_tokens == 0  # the 8-bit cache was not reused for an unquantized turn
    assert type(engine.cache_layers[3]) is KVCache
    mx.clear_cache()
