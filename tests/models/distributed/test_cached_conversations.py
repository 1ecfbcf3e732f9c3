"""Saved KV caches across the ranks of a pipeline answer as one machine does.

Conversation A is answered, then B (longer), then A again: A's saved cache is restored on every
rank, not on rank 0 alone while rank 1 still holds B's (which once gave silently wrong answers).
Then a restarted cluster (a new process) reopens A: every rank restores its own layers from its
own file (cached tokens > 0), and the greedy tokens match one machine's, turn for turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.models.distributed.run_cached_conversations import converse
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


@pytest.fixture(scope="module")
def single(model, tmp_path_factory):
    """One machine: the same phases in this process, a new engine for the reopen."""
    from models.inference.engine import Engine

    folder = tmp_path_factory.mktemp("single")
    records = converse(Engine.load(model), folder, "switch")
    return records + converse(Engine.load(model), folder, "reopen")


@pytest.fixture(scope="module")
def pipeline(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    return _run(model, folder, "switch") + _run(model, folder, "reopen"), folder


def test_reopening_a_conversation_answers_as_one_machine(single, pipeline):
    records, _ = pipeline
    assert all(r["finish_reason"] == "length" for r in records + single), records
    assert [r["tokens"] for r in records] == [r["tokens"] for r in single]
    assert [r["cached_tokens"] for r in records] == [r["cached_tokens"] for r in single]


def test_a_restarted_cluster_restores_every_ranks_cache(single, pipeline):
    records, folder = pipeline
    again, reopened = records[2], records[3]
    assert again["restored"] == "loaded" and again["cached_tokens"] > 0
    assert reopened["restored"] == "loaded" and reopened["cached_tokens"] > again["cached_tokens"]
    # Rank 1 kept its own layers' caches in its own folder.
    assert list((folder / "data").rglob("*.safetensors"))
