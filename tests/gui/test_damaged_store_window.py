"""The window on a damaged conversation database: it starts, says so once, and can start anew."""

from __future__ import annotations

from desktop.main_window import MainWindow
from models.conversations import ConversationStore
from tests.gui.window_helpers import make_window
from tests.unit.test_conversation_store import damage_messages_page


def test_a_damaged_database_is_reported_at_start_and_moved_aside_on_request(qtbot, tmp_path):
    data = tmp_path / "data"
    with ConversationStore(data) as store:
        conversation = store.create()
        for n in range(50):
            store.add_message(conversation.id, "user", f"message {n} about zebras " * 10)
    damage_messages_page(data)

    window: MainWindow = make_window(qtbot, tmp_path, data=data)
    qtbot.waitUntil(lambda: "is damaged" in window.notice.text(), timeout=10_000)
    assert window.notice.action_button.isVisible()
    assert window.notice.action_button.text() == "Move Aside and Start New"
    window.notice.action_button.click()
    assert "moved to" in window.notice.text()
    kept = [p for p in data.iterdir() if p.name.startswith("conversations.damaged-")]
    assert len(kept) == 1
    assert window.sidebar.model.rowCount() == 0
    assert window.conversations.store.list_conversations() == []
    window.conversations.store.create()  # the new database takes writes
    window.close()
