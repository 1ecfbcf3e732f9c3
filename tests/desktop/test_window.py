"""The window as a person uses it, offscreen, answering through the fake engine
(``tests.support.fake_engine``): the model is not the subject here."""

import pytest
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from desktop.main_window import MainWindow
from models.chats.turns import Turn
from models.inference.engine import GenerationSettings
from tests.support.fake_engine import FakeScript

LOAD_TIMEOUT = 60_000
ANSWER_TIMEOUT = 120_000


@pytest.fixture
def window(qtbot, tmp_path, fake_engines):
    win = MainWindow(
        engine_factory=fake_engines,
        settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
    )
    qtbot.addWidget(win)
    win.show()
    win.generation_settings = GenerationSettings(max_tokens=12, temperature=0.0)
    yield win
    win.close()


@pytest.fixture
def loaded(window, qtbot, checkpoints):
    with qtbot.waitSignal(window.model_ready, timeout=LOAD_TIMEOUT):
        window.load_model(checkpoints["4bit"])
    return window


def drop(window, mime):
    pos = QPointF(window.width() / 2, window.height() / 2)
    enter = QDragEnterEvent(
        pos.toPoint(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    event = QDropEvent(
        pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(window, event)
    return event


def wait_images(qtbot, window, count):
    qtbot.waitUntil(
        lambda: len(window.composer.images()) == count and not window.composer.loader.pending, timeout=10_000
    )


def colour_image(width=112, height=56, color=Qt.GlobalColor.darkGreen):
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(color)
    return image


def test_drop_files_adds_thumbnails(window, qtbot, png_file):
    mime = QMimeData()
    mime.setUrls(
        [
            QUrl.fromLocalFile(str(png_file("a.png"))),
            QUrl.fromLocalFile(str(png_file("b.png", 60, 180, (0, 0, 255)))),
        ]
    )
    assert drop(window, mime).isAccepted()
    wait_images(qtbot, window, 2)
    assert window.composer.strip.isVisible()
    assert [img.name for img in window.composer.images()] == ["a.png", "b.png"]  # in the order dropped


def test_drop_image_data_from_another_app(window, qtbot):
    mime = QMimeData()
    mime.setImageData(colour_image())
    drop(window, mime)
    wait_images(qtbot, window, 1)
    assert window.composer.images()[0].size == (112, 56)


def test_paste_adds_an_image(window, qtbot):
    QGuiApplication.clipboard().setImage(colour_image(80, 40, Qt.GlobalColor.yellow))
    window.composer.edit.setFocus()
    window.composer.edit.paste()
    wait_images(qtbot, window, 1)
    assert window.composer.images()[0].size == (80, 40)


def test_remove_attachment(window, qtbot, png_file):
    window.composer.add_files([str(png_file())])
    wait_images(qtbot, window, 1)
    chip = window.composer._chips[0]
    qtbot.mouseClick(chip.remove_button, Qt.MouseButton.LeftButton)
    assert window.composer.images() == []
    assert not window.composer.strip.isVisible()


def test_bad_file_dropped_keeps_draft(window, qtbot, tmp_path, png_file):
    qtbot.keyClicks(window.composer.edit, "my question")
    window.composer.add_files([str(png_file())])
    wait_images(qtbot, window, 1)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(bad))])
    with qtbot.waitSignal(window.composer.notice, timeout=10_000) as blocker:
        drop(window, mime)
    assert "broken.png" in blocker.args[0]
    assert window.notice.isVisible() and "broken.png" in window.notice.text()
    assert window.composer.text() == "my question"
    assert len(window.composer.images()) == 1


def test_too_many_images_refused(window, qtbot, png_file):
    paths = [str(png_file(f"p{i}.png", 20 + i, 20)) for i in range(6)]
    with qtbot.waitSignal(window.composer.notice, timeout=10_000) as blocker:
        window.composer.add_files(paths)
    assert "at most 5 images" in blocker.args[0]
    wait_images(qtbot, window, 5)


def test_send_without_model_keeps_draft(window, qtbot):
    qtbot.keyClicks(window.composer.edit, "hello?")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert "No model is loaded" in window.notice.text()
    assert window.composer.text() == "hello?"
    assert window.transcript_model.rowCount() == 0


def test_shift_enter_is_a_newline(window, qtbot):
    qtbot.keyClicks(window.composer.edit, "line one")
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(window.composer.edit, "line two")
    assert window.composer.text() == "line one\nline two"


