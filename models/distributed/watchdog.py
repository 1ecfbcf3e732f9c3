"""Rank 0's watchdog: a rank that hangs (alive but silent) must not hang the app.

A rank that dies closes its sockets and MLX's ``recv`` fails at once (``launcher.Cluster`` then
names it). A rank that hangs (stopped, stuck in a driver, a frozen Mac behind a live link) keeps
them open, and rank 0 would wait in ``recv`` forever. ``ReplyWatchdog`` wraps each exchange: when
no reply came within ``timeout_s`` while every rank's process is still alive, it records a
message naming the host and kills the ranks' processes, which closes their sockets, so the
blocked ``recv`` fails and the answer ends with that message (its partial text kept).

Which rank hangs: a local rank whose process is stopped (``/proc/PID/stat`` state ``T``) or,
with two ranks, the only other one; otherwise the message lists every other host.
``LLAMA_DESK_RANK_TIMEOUT_S`` sets the default timeout (30 s). It times replies only: loading
ends with a round trip through every rank, unwatched, so a rank still reading its layers is
not taken for a hung one.
"""

from __future__ import annotations

import os
import threading

DEFAULT_TIMEOUT_S = 30.0


def default_timeout_s() -> float:
    """``LLAMA_DESK_RANK_TIMEOUT_S`` when it is a positive number, else 30 s."""
    try:
        value = float(os.environ.get("LLAMA_DESK_RANK_TIMEOUT_S", ""))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def _stopped(pid: int) -> bool:
    """Whether the local process ``pid`` is stopped (Linux ``/proc``; False where unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (OSError, IndexError):
        return False


def describe_hang(cluster, timeout_s: float) -> str:
    """One line naming the rank that does not answer (see the module docstring)."""
    hosts = cluster.hosts.hosts
    suspects = [r for r, p in cluster.processes.items() if hosts[r].is_local and _stopped(p.pid)]
    if not suspects and cluster.size == 2:
        suspects = [1]
    waited = f"no reply within {timeout_s:g} s"
    if len(suspects) == 1:
        rank = suspects[0]
        return f"Rank {rank} on {hosts[rank].label} stopped answering ({waited}); the ranks were stopped."
    others = ", ".join(f"rank {r} on {hosts[r].label}" for r in range(1, cluster.size))
    return f"A rank of the cluster stopped answering ({waited}: one of {others}); the ranks were stopped."


class ReplyWatchdog:
    """``with ReplyWatchdog(cluster, timeout_s) as dog: exchange()``; ``dog.message`` is set when
    it fired (and the ranks were killed). ``timeout_s`` None: it never fires."""

    def __init__(self, cluster, timeout_s: float | None):
        self.cluster = cluster
        self.timeout_s = timeout_s
        self.message: str | None = None
        self._timer = threading.Timer(timeout_s or 0.0, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> ReplyWatchdog:
        if self.timeout_s is not None:
            self._timer.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        processes = list(self.cluster.processes.values())
        if not processes or any(p.poll() is not None for p in processes):
            return  # a rank exited: the failed recv names it (launcher.Cluster.describe_failure)
        self.message = describe_hang(self.cluster, self.timeout_s or 0.0)
        for process in processes:
            process.kill()
