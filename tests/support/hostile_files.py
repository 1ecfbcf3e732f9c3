"""Device files and FIFOs for the tests that feed them to Llama Desk, and a guard for old code.

``/dev/zero`` read without a bound eats all memory, so the tests that point code at it run it
under ``memory_cap()``: code that forgot the bound then fails with ``MemoryError`` (a test
failure) instead of taking the machine down. FIFO tests carry a ``pytest.mark.timeout`` (or a
subprocess timeout) so a reader that blocks fails the test instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MEMORY_HEADROOM = 2 * 1024**3

needs_posix_devices = pytest.mark.skipif(
    sys.platform == "win32" or not os.path.exists("/dev/zero") or not hasattr(os, "mkfifo"),
    reason="needs /dev/zero and FIFOs",
)


def make_fifo(path: Path) -> Path:
    """A FIFO at ``path`` that nothing ever writes to."""
    os.mkfifo(path)
    return path


def device_or_fifo(kind: str, folder: Path, name: str) -> Path:
    """``/dev/zero`` or a new FIFO in ``folder``, behind a symlink called ``name``."""
    target = Path("/dev/zero") if kind == "dev-zero" else make_fifo(folder / f"{name}.fifo")
    link = folder / name
    link.symlink_to(target)
    return link


def _virtual_size() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def memory_cap(headroom: int = MEMORY_HEADROOM) -> Iterator[None]:
    """Let this process allocate at most ``headroom`` more bytes (Linux; a no-op elsewhere)."""
    try:
        import resource
    except ImportError:
        yield
        return
    size = _virtual_size()
    if size is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = size + headroom
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def child_memory_cap(limit: int = 6 * 1024**3):
    """A ``preexec_fn`` capping a child process's address space (Linux), for old-code safety."""

    def apply() -> None:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):
            pass

    return apply if sys.platform.startswith("linux") else None


def release_fifo(path: Path) -> None:
    """Unblock a reader stuck opening the FIFO at ``path`` (it then reads end-of-file)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader is waiting: nothing to release
        return
    os.close(fd)
