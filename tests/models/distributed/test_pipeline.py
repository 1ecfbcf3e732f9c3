"""Pipeline parallelism on MLX's ring backend between local processes (127.0.0.1).

A synthesized 6-layer checkpoint answers the same four-turn conversation with two images on
1, 2 and 3 ranks: greedy tokens must be identical, and later turns reuse the KV cache on every
rank. On 3 ranks, rank 1 is killed during the fourth answer, which must end with an error naming
its host, keeping the tokens so far (each extra process costs seconds of imports on a busy
machine, so the kill shares the 3-rank run); in a second 2-rank run, rank 1 hangs (SIGSTOP)
instead, and rank 0's watchdog ends the answer. Each run is its own process (a process joins one
MLX ring); they run side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.synthetic_checkpoints import TinyShape, quantize_checkpoint, write_checkpoint

# Loading MLX in seven processes side by side takes minutes on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def six_layers(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    bf16 = write_checkpoint(root / "tiny-6-layers-bf16", TinyShape(layers=6), seed=3)
    return quantize_checkpoint(bf16, root / "tiny-6-layers-4bit", bits=4, group_size=64)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _popen(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env
    )


def _start(model, ranks: int, *extra: str) -> subprocess.Popen:
    module = "tests.models.distributed.run_conversation"
    return _popen("-m", module, "--model", str(model), "--ranks", str(ranks), *extra)


def _records(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-2000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


HANG_TIMEOUT_S = 6  # rank 0's watchdog in the hang run (30 s by default)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from tests.conftest import image_bytes

    path = tmp_path_factory.mktemp("photo") / "photo.png"
    path.write_bytes(image_bytes(112, 56))
    return path


@pytest.fixture(scope="module")
def runs(six_layers, photo):
    started = {
        1: _start(six_layers, 1),
        2: _start(six_layers, 2),
        3: _start(six_layers, 3, "--kill-rank", "1", "--kill-after", "4"),
        "hang": _start(
            six_layers, 2, "--stop-rank", "1", "--kill-after", "4", "--reply-timeout", str(HANG_TIMEOUT_S)
        ),
        "ask": _popen(
            *("-m", "desktop.cli", "ask", "--model", str(six_layers), "--ranks", "2", "--json"),
            *("--temperature", "0", "--max-tokens", "6", "--image", str(photo), "What is this?"),
        ),
    }
    return {key: _records(process) for key, process in started.items()}


def test_greedy_answers_are_identical_on_one_two_and_three_ranks(runs):
    single = runs[1]
    assert len(single) == 4 and all(r["finish_reason"] == "length" for r in single)
    assert all(len(r["tokens"]) == 12 for r in single)
    for ranks in (2, 3):
        turns = [r for r in runs[ranks] if "turn" in r][:3]  # on 3 ranks the 4th is cut short
        assert [r["tokens"] for r in turns] == [r["tokens"] for r in single[:3]]
        # Turns after the first reused the cache (on every rank, or they would differ).
        assert [r["cached_tokens"] for r in turns] == [r["cached_tokens"] for r in single[:3]]
        # (The third turn's prompt parts from the cache inside the second chunk: the chunked
        # layers hold only their current chunk, so every rank cuts back to the chunk's start.)
        assert turns[1]["cached_tokens"] > 0 and turns[2]["cached_tokens"] > 0


def test_two_ranks_answer_every_turn_and_report_their_peaks(runs):
    turns = [r for r in runs[2] if "turn" in r]
    assert [r["tokens"] for r in turns] == [r["tokens"] for r in runs[1]]
    (stats,) = [r for r in runs[2] if "peaks" in r]
    assert stats["split"] == [[0, 3], [3, 6]]
    assert all(p > 0 for p in stats["peaks"])


def test_a_killed_rank_ends_the_answer_naming_its_host(runs):
    turns = [r for r in runs[3] if "turn" in r]
    whole = runs[1]
    assert len(turns) == 4
    last = turns[3]
    assert last["finish_reason"] == "error"
    assert "Rank 1 on 127.0.0.1" in last["error"] and "signal 9" in last["error"]
    assert last["noticed_after_s"] < 5
    # The partial answer is kept: the tokens before the kill, as the whole answer began.
    assert 4 <= len(last["tokens"]) < 12
    assert last["tokens"] == whole[3]["tokens"][: len(last["tokens"])]
    (after,) = [r for r in runs[3] if "after_error" in r]
    assert "Rank 1 on 127.0.0.1" in after["after_error"] and after["after_s"] < 5


def test_a_hung_rank_ends_the_answer_after_the_timeout_naming_its_host(runs):
    """Rank 1 is stopped (SIGSTOP: alive, sockets open) during the fourth answer: rank 0's
    watchdog ends the answer after its timeout, names the host, keeps the tokens so far, and
    kills the ranks, so the engine refuses at once afterwards instead of hanging."""
    turns = [r for r in runs["hang"] if "turn" in r]
    whole = runs[1]
    assert len(turns) == 4
    # No false alarm while every rank answers.
    assert [r["tokens"] for r in turns[:3]] == [r["tokens"] for r in whole[:3]]
    last = turns[3]
    assert last["finish_reason"] == "error"
    assert f"Rank 1 on 127.0.0.1 stopped answering (no reply within {HANG_TIMEOUT_S} s)" in last["error"]
    assert HANG_TIMEOUT_S <= last["noticed_after_s"] < HANG_TIMEOUT_S + 15
    assert 4 <= len(last["tokens"]) < 12
    assert last["tokens"] == whole[3]["tokens"][: len(last["tokens"])]
    (after,) = [r for r in runs["hang"] if "after_error" in r]
    assert "Rank 1 on 127.0.0.1 stopped answering" in after["after_error"] and after["after_s"] < 5
    (exits,) = [r["exits"] for r in runs["hang"] if "exits" in r]
    assert exits == [-9]  # the stopped rank was ended, not left behind


def test_ask_with_two_ranks_answers_as_one_machine_does(runs, six_layers, photo):
    from models.inference.engine import Engine, GenerationSettings
    from models.inference.images import load_image_file
    from models.inference.prompt import ChatMessage

    (out,) = runs["ask"]
    assert out["ranks"] == 2 and out["finish_reason"] == "length"
    engine = Engine.load(six_layers)
    message = ChatMessage("user", "What is this?", (load_image_file(photo),))
    final = list(engine.generate([message], GenerationSettings(max_tokens=6, temperature=0.0)))[-1]
    assert out["token_ids"] == list(final.token_ids)


def test_ask_refuses_a_bad_host_file_in_one_line(tmp_path, six_layers):
    hosts = tmp_path / "hosts.json"
    hosts.write_text('[{"ssh": "mac-studio"}]')
    done = _popen("-m", "desktop.cli", "ask", "--model", str(six_layers), "--hosts", str(hosts), "Hi")
    out, err = done.communicate(timeout=120)
    assert done.returncode != 0 and out == ""
    assert err.strip().count("\n") == 0 and "mac-studio" in err and "ips" in err
