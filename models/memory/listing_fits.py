"""The Model menu's badges as arithmetic: each listing's plan at the chosen KV precision,
corrected by what measured peaks taught, and its fit on this machine (and across a cluster).

Qt-free and safe on any thread: ``desktop.controllers.model_library`` runs ``plan_fits`` on the
thread pool after each answer, so the UI thread never spends the tens of milliseconds that
planning every listing takes.
"""

from __future__ import annotations


def corrected_plan(plan, kv_bits: int | None, corrections, path):
    """``plan`` at ``kv_bits``, corrected by measured peaks for the model at ``path``."""
    from dataclasses import replace

    if plan is None:
        return None
    plan = replace(plan, kv_bits=kv_bits)
    if corrections is not None and path is not None:
        plan = corrections.apply(plan, path, plan.profile.name)
    return plan


def plan_fits(plans, paths, budget, cluster, context, kv_bits, corrections) -> tuple[dict, dict]:
    """(fit report, cluster plan) per listing key; arithmetic only, safe on any thread."""
    from models.memory.cluster_plan import fit_across, host_budgets

    reports: dict[str, object] = {}
    cluster_plans: dict[str, object] = {}
    if budget is None:
        return reports, cluster_plans
    budgets = None
    if cluster is not None:
        budgets = host_budgets([h.memory_gb for h in cluster.hosts], budget.budget_bytes)
    for key, plan in plans.items():
        plan = corrected_plan(plan, kv_bits, corrections, paths.get(key))
        try:
            reports[key] = plan.fit(context, budget.budget_bytes)
        except (ValueError, ArithmeticError):
            continue
        if budgets is not None and (fits := fit_across(plan, budgets, context)) is not None:
            cluster_plans[key] = fits
    return reports, cluster_plans
