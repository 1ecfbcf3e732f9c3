"""The Model menu, downloads, the welcome panel and the license, in the window. Switching
variants runs the real engine (which weights answer is the subject); the downloaded model answers
through the fake engine."""

import gc
import weakref

import pytest
from PySide6.QtCore import QSettings, Qt

from desktop.controllers.model_library import ModelLibrary
from desktop.dialogs.license_dialog import LicenseDialog
from models.hub.catalog import add_user_model
from models.hub.download_end import DownloadEnd, DownloadEndKind
from models.hub.license import license_accepted
from models.inference.engine import Engine, GenerationSettings
from models.inference.prompt import ChatMessage
from tests.support.hub_server import running_hub
from tests.support.window_helpers import make_window, wait_listed

TIMEOUT = 120_000
SCOUT_4BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit"
FIRST_SHARD = "model-00001-of-00002.safetensors"  # a checkpoint's first weight file


def menu_action(window, text_start):
    window.model_menu.rebuild()
    for action in window.model_menu.actions():
        if action.text().startswith(text_start):
            return action
    raise AssertionError(
        f"no menu entry starting with {text_start!r}: {[a.text() for a in window.model_menu.actions()]}"
    )


def test_switch_variant_from_the_menu(qtbot, tmp_path, checkpoints):
    add_user_model(str(checkpoints["4bit"]))
    add_user_model(str(checkpoints["8bit"]))
    window = make_window(qtbot, tmp_path)
    wait_listed(qtbot, window.library, lambda: len(window.library.runnable()) == 2)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        menu_action(window, "tiny-llama4-4bit").trigger()
    old_model = weakref.ref(window.worker.engine.model)
    assert menu_action(window, "tiny-llama4-4bit").isChecked()

    qtbot.keyClicks(window.composer.edit, "Which variant answers?")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)

    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT) as ready:
        menu_action(window, "tiny-llama4-8bit").trigger()
    assert ready.args[0] == "tiny-llama4-8bit"
    gc.collect()
    assert old_model() is None, "the previous model is still in memory"
    assert window.transcript_model.rowCount() == 2  # the conversation stayed
    assert menu_action(window, "tiny-llama4-8bit").isChecked()
    assert not menu_action(window, "tiny-llama4-4bit").isChecked()

    qtbot.keyClicks(window.composer.edit, "And now?")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    answer = blocker.args[0]
    messages = window.session.messages()[:-1]  # as sent: before this answer
    reference = list(Engine.load(checkpoints["8bit"]).generate(messages, window.generation_settings))[-1]
    assert answer.token_ids == reference.token_ids
    assert answer.cached_tokens == 0  # a new model starts with an empty cache
    assert QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat).value("last_model") == str(
        checkpoints["8bit"]
    )
    window.close()


@pytest.fixture
def hub(checkpoints, tmp_path, monkeypatch):
    with running_hub(monkeypatch, tmp_path / "hf", {SCOUT_4BIT: checkpoints["4bit"]}) as server:
        yield server


def test_download_from_the_menu_then_it_loads(qtbot, tmp_path, hub, monkeypatch, fake_engines):
    monkeypatch.setattr("desktop.main_window.ensure_license_accepted", lambda parent: True)
    window = make_window(qtbot, tmp_path, engine_factory=fake_engines)
    wait_listed(qtbot, window.library, lambda: window.library.listing(SCOUT_4BIT) is not None)
    assert window.welcome.isVisible()  # nothing on disk yet
    progress = []
    window.library.download_progress.connect(lambda repo, p: progress.append(p))
    name = window.library.listing(SCOUT_4BIT).entry.display_name
    assert "not downloaded" in menu_action(window, name).text()  # a state, not an action
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT) as ready:
        menu_action(window, name).trigger()  # not on disk: the menu downloads it
    # Named as the menu names it, never by the snapshot folder's commit hash.
    assert ready.args[0] == window.model_name == window.model_label.text() == name
    assert window.transcript.placeholder.text().startswith(f"{name} is ready.")
    assert progress and progress[-1].bytes_done == progress[-1].bytes_total > 0
    wait_listed(qtbot, window.library, lambda: window.library.listing(SCOUT_4BIT).status == "downloaded")
    assert "downloaded" in menu_action(window, window.library.listing(SCOUT_4BIT).entry.display_name).text()
    assert not window.welcome.isVisible()
    hub.stop()  # offline from here on: the downloaded model answers
    qtbot.keyClicks(window.composer.edit, "Hello offline")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert blocker.args[0].finish_reason == "length"
    assert window.worker.engine is fake_engines.last
    stored = window.conversations.store.messages(window.conversations.current_id)
    assert [m.model for m in stored] == [None, name]  # the answer's author
    window.close()


def test_download_needs_the_license(qtbot, tmp_path, hub, monkeypatch):
    monkeypatch.setattr("desktop.main_window.ensure_license_accepted", lambda parent: False)
    window = make_window(qtbot, tmp_path)
    wait_listed(qtbot, window.library, lambda: window.library.listing(SCOUT_4BIT) is not None)
    window.download_model(window.library.listing(SCOUT_4BIT))
    assert not window.library.is_downloading(SCOUT_4BIT)
    assert "license" in window.notice.text()
    window.close()


