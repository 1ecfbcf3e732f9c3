"""Whether answers running at once fit in memory: the memory planner's verdict for the engine host.

Each running answer holds its own KV cache beside the one copy of the weights, so the host asks,
before it starts another answer, whether all of them reaching their context lengths fit this
machine's budget (``MemoryPlan.batch_peak_bytes``, scaled by what this machine measured). An
answer that would not fit waits in the queue (with its position) until one ends. When the model
cannot be planned (a folder the planner does not know), no answer is held back for memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

_log = logging.getLogger(__name__)


def memory_gate(path: Path, max_context: int | None = None) -> Callable[[list[int]], bool] | None:
    """``fits(contexts)`` for the model at ``path`` on this machine, or None if it cannot be planned."""
    try:
        from models.memory.budget import detect_backend
        from models.memory.model_plans import plan_folder, planning_budget

        backend = detect_backend()
        plan = plan_folder(path, backend)
        budget = planning_budget(backend=backend).budget_bytes
    except Exception:  # noqa: BLE001 - without a plan, slots alone limit the batch
        _log.debug("No memory plan for %s", path, exc_info=True)
        return None
    ceiling = int(max_context) if max_context else None

    def fits(contexts: list[int]) -> bool:
        lengths = [min(n, ceiling) if ceiling else n for n in contexts]
        return plan.batch_peak_bytes(lengths) <= budget

    return fits
