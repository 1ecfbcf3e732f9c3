"""Copy, copy code, edit and resend, regenerate and continue, from the message buttons (answers
from the fake engine, whose KV cache is kept as the real one's)."""

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication

from desktop.main_window import MainWindow
from models.chats.turns import Turn
from models.inference.engine import GenerationSettings

TIMEOUT = 120_000


@pytest.fixture
def window(qtbot, tmp_path, checkpoints, fake_engines):
    win = MainWindow(
        engine_factory=fake_engines, settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    )
    qtbot.addWidget(win)
    win.show()
    win.generation_settings = GenerationSettings(max_tokens=6, temperature=0.0)
    with qtbot.waitSignal(win.model_ready, timeout=TIMEOUT):
        win.load_model(checkpoints["4bit"])
    yield win
    win.close()


def ask(qtbot, window, text):
    qtbot.keyClicks(window.composer.edit, text)
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    return blocker.args[0]


def press(qtbot, window, row, action):
    button = window.transcript.row_actions(row).buttons[action]
    assert button.isVisibleTo(window), f"{action} is not offered on row {row}"
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    return blocker.args[0]


def test_copy_and_copy_code(window, qtbot):
    answer = "Here:\n\n```python\nprint(1)\n```\n\nand\n\n```\nls -la\n```\n"
    window.session.show([Turn("user", "show code"), Turn("assistant", answer, finish_reason="stop")])
    row = 1
    window.transcript.flush()
    widget = window.transcript.row_actions(row)
    qtbot.mouseClick(widget.buttons["copy_code"], Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "print(1)\n\nls -la"
    qtbot.mouseClick(widget.buttons["copy"], Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text().startswith("Here:")
    assert not window.transcript.row_actions(0).buttons["copy_code"].isVisibleTo(window)


def test_regenerate_replaces_the_last_answer(window, qtbot):
    ask(qtbot, window, "First question")
    first = window.transcript_model.entry(1).text
    window.generation_settings = GenerationSettings(max_tokens=6, temperature=1.0, seed=11)
    assert not window.transcript.row_actions(0).buttons["regenerate"].isVisibleTo(window)
    step = press(qtbot, window, 1, "regenerate")
    model = window.transcript_model
    assert model.rowCount() == 2 and model.entry(0).text == "First question"
    assert step.finish_reason == "length" and model.entry(1).text != first
    assert step.cached_tokens > 0  # the question's prefix stayed in the KV cache


def test_edit_replaces_question_and_what_follows(window, qtbot):
    ask(qtbot, window, "One")
    ask(qtbot, window, "Two")
    assert window.transcript_model.rowCount() == 4
    qtbot.mouseClick(window.transcript.row_actions(0).buttons["edit"], Qt.MouseButton.LeftButton)
    assert window.composer.text() == "One"
    window.composer.edit.selectAll()
    qtbot.keyClicks(window.composer.edit, "Uno")
    with qtbot.waitSignal(window.answer_finished, timeout=TIMEOUT):
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    model = window.transcript_model
    assert [model.entry(r).role for r in range(model.rowCount())] == ["user", "assistant"]
    assert model.entry(0).text == "Uno"


def test_continue_extends_an_answer_cut_at_the_limit(window, qtbot):
    first = ask(qtbot, window, "Write a lot")
    assert first.finish_reason == "length"
    before = window.transcript_model.entry(1)
    text_before, ids_before = before.text, before.token_ids
    step = press(qtbot, window, 1, "continue")
    after = window.transcript_model.entry(1)
    assert window.transcript_model.rowCount() == 2
    assert after.text.startswith(text_before) and len(after.text) > len(text_before)
    assert after.token_ids[: len(ids_before)] == ids_before
    assert len(after.token_ids) == len(ids_before) + step.generation_tokens
    # Everything before the continuation came from the KV cache.
    assert step.prompt_tokens <= 1
