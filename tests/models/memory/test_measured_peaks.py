"""Measured peaks correct the plans: the worse of plan and measurement, per model, KV precision
and backend, kept in the data folder."""

import json

import pytest

from models.memory.measured_peaks import (
    STORE_NAME,
    PeakCorrections,
    load_corrections,
    planned_turn_peak,
    record_turn,
)
from models.memory.planner import GB, plan_from_config, scout_config

MODEL = "/models/scout-4bit"


@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def plan():
    return plan_from_config(scout_config(4), "scout", backend="metal")


def test_a_turn_from_an_empty_cache_is_planned_like_the_prefill(plan):
    for tokens, step in ((8192, 512), (5000, 2048), (3, 512)):
        assert planned_turn_peak(plan, 0, tokens, 1, step) == plan.prefill_peak_bytes(tokens, step)
    # A longer conversation and a longer answer never plan less.
    assert planned_turn_peak(plan, 30_000, 2000, 500, 512) > planned_turn_peak(plan, 0, 2000, 500, 512)
    assert planned_turn_peak(plan, 0, 2000, 0, 512, image_tiles=17) > planned_turn_peak(plan, 0, 2000, 0, 512)


def test_a_measured_peak_above_the_plan_corrects_later_plans(data_folder, plan):
    planned = planned_turn_peak(plan, 0, 8192, 100, 512)
    learned = record_turn(MODEL, "metal", plan, planned * 1.06, 0, 8192, 100, 512)
    assert learned.ratio(MODEL, None, "metal") == pytest.approx(1.06, abs=1e-4)
    corrected = learned.apply(plan, MODEL, "metal")
    assert corrected.peak_bytes(32768, 512) == pytest.approx(plan.peak_bytes(32768, 512) * 1.06, rel=1e-4)
    assert corrected.max_context(90 * GB) < plan.max_context(90 * GB)
    # Kept on disk, for the next start.
    assert load_corrections() == learned
    assert json.loads((data_folder / STORE_NAME).read_text())["version"] == 1
    # A better turn later does not undo it: the worse of plan and measurement is kept.
    again = record_turn(MODEL, "metal", plan, planned * 0.9, 0, 8192, 100, 512)
    assert again.ratio(MODEL, None, "metal") == pytest.approx(1.06, abs=1e-4)
    worse = record_turn(MODEL, "metal", plan, planned * 1.1, 0, 8192, 100, 512)
    assert worse.ratio(MODEL, None, "metal") == pytest.approx(1.1, abs=1e-4)


def test_corrections_are_per_model_kv_precision_and_backend(data_folder, plan):
    planned = planned_turn_peak(plan, 0, 4096, 10, 512)
    learned = record_turn(MODEL, "metal", plan, planned * 1.2, 0, 4096, 10, 512)
    assert learned.ratio(MODEL + "/", None, "metal") == pytest.approx(1.2, abs=1e-4)  # same folder
    assert learned.ratio("/models/other", None, "metal") == 1.0
    assert learned.ratio(MODEL, 8, "metal") == 1.0
    assert learned.ratio(MODEL, None, "cuda") == 1.0
    assert learned.ratio(None, None, "metal") == 1.0
    quantized = plan_from_config(scout_config(4), "scout", kv_bits=8, backend="metal")
    assert learned.apply(quantized, MODEL, "metal").peak_scale == 1.0


def test_a_plan_is_never_made_less_cautious(data_folder, plan):
    planned = planned_turn_peak(plan, 0, 4096, 10, 512)
    learned = record_turn(MODEL, "metal", plan, planned * 0.8, 0, 4096, 10, 512)
    assert learned.ratio(MODEL, None, "metal") == 1.0
    assert not (data_folder / STORE_NAME).exists()
    assert PeakCorrections({"metal|16|" + MODEL: 0.5}).ratio(MODEL, None, "metal") == 1.0


def test_only_metal_learns(data_folder, plan):
    planned = planned_turn_peak(plan, 0, 4096, 10, 512)
    for backend in ("cpu", "cuda"):
        assert record_turn(MODEL, backend, plan, planned * 1.5, 0, 4096, 10, 512).ratios == {}
    assert not (data_folder / STORE_NAME).exists()


def test_implausible_measurements_and_unreadable_files_are_ignored(data_folder, plan):
    planned = planned_turn_peak(plan, 0, 4096, 10, 512)
    assert record_turn(MODEL, "metal", plan, planned * 50, 0, 4096, 10, 512).ratios == {}
    (data_folder / STORE_NAME).write_text("{not json")
    assert load_corrections() == PeakCorrections()
    learned = record_turn(MODEL, "metal", plan, planned * 1.3, 0, 4096, 10, 512)
    assert load_corrections() == learned
    assert learned.ratio(MODEL, None, "metal") == pytest.approx(1.3, abs=1e-4)
