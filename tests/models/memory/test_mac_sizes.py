"""Which Mac a catalog model needs, in the sizes Apple sells (the README's table and the first-run
panel say the same)."""

from __future__ import annotations

import pytest

from models.memory.mac_sizes import MAC_MEMORY_GIB, fits_mac, needs_mac_words, smallest_mac_gib
from models.memory.model_plans import plan_for_model


def catalog_plan(name: str):
    plan = plan_for_model(None, f"mlx-community/Llama-4-{name}", name, "metal")
    assert plan is not None
    return plan


@pytest.mark.parametrize(
    ("name", "gib"),
    [
        ("Scout-17B-16E-Instruct-3bit", 96),
        ("Scout-17B-16E-Instruct-4bit", 96),
        ("Scout-17B-16E-Instruct-6bit", 128),
        ("Scout-17B-16E-Instruct-8bit", 192),
        ("Maverick-17B-128E-Instruct-4bit", 512),
        ("Maverick-17B-128E-Instruct-8bit", None),
    ],
)
def test_the_smallest_mac_each_variant_runs_on_at_32k_tokens(name, gib):
    plan = catalog_plan(name)
    assert smallest_mac_gib(plan, 32768) == gib
    if gib is not None:
        assert fits_mac(plan, 32768, gib)
        assert not fits_mac(plan, 32768, MAC_MEMORY_GIB[MAC_MEMORY_GIB.index(gib) - 1])
        assert needs_mac_words(plan, 32768) == f"runs on Macs with {gib} GB or more"
    else:
        assert needs_mac_words(plan, 32768) == "needs more memory than one Mac has"


def test_a_longer_context_needs_at_least_as_big_a_mac():
    plan = catalog_plan("Scout-17B-16E-Instruct-6bit")
    assert smallest_mac_gib(plan, 300_000) > smallest_mac_gib(plan, 32768)
    assert needs_mac_words(None, 32768) == ""
