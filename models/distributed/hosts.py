"""Host files: which machines form the cluster, in MLX's own ``mlx.launch`` host-file format.

``mlx.launch --hostfile`` takes either a JSON list of hosts or an object with ``hosts`` (and
optionally ``backend`` and ``envs``); each host is ``{"ssh": NAME, "ips": [IP, ...]}``. The
first host is rank 0: the machine running the window or ``ask``. A host may also carry
``"memory_gb"`` (its memory budget; ``mlx.launch`` ignores unknown keys): layers are then split
in proportion to it. ``local_hosts(n)`` is the
``--ranks N`` case: N ranks on this machine over 127.0.0.1. ``ring_hostfile`` writes what the
ring backend reads from ``MLX_HOSTFILE`` (one ``IP:PORT`` list per rank), as ``mlx.launch`` does.

A host file may come from someone else, and its values reach ``ssh`` and a shell on every
Mac: it is read by the regular-file rules (size cap, no devices or FIFOs), its nesting bounded,
and every value checked before anything runs: ``ssh`` a DNS name (RFC 1123) or IP literal with
an optional conservative POSIX user (``user@host``), ``ips`` addresses, ``memory_gb`` a finite
positive number, ``envs`` ``NAME=VALUE`` settings of MLX and the maths libraries only. A bad
value is refused with one line naming its entry ("host 2: '-oProxyCommand=...' is not a host
name"); the launcher also puts ``--`` before the ssh destination.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from models.memory.budget import MAX_BUDGET_GB as MAX_MEMORY_GB  # "memory_gb": as --budget-gb
from models.regular_files import InputFileError, read_regular_file

LOCAL_IP = "127.0.0.1"
MAX_HOST_FILE_BYTES = 1024 * 1024  # thousands of hosts fit in far less
MAX_JSON_DEPTH = 8  # a host file nests 4 deep: {"hosts": [{"ips": [...]}]}
# ``envs`` reach every rank's environment (this Mac's too): only settings of the libraries a
# rank runs, never what makes a process load code (LD_*, DYLD_*, PYTHON*, PATH, BASH_ENV, ...).
ENV_PREFIXES = ("MLX_", "METAL_", "MTL_", "OMP_", "OPENBLAS_", "VECLIB_", "NCCL_")
_ENV_SET_BY_LAUNCH = frozenset({"MLX_RANK", "MLX_HOSTFILE"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")  # a conservative POSIX user name
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 1123
_HOST_CHARACTERS = re.compile(r"[A-Za-z0-9.:%][A-Za-z0-9.:%-]*")  # no leading "-", no spaces
_ZONE = re.compile(r"[A-Za-z0-9]{1,32}")  # an IPv6 zone: an interface name such as en0
# A string (its closing quote optional, so a match never fails and the scan stays linear), or a bracket.
_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]')


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
    """Read an ``mlx.launch`` host file; raise ``HostFileError`` naming what is wrong.

    Read by the regular-file rules (``models.regular_files``: no devices or FIFOs, at most
    ``MAX_HOST_FILE_BYTES``), its nesting bounded before it is parsed."""
    path = Path(path).expanduser()
    label = f"The host file {path}"
    try:
        raw = read_regular_file(path, MAX_HOST_FILE_BYTES, label)
    except InputFileError as exc:
        raise HostFileError(str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HostFileError(f"{label} is not JSON (not UTF-8 text).") from None
    if _nested_deeper_than(text, MAX_JSON_DEPTH):
        raise HostFileError(f"{label} is nested too deeply to be a host file.")
    try:
        data = json.loads(text)
    except RecursionError:
        raise HostFileError(f"{label} is nested too deeply to be a host file.") from None
    except json.JSONDecodeError as exc:
        raise HostFileError(f"{label} is not JSON ({exc.msg}, line {exc.lineno}).") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise HostFileError(f"{label} is not JSON ({' '.join(str(exc).split())}).") from None
    return host_file_from_json(data, str(path))


def _nested_deeper_than(text: str, limit: int) -> bool:
    """Whether the JSON ``text`` opens more than ``limit`` arrays/objects inside each other
    (strings skipped), checked before parsing so a deep file costs one linear scan."""
    depth = 0
    for token in _JSON_NESTING.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            if depth > limit:
                return True
        elif mark in "]}":
            depth -= 1
    return False


def _shown(value: object) -> str:
    """``value`` as a message quotes it: its repr, one line, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_host_name(host: str) -> bool:
    """A DNS name of RFC 1123 labels (its last label not all digits) or an IP literal (v4, or
    v6 with an optional plain zone such as ``%en0``); nothing that could read as an option."""
    if not host or len(host) > 253 or not _HOST_CHARACTERS.fullmatch(host):
        return False
    _, _, zone = host.partition("%")
    if zone and not _ZONE.fullmatch(zone):
        return False
    if ":" in host:  # only an IPv6 literal holds colons
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    if zone:
        return False
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def destination_problem(ssh: str) -> str | None:
    """Why ``ssh`` (``HOST`` or ``USER@HOST``) is no ssh destination, or None when it is one."""
    user, at, host = ssh.rpartition("@")
    if at and not _USER.fullmatch(user):
        return f"{_shown(ssh)} is not a user@host name ({_shown(user)} is not a user name)"
    if not _is_host_name(host):
        return f"{_shown(ssh)} is not a host name"
    return None


