"""Settings shows the saved KV caches: the disk budget (default 20 GB), space used, Clear."""

from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.preferences import ChatDefaults
from models.inference.prompt_cache_keeper import PromptCacheKeeper
from tests.models.inference.test_prompt_cache_files import IDENTITY, snapshot


def test_budget_used_space_and_clear(qtbot, tmp_path):
    keeper = PromptCacheKeeper(tmp_path)
    for i in (1, 2):
        keeper.save(i, snapshot(), IDENTITY)
    dialog = SettingsDialog(ChatDefaults(), kv_caches=keeper)
    qtbot.addWidget(dialog)
    storage = dialog.kv_storage
    assert storage.budget.value() == 20
    assert "(2 conversations)" in storage.used.text()
    storage.budget.setValue(3)
    dialog.accept()
    assert PromptCacheKeeper(tmp_path).budget_bytes == 3 * 1024**3

    storage.clear_button.click()
    assert keeper.files() == [] and not storage.clear_button.isEnabled()
    assert storage.used.text().startswith("nothing used")


def test_not_shown_for_one_conversation(qtbot, tmp_path):
    dialog = SettingsDialog(ChatDefaults(), conversation_title="Chat", kv_caches=PromptCacheKeeper(tmp_path))
    qtbot.addWidget(dialog)
    assert dialog.kv_storage is None
