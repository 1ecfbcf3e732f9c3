"""The status bar in the window (fake engine): a context gauge (the open conversation's tokens of
its context length) after each answer and on switching conversations, one labelled peak, and
labelled answer numbers that come back with the conversation they belong to."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt

from models.inference.engine import GenerationSettings
from models.memory.turn_size import conversation_tokens
from tests.support.window_helpers import make_window

TIMEOUT = 60_000
NUMBERS = re.compile(r"^First token \d+\.\d+ s · \d+\.\d tok/s · Peak \d")


@pytest.fixture
def loaded(qtbot, tmp_path, checkpoints, fake_engines):
    window = make_window(qtbot, tmp_path, engine_factory=fake_engines)
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    yield window
    window.close()


def ask(qtbot, window, text: str) -> None:
    qtbot.keyClicks(window.composer.edit, text)
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)


def test_the_context_gauge_and_the_answer_numbers_follow_the_open_conversation(loaded, qtbot):
    window = loaded
    window.generation_settings = GenerationSettings(max_tokens=6, temperature=0.0, context_length=4096)
    bar = window.status_bar
    assert bar.context_label.text() == ""  # nothing asked yet
    ask(qtbot, window, "Hello there")
    used = conversation_tokens(window.session.turns)
    assert used > 0
    assert bar.context_label.text() == f"{used:,} / 4,096 tokens"
    assert NUMBERS.match(bar.stats_label.text()), bar.stats_label.text()
    assert "peak" not in bar.memory_label.text().lower()  # one peak: the answer's, labelled
    first = window.conversations.current_id
    ask(qtbot, window, "And a second question, somewhat longer than the first")
    more = conversation_tokens(window.session.turns)
    assert more > used and bar.context_label.text() == f"{more:,} / 4,096 tokens"

    window.new_chat()
    assert bar.context_label.text() == "" and bar.stats_label.text() == ""
    with qtbot.waitSignal(window.conversation_opened, timeout=TIMEOUT):
        window.open_conversation(first)
    assert bar.context_label.text() == f"{more:,} / 4,096 tokens"
    assert NUMBERS.match(bar.stats_label.text())  # the numbers of its last answer
