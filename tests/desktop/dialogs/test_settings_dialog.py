"""Settings: defaults persist, the dialog edits them, the next answer uses them."""

from PySide6.QtCore import QSettings

from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.main_window import MainWindow
from desktop.preferences import ChatDefaults, load_defaults, save_defaults
from models.inference.settings_spec import SETTINGS


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
    dialog.boxes["temperature"].setValue(0.0)
    dialog.boxes["max_tokens"].setValue(99)
    dialog.boxes["seed"].setValue(42)
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
    dialog.boxes["seed"].setValue(-1)
    assert dialog.values().seed is None


def test_the_dialog_has_a_box_for_every_setting_with_the_tables_range(qtbot):
    dialog = SettingsDialog(ChatDefaults())
    qtbot.addWidget(dialog)
    defaults = ChatDefaults()
    for spec in SETTINGS:
        box = dialog.boxes[spec.name]
        low, high = spec.dialog_range()
        assert (box.minimum(), box.maximum()) == (low, high), spec.name
        assert spec.low <= low + (1 if spec.unset_text else 0) and high <= spec.high, spec.name
        if spec.low_open:
            assert low > spec.low
        value = getattr(defaults, spec.name)
        assert box.value() == (low if value is None else value), spec.name
        assert getattr(dialog.values(), spec.name) == value, spec.name
    assert dialog.boxes["min_p"].value() == 0.0 and dialog.boxes["repetition_penalty"].value() == 1.0


def test_min_p_and_repetition_penalty_are_edited_and_restored(qtbot, tmp_path):
    dialog = SettingsDialog(ChatDefaults(), conversation_title="Trip")
    qtbot.addWidget(dialog)
    assert not dialog.boxes["min_p"].isHidden() and not dialog.boxes["repetition_penalty"].isHidden()
    dialog.boxes["min_p"].setValue(0.05)
    dialog.boxes["repetition_penalty"].setValue(1.3)
    dialog.boxes["repetition_penalty"].setValue(7.0)  # clamped to the table's range
    chosen = dialog.values()
    assert (chosen.min_p, chosen.repetition_penalty) == (0.05, 2.0)
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    save_defaults(settings, chosen)
    assert load_defaults(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)) == chosen
    generation = chosen.generation_settings()
    assert (generation.min_p, generation.repetition_penalty) == (0.05, 2.0)
    dialog._on_restore()
    assert (dialog.values().min_p, dialog.values().repetition_penalty) == (0.0, 1.0)


def test_out_of_range_stored_defaults_are_ignored(tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("defaults/min_p", "3")
    settings.setValue("defaults/repetition_penalty", "0.2")
    settings.setValue("defaults/temperature", "9")
    settings.setValue("defaults/top_p", "0.4")
    loaded = load_defaults(settings)
    assert (loaded.min_p, loaded.repetition_penalty, loaded.temperature) == (0.0, 1.0, 0.6)
    assert loaded.top_p == 0.4


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
