"""What a new user hits in the first hour (issue 19), in the window with the fake engine:
images stay in the order chosen (a refused one holds no slot, one notice says what was refused),
a refused send stores nothing, the edit notice's × cancels the edit, and an active search keeps
the conversation just started in sight."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QMimeData, Qt, QThreadPool, QUrl

from desktop import notices
from models.chats.export import export_json
from models.inference.engine import GenerationSettings
from models.inference.images import load_image_file
from tests.desktop.test_window import drop
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


@pytest.fixture
def decode_last_first(monkeypatch):
    """Decoding ``pick0*`` waits until every other image was decoded: the first chosen ends last."""
    pool = QThreadPool.globalInstance()
    threads = pool.maxThreadCount()
    pool.setMaxThreadCount(max(threads, 6))
    others = threading.Semaphore(0)
    started = []

    def load(path):
        name = str(path).rsplit("/", 1)[-1]
        if name.startswith("pick0"):
            for _ in range(len(started)):
                assert others.acquire(timeout=30), "the other images were not decoded"
            return load_image_file(path)
        try:
            return load_image_file(path)
        finally:
            others.release()

    monkeypatch.setattr("desktop.workers.image_loader.load_image_file", load)
    yield started
    pool.setMaxThreadCount(threads)


def pick(png_file, tmp_path, names):
    """Image files to attach, in this order: ``broken*`` is damaged, ``pick0*`` big, others small."""
    paths = []
    for name in names:
        if name.startswith("broken"):
            path = tmp_path / name
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
        else:
            size = (1600, 1200) if name.startswith("pick0") else (40 + len(paths), 30)
            path = png_file(name, *size)
        paths.append(str(path))
    return paths


def settled(qtbot, window):
    qtbot.waitUntil(
        lambda: not window.composer.reading_images() and not window.composer.loader.pending, timeout=30_000
    )


def test_images_keep_the_order_chosen_through_prompt_storage_and_export(
    loaded, qtbot, tmp_path, png_file, decode_last_first, fake_engines
):
    window = loaded
    names = [f"pick{i}.png" for i in range(5)]
    decode_last_first.extend(names[1:])
    window.composer.add_files(pick(png_file, tmp_path, names))
    settled(qtbot, window)
    assert [image.name for image in window.composer.images()] == names
    assert [chip.image.name for chip in window.composer._chips] == names
    strip = window.composer.strip_layout
    assert [strip.itemAt(i).widget().image.name for i in range(5)] == names  # as laid out

    ask(qtbot, window, "Compare the first and second photo")
    [question] = [m for m in fake_engines.last.calls[-1].messages if m.role == "user"]
    assert [image.name for image in question.images] == names  # what the model sees
    store = window.conversations.store
    stored = store.messages(window.conversations.current_id)[0]
    assert [image.name for image in stored.images] == names
    exported = export_json(store, window.conversations.current_id)["messages"][0]
    assert [image["name"] for image in exported["images"]] == names


def test_a_refused_file_holds_no_slot_and_one_notice_says_what_was_refused(loaded, qtbot, tmp_path, png_file):
    window = loaded
    window.composer.add_files(pick(png_file, tmp_path, ["first.png"]))
    settled(qtbot, window)
    names = ["broken.png", "p1.png", "p2.png", "p3.png", "p4.png", "p5.png"]
    shown = []
    window.composer.notice.connect(shown.append)
    window.composer.add_files(pick(png_file, tmp_path, names))
    settled(qtbot, window)
    assert [image.name for image in window.composer.images()] == [
        "first.png",
        "p1.png",
        "p2.png",
        "p3.png",
        "p4.png",
    ]
    assert len(shown) == 1, shown  # one notice for the batch, not one overwriting the other
    assert shown[0].startswith("2 files were not attached: broken.png (")
    assert "p5.png (too many: 5 images a message)" in shown[0]
    assert window.notice.text() == shown[0]

    # Gone when the problem is: a chip removed frees a slot, the notice no longer holds.
    window.composer._remove_chip(window.composer._chips[-1])
    assert window.notice.text() == ""


def test_six_picked_with_a_broken_one_attach_the_five_valid_ones(loaded, qtbot, tmp_path, png_file):
    window = loaded
    names = ["broken.png", "p1.png", "p2.png", "p3.png", "p4.png", "p5.png"]
    with qtbot.waitSignal(window.composer.notice, timeout=30_000) as blocker:
        window.composer.add_files(pick(png_file, tmp_path, names))
    settled(qtbot, window)
    assert [image.name for image in window.composer.images()] == names[1:]
    assert blocker.args[0].startswith("broken.png is ")  # one problem: its own sentence


def test_a_drop_keeps_its_order_and_a_non_image_holds_no_slot(
    loaded, qtbot, tmp_path, png_file, decode_last_first
):
    window = loaded
    decode_last_first.extend(["pick1.png", "pick2.png"])
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    paths = (
        pick(png_file, tmp_path, ["pick0.png"])
        + [str(notes)]
        + pick(png_file, tmp_path, ["pick1.png", "pick2.png"])
    )
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(path) for path in paths])
    with qtbot.waitSignal(window.composer.notice, timeout=30_000) as blocker:
        drop(window, mime)
    settled(qtbot, window)
    assert [image.name for image in window.composer.images()] == ["pick0.png", "pick1.png", "pick2.png"]
    assert blocker.args[0].startswith("notes.txt is not a supported image")
    window.composer.clear_draft()  # the chips changed: the notice no longer holds
    assert window.notice.text() == ""


def test_closing_the_editing_notice_cancels_the_edit(loaded, qtbot):
    window = loaded
    ask(qtbot, window, "One")
    window.chat.edit_message(0)
    assert window.composer.text() == "One" and window.notice.text().startswith("Editing a question")
    qtbot.mouseClick(window.notice.row(notices.EDIT).close_button, Qt.MouseButton.LeftButton)
    assert window.composer.text() == ""
    ask(qtbot, window, "Two")
    stored = window.conversations.store.messages(window.conversations.current_id)
    assert [(m.role, m.text) for m in stored if m.role == "user"] == [("user", "One"), ("user", "Two")]
    assert len(stored) == 4  # nothing was replaced


def test_an_active_search_does_not_hide_the_chat_just_started(loaded, qtbot):
    window = loaded
    ask(qtbot, window, "Circles and squares")
    sidebar = window.sidebar
    sidebar.search.setText("circles")
    qtbot.waitUntil(lambda: sidebar.model.searching and sidebar.model.rowCount() == 1, timeout=10_000)
    window.new_chat()
    ask(qtbot, window, "Something else entirely")
    rows = [sidebar.model.row(i).conversation_id for i in range(sidebar.model.rowCount())]
    assert window.conversations.current_id in rows
    assert not sidebar.model.searching and sidebar.search.text() == ""


def test_a_refused_file_notice_goes_when_another_chat_is_shown(loaded, qtbot, tmp_path):
    window = loaded
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    window.composer.add_files([str(notes)])
    settled(qtbot, window)
    assert window.notice.text().startswith("notes.txt is not")
    window.new_chat()
    assert window.notice.text() == ""


def test_a_first_question_that_fails_with_nothing_leaves_nothing_and_the_next_one_is_stored(
    loaded, qtbot, fake_engines
):
    window = loaded
    fake_engines.last.fail_next_answer("the GPU fell over")
    assert ask(qtbot, window, "First try").finish_reason == "error"
    store = window.conversations.store
    assert store.list_conversations() == [] and window.sidebar.model.rowCount() == 0
    window.composer.edit.clear()
    assert ask(qtbot, window, "Second try").finish_reason == "length"
    [conversation] = store.list_conversations()
    assert [m.text for m in store.messages(conversation.id)][0] == "Second try"
    assert not window.notice.text()  # nothing said "not being saved"
