"""Open a checkpoint on one machine or across a cluster, as ``--ranks N`` / ``--hosts FILE`` ask.

``load_engine`` returns the single-machine ``Engine`` for one rank and a ``PipelineEngine``
otherwise, whose other ranks end when it is closed (or when this process exits).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from pathlib import Path

from models.distributed.hosts import HostFile, local_hosts, parse_host_file
from models.inference.engine import Engine


def cluster_hosts(ranks: int | None = None, hosts_file: str | Path | None = None) -> HostFile | None:
    """The cluster ``--ranks``/``--hosts`` describe, or None for this machine alone."""
    if hosts_file is not None:
        hosts = parse_host_file(hosts_file)
    elif ranks is not None:
        hosts = local_hosts(ranks)
    else:
        return None
    return hosts if hosts.size > 1 else None


def load_engine(
    path: str | Path,
    hosts: HostFile | None = None,
    progress: Callable[[str], None] | None = None,
) -> Engine:
    if hosts is None:
        return Engine.load(path, progress)
    from models.distributed.driver import PipelineEngine

    engine = PipelineEngine.load_cluster(path, hosts, progress=progress)
    atexit.register(engine.close)
    return engine
