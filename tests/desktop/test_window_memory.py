"""Memory in the window: fit badges, load anyway, the per-turn budget, the settings hint. The
model answers through the fake engine: the plans come from the checkpoint folder, not from it."""

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt

from desktop.controllers.model_library import ModelLibrary
from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.preferences import ChatDefaults
from models.hub.catalog import add_user_model
from models.inference.engine import GenerationSettings
from models.memory.budget import MemoryBudget, mac_budget
from models.memory.planner import choose_prefill_step, plan_model
from models.memory.turn_size import conversation_tokens
from tests.support.window_helpers import make_window, wait_listed

TIMEOUT = 120_000


def test_badges_come_from_the_planner_and_follow_the_context(qtbot, tmp_path, checkpoints):
    add_user_model(str(checkpoints["4bit"]))
    library = ModelLibrary(budget=mac_budget(128))
    wait_listed(qtbot, library, lambda: library.listing(str(checkpoints["4bit"])) is not None)
    scout = next(row for row in library.listings if "Scout" in row.entry.display_name and row.entry.bits == 4)
    maverick = next(
        row for row in library.listings if "Maverick" in row.entry.display_name and row.entry.bits == 8
    )
    assert library.fit(scout).verdict == "fits" and "tokens" in library.fit(scout).detail
    assert library.fit(maverick).verdict == "wont_fit"
    assert library.fit(library.listing(str(checkpoints["4bit"]))).verdict == "fits"
    max_context = library.fit(scout).report.max_context
    library.set_fit_parameters(max_context * 2, 16)
    assert library.fit(scout).verdict == "wont_fit"
    library.set_fit_parameters(max_context * 2, 4)  # a 4-bit KV cache holds more
    assert library.fit(scout).report.max_context > max_context
    library.shutdown()


@pytest.mark.parametrize("anyway", [False, True])
def test_a_model_that_wont_fit_asks_first(qtbot, tmp_path, checkpoints, monkeypatch, anyway, fake_engines):
    add_user_model(str(checkpoints["4bit"]))
    library = ModelLibrary(budget=MemoryBudget(10**8, 10**8, 0, "metal", "test"))  # 100 MB: too small
    window = make_window(qtbot, tmp_path, library, engine_factory=fake_engines)
    wait_listed(qtbot, library, lambda: len(library.runnable()) == 1)
    badge = library.fit(library.runnable()[0])  # the planner's verdict
    assert badge.verdict == "wont_fit" and badge.detail.startswith("Won't fit: ")
    asked, requested = [], []
    monkeypatch.setattr(window, "_confirm_load_anyway", lambda name, detail: asked.append(detail) or anyway)
    window.worker.request_load.connect(lambda path, _cancel: requested.append(path))
    if anyway:
        with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
            window.use_model(library.runnable()[0])
        # The lambda runs in the worker's thread (the sender's), possibly after the load finished.
        qtbot.waitUntil(lambda: requested == [str(checkpoints["4bit"])], timeout=10_000)
    else:
        window.use_model(library.runnable()[0])
        assert requested == [] and window.model_name is None
    assert asked == [badge.detail]
    window.close()


@pytest.fixture
def loaded(qtbot, tmp_path, checkpoints, fake_engines):
    library = ModelLibrary()
    window = make_window(qtbot, tmp_path, library, engine_factory=fake_engines)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    qtbot.waitUntil(lambda: window.turn_memory.plan is not None, timeout=10_000)
    yield window
    window.close()


def test_prefill_chunk_is_chosen_to_stay_in_budget(loaded, qtbot):
    window = loaded
    window.generation_settings = GenerationSettings(max_tokens=3000, temperature=0.0)
    plan = window.turn_memory.plan
    turn = 5 // 3 + 8 + 3000  # "Hello" as estimated, plus the answer's room
    tight = plan.peak_bytes(turn, 256) + 1
    # A survey still running (the loaded folder is listed) must not put the real budget back.
    window.library.budget = window.library.budget_override = MemoryBudget(tight, tight, 0, "cpu", "test")
    expected = choose_prefill_step(plan, turn, tight)
    assert expected is not None and expected < 2048  # the budget rules out the larger chunks
    jobs = []
    window.worker.request_generate.connect(jobs.append)
    qtbot.keyClicks(window.composer.edit, "Hello")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        window.stop()
    # The lambda runs in the worker's thread (the sender's), possibly after the answer ended.
    qtbot.waitUntil(lambda: len(jobs) == 1, timeout=10_000)
    assert jobs[0].settings.prefill_step_size == expected


def test_a_turn_that_would_outgrow_memory_stops_first(loaded, qtbot, monkeypatch):
    window = loaded
    qtbot.keyClicks(window.composer.edit, "First")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    first_id = window.conversations.current_id
    budget = window.turn_memory.plan.weights.total + 1000  # nothing beyond the weights
    # A survey still running (the loaded folder is listed) must not put the real budget back.
    window.library.budget = window.library.budget_override = MemoryBudget(budget, budget, 0, "cpu", "test")
    offered = []
    monkeypatch.setattr(window, "_ask_fresh_start", lambda reason: offered.append(reason) or False)
    qtbot.keyClicks(window.composer.edit, "Second")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert offered and "over the" in offered[0]
    assert not window.generating and window.composer.text() == "Second"  # nothing lost
    assert offered[0] in window.notice.text()

    before = conversation_tokens(window.transcript_model.entries())
    monkeypatch.setattr(window, "_ask_fresh_start", lambda reason: True)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert window.conversations.current_id != first_id
    # the new conversation is measured afresh
    assert conversation_tokens(window.transcript_model.entries()) < before
    assert [e.text for e in window.transcript_model.entries()][0] == "First"
    assert window.transcript_model.rowCount() == 2 and window.composer.text() == "Second"


def test_settings_say_what_context_fits(loaded, qtbot):
    window = loaded
    name, plan, budget = window._memory_hint_source()
    dialog = SettingsDialog(ChatDefaults(), window, memory=(name, plan, budget))
    qtbot.addWidget(dialog)
    assert "tokens fit" in dialog.context_hint.text()
    dialog.context_length.setValue(4096)
    text_16 = dialog.context_hint.text()
    dialog.kv_bits.setCurrentIndex(2)  # 4-bit KV
    assert dialog.context_hint.text() != text_16
    expected = replace(plan, kv_bits=4).fit(4096, budget).summary
    assert dialog.context_hint.text().endswith(expected)


def test_loaded_model_plan_matches_the_folder(loaded, checkpoints):
    planned = plan_model(checkpoints["4bit"], backend="cpu")
    assert loaded.turn_memory.plan.weights.total == planned.weights.total
