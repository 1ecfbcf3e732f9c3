"""Start the other ranks of a cluster and watch them; name the host of a rank that stops.

This process (the window or ``ask``) is rank 0. Ranks 1..N-1 run ``python -m
models.distributed.worker`` started with ``mlx.launch``'s own launch script
(``RemoteProcess.make_launch_script``: ``MLX_RANK``, the ring's ``MLX_HOSTFILE``, the same
Python and folder), locally for 127.0.0.1 and over ``ssh`` for any other host, exactly as
``mlx.launch --backend ring --hostfile HOSTS.json`` would start them. Then this process joins the
ring as rank 0 (``mx.distributed.init(backend="ring")``). A thread records when each rank's
process exits, so a lost connection can be blamed on the rank that stopped first.

MLX's ``init`` holds the GIL while it waits for the other ranks to connect, so nothing in this
process (not even the window) runs until they do. Rank 0 therefore joins only once every rank
has said it is about to (``READY_LINE`` in its log); a rank that exits first (another version,
a missing folder) or never says so within ``START_TIMEOUT_S`` (an unreachable host) fails the
start with its host named, instead of hanging in ``init``.

MLX initializes its distributed group once per process: a process joins one cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from models.distributed.hosts import HostFile, free_port, ring_hostfile

if TYPE_CHECKING:
    import mlx.core as mx

RING_PORT = 32323  # mlx.launch's default starting port, for hosts other than this one
PEER_LOST_EXIT = 75  # a worker whose neighbour went away exits with this code
READY_LINE = "llama-desk rank: joining the ring"  # a worker prints it just before joining
START_TIMEOUT_S = 60.0  # for every rank to start (ssh, Python, MLX) and say it is joining


class ClusterError(RuntimeError):
    """The cluster could not start, or a rank stopped; the message names the host."""


@dataclass(frozen=True)
class RankExit:
    rank: int
    code: int
    at: float  # time.monotonic() when it was seen


_joined = threading.Event()  # MLX's distributed group is set up once per process


class Cluster:
    """Ranks 1..N-1 started for one model; this process is rank 0."""

    def __init__(self, hosts: HostFile, processes: dict[int, subprocess.Popen], log_dir: str):
        self.hosts = hosts
        self.processes = processes
        self.log_dir = log_dir
        self.group: mx.distributed.Group | None = None
        self._exits: dict[int, RankExit] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._watch = threading.Thread(target=self._watch_exits, name="rank-watch", daemon=True)
        self._watch.start()

    @property
    def size(self) -> int:
        return self.hosts.size

    @classmethod
    def start(cls, hosts: HostFile, worker_args: list[list[str]]) -> Cluster:
        """Start rank r (r >= 1) with ``python -m models.distributed.worker *worker_args[r]``."""
        from mlx._distributed_utils.launch import RemoteProcess

        if _joined.is_set():
            raise ClusterError(
                "This process has already joined a cluster (MLX sets up its ring once per "
                "process); restart Llama Desk to open another model across the cluster."
            )
        ports = [free_port() if h.is_local else RING_PORT + r for r, h in enumerate(hosts.hosts)]
        hostfile = ring_hostfile(hosts, ports)
        log_dir = tempfile.mkdtemp(prefix="llama-desk-ranks-")
        env = list(hosts.envs)
        processes = {}
        for rank in range(1, hosts.size):
            host = hosts.hosts[rank]
            command = ["-m", "models.distributed.worker", *worker_args[rank]]
            script = RemoteProcess.make_launch_script(
                rank, sys.executable, os.getcwd(), {"MLX_HOSTFILE": hostfile}, env, command, host.is_local
            )
            argv = ["bash", "-c", script]
            if not host.is_local:
                # "--": the destination (checked by the host file) can never read as an option
                argv = ["ssh", "-o", "LogLevel=QUIET", "-o", "BatchMode=yes", "--", host.ssh, script]
            log = open(os.path.join(log_dir, f"rank{rank}.log"), "wb")  # noqa: SIM115 - the child owns it
            processes[rank] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
        cluster = cls(hosts, processes, log_dir)
        path = os.path.join(log_dir, "hostfile.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(hostfile)
        cluster.wait_until_ready()
        cluster._join(path)
        return cluster

    def wait_until_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until every rank printed ``READY_LINE``; fail, naming the host, when one exits
        first or stays silent for ``timeout_s`` (see the module docstring)."""
        waiting = set(self.processes)
        deadline = time.monotonic() + timeout_s
        while waiting:
            if self._exits:
                self.stop()
                raise ClusterError(self.describe_failure("could not start"))
            waiting = {rank for rank in waiting if READY_LINE not in self._log(rank)}
            if waiting and time.monotonic() > deadline:
                rank = min(waiting)
                self.stop()
                raise ClusterError(
                    f"Rank {rank} on {self.hosts.hosts[rank].label} did not start within "
                    f"{timeout_s:g} s; check that it is reachable over ssh and has Llama Desk in "
                    "the same folder."
                )
            if waiting:
                time.sleep(0.05)

    @classmethod
    def joined(cls) -> Cluster:
        """Rank 0 of a job ``mlx.launch`` started (all ranks launched by it, none by us): the
        hosts come from its ring host file, and a failure cannot be pinned on one rank."""
        import json

        import mlx.core as mx

        from models.distributed.hosts import Host

        group = mx.distributed.init(strict=True, backend="ring")
        with open(os.environ["MLX_HOSTFILE"], encoding="utf-8") as f:
            ring = json.load(f)
        ips = [node[0].rsplit(":", 1)[0] for node in ring]
        cluster = cls(HostFile(tuple(Host(ip, (ip,)) for ip in ips)), {}, tempfile.mkdtemp())
        cluster.group = group
        return cluster

    def _join(self, hostfile_path: str) -> None:
        """Join the ring as rank 0, failing (naming the host) if a rank exits first."""
        import mlx.core as mx

        _joined.set()
        if self.size == 1:
            return
        result: dict = {}

        def init() -> None:
            # MLX reads the ring from the environment; children of this process must not inherit it.
            saved = {k: os.environ.get(k) for k in ("MLX_RANK", "MLX_HOSTFILE")}
            os.environ.update(MLX_RANK="0", MLX_HOSTFILE=hostfile_path)
            try:
                result["group"] = mx.distributed.init(strict=True, backend="ring")
            except Exception as exc:  # noqa: BLE001 - reported below
                result["error"] = exc
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value

        thread = threading.Thread(target=init, name="ring-join", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
            if self._exits:
                self.stop()
                raise ClusterError(self.describe_failure("could not start"))
        if "error" in result:
            self.stop()
            raise ClusterError(f"Could not join the ring: {result['error']}")
        self.group = result["group"]

    def _watch_exits(self) -> None:
        while not self._closing:
            for rank, process in self.processes.items():
                code = process.poll()
                if code is not None and rank not in self._exits:
                    with self._lock:
                        self._exits[rank] = RankExit(rank, code, time.monotonic())
            if len(self._exits) == len(self.processes):
                return
            time.sleep(0.05)

    def first_exit(self, wait_s: float = 3.0) -> RankExit | None:
        """The rank that stopped first (waiting up to ``wait_s`` for one to be seen)."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                exits = sorted(self._exits.values(), key=lambda e: (e.code == PEER_LOST_EXIT, e.at))
            if exits:
                return exits[0]
            time.sleep(0.05)
        return None

    def describe_failure(self, what: str = "stopped", wait_s: float = 3.0) -> str:
        gone = self.first_exit(wait_s)
        if gone is None:
            hosts = self._host_list()
            return f"Lost the connection to a rank of the cluster ({hosts}); it may be unreachable."
        host = self.hosts.hosts[gone.rank]
        how = f"exit code {gone.code}" if gone.code >= 0 else f"killed by signal {-gone.code}"
        tail = self._log_tail(gone.rank)
        return f"Rank {gone.rank} on {host.label} {what} ({how})" + (f": {tail}" if tail else ".")

    def _host_list(self) -> str:
        return ", ".join(h.label for h in self.hosts.hosts[1:])

    def _log(self, rank: int) -> str:
        try:
            with open(os.path.join(self.log_dir, f"rank{rank}.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _log_tail(self, rank: int) -> str:
        lines = [ln for ln in self._log(rank).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        tail = " ".join((errors or [""])[-1].split())[:200]
        if "unrecognized arguments: --protocol" in tail:  # a worker from before the protocol check
            return "it runs an older version of Llama Desk; run the same version on every Mac"
        return tail

    def stop(self, timeout_s: float = 5.0) -> None:
        """Wait for the ranks to exit (after a stop message), then end whatever is left."""
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._closing = True
        if all(p.returncode == 0 for p in self.processes.values()):
            shutil.rmtree(self.log_dir, ignore_errors=True)  # kept when a rank failed
