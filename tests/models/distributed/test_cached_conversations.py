"""Saved KV caches across the ranks of a pipeline answer as one machine does.

Conversation A is answered, then B (cancelled mid-answer), then C, then A again: A's saved cache
is restored on every rank, not on rank 0 alone while rank 1 still holds C's (which once gave
silently wrong answers). Then a restarted cluster (a new process) reopens A and B: every rank
restores its own layers from its own file (cached tokens as on one machine); and C, whose file
on rank 1 was removed: no rank restores, the answer is prefilled in full. Greedy tokens match one
machine's, answer for answer.

With an 8-bit KV cache (each rank holding one quantized global layer), two turns of one
conversation (the second reusing the cache in memory) and, after a restart, a third from the
saved caches answer as one machine does, each rank's file holding its layers' 8-bit cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.models.distributed.run_cached_conversations import C, converse
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipecache") / "tiny-4-layers"
    return write_checkpoint(folder, TinyShape(layers=4), seed=5)


def _run(model, folder, phase: str, ranks: int = 2, kv_bits: int | None = None) -> list[dict]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", LLAMA_DESK_DATA_DIR=str(folder / "data"))
    argv = ["-m", "tests.models.distributed.run_cached_conversations", "--model", str(model)]
    argv += ["--ranks", str(ranks), "--folder", str(folder), "--phase", phase]
    argv += ["--kv-bits", str(kv_bits)] if kv_bits else []
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _by_answer(records: list[dict]) -> dict[str, dict]:
    return {r["answer"]: r for r in records}


@pytest.fixture(scope="module")
def single(model, tmp_path_factory):
    """One machine: the same phases in this process, a new engine for the reopen."""
    from models.inference.engine import Engine

    folder = tmp_path_factory.mktemp("single")
    records = converse(Engine.load(model), folder, "switch")
    return _by_answer(records + converse(Engine.load(model), folder, "reopen"))


@pytest.fixture(scope="module")
def pipeline(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    records = _run(model, folder, "switch")
    rank_files = sorted((folder / "data").rglob("*.safetensors"))
    (c_file,) = [f for f in rank_files if f.name == f"{C}.safetensors"]
    c_file.unlink()
    return _by_answer(records + _run(model, folder, "reopen")), rank_files


def test_answers_across_ranks_match_one_machine_after_switching_conversations(single, pipeline):
    records, _ = pipeline
    assert list(records) == ["A1", "B1", "C1", "A2", "A3", "B2", "C2"]
    assert records["B1"]["finish_reason"] == "cancelled" and len(records["B1"]["tokens"]) == 3
    for name, record in records.items():
        assert record["error"] is None, record
        assert record["tokens"] == single[name]["tokens"], name
        if name != "C2":
            assert record["cached_tokens"] == single[name]["cached_tokens"], name


def test_every_rank_restores_its_own_saved_cache(single, pipeline):
    records, rank_files = pipeline
    # A2 after C, then A3 and B2 (after a cancelled answer) in a restarted cluster.
    for name in ("A2", "A3", "B2"):
        assert records[name]["restored"] == "loaded" and records[name]["cached_tokens"] > 0, name
    assert records["A3"]["cached_tokens"] > records["A2"]["cached_tokens"]
    # Rank 1 kept its layers' caches in its own folder, one file per conversation.
    assert {f.parent.name for f in rank_files} == {"layers-2-4"}
    assert sorted(f.name for f in rank_files) == ["1.safetensors", "2.safetensors", "3.safetensors"]


def test_a_rank_without_its_file_makes_every_rank_prefill(single, pipeline):
    records, _ = pipeline
    assert single["C2"]["cached_tokens"] > 0
    assert records["C2"]["restored"] != "loaded" and records["C2"]["cached_tokens"] == 0


# head_dim 64: keys and values quantize in groups of 64; 8 layers: layers 3 and 7 are global
# (quantized), one on each of two ranks.
KV_SHAPE = TinyShape(hidden=128, layers=8, head_dim=64, experts=2, dense_intermediate=128)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """The 8-bit answers on one machine and on two ranks (restarted between the phases), and
    rank 1's saved files."""
    from models.inference.engine import Engine

    model = write_checkpoint(tmp_path_factory.mktemp("kvranks") / "tiny-8-layers", KV_SHAPE, seed=7)
    one = tmp_path_factory.mktemp("kv-single")
    single = converse(Engine.load(model), one, "turns", 8)
    single += converse(Engine.load(model), one, "resume", 8)
    two = tmp_path_factory.mktemp("kv-pipeline")
    records = _run(model, two, "turns", kv_bits=8) + _run(model, two, "resume", kv_bits=8)
    return _by_answer(single), _by_answer(records), sorted((two / "data").rglob("*.safetensors"))


def test_an_8_bit_cache_is_reused_and_restored_across_ranks_as_on_one_machine(quantized):
    from mlx_lm.models.cache import ChunkedKVCache, QuantizedKVCache, load_prompt_cache

    single, records, rank_files = quantized
    assert list(records) == ["A1", "A2", "A3"]
    for name, record in records.items():
        assert record["error"] is None, record
        assert record["tokens"] == single[name]["tokens"], name
        assert record["cached_tokens"] == single[name]["cached_tokens"], name
    assert records["A2"]["cached_tokens"] > 0  # reused in memory on every rank
    assert records["A3"]["restored"] == "loaded"  # after the restart, on every rank
    assert records["A3"]["cached_tokens"] > records["A2"]["cached_tokens"]
    (rank_file,) = rank_files
    assert rank_file.parent.name == "layers-4-8"
    layers, metadata = load_prompt_cache(str(rank_file), return_metadata=True)
    assert metadata["kv"] == "8:64"
    assert [type(c) for c in layers] == [ChunkedKVCache] * 3 + [QuantizedKVCache]  # layers 4..7
    assert layers[3].bits == 8 and layers[3].group_size == 64
