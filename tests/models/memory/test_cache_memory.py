"""The planner's account of a KV cache loaded from disk, against the caches MLX really holds."""

import pytest

from models.inference.engine import Engine, GenerationSettings
from models.inference.prompt import ChatMessage
from models.inference.prompt_cache_files import load_cache_file, save_cache_file
from models.memory.cache_memory import loaded_cache_bytes, restore_peak_bytes, restored_turn_check
from models.memory.planner import conversation_budget_check, plan_model
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint

SHAPE = TinyShape(hidden=128, layers=8, heads=4, kv_heads=2, head_dim=64, dense_intermediate=128, chunk=64)


@pytest.mark.parametrize("kv_bits", [None, 8])
def test_loaded_cache_bytes_match_the_loaded_cache(tmp_path, kv_bits):
    path = write_checkpoint(tmp_path / "mem-bf16", SHAPE, seed=1)
    engine = Engine.load(path)
    settings = GenerationSettings(max_tokens=6, temperature=0.0, kv_bits=kv_bits, prefill_step_size=64)
    list(engine.generate([ChatMessage("user", "The quick brown fox jumps. " * 20)], settings))
    snapshot = engine.snapshot_cache()
    save_cache_file(tmp_path / "c.safetensors", snapshot, engine.identity)
    fresh = Engine.load(path)
    kv = (kv_bits, 64) if kv_bits else None
    assert fresh.adopt_cache(
        load_cache_file(tmp_path / "c.safetensors", fresh.identity, kv, fresh.cache_layout).snapshot
    )
    actual = sum(c.nbytes for c in fresh._cache)
    plan = plan_model(path, kv_bits=kv_bits, backend="cpu")
    assert snapshot.tokens > SHAPE.chunk
    assert loaded_cache_bytes(plan, snapshot.tokens) == pytest.approx(actual, rel=0.05)
    # Loaded at exact length: no more than a prefilled cache of as many tokens.
    assert loaded_cache_bytes(plan, snapshot.tokens) <= plan.kv_cache_bytes(snapshot.tokens)


def test_restore_peak_and_turn_check(checkpoints):
    plan = plan_model(checkpoints["4bit"], backend="cpu")
    assert restore_peak_bytes(plan, 0) == plan.weights.total
    assert restore_peak_bytes(plan, 500, held_tokens=300) > restore_peak_bytes(plan, 500)
    budget = 10**10
    assert restored_turn_check(plan, 500, 40, budget) == conversation_budget_check(plan, 500, 40, budget)
