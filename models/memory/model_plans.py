"""The memory budget and plan of a model, worked out in one place for every caller.

The window's model library, the window's load check and ``llama-desk models fit`` all need the
same two things: the budget to plan against (a given one, such as
``LLAMA_DESK_MEMORY_BUDGET_GB`` or ``--budget-gb``, else this machine's) and a model's
``MemoryPlan`` (from its folder when it is on disk, else from its catalog config), corrected by
what this machine measured for it. ``weights_verdict`` is the fallback for a model with no plan
(an unknown repo): its weights against the budget, with the planner's ``TIGHT_MARGIN``.

These functions read configs and safetensors headers (and detect the budget): call them off the
UI thread.
"""

from __future__ import annotations

from pathlib import Path

from models.memory.budget import MemoryBudget, detect_budget
from models.memory.measured_peaks import PeakCorrections
from models.memory.planner import (
    MemoryPlan,
    Verdict,
    catalog_config,
    fit_verdict,
    plan_from_config,
    plan_model,
)


def planning_budget(budget: MemoryBudget | None = None, backend: str | None = None) -> MemoryBudget:
    """``budget`` when one is given (to plan for another machine), else this machine's for
    ``backend`` (this machine's backend when None)."""
    return budget if budget is not None else detect_budget(backend=backend)


def plan_folder(
    path: str | Path,
    backend: str,
    kv_bits: int | None = None,
    corrections: PeakCorrections | None = None,
) -> MemoryPlan:
    """A checkpoint folder's plan on ``backend``, scaled by what this machine measured for it
    (``corrections``). Raises ``PlanError``."""
    plan = plan_model(path, kv_bits, backend)
    return corrections.apply(plan, path, backend) if corrections is not None else plan


def plan_for_model(
    path: str | Path | None,
    repo_id: str | None,
    name: str,
    backend: str,
    kv_bits: int | None = None,
    corrections: PeakCorrections | None = None,
) -> MemoryPlan | None:
    """A model's plan: from its folder (``path``) when it is on disk, else from the catalog config
    of ``repo_id``; None when there is neither. Raises ``PlanError`` for a folder that cannot be
    planned."""
    if path is not None:
        return plan_folder(path, backend, kv_bits, corrections)
    config = catalog_config(repo_id) if repo_id else None
    if config is None:
        return None
    return plan_from_config(config, name, kv_bits, backend)


def weights_verdict(weights_bytes: int, budget_bytes: int) -> Verdict:
    """How weights alone sit in a budget (for a model without a plan): the planner's rule
    (``fit_verdict``, with its ``TIGHT_MARGIN``), the peak taken as the weights."""
    return fit_verdict(weights_bytes, budget_bytes)
