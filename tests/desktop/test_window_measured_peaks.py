"""The window teaches the planner each answer's measured peak (``models.memory.measured_peaks``), and
later turns and badges plan with what it learned. The answer comes from the fake engine, whose
step reports a peak as the real one does."""

from PySide6.QtCore import Qt

import models.memory.budget as memory_budget
import models.memory.measured_peaks as measured_peaks
from desktop.controllers.model_library import ModelLibrary
from models.hub.catalog import add_user_model
from models.memory.budget import mac_budget
from models.memory.measured_peaks import load_corrections, model_identity
from tests.support.window_helpers import make_window, wait_listed

TIMEOUT = 120_000


def test_an_answers_peak_corrects_later_plans(qtbot, tmp_path, checkpoints, monkeypatch, fake_engines):
    path = str(checkpoints["4bit"])
    add_user_model(path)
    library = ModelLibrary(budget=mac_budget(128))  # plans for a Mac (the Metal profile)
    window = make_window(qtbot, tmp_path, library, engine_factory=fake_engines)
    wait_listed(qtbot, library, lambda: library.listing(path) is not None)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(path)
    qtbot.waitUntil(lambda: window.turn_memory.plan is not None, timeout=10_000)

    # This machine is not a Mac: pretend it is, and that MLX used twice what was planned.
    monkeypatch.setattr(memory_budget, "detect_backend", lambda: "metal")
    calls = []
    real_record = measured_peaks.record_turn

    def record(model, backend, plan, measured, *turn):
        calls.append((model, backend, measured, turn))
        planned = measured_peaks.planned_turn_peak(plan, *turn)
        return real_record(model, backend, plan, 2 * planned, *turn)

    monkeypatch.setattr(measured_peaks, "record_turn", record)
    before = library.plan(path).peak_bytes(4096, 512)
    qtbot.keyClicks(window.composer.edit, "Hello")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as finished:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    step = finished.args[0]
    qtbot.waitUntil(
        lambda: library.peak_corrections is not None and bool(library.peak_corrections.ratios), timeout=10_000
    )

    [(model, backend, measured, turn)] = calls
    assert model == path and backend == "metal"
    assert measured == step.peak_memory_gb * 1e9 > 0
    assert turn[:3] == (step.cached_tokens, step.prompt_tokens, step.generation_tokens)
    key = f"metal|16|{model_identity(path)}"
    assert load_corrections().ratios == {key: 2.0}
    # The badge's plan and the next turn's plan are corrected for this backend.
    assert library.plan(path).peak_scale == 2.0
    assert library.plan(path).peak_bytes(4096, 512) > 1.9 * before
    window.close()
