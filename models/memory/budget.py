"""How much memory a model may use on this machine: the budget the memory planner fits against.

On macOS (Apple silicon, unified memory) the GPU may wire only part of RAM: the
``iogpu.wired_limit_mb`` sysctl when someone raised it, else Metal's recommended working set
(MLX reports it), else macOS's default share (two thirds of RAM up to 36 GB, three quarters
above). On Linux it is the RAM this process can have (what is available plus what it already
holds), or the GPU's memory under MLX's CUDA backend. From that limit the app's own memory
(Python, Qt, tokenizers: the resident size minus MLX's buffers, which the plan counts) is
subtracted. ``LLAMA_DESK_MEMORY_BUDGET_GB`` (or ``models fit --budget-gb``) replaces all of
that with a given budget, to ask what fits another machine (``budget_override``). Nothing here
loads a model; MLX is consulted only if it is already imported or
asked for.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass

GIB = 1 << 30
BUDGET_ENV = "LLAMA_DESK_MEMORY_BUDGET_GB"  # plan against this many GB instead of this machine's
MAX_BUDGET_GB = 1_000_000  # a budget (or a host's memory_gb) above this is a mistake, not a machine


@dataclass(frozen=True)
class MemoryBudget:
    """The memory a model may use: ``budget_bytes`` = ``limit_bytes`` - ``app_bytes``."""

    total_bytes: int  # physical memory (unified on Apple silicon)
    limit_bytes: int  # what the backend may use: GPU wired limit, GPU memory or RAM
    app_bytes: int  # the app's own memory, outside MLX's buffers
    backend: str  # "metal", "cuda" or "cpu"
    source: str  # where the limit comes from, for people

    @property
    def budget_bytes(self) -> int:
        return max(0, self.limit_bytes - self.app_bytes)


def macos_default_wired_limit(total_bytes: int) -> int:
    """macOS's default GPU share of unified memory: 2/3 up to 36 GB of RAM, 3/4 above."""
    return total_bytes * 2 // 3 if total_bytes <= 36 * GIB else total_bytes * 3 // 4


def mac_budget(ram_gib: int, app_bytes: int = 1_000_000_000, wired_limit_mb: int = 0) -> MemoryBudget:
    """The budget of a Mac with ``ram_gib`` GiB of RAM (for tables and tests)."""
    total = ram_gib * GIB
    if wired_limit_mb > 0:
        return MemoryBudget(
            total, wired_limit_mb << 20, app_bytes, "metal", f"iogpu.wired_limit_mb = {wired_limit_mb}"
        )
    return MemoryBudget(
        total, macos_default_wired_limit(total), app_bytes, "metal", "macOS default GPU share of RAM"
    )


def _sysctl(name: str) -> int | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        return int(out.stdout.strip()) if out.returncode == 0 else None
    except ValueError:
        return None


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    values[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return values


def resident_bytes() -> int:
    """This process's resident memory."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        out = subprocess.run(
            ["ps", "-o", "rss=", "-p", str(os.getpid())], capture_output=True, text=True, timeout=5
        )
        return int(out.stdout.strip()) * 1024
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


def _mlx_active_bytes() -> int:
    mx = sys.modules.get("mlx.core")
    if mx is None:
        return 0
    try:
        return int(mx.get_active_memory())
    except Exception:  # noqa: BLE001 - an old or odd MLX build: count nothing
        return 0


def app_memory_bytes() -> int:
    """The app's own memory: resident size minus MLX's buffers (the model, which the plan counts)."""
    return max(0, resident_bytes() - _mlx_active_bytes())


def detect_backend() -> str:
    """``metal`` on Apple silicon, ``cuda`` when MLX's CUDA backend has a GPU, else ``cpu``."""
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "metal"
    try:
        import mlx.core as mx

        if hasattr(mx, "cuda") and mx.cuda.is_available():
            return "cuda"
    except Exception:  # noqa: BLE001 - no MLX or no CUDA: the CPU backend
        pass
    return "cpu"


def _device_info() -> dict:
    try:
        import mlx.core as mx

        return dict(mx.device_info())
    except Exception:  # noqa: BLE001
        return {}


def detect_budget(app_bytes: int | None = None, backend: str | None = None) -> MemoryBudget:
    """This machine's budget for a model (see the module docstring)."""
    backend = backend or detect_backend()
    app = app_memory_bytes() if app_bytes is None else int(app_bytes)
    if sys.platform == "darwin":
        total = _sysctl("hw.memsize") or 0
        wired = _sysctl("iogpu.wired_limit_mb") or 0
        if wired > 0:
            return MemoryBudget(total, wired << 20, app, backend, f"iogpu.wired_limit_mb = {wired}")
        recommended = _device_info().get("max_recommended_working_set_size") if backend == "metal" else None
        if recommended:
            return MemoryBudget(total, int(recommended), app, backend, "Metal's recommended working set")
        return MemoryBudget(
            total, macos_default_wired_limit(total), app, backend, "macOS default GPU share of RAM"
        )
    info = _meminfo()
    total = info.get("MemTotal", 0)
    if backend == "cuda":
        device = _device_info()
        gpu = device.get("memory_size") or device.get("total_memory")
        if gpu:
            return MemoryBudget(total, int(gpu), app, backend, "GPU memory (MLX CUDA backend)")
    available = info.get("MemAvailable")
    if available is not None:
        limit = min(total, available + resident_bytes())
        return MemoryBudget(total, limit, app, backend, "RAM available to this process")
    return MemoryBudget(total, total, app, backend, "RAM")


def budget_override(
    gigabytes: float | str | None = None, backend: str = "metal", source: str | None = None
) -> MemoryBudget | None:
    """A budget of ``gigabytes`` GB (10^9 bytes) for planning another machine, with nothing
    taken off for the app; without ``gigabytes``, ``$LLAMA_DESK_MEMORY_BUDGET_GB`` if set, else
    None (use this machine's). Raises ValueError, naming its source, for a value that is not a
    positive number up to ``MAX_BUDGET_GB``."""
    if gigabytes is None or gigabytes == "":
        gigabytes, source = os.environ.get(BUDGET_ENV) or None, BUDGET_ENV
        if gigabytes is None:
            return None
    source = source or "--budget-gb"
    try:
        value = float(gigabytes)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= MAX_BUDGET_GB:  # NaN compares False
        raise ValueError(
            f"{source} must be a positive number of GB (at most {MAX_BUDGET_GB:,}), not {gigabytes!r}."
        )
    limit = int(value * 1e9)
    return MemoryBudget(limit, limit, 0, backend, source)
