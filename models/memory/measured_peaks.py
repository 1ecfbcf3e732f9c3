"""Measured peaks: each answer's real peak memory corrects the plans for that model.

The planner's GPU constants were measured with MLX's CUDA backend; on a Mac they are trusted
only until the Mac says otherwise. After each answer the window records
``measured peak / planned peak`` for (backend, KV precision, model folder), keeping the worst
ratio seen; every later plan for that model, precision and backend is multiplied by
``max(1, ratio)`` (``MemoryPlan.peak_scale``). So a plan can only become more cautious, and a
correction learned on one backend never applies to another.

The ratios live in ``measured_peaks.json`` in the app's data folder (``models.app_folders``):
``{"version": 1, "ratios": {"metal|16|/path/to/model": 1.04, ...}}``. An unreadable file is
treated as empty (it only holds corrections that will be learned again). ``load_corrections``
and ``record_turn`` touch the disk: call them off the UI thread. ``PeakCorrections`` is an
immutable snapshot whose methods are arithmetic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from models.app_folders import UserDataError, read_json, write_json
from models.memory.planner import MemoryPlan, kv_cache_bits

STORE_NAME = "measured_peaks.json"
LEARNING_BACKENDS = ("metal",)  # CPU and CUDA are what the profiles were measured on
MAX_RATIO = 4.0  # a larger ratio is a mismeasurement (another process, a stray buffer), not a plan


def model_identity(path: str | Path) -> str:
    """The key a model folder is recorded under: its absolute, normalised path (no disk access)."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(str(path))))


def _kv_label(kv_bits: int | None) -> str:
    return str(kv_cache_bits(kv_bits) or 16)


def _key(model: str | Path, kv_bits: int | None, backend: str) -> str:
    return f"{backend}|{_kv_label(kv_bits)}|{model_identity(model)}"


@dataclass(frozen=True)
class PeakCorrections:
    """Worst measured/planned ratio per (backend, KV precision, model); arithmetic only."""

    ratios: dict[str, float] = field(default_factory=dict)

    def ratio(self, model: str | Path | None, kv_bits: int | None, backend: str) -> float:
        """The factor plans for this model are multiplied by: the worst ratio seen, at least 1."""
        if model is None:
            return 1.0
        return max(1.0, self.ratios.get(_key(model, kv_bits, backend), 1.0))

    def apply(self, plan: MemoryPlan, model: str | Path | None, backend: str) -> MemoryPlan:
        """``plan`` scaled by the ratio learned for ``model`` at the plan's KV precision."""
        return replace(plan, peak_scale=self.ratio(model, plan.kv_bits, backend))

    def with_measurement(
        self,
        model: str | Path,
        kv_bits: int | None,
        backend: str,
        measured_bytes: float,
        planned_bytes: float,
    ) -> PeakCorrections:
        """A snapshot that also holds this measurement (the worse of it and what was known)."""
        if planned_bytes <= 0 or measured_bytes <= 0:
            return self
        ratio = measured_bytes / planned_bytes
        if ratio > MAX_RATIO:
            return self
        key = _key(model, kv_bits, backend)
        if ratio <= self.ratios.get(key, 1.0):
            return self
        return PeakCorrections({**self.ratios, key: round(ratio, 4)})


def load_corrections() -> PeakCorrections:
    """The stored corrections (empty when there are none or the file cannot be read)."""
    try:
        stored = read_json(STORE_NAME, {})
    except UserDataError:
        return PeakCorrections()
    ratios = stored.get("ratios")
    if not isinstance(ratios, dict):
        return PeakCorrections()
    return PeakCorrections(
        {str(k): float(v) for k, v in ratios.items() if isinstance(v, (int, float)) and 1.0 <= v <= MAX_RATIO}
    )


def planned_turn_peak(
    plan: MemoryPlan,
    cached_tokens: int,
    prompt_tokens: int,
    generated_tokens: int,
    prefill_step: int,
    image_tiles: int = 0,
) -> int:
    """The uncorrected plan of one turn as the engine ran it: ``prompt_tokens`` prefilled after
    ``cached_tokens`` reused ones in chunks of ``prefill_step`` (as ``generate_step`` does: full
    chunks while more than one token remains, then the last one), then ``generated_tokens``
    decoded; with ``image_tiles`` tiles encoded first."""
    plan = replace(plan, peak_scale=1.0)
    step = max(1, int(prefill_step))
    done, remaining = max(0, int(cached_tokens)), max(1, int(prompt_tokens))
    peak, last_full = 0, None
    while remaining > 1:
        n = min(step, remaining - 1)
        if n == step:
            last_full = done + n
        else:
            peak = max(peak, plan._step_peak(n, done + n))
        done, remaining = done + n, remaining - n
    if last_full is not None:  # full chunks only grow: the last one is the largest
        peak = max(peak, plan._step_peak(step, last_full))
    end = done + 1 + max(0, int(generated_tokens))
    peak = max(peak, plan._step_peak(1, done + 1), plan._step_peak(1, end))
    if image_tiles:
        peak = max(peak, plan.image_peak_bytes(image_tiles, cached_tokens))
    return int(peak)


def record_turn(
    model: str | Path,
    backend: str,
    plan: MemoryPlan,
    measured_bytes: float,
    cached_tokens: int,
    prompt_tokens: int,
    generated_tokens: int,
    prefill_step: int,
    image_tiles: int = 0,
) -> PeakCorrections:
    """Record one answer's measured peak against its plan and return the updated corrections.

    Only ``LEARNING_BACKENDS`` learn; elsewhere the stored corrections are returned unchanged.
    Raises ``UserDataError`` if the file cannot be written.
    """
    current = load_corrections()
    if backend not in LEARNING_BACKENDS:
        return current
    planned = planned_turn_peak(
        plan, cached_tokens, prompt_tokens, generated_tokens, prefill_step, image_tiles
    )
    updated = current.with_measurement(model, plan.kv_bits, backend, measured_bytes, planned)
    if updated is not current:
        write_json(STORE_NAME, {"version": 1, "ratios": updated.ratios})
    return updated