def _env_problem(env: object) -> str | None:
    """Why ``env`` is not an ``envs`` entry this app passes on, or None."""
    if not isinstance(env, str):
        return f"{_shown(env)} is not a NAME=VALUE string"
    name, equals, value = env.partition("=")
    if not equals:
        return f"{_shown(env)} is not NAME=VALUE"
    if not _ENV_NAME.fullmatch(name):
        return f"{_shown(name)} is not a variable name"
    if name in _ENV_SET_BY_LAUNCH or not name.startswith(ENV_PREFIXES):
        return (
            f"{_shown(name)} is not a setting a host file may make (only "
            + ", ".join(f"{p}..." for p in ENV_PREFIXES)
            + " variables)"
        )
    if len(value) > 4096 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"the value of {name} holds a control character or is too long"
    return None


def host_file_from_json(data: object, name: str = "host file") -> HostFile:
    """The ``HostFile`` of a parsed host file; every value that reaches a command line (ssh
    names, addresses, ``envs``) is checked, a bad one refused in one line naming its entry."""
    envs: list[str] = []
    if isinstance(data, dict):
        backend = data.get("backend", "ring") or "ring"
        if backend != "ring":
            raise HostFileError(f'{name}: backend {_shown(backend)} is not supported; use "ring".')
        listed = data.get("envs", [])
        if not isinstance(listed, list):
            raise HostFileError(f'{name}: "envs" must be a list of NAME=VALUE strings.')
        for i, env in enumerate(listed):
            problem = _env_problem(env)
            if problem is not None:
                raise HostFileError(f"{name}: envs {i}: {problem}.")
            envs.append(env)
        data = data.get("hosts")
    if not isinstance(data, list) or not data:
        raise HostFileError(f'{name}: expected a list of hosts (or an object with "hosts").')
    return HostFile(tuple(_host(entry, i, name) for i, entry in enumerate(data)), tuple(envs))


def _host(entry: object, i: int, name: str) -> Host:
    if not isinstance(entry, dict) or not isinstance(entry.get("ssh"), str) or not entry["ssh"]:
        raise HostFileError(f'{name}: host {i} needs an "ssh" name.')
    ssh = entry["ssh"]
    problem = destination_problem(ssh)
    if problem is not None:
        raise HostFileError(f"{name}: host {i}: {problem}.")
    where = f"{name}: host {i} ({ssh})"
    ips = entry.get("ips") or []
    if not isinstance(ips, list) or not all(isinstance(ip, str) and ip for ip in ips):
        raise HostFileError(f'{where}: "ips" must be a list of addresses.')
    if not ips:
        raise HostFileError(f'{where} has no "ips"; the ring backend needs IP addresses.')
    for ip in ips:
        if not _is_host_name(ip):
            raise HostFileError(f'{where}: {_shown(ip)} in "ips" is not an address.')
    memory = entry.get("memory_gb")
    if memory is not None and (
        isinstance(memory, bool) or not isinstance(memory, int | float) or not 0 < memory <= MAX_MEMORY_GB
    ):  # NaN compares False: refused too
        raise HostFileError(
            f'{where}: "memory_gb" must be a positive number (of GB, at most {MAX_MEMORY_GB:,}).'
        )
    return Host(ssh, tuple(ips), float(memory) if memory is not None else None)


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
