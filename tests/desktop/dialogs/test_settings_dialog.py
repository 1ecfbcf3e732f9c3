"""Settings: defaults persist, the dialog edits them, the next answer uses them."""

from PySide6.QtCore import QSettings

from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.main_window import MainWindow
from desktop.preferences import ChatDefaults, load_defaults, save_defaults


def test_defaults_round_trip(tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    assert load_defaults(settings) == ChatDefaults()
    chosen = ChatDefaults(
        system_prompt="Be brief.",
        temperature=0.0,
        top_p=0.5,
        max_tokens=77,
        seed=3,
        context_length=4096,
        kv_bits=8,
        appearance="dark",
    )
    save_defaults(settings, chosen)
    again = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    assert load_defaults(again) == chosen


def test_bad_stored_values_are_ignored(tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("defaults/temperature", "warm")
    settings.setValue("defaults/appearance", "purple")
    settings.setValue("defaults/max_tokens", "12")
    loaded = load_defaults(settings)
    assert loaded.temperature == ChatDefaults().temperature
    assert loaded.appearance == "system" and loaded.max_tokens == 12


def test_dialog_edits_values(qtbot):
    dialog = SettingsDialog(ChatDefaults())
    qtbot.addWidget(dialog)
    dialog.system_prompt.setPlainText("  You are a botanist.  ")
    dialog.temperature.setValue(0.0)
    dialog.max_tokens.setValue(99)
    dialog.seed.setValue(42)
    dialog.kv_bits.setCurrentIndex(2)
    dialog.appearance.setCurrentIndex(2)
    values = dialog.values()
    assert values.system_prompt == "You are a botanist."
    assert (values.temperature, values.max_tokens, values.seed, values.kv_bits, values.appearance) == (
        0.0,
        99,
        42,
        4,
        "dark",
    )
    dialog.seed.setValue(-1)
    assert dialog.values().seed is None


def test_window_uses_new_defaults(qtbot, tmp_path):
    window = MainWindow(settings=QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.set_defaults(ChatDefaults(system_prompt="Terse.", temperature=0.0, max_tokens=5))
    assert window.system_prompt == "Terse."
    assert window.generation_settings.temperature == 0.0 and window.generation_settings.max_tokens == 5
    reopened = MainWindow(settings=QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(reopened)
    assert reopened.defaults.max_tokens == 5
    window.close()
    reopened.close()


def test_parallel_requests_are_an_app_setting_the_engine_host_follows(qtbot, tmp_path):
    dialog = SettingsDialog(ChatDefaults())
    qtbot.addWidget(dialog)
    assert dialog.parallel.value() == 4 and dialog.parallel.maximum() == 16
    dialog.parallel.setValue(2)
    assert dialog.values().parallel == 2
    per_conversation = SettingsDialog(ChatDefaults(), conversation_title="Trip")
    qtbot.addWidget(per_conversation)
    assert per_conversation.parallel.isHidden()
    window = MainWindow(settings=QSettings(str(tmp_path / "w.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    assert window.worker.host.parallel == 4
    window.set_defaults(ChatDefaults(parallel=2))
    assert window.worker.host.parallel == 2
    window.close()
