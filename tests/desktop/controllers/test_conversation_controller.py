"""The window's conversation controller: which conversation is open, read back from the store."""

from __future__ import annotations

from desktop.controllers.conversation_controller import ConversationController
from models.chats.store import ConversationStore


def test_rows_stored_in_a_conversation_already_gone_say_nothing(qtbot, tmp_path):
    """A first answer that failed with nothing removes the conversation it created, sometimes
    before the window reads it back: that is no store problem, and nothing is opened."""
    store = ConversationStore(tmp_path)
    controller = ConversationController(store)
    notices = []
    controller.notice.connect(lambda text, *_: notices.append(text))
    gone = store.create()
    store.delete(gone.id)
    controller.stored_in(gone.id)
    assert notices == [] and controller.current is None
    kept = store.create()
    controller.stored_in(kept.id)
    assert controller.current is not None and controller.current.id == kept.id
    store.close()