def test_send_streams_an_answer_about_an_image(loaded, qtbot, png_file, fake_engines):
    window = loaded
    fake_engines.last.script = FakeScript(token_interval_s=0.01)  # 12 tokens over >= 120 ms
    window.composer.add_files([str(png_file())])
    wait_images(qtbot, window, 1)
    qtbot.keyClicks(window.composer.edit, "What is in this picture?")
    chunks = []
    window.transcript_model.dataChanged.connect(
        lambda index, *_: chunks.append(window.transcript_model.entry(index.row()).text)
    )
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        assert window.composer.text() == "" and window.composer.images() == []
        assert window.composer.send_button.text() == "Stop"
        question_draws = window.transcript.rendered(0).renders
    step = blocker.args[0]
    assert step.finish_reason == "length" and step.generation_tokens == 12
    model = window.transcript_model
    assert model.rowCount() == 2
    user, answer = model.entry(0), model.entry(1)
    assert user.text == "What is in this picture?" and len(user.images) == 1
    assert fake_engines.last.calls[-1].images == 1
    assert answer.text and answer.text == chunks[-1]
    assert len(chunks) >= 2  # it grew while streaming
    assert window.transcript.rendered(0).thumbnails  # the image shows in the transcript
    assert window.transcript.rendered(1).text == answer.text
    # Streaming redrew the answer only; the question was drawn once.
    assert window.transcript.rendered(0).renders == question_draws
    assert "tok/s" in window.stats_label.text() and "First token" in window.stats_label.text()
    window.status_bar.refresh_memory()
    assert window.memory_label.text().startswith("Memory ")  # now; the answer's peak is in the stats
    assert window.composer.send_button.text() == "Send"


def held_after(fake_engines, tokens: int):
    """The loaded fake streams ``tokens`` tokens (10 ms apart, so the window shows some), then
    holds the answer until it is stopped."""
    fake_engines.last.script = FakeScript(token_interval_s=0.01, hold_after=tokens)
    fake_engines.last.holding.clear()  # the last answer's hold says nothing about the next
    return fake_engines.last


def test_stop_keeps_partial_answer_and_next_question_works(loaded, qtbot, fake_engines):
    window = loaded
    engine = held_after(fake_engines, 8)
    window.generation_settings = GenerationSettings(max_tokens=5000, temperature=0.0)
    qtbot.keyClicks(window.composer.edit, "Tell me everything")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        with qtbot.waitSignal(window.transcript_model.dataChanged, timeout=ANSWER_TIMEOUT):
            qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        qtbot.waitUntil(engine.holding.is_set, timeout=ANSWER_TIMEOUT)
        qtbot.mouseClick(window.composer.send_button, Qt.MouseButton.LeftButton)  # "Stop"
    step = blocker.args[0]
    assert step.finish_reason == "cancelled"
    assert 0 < step.generation_tokens < 5000
    assert step.generation_tokens == 8  # within one token: none after the Stop
    answer = window.transcript_model.entry(1)
    assert answer.text and answer.finish_reason == "cancelled"
    assert "Stopped" in window.transcript.rendered(1).footer

    window.generation_settings = GenerationSettings(max_tokens=4, temperature=0.0)
    qtbot.keyClicks(window.composer.edit, "Short one")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert blocker.args[0].finish_reason == "length"
    assert blocker.args[0].cached_tokens > 0  # the stopped answer's prefix was reused
    assert window.transcript_model.rowCount() == 4


def test_escape_stops(loaded, qtbot, fake_engines):
    window = loaded
    engine = held_after(fake_engines, 4)
    window.generation_settings = GenerationSettings(max_tokens=5000, temperature=0.0)
    qtbot.keyClicks(window.composer.edit, "Go on")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        with qtbot.waitSignal(window.transcript_model.dataChanged, timeout=ANSWER_TIMEOUT):
            qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
        qtbot.waitUntil(engine.holding.is_set, timeout=ANSWER_TIMEOUT)
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)
    assert blocker.args[0].finish_reason == "cancelled"
    assert blocker.args[0].generation_tokens == 4


def test_failed_send_gives_the_draft_back(loaded, qtbot, png_file):
    window = loaded
    window.generation_settings = GenerationSettings(max_tokens=4, context_length=20)
    window.composer.add_files([str(png_file())])
    wait_images(qtbot, window, 1)
    qtbot.keyClicks(window.composer.edit, "This question is far too long for twenty tokens")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert blocker.args[0].finish_reason == "error"
    assert "context length" in window.notice.text()
    assert window.composer.text() == "This question is far too long for twenty tokens"
    assert len(window.composer.images()) == 1
    assert window.transcript_model.rowCount() == 0


