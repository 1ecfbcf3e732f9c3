"""The window on a checkpoint with Meta's real Scout config (sizes shrunk only), and a load
failure shown as a one-line notice."""

import shutil

from PySide6.QtCore import Qt

from desktop import notices
from tests.support.window_helpers import make_window

LOAD_TIMEOUT = 60_000
ANSWER_TIMEOUT = 120_000


def test_the_real_scout_config_loads_and_answers_in_the_window(qtbot, tmp_path, checkpoints, png_file):
    window = make_window(qtbot, tmp_path)
    with qtbot.waitSignal(window.model_ready, timeout=LOAD_TIMEOUT):
        window.load_model(checkpoints["scout"])
    window.composer.add_files([str(png_file())])
    qtbot.waitUntil(
        lambda: len(window.composer.images()) == 1 and not window.composer.loader.pending, timeout=10_000
    )
    qtbot.keyClicks(window.composer.edit, "What is in this picture?")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    step = blocker.args[0]
    assert step.finish_reason in ("length", "stop") and step.error is None
    assert window.transcript_model.entry(1).text
    assert not window.notice.isVisible()
    window.close()


def test_a_load_failure_is_a_one_line_notice(qtbot, tmp_path, checkpoints):
    broken = tmp_path / "broken-tokenizer"
    shutil.copytree(checkpoints["scout"], broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    window = make_window(qtbot, tmp_path)
    window.load_model(broken)
    # The worker's signal comes from its thread; wait for what the window shows instead.
    qtbot.waitUntil(lambda: window.notice.text().startswith("Could not load"), timeout=LOAD_TIMEOUT)
    message = window.notice.row(notices.LOAD).text()
    assert message.startswith("Could not load broken-tokenizer: ") and "\n" not in message
    assert window.notice.isVisible() and window.model_name is None
    window.close()


class _FakePanic(BaseException):
    """What tokenizers' Rust panics arrive as (pyo3_runtime.PanicException): a BaseException."""


def test_a_tokenizer_panic_while_answering_is_a_one_line_notice(qtbot, tmp_path, checkpoints, monkeypatch):
    from models.inference.checkpoint import read_checkpoint
    from models.inference.engine import load_tokenizer

    def panic(*_args, **_kwargs):
        raise _FakePanic("called `Option::unwrap()` on a `None` value")

    window = make_window(qtbot, tmp_path)
    with qtbot.waitSignal(window.model_ready, timeout=LOAD_TIMEOUT):
        window.load_model(checkpoints["4bit"])
    detokenizer = load_tokenizer(read_checkpoint(checkpoints["4bit"])).detokenizer
    monkeypatch.setattr(type(detokenizer), "add_token", panic)
    qtbot.keyClicks(window.composer.edit, "Hello")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    step = blocker.args[0]
    assert step.finish_reason == "error" and "tokenizer failed" in step.error
    qtbot.waitUntil(lambda: "tokenizer failed" in window.notice.text(), timeout=10_000)
    assert "\n" not in window.notice.row(notices.ANSWER).text()
    window.close()
