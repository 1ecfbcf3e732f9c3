"""The window on a damaged conversation database: it starts, says so once, and can start anew."""

from __future__ import annotations

from desktop import notices
from desktop.main_window import MainWindow
from models.chats.answer_recorder import AnswerRecorder
from models.chats.store import ConversationStore
from tests.models.chats.test_store import FakeStep, damage_messages_page
from tests.support.window_helpers import make_window


def test_a_damaged_database_is_reported_at_start_and_moved_aside_on_request(qtbot, tmp_path):
    data = tmp_path / "data"
    with ConversationStore(data) as store:
        conversation = store.create()
        for n in range(50):
            store.add_message(conversation.id, "user", f"message {n} about zebras " * 10)
    damage_messages_page(data)

    window: MainWindow = make_window(qtbot, tmp_path, data=data)
    qtbot.waitUntil(lambda: "is damaged" in window.notice.text(), timeout=10_000)
    move_aside = window.notice.row(notices.STORE).action_button
    assert move_aside.isVisible()
    assert move_aside.text() == "Move Aside and Start New"
    move_aside.click()
    assert window.notice.texts() == [window.notice.row(notices.STORE).text()]  # it replaced that one
    assert "moved to" in window.notice.text()
    kept = [p for p in data.iterdir() if p.name.startswith("conversations.damaged-")]
    assert len(kept) == 1
    assert window.sidebar.model.rowCount() == 0
    assert window.conversations.store.list_conversations() == []
    window.conversations.store.create()  # the new database takes writes
    window.close()


def test_the_window_refuses_a_turn_while_a_command_answers_in_that_conversation(
    qtbot, tmp_path, checkpoints, fake_engines
):
    from tests.desktop.test_window_conversations import TIMEOUT, ask

    window = make_window(qtbot, tmp_path, max_tokens=3, engine_factory=fake_engines)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    ask(qtbot, window, "A first question")
    conversation_id = window.conversations.current_id
    with ConversationStore(window.conversations.store.folder) as store:
        command = AnswerRecorder(store)  # `ask --chat ID` in another process holds the same lock
        command.begin(conversation_id, "A question from the command line")
        step = ask(qtbot, window, "A second question")
        assert step.finish_reason == "error"
        assert f"Conversation {conversation_id} is answering in another window" in window.notice.text()
        assert window.composer.edit.toPlainText() == "A second question"  # the draft is given back
        command.finish(FakeStep("its answer", finish_reason="stop"))
        texts = [m.text for m in store.messages(conversation_id)]
        assert "A second question" not in texts and texts[-2:] == [
            "A question from the command line",
            "its answer",
        ]
    window.composer.edit.clear()
    assert ask(qtbot, window, "A second question").finish_reason != "error"
    window.close()
