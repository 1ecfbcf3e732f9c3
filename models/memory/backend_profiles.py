"""How each MLX backend schedules a prefill (``BackendProfile``): the constants the planner's
transient-memory terms use, measured per backend (see ``models.memory.planner``)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class BackendProfile:
    """How an MLX backend holds memory during a prefill chunk (see the module docstring)."""

    name: str
    layers_in_flight: float  # layers whose intermediate activations are alive at the peak
    score_copies: float  # score-sized arrays alive in a non-fused attention
    fused_causal: bool  # global layers ("causal" mask, unquantized cache) never materialise scores
    fused_masked: bool  # chunked layers (boolean mask array) never materialise scores
    fixed_bytes: int = 0  # a working set that does not scale with the chunk or the context
    float32_layers_in_flight: float | None = None  # with float32 activations, if different
    chunked_cache_copies: float = 0.0  # extra copies of the chunked layers' caches (safety term)


CPU_PROFILE = BackendProfile(
    "cpu",
    layers_in_flight=1.15,
    score_copies=1.0,
    fused_causal=False,
    fused_masked=False,
    float32_layers_in_flight=0.65,
)
GPU_PROFILE = BackendProfile(
    "gpu",
    layers_in_flight=14.7,
    score_copies=8.4,
    fused_causal=True,
    fused_masked=False,
    chunked_cache_copies=3.0,
    fixed_bytes=1_100_000_000,
)
PROFILES = {
    "cpu": CPU_PROFILE,
    "cuda": replace(GPU_PROFILE, name="cuda"),
    "metal": replace(GPU_PROFILE, name="metal"),
    "gpu": GPU_PROFILE,
}
