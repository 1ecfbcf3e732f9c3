"""One place for the budget and the plan: folder or catalog config, measured corrections, and the
fallback verdict of a model without a plan."""

import pytest

from models.memory import model_plans
from models.memory.budget import MemoryBudget
from models.memory.measured_peaks import PeakCorrections
from models.memory.model_plans import plan_folder, plan_for_model, planning_budget, weights_verdict
from models.memory.planner import TIGHT_MARGIN, PlanError, plan_model

SCOUT_4BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit"


def test_a_given_budget_wins_over_this_machine(monkeypatch):
    given = MemoryBudget(10, 10, 0, "metal", "test")
    monkeypatch.setattr(model_plans, "detect_budget", lambda backend=None: pytest.fail("detected"))
    assert planning_budget(given) is given


def test_without_a_budget_this_machines_is_detected_for_the_backend(monkeypatch):
    detected = MemoryBudget(20, 20, 0, "cpu", "RAM")
    asked = []
    monkeypatch.setattr(model_plans, "detect_budget", lambda backend=None: asked.append(backend) or detected)
    assert planning_budget(None, "cpu") is detected
    assert asked == ["cpu"]


def test_a_folder_is_planned_from_its_files(checkpoints):
    plan = plan_for_model(checkpoints["4bit"], SCOUT_4BIT, "ignored", "cpu", kv_bits=8)
    assert plan == plan_model(checkpoints["4bit"], 8, "cpu")
    assert plan.weights.source == "safetensors"


def test_measured_peaks_correct_a_folders_plan(checkpoints):
    path = checkpoints["4bit"]
    corrections = PeakCorrections().with_measurement(path, None, "metal", 1.25, 1.0)
    assert plan_folder(path, "metal", corrections=corrections).peak_scale == pytest.approx(1.25)
    assert plan_folder(path, "metal").peak_scale == 1.0


def test_a_model_not_on_disk_is_planned_from_its_catalog_config():
    plan = plan_for_model(None, SCOUT_4BIT, "Scout 4-bit", "metal")
    assert plan is not None and plan.layout.quant_bits == 4 and plan.weights.source != "safetensors"


def test_an_unknown_repo_has_no_plan():
    assert plan_for_model(None, "someone/not-llama", "x", "metal") is None
    assert plan_for_model(None, None, "x", "metal") is None


def test_a_folder_without_a_config_is_a_plan_error(tmp_path):
    with pytest.raises(PlanError):
        plan_for_model(tmp_path, None, "x", "cpu")


def test_weights_alone_follow_the_planners_margin():
    budget = 100_000
    tight_from = int(budget * (1 - TIGHT_MARGIN)) + 1
    assert weights_verdict(tight_from - 1, budget) == "fits"
    assert weights_verdict(tight_from, budget) == "tight"
    assert weights_verdict(budget, budget) == "tight"
    assert weights_verdict(budget + 1, budget) == "wont_fit"
