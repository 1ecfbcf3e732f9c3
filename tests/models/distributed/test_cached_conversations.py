"""Saved KV caches across the ranks of a pipeline answer as one machine does.

Conversation A is answered, then B (cancelled mid-answer), then C, then A again: A's saved cache
is restored on every rank, not on rank 0 alone while rank 1 still holds C's (which once gave
silently wrong answers). Then a restarted cluster (a new process) reopens A and B: every rank
restores its own layers from its own file (cached tokens as on one machine); and C, whose file
on rank 1 was removed: no rank restores, the answer is prefilled in full. Greedy tokens match one
machine's, answer for answer.
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


def _run(model, folder, phase: str, ranks: int = 2) -> list[dict]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", LLAMA_DESK_DATA_DIR=str(folder / "data"))
    argv = ["-m", "tests.models.distributed.run_cached_conversations", "--model", str(model)]
    argv += ["--ranks", str(ranks), "--folder", str(folder), "--phase", phase]
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
