"""Host files: which machines form the cluster, in MLX's own ``mlx.launch`` host-file format.

``mlx.launch --hostfile`` takes either a JSON list of hosts or an object with ``hosts`` (and
optionally ``backend`` and ``envs``); each host is ``{"ssh": NAME, "ips": [IP, ...]}``. The
first host is rank 0: the machine running the window or ``ask``. A host may also carry
``"memory_gb"`` (its memory budget; ``mlx.launch`` ignores unknown keys): layers are then split
in proportion to it. ``local_hosts(n)`` is the
``--ranks N`` case: N ranks on this machine over 127.0.0.1. ``ring_hostfile`` writes what the
ring backend reads from ``MLX_HOSTFILE`` (one ``IP:PORT`` list per rank), as ``mlx.launch`` does.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

LOCAL_IP = "127.0.0.1"


class HostFileError(ValueError):
    """A host file that cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class Host:
    ssh: str  # the name ssh reaches it by ("127.0.0.1": this machine, no ssh)
    ips: tuple[str, ...]  # where the ring backend connects to it
    memory_gb: float | None = None  # our optional key (mlx.launch ignores it): this Mac's budget

    @property
    def is_local(self) -> bool:
        return self.ssh == LOCAL_IP

    @property
    def label(self) -> str:
        """How a message names this host."""
        return self.ssh if self.ssh == self.ips[0] else f"{self.ssh} ({self.ips[0]})"


@dataclass(frozen=True)
class HostFile:
    hosts: tuple[Host, ...]
    envs: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.hosts)

    def shares(self) -> list[float]:
        """Weights for the layer split: each host's ``memory_gb`` when all have one, else equal."""
        memory = [h.memory_gb for h in self.hosts if h.memory_gb]
        return [float(m) for m in memory] if len(memory) == self.size else [1.0] * self.size


def parse_host_file(path: str | Path) -> HostFile:
    """Read an ``mlx.launch`` host file; raise ``HostFileError`` naming what is wrong."""
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HostFileError(f"Cannot read the host file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise HostFileError(f"The host file {path} is not JSON: {exc}") from None
    return host_file_from_json(data, str(path))


def host_file_from_json(data, name: str = "host file") -> HostFile:
    envs: list[str] = []
    if isinstance(data, dict):
        backend = data.get("backend", "ring") or "ring"
        if backend != "ring":
            raise HostFileError(f'{name}: backend {backend!r} is not supported; use "ring".')
        envs = [str(e) for e in data.get("envs", [])]
        data = data.get("hosts")
    if not isinstance(data, list) or not data:
        raise HostFileError(f'{name}: expected a list of hosts (or an object with "hosts").')
    hosts = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("ssh"), str) or not entry["ssh"]:
            raise HostFileError(f'{name}: host {i} needs an "ssh" name.')
        ips = entry.get("ips") or []
        if not isinstance(ips, list) or not all(isinstance(ip, str) and ip for ip in ips):
            raise HostFileError(f'{name}: host {i} ({entry["ssh"]}): "ips" must be a list of addresses.')
        if not ips:
            raise HostFileError(
                f'{name}: host {i} ({entry["ssh"]}) has no "ips"; the ring backend needs IP addresses.'
            )
        memory = entry.get("memory_gb")
        if memory is not None and (not isinstance(memory, int | float) or memory <= 0):
            where = f"{name}: host {i} ({entry['ssh']})"
            raise HostFileError(f'{where}: "memory_gb" must be a positive number.')
        hosts.append(Host(entry["ssh"], tuple(ips), float(memory) if memory is not None else None))
    return HostFile(tuple(hosts), tuple(envs))


def local_hosts(ranks: int) -> HostFile:
    """``--ranks N``: N ranks on this machine."""
    if ranks < 1:
        raise HostFileError("--ranks must be at least 1.")
    return HostFile(tuple(Host(LOCAL_IP, (LOCAL_IP,)) for _ in range(ranks)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCAL_IP, 0))
        return s.getsockname()[1]


def ring_hostfile(hosts: HostFile, ports: list[int]) -> str:
    """The JSON ``MLX_HOSTFILE`` of the ring backend: one ``["IP:PORT"]`` per rank."""
    return json.dumps([[f"{h.ips[0]}:{port}"] for h, port in zip(hosts.hosts, ports, strict=True)])
