"""Settings follow ``LLAMA_DESK_DATA_DIR``: a fresh data folder is a fresh Llama Desk."""

import pytest

from desktop.main_window import MainWindow
from desktop.preferences import SETTINGS_FILE, ChatDefaults, open_settings
from models.app_folders import DATA_DIR_ENV

TIMEOUT = 60_000


def open_window(qtbot) -> MainWindow:
    window = MainWindow()  # settings and conversations from the environment, as the app does
    qtbot.addWidget(window)
    window.show()
    return window


@pytest.mark.slow
def test_each_data_folder_keeps_its_own_last_model(qtbot, tmp_path, monkeypatch, checkpoints):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv(DATA_DIR_ENV, str(first))
    window = open_window(qtbot)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    window.close()
    window.settings.sync()  # what Qt does from its event loop or at exit
    assert (first / SETTINGS_FILE).is_file()

    monkeypatch.setenv(DATA_DIR_ENV, str(second))
    fresh = open_window(qtbot)
    assert fresh.settings.value("last_model", None) is None
    fresh.close()

    monkeypatch.setenv(DATA_DIR_ENV, str(first))
    assert open_settings().value("last_model", None) == str(checkpoints["4bit"])


def test_settings_without_a_data_folder_are_the_platform_ones(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV)
    settings = open_settings()
    assert settings.format() == settings.Format.NativeFormat
    assert SETTINGS_FILE not in settings.fileName()


@pytest.mark.parametrize(("stored", "kv_bits"), [(16, None), (8, 8), (4, 4), (12, None), (0, None)])
def test_kv_precision_follows_the_planner_choices(stored, kv_bits):
    assert ChatDefaults(kv_bits=stored).generation_settings().kv_bits == kv_bits


@pytest.mark.parametrize(("stored", "loaded"), [("2", 2), ("16", 16), ("0", 4), ("99", 4), ("many", 4)])
def test_parallel_requests_are_kept_within_range(tmp_path, stored, loaded):
    from PySide6.QtCore import QSettings

    from desktop.preferences import load_defaults, save_defaults

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("defaults/parallel", stored)
    assert load_defaults(settings).parallel == loaded
    save_defaults(settings, ChatDefaults(parallel=3))
    assert load_defaults(settings).parallel == 3
