"""Rank 0's watchdog without MLX: processes stand in for ranks, one stopped (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import subprocess
from types import SimpleNamespace

import pytest

from models.distributed.hosts import host_file_from_json, local_hosts
from models.distributed.watchdog import DEFAULT_TIMEOUT_S, ReplyWatchdog, default_timeout_s


def _ranks(n: int) -> dict[int, subprocess.Popen]:
    return {rank: subprocess.Popen(["sleep", "60"]) for rank in range(1, n)}


@pytest.fixture
def ranks():
    started: dict[int, subprocess.Popen] = {}
    yield started
    for process in started.values():
        process.kill()
        process.wait()


def test_the_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("LLAMA_DESK_RANK_TIMEOUT_S", raising=False)
    assert default_timeout_s() == DEFAULT_TIMEOUT_S == 30.0
    for value, expected in (("2.5", 2.5), ("0", 30.0), ("soon", 30.0)):
        monkeypatch.setenv("LLAMA_DESK_RANK_TIMEOUT_S", value)
        assert default_timeout_s() == expected


def test_a_stopped_local_rank_is_named_and_every_rank_is_ended(ranks):
    ranks.update(_ranks(3))
    os.kill(ranks[2].pid, signal.SIGSTOP)
    cluster = SimpleNamespace(hosts=local_hosts(3), processes=ranks, size=3)
    with ReplyWatchdog(cluster, 0.2) as watchdog:
        code = ranks[1].wait(10)  # stands for rank 0's blocked recv, which fails once ranks end
    assert watchdog.message == (
        "Rank 2 on 127.0.0.1 stopped answering (no reply within 0.2 s); the ranks were stopped."
    )
    assert code == -signal.SIGKILL and ranks[2].wait(10) == -signal.SIGKILL


def test_remote_ranks_are_all_listed_when_the_silent_one_is_unknown(ranks):
    ranks.update(_ranks(3))
    hosts = host_file_from_json([{"ssh": f"mac-{c}", "ips": [f"10.0.0.{i}"]} for i, c in enumerate("abc")])
    with ReplyWatchdog(SimpleNamespace(hosts=hosts, processes=ranks, size=3), 0.1) as watchdog:
        ranks[1].wait(10)
    assert watchdog.message == (
        "A rank of the cluster stopped answering (no reply within 0.1 s: one of rank 1 on "
        "mac-b (10.0.0.1), rank 2 on mac-c (10.0.0.2)); the ranks were stopped."
    )


def test_a_reply_in_time_or_a_rank_that_exited_leaves_the_ranks_alone(ranks):
    ranks.update(_ranks(3))
    cluster = SimpleNamespace(hosts=local_hosts(3), processes=ranks, size=3)
    with ReplyWatchdog(cluster, 30) as watchdog:
        pass  # the reply came
    ranks[2].kill()
    ranks[2].wait()
    with ReplyWatchdog(cluster, 0.05) as late:
        late._timer.join(10)  # it fired: a rank had exited, so the failed recv names that one
    assert watchdog.message is None and late.message is None and ranks[1].poll() is None
