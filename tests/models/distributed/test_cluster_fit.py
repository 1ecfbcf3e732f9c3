"""What the Model menu says of a model across the window's cluster (Qt-free planning)."""

from __future__ import annotations

import pytest

from models.memory.cluster_plan import describe_cluster, fit_across, host_budgets
from models.memory.planner import catalog_config, plan_from_config

SCOUT_8BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-8bit"
MAVERICK_4BIT = "mlx-community/Llama-4-Maverick-17B-128E-Instruct-4bit"
MAC = 102_100_000_000  # the README's budget of a 128 GB MacBook Pro


@pytest.fixture(scope="module")
def scout():
    return plan_from_config(catalog_config(SCOUT_8BIT), SCOUT_8BIT)


def test_a_host_without_memory_gb_plans_with_this_machines_budget():
    assert host_budgets([None, 51.0, None], MAC) == [MAC, 51_000_000_000, MAC]


def test_scout_8bit_fits_across_two_macs_and_the_tooltip_says_where_it_peaks(scout):
    assert scout.fit(32768, MAC).verdict == "wont_fit"
    across = fit_across(scout, [MAC, MAC], 32768)
    assert across is not None and across.fits
    text = describe_cluster(across)
    assert text.startswith("Fits across 2 Macs: rank ") and "of 102.1 GB at 32,768 tokens." in text
    assert "this machine" not in text
    assert "(ranks on this machine" in describe_cluster(across, "ranks", local=True)


def test_a_cluster_too_small_says_wont_fit_naming_the_fullest_rank(scout):
    maverick = plan_from_config(catalog_config(MAVERICK_4BIT), MAVERICK_4BIT)
    two = fit_across(maverick, [MAC, MAC], 32768)
    assert two is not None and not two.fits
    fullest = max(two.ranks, key=lambda r: r.peak_bytes)
    assert describe_cluster(two).startswith(f"Won't fit across 2 Macs: rank {fullest.rank} ")
    # Half the budget on the second Mac: fewer layers there, and no longer a fit for Scout 8-bit.
    uneven = fit_across(scout, [MAC, MAC // 4], 32768)
    assert uneven.ranks[1].layers[1] - uneven.ranks[1].layers[0] < 24 and not uneven.fits


def test_more_ranks_than_layers_is_no_plan(scout):
    assert fit_across(scout, [MAC] * 49, 1024) is None
