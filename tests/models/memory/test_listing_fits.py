"""plan_fits: the Model menu's badges planned off the UI thread, as plan.fit gives them."""

from __future__ import annotations

from models.memory.budget import GIB, MemoryBudget
from models.memory.listing_fits import corrected_plan, plan_fits
from models.memory.planner import plan_from_config, scout_config

BUDGET = MemoryBudget(128 * GIB, 110 * GIB, 2 * GIB, "metal", "test")


def _plans():
    return {
        f"scout-{bits}": plan_from_config(scout_config(bits=bits, group_size=64), f"scout-{bits}")
        for bits in (4, 8)
    }


def test_each_listing_gets_the_fit_its_plan_gives():
    plans = _plans()
    reports, cluster_plans = plan_fits(plans, {}, BUDGET, None, 32_768, None, None)
    assert set(reports) == set(plans) and cluster_plans == {}
    for key, plan in plans.items():
        assert reports[key] == plan.fit(32_768, BUDGET.budget_bytes)
    assert reports["scout-4"].verdict != "wont_fit" and reports["scout-8"].verdict == "wont_fit"


def test_kv_precision_is_applied_and_nothing_is_planned_without_a_budget():
    plans = _plans()
    assert plan_fits(plans, {}, None, None, 32_768, None, None) == ({}, {})
    full, _ = plan_fits(plans, {}, BUDGET, None, 131_072, None, None)
    eight, _ = plan_fits(plans, {}, BUDGET, None, 131_072, 8, None)
    assert eight["scout-4"].peak_bytes < full["scout-4"].peak_bytes
    assert corrected_plan(None, 8, None, None) is None
    assert corrected_plan(plans["scout-4"], 8, None, "/no/such/model").kv_bits == 8
