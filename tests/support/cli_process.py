"""The ``llama-desk`` command line run as a child process, as a person runs it (offline)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.hostile_files import child_memory_cap


def run_cli(
    *args, timeout: float = 180, data_dir=None, memory_cap: bool = False
) -> subprocess.CompletedProcess:
    """``python -m desktop.cli ARGS`` with the Hub offline (and ``LLAMA_DESK_DATA_DIR`` when
    ``data_dir`` is given); ``memory_cap``: the child may not grow past 6 GB (a hostile input
    that makes it allocate without end fails there, not on the machine)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if data_dir is not None:
        env["LLAMA_DESK_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=child_memory_cap() if memory_cap else None,
    )