def test_load_failure_is_a_message(window, qtbot, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    window.load_model(folder)
    qtbot.waitUntil(lambda: "config.json" in window.notice.text(), timeout=LOAD_TIMEOUT)
    assert window.model_label.text() == "No model"


def show_answer(window, answer: Turn) -> int:
    """Show a question and ``answer`` in the window (as opening a stored conversation does)."""
    window.session.show([Turn("user", "hi"), answer])
    window.transcript.flush()
    return 1


def test_model_output_html_is_text(window):
    answer = "**bold** <b>raw</b> <img src='http://example.com/x.png'>\n\n```py\nx = 1\n```"
    row = show_answer(window, Turn("assistant", answer, finish_reason="stop"))
    plain = window.transcript.rendered(row).document.toPlainText()
    assert "<b>raw</b>" in plain and "<img src=" in plain
    assert "bold" in plain and "**" not in plain  # Markdown is rendered
    assert "x = 1" in plain


def test_model_output_cannot_load_local_files(window, tmp_path):
    from PySide6.QtGui import QImage

    picture = tmp_path / "secret.png"
    image = QImage(300, 400, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.red)
    image.save(str(picture))
    answer = f"![a]({picture.as_uri()}) ![b](file:///dev/zero) ![c]({picture})"
    row = show_answer(window, Turn("assistant", answer, finish_reason="stop"))
    document = window.transcript.rendered(row).document
    assert document.size().height() < 60  # no 400-px picture was laid out


def test_footer_shows_error_text_as_text(window):
    failed = Turn("assistant", finish_reason="error", error="<b>bold</b> <img src='x.png'>")
    row = show_answer(window, failed)  # a stored answer that failed before any text
    footer = window.transcript.rendered(row).footer  # painted with QPainter.drawText: plain text
    assert "<b>bold</b>" in footer


def test_an_engine_failure_ends_the_answer_and_the_next_works(loaded, qtbot, fake_engines):
    window = loaded
    assert window.worker.engine is fake_engines.last
    fake_engines.last.fail_next_answer("Metal command buffer failed")  # before any text
    qtbot.keyClicks(window.composer.edit, "First try")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert blocker.args[0].finish_reason == "error"
    assert "Metal command buffer failed" in window.notice.text()
    assert window.composer.text() == "First try" and not window.generating
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert blocker.args[0].finish_reason == "length"


def test_failed_edit_keeps_the_conversation(loaded, qtbot):
    window = loaded
    for text in ("One", "Two"):
        qtbot.keyClicks(window.composer.edit, text)
        with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT):
            qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    before = [(e.role, e.text) for e in window.transcript_model.entries()]
    qtbot.mouseClick(window.transcript.row_actions(0).buttons["edit"], Qt.MouseButton.LeftButton)
    window.composer.edit.selectAll()
    qtbot.keyClicks(window.composer.edit, "A much longer edited question " * 10)
    window.generation_settings = GenerationSettings(max_tokens=4, context_length=30)
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT) as blocker:
        qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert blocker.args[0].finish_reason == "error"
    assert [(e.role, e.text) for e in window.transcript_model.entries()] == before
    assert window.composer.text().startswith("A much longer edited question")
    from models.chats.store import ConversationStore

    with ConversationStore(window.conversations.store.folder) as store:
        stored = store.messages(window.conversations.current_id)
    assert [(m.role, m.text) for m in stored] == before


def test_failed_regenerate_keeps_the_stored_answer(loaded, qtbot, fake_engines):
    """The engine fails after the worker stored the new answer row: the store and the window
    both go back to what they were."""
    window = loaded
    for text in ("One", "Two"):
        qtbot.keyClicks(window.composer.edit, text)
        with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT):
            qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    before = [(e.role, e.text) for e in window.transcript_model.entries()]
    fake_engines.last.fail_next_answer("out of memory during prefill")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT):
        qtbot.mouseClick(window.transcript.row_actions(3).buttons["regenerate"], Qt.MouseButton.LeftButton)
    assert [(e.role, e.text) for e in window.transcript_model.entries()] == before
    from models.chats.store import ConversationStore

    with ConversationStore(window.conversations.store.folder) as store:
        stored = store.messages(window.conversations.current_id)
    assert [(m.role, m.text) for m in stored] == before
    assert [m.id for m in stored] == [e.message_id for e in window.transcript_model.entries()]


def test_stop_and_escape_end_an_api_request_on_the_windows_engine(loaded, qtbot, fake_engines):
    """File ▸ Serve API answers on the window's engine: Stop (or Esc) in the window ends the
    request it is answering, as it ends the window's own answer (issue 23)."""
    import openai

    window = loaded
    controller = window.server_controller
    controller.port = 0
    assert controller.start()
    client = openai.OpenAI(base_url=controller.url, api_key="x", max_retries=0, timeout=60)
    try:
        for press in ("stop action", "escape"):
            engine = held_after(fake_engines, 4)
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Go on"}], max_tokens=5000, stream=True
            )
            job = controller.app.state.jobs[-1]
            qtbot.waitUntil(engine.holding.is_set, timeout=ANSWER_TIMEOUT)
            qtbot.waitUntil(window.stop_action.isEnabled, timeout=ANSWER_TIMEOUT)
            if press == "escape":
                qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)
            else:
                window.stop_action.trigger()
            qtbot.waitUntil(job.done.is_set, timeout=ANSWER_TIMEOUT)
            assert job.final.finish_reason == "cancelled" and job.final.generation_tokens == 4
            stream.close()
            qtbot.waitUntil(lambda: not window.stop_action.isEnabled(), timeout=ANSWER_TIMEOUT)
    finally:
        controller.stop()