def test_pause_and_resume_a_download(qtbot, tmp_path, hub):
    library = ModelLibrary()
    stall = hub.stall(SCOUT_4BIT, FIRST_SHARD, after_bytes=4096)
    with qtbot.waitSignal(
        library.download_progress,
        timeout=TIMEOUT,
        check_params_cb=lambda repo, p: p.file == FIRST_SHARD and p.file_bytes_done >= 4096,
    ):
        library.start_download(SCOUT_4BIT)
    with qtbot.waitSignal(library.download_stopped, timeout=TIMEOUT) as stopped:
        library.pause_download(SCOUT_4BIT)
        stall.release()
    assert stopped.args == [DownloadEnd(SCOUT_4BIT, DownloadEndKind.PAUSED)]
    assert library.errors[SCOUT_4BIT] == "Paused."
    size = len(hub.repos[SCOUT_4BIT].files[FIRST_SHARD].data)
    hub.reset_counters()
    with qtbot.waitSignal(library.download_finished, timeout=TIMEOUT):
        library.start_download(SCOUT_4BIT)
    assert hub.bytes_served(SCOUT_4BIT, FIRST_SHARD) <= size - 4096
    library.shutdown()


def test_welcome_recommends_the_largest_variant_that_fits(qtbot, tmp_path):
    from models.memory.budget import mac_budget

    library = ModelLibrary(budget=mac_budget(128))  # a 128 GB MacBook Pro
    window = make_window(qtbot, tmp_path, library=library)
    wait_listed(qtbot, library, lambda: bool(library.listings))
    window._update_welcome()
    assert window.welcome.isVisible()
    pick = library.recommended()
    fitting = [row for row in library.listings if library.fit(row) and library.fit(row).verdict == "fits"]
    assert pick is not None and pick.size_bytes == max(row.size_bytes for row in fitting)
    text = window.welcome.recommendation.text()
    assert pick.entry.display_name in text
    assert "Scout" in pick.entry.display_name  # Maverick's weights alone exceed 128 GB
    assert library.fit(pick).report is not None  # the planner's numbers, not a rule of thumb
    # Words for people: the download, which Macs it runs on; the planner's terms only on hover.
    assert "(4-bit) · 62.4 GB download · runs on Macs with 96 GB or more. It fits this Mac." in text
    assert "working memory" not in text and "prefilling" not in text and "((" not in text
    assert "working memory" in window.welcome.recommendation.toolTip()
    window.close()


def test_welcome_says_which_mac_the_smallest_model_needs_when_none_fits(qtbot, tmp_path):
    from models.memory.budget import mac_budget

    library = ModelLibrary(budget=mac_budget(16), memory_bytes=16 * 2**30)  # a 16 GB MacBook Air
    window = make_window(qtbot, tmp_path, library=library)
    wait_listed(qtbot, library, lambda: bool(library.listings))
    window._update_welcome()
    text = window.welcome.recommendation.text()
    assert text.startswith("No Llama 4 model fits this Mac's 16 GB of memory.")
    assert "(3-bit), a 48.9 GB download, runs on Macs with 96 GB or more." in text
    assert not window.welcome.download_button.isVisible()
    window.close()


def test_license_dialog_records_acceptance(qtbot):
    dialog = LicenseDialog()
    qtbot.addWidget(dialog)
    ok = dialog.buttons.buttons()[0]
    assert "EU" in dialog.text.toPlainText() or "European Union" in dialog.text.toPlainText()
    assert not license_accepted()
    assert not ok.isEnabled()
    dialog.accept_box.setChecked(True)
    assert ok.isEnabled()
    dialog.accept()
    assert license_accepted()


def test_about_says_built_with_llama(qtbot, tmp_path, monkeypatch):
    shown = {}
    monkeypatch.setattr(
        "desktop.dialogs.model_dialogs.QMessageBox.about", lambda parent, title, text: shown.update(text=text)
    )
    window = make_window(qtbot, tmp_path)
    window.show_about()
    assert "Built with Llama" in shown["text"]
    window.close()


def test_engine_messages_reach_the_new_model(checkpoints):
    """Sanity: the two tiny variants answer differently, so the switch test can tell them apart."""
    messages = [ChatMessage("user", "Which variant answers?")]
    settings = GenerationSettings(max_tokens=6, temperature=0.0)
    a = list(Engine.load(checkpoints["4bit"]).generate(messages, settings))[-1]
    b = list(Engine.load(checkpoints["8bit"]).generate(messages, settings))[-1]
    assert a.token_ids != b.token_ids


def test_memory_budget_from_the_environment(monkeypatch):
    from desktop.app import _library_from_environment

    monkeypatch.delenv("LLAMA_DESK_MEMORY_BUDGET_GB", raising=False)
    assert _library_from_environment() is None
    monkeypatch.setenv("LLAMA_DESK_MEMORY_BUDGET_GB", "102.1")
    library = _library_from_environment()
    assert library.budget_override.budget_bytes == 102_100_000_000
    library.shutdown()
    monkeypatch.setenv("LLAMA_DESK_MEMORY_BUDGET_GB", "lots")
    assert _library_from_environment() is None
