"""What a new user hits in the first hour (issue 19), in the window with the fake engine: a
refused send stores nothing, the edit notice's × cancels the edit, and an active search keeps
the conversation just started in sight."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from models.inference.engine import GenerationSettings
from tests.support.window_helpers import make_window

TIMEOUT = 60_000


@pytest.fixture
def loaded(qtbot, tmp_path, checkpoints, fake_engines):
    window = make_window(qtbot, tmp_path, engine_factory=fake_engines)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    yield window
    window.close()


def ask(qtbot, window, text: str):
    qtbot.keyClicks(window.composer.edit, text)
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    return blocker.args[0]


def test_a_refused_send_leaves_no_empty_conversation(loaded, qtbot):
    window = loaded
    window.generation_settings = GenerationSettings(max_tokens=4, context_length=8)
    question = "This question is far too long for eight tokens, by quite a margin"
    for _attempt in range(2):
        assert ask(qtbot, window, question).finish_reason == "error"
        assert "context length" in window.notice.text()
        assert window.composer.text() == question  # the draft came back
        window.composer.edit.clear()
    store = window.conversations.store
    assert store.list_conversations() == []
    assert window.sidebar.model.rowCount() == 0
    assert window.conversations.current is None

    window.generation_settings = GenerationSettings(max_tokens=4)
    assert ask(qtbot, window, "Short").finish_reason == "length"
    [conversation] = store.list_conversations()
    assert window.conversations.current_id == conversation.id
    assert [m.role for m in store.messages(conversation.id)] == ["user", "assistant"]
    assert window.sidebar.model.rowCount() == 1
