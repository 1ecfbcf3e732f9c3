"""A model opened from a folder is listed in the Model menu and checked while it is active."""

import pytest

from models.hub.catalog import user_models
from tests.desktop.test_window_models import menu_action
from tests.support.window_helpers import make_window, wait_listed

TIMEOUT = 60_000


@pytest.mark.slow
def test_a_folder_opened_directly_is_listed_and_checked(qtbot, tmp_path, monkeypatch, checkpoints):
    folder = checkpoints["4bit"]
    window = make_window(qtbot, tmp_path)
    wait_listed(qtbot, window.library, lambda: True)
    assert window.library.listing_for_folder(folder) is None  # nothing lists it yet

    monkeypatch.chdir(folder.parent)  # opened by a relative path, as `--model tiny-llama4-4bit` would
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_checked(folder.name)  # what File ▸ Open Model Folder… does with the chosen folder
    qtbot.waitUntil(lambda: window.library.listing_for_folder(folder) is not None, timeout=10_000)

    listing = window.library.listing_for_folder(folder)
    assert listing.status == "local" and listing.entry.source == "user"
    assert [entry.path for entry in user_models()] == [folder]  # kept for the next start
    assert menu_action(window, "tiny-llama4-4bit").isChecked()
    assert [a.text() for a in window.model_menu.actions() if a.isChecked()] == [
        menu_action(window, "tiny-llama4-4bit").text()
    ]


@pytest.mark.slow
def test_switching_models_moves_the_check(qtbot, tmp_path, checkpoints):
    window = make_window(qtbot, tmp_path)
    for name in ("4bit", "8bit"):
        with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
            window.load_model(checkpoints[name])
        qtbot.waitUntil(
            lambda n=name: window.library.listing_for_folder(checkpoints[n]) is not None, timeout=10_000
        )
    assert menu_action(window, "tiny-llama4-8bit").isChecked()
    assert not menu_action(window, "tiny-llama4-4bit").isChecked()
    assert len(user_models()) == 2
