"""Which Mac a model needs, in the words people buy Macs in: "a Mac with 96 GB or more".

``smallest_mac_gib`` walks the unified-memory sizes Apple sells and returns the first whose
default budget (``budget.mac_budget``: macOS's GPU share of RAM, less the app) holds the plan at
a context length, by the planner's one fit rule, with the smallest prefill chunk (the app lowers
the chunk as far as it must). Arithmetic only, a fraction of a millisecond per size.
"""

from __future__ import annotations

from models.memory.budget import mac_budget
from models.memory.planner import PREFILL_STEPS, MemoryPlan, fit_verdict

# Unified-memory sizes of Apple-silicon Macs (GB as Apple counts them: GiB).
MAC_MEMORY_GIB = (8, 16, 18, 24, 32, 36, 48, 64, 96, 128, 192, 256, 512)


def fits_mac(plan: MemoryPlan, context: int, ram_gib: int) -> bool:
    """Whether ``plan`` at ``context`` tokens fits a Mac with ``ram_gib`` GB by default."""
    budget = mac_budget(ram_gib).budget_bytes
    return fit_verdict(plan.peak_bytes(context, min(PREFILL_STEPS)), budget) != "wont_fit"


def smallest_mac_gib(plan: MemoryPlan, context: int) -> int | None:
    """The smallest Mac memory size (GB) that runs ``plan`` at ``context`` tokens; None: none does."""
    return next((gib for gib in MAC_MEMORY_GIB if fits_mac(plan, context, gib)), None)


def needs_mac_words(plan: MemoryPlan | None, context: int) -> str:
    """'runs on Macs with 96 GB or more', 'needs more memory than any Mac has', or '' (no plan)."""
    if plan is None:
        return ""
    gib = smallest_mac_gib(plan, context)
    if gib is None:
        return "needs more memory than one Mac has"
    return f"runs on Macs with {gib} GB or more"
