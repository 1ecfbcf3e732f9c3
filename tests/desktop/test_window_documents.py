"""PDFs in the window (issue 22): attached like images (picked, dropped, pasted as a file), read
off the UI thread page by page with progress on their chip, cancelled by its ×, refused in one
line when hostile; their pages shown as chips, chosen again with the page picker, sent with the
question into the prompt, shown on the question in the transcript, and demoted to text when
the memory check says their images do not fit. The model answers through the fake engine."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtWidgets import QApplication

from desktop.dialogs import conversation_dialogs
from models.documents import pdf_reading
from models.memory.budget import MemoryBudget
from tests.desktop import test_window
from tests.desktop.test_window import ANSWER_TIMEOUT, drop, wait_images
from tests.support.pdf_files import THREE_PAGES, Page, pdf_bytes, text_pdf

window = test_window.window  # the fixtures: a shown window, and one with a model loaded
loaded = test_window.loaded


def pdf_file(tmp_path, name: str = "report.pdf", texts: list[str] | None = None):
    path = tmp_path / name
    path.write_bytes(text_pdf(texts or THREE_PAGES))
    return path


def wait_documents(qtbot, window, count: int) -> None:
    composer = window.composer
    qtbot.waitUntil(
        lambda: len(composer.documents()) == count and not composer.reading_documents(), timeout=20_000
    )


@pytest.fixture
def gate(monkeypatch):
    """Holds a PDF's reading before page ``gate.page``'s text until ``gate.open()`` (so a test
    sees the read in progress whatever the machine's speed); opened at the end in any case."""
    read_text = pdf_reading.PdfFile.page_text

    class Gate:
        page = 3
        opened = threading.Event()

        def open(self) -> None:
            self.opened.set()

    held = Gate()

    def page_text(pdf, number, *args, **kwargs):
        if number == held.page:
            held.opened.wait(20)
        return read_text(pdf, number, *args, **kwargs)

    monkeypatch.setattr(pdf_reading.PdfFile, "page_text", page_text)
    yield held
    held.open()


def test_the_picker_offers_pdfs():
    assert "*.pdf" in conversation_dialogs.ATTACH_FILTER and "*.png" in conversation_dialogs.ATTACH_FILTER


def test_a_dropped_pdf_shows_its_progress_then_a_chip_per_page(window, qtbot, tmp_path, gate):
    path = pdf_file(tmp_path, texts=[f"Page {n} of the report" for n in range(1, 8)])
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    assert drop(window, mime).isAccepted()
    composer = window.composer
    assert composer.reading_documents() == 1 and composer.strip.isVisible()
    chip = composer.document_chips()[0]
    qtbot.waitUntil(lambda: chip.status.text() == "Reading report.pdf — page 3 of 7", timeout=20_000)
    assert chip.status.isVisible() and not chip.page_chips
    gate.open()
    wait_documents(qtbot, window, 1)
    document = composer.documents()[0]
    assert document.name == "report.pdf" and document.page_count == 7
    assert document.image_pages == (1, 2, 3, 4, 5) and document.text_pages == (6, 7)
    assert not chip.status.isVisible()
    assert [c.toolTip() for c in chip.page_chips] == [f"Page {n} goes as an image" for n in range(1, 6)]
    assert all(not c.pixmap().isNull() for c in chip.page_chips)
    assert chip.text_chip.isVisible() and chip.text_chip.text() == "pages 6-7 as text"
    assert composer.send_button.isEnabled()


def test_a_picked_pdf_is_attached_like_an_image(window, qtbot, tmp_path, png_file):
    window.composer.add_files([str(png_file()), str(pdf_file(tmp_path))])
    wait_images(qtbot, window, 1)
    wait_documents(qtbot, window, 1)
    chip = window.composer.document_chips()[0]
    assert len(chip.page_chips) == 3 and not chip.text_chip.isVisible()


def test_cancelling_a_long_read_drops_only_its_chip(window, qtbot, tmp_path, png_file, gate):
    composer = window.composer
    qtbot.keyClicks(composer.edit, "my question")
    composer.add_files([str(png_file())])
    wait_images(qtbot, window, 1)
    long = tmp_path / "long.pdf"
    long.write_bytes(text_pdf([f"Page {n}" for n in range(1, 301)]))
    composer.add_files([str(long)])
    chip = composer.document_chips()[0]
    qtbot.waitUntil(lambda: chip.status.text() == "Reading long.pdf — page 3 of 300", timeout=20_000)
    with qtbot.waitSignal(composer.document_loader.cancelled, timeout=20_000):
        qtbot.mouseClick(chip.remove_button, Qt.MouseButton.LeftButton)
        assert composer.document_chips() == []  # the chip goes at once
        gate.open()  # the read goes on to the next page, where it sees the cancel
    assert composer.documents() == [] and composer.reading_documents() == 0
    assert composer.document_loader.pending == 0
    assert composer.text() == "my question" and len(composer.images()) == 1
    assert not window.notice.isVisible()


HOSTILE = {
    "encrypted": (pdf_bytes([Page(lines=("secret",))], encrypt=True), "is password-protected"),
    "zip": (b"PK\x03\x04" + b"\x00" * 100, "is a ZIP archive, not a PDF"),
    "truncated": (text_pdf(["Hello"])[:120], "is damaged or not a PDF"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_pdf_is_one_line_and_nothing_else_is_lost(window, qtbot, tmp_path, png_file, kind):
    composer = window.composer
    qtbot.keyClicks(composer.edit, "my question")
    composer.add_files([str(png_file()), str(pdf_file(tmp_path))])
    wait_images(qtbot, window, 1)
    wait_documents(qtbot, window, 1)
    data, says = HOSTILE[kind]
    bad = tmp_path / "upload.pdf"
    bad.write_bytes(data)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(bad))])
    with qtbot.waitSignal(composer.notice, timeout=20_000) as said:
        drop(window, mime)
    line = said.args[0]
    assert line.startswith("upload.pdf") and says in line and "\n" not in line
    assert window.notice.isVisible() and says in window.notice.text()
    assert composer.text() == "my question" and len(composer.images()) == 1
    assert [d.name for d in composer.documents()] == ["report.pdf"] and len(composer.document_chips()) == 1


def test_a_pasted_pdf_file_is_attached(window, qtbot, tmp_path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(pdf_file(tmp_path)))])
    window.composer.edit.insertFromMimeData(mime)
    wait_documents(qtbot, window, 1)
    assert window.composer.text() == ""


def test_pasted_pdf_data_is_attached(window, qtbot):
    mime = QMimeData()
    mime.setData("application/pdf", text_pdf(THREE_PAGES))
    window.composer.edit.insertFromMimeData(mime)
    wait_documents(qtbot, window, 1)
    assert window.composer.documents()[0].page_count == 3 and window.composer.images() == []


def test_the_page_picker_reads_the_pages_chosen_again(window, qtbot, tmp_path):
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path))])
    wait_documents(qtbot, window, 1)
    chip = composer.document_chips()[0]
    qtbot.mouseClick(chip.pages_button, Qt.MouseButton.LeftButton)
    picker = chip.page_picker
    assert picker is not None and picker.isVisible() and picker.pages.text() == "1-3"
    picker.pages.clear()
    qtbot.keyClicks(picker.pages, "2-9")
    assert not picker.ok_button.isEnabled() and "there is no page 9" in picker.problem.text()
    picker.pages.clear()
    qtbot.keyClicks(picker.pages, "1-2")
    assert picker.ok_button.isEnabled() and picker.problem.text() == ""
    qtbot.keyClick(picker.pages, Qt.Key.Key_Return)
    assert not picker.isVisible()
    wait_documents(qtbot, window, 1)
    document = composer.documents()[0]
    assert document.image_pages == (1, 2) and document.text_pages == ()
    chip = composer.document_chips()[0]
    assert [c.toolTip() for c in chip.page_chips] == ["Page 1 goes as an image", "Page 2 goes as an image"]


def test_with_four_photos_a_pdf_adds_one_page_as_an_image(window, qtbot, tmp_path, png_file):
    composer = window.composer
    composer.add_files([str(png_file(f"p{n}.png", 20 + n, 20)) for n in range(4)])
    wait_images(qtbot, window, 4)
    composer.add_files([str(pdf_file(tmp_path))])
    wait_documents(qtbot, window, 1)
    document = composer.documents()[0]
    assert document.image_pages == (1,) and document.text_pages == (2, 3)
    chip = composer.document_chips()[0]
    assert len(chip.page_chips) == 1 and chip.text_chip.text() == "pages 2-3 as text"


def test_a_question_with_a_pdf_carries_its_pages(loaded, qtbot, tmp_path, fake_engines):
    window = loaded
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path))])
    wait_documents(qtbot, window, 1)
    qtbot.keyClicks(composer.edit, "What does page 2 count?")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT):
        qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
        assert composer.documents() == [] and composer.document_chips() == []
    turn = window.answers.session.turn(0)
    assert turn.text == "What does page 2 count?" and turn.images == ()
    (document,) = turn.documents
    assert document.name == "report.pdf" and document.image_pages == (1, 2, 3)
    question = fake_engines.last.calls[-1].messages[-1].expanded()
    assert question.role == "user" and list(question.images) == list(document.images)
    assert "[Document: report.pdf, 3 pages]" in question.text and "3 apples, 4 pears" in question.text
    assert question.text.endswith("What does page 2 count?")

    entry = window.transcript_model.entry(0)
    assert entry.documents == turn.documents and len(entry.document_thumbnails) == 3
    rendered = window.transcript.rendered(0)
    assert rendered.documents == ["report.pdf (3 pages): pages 1-3 as images"]
    assert len(rendered.page_thumbnails) == 3
    assert "1 PDF" in entry.spoken()
    view = window.transcript
    rect = view.visualRect(window.transcript_model.index(0))
    assert rect.height() > 3 * 40  # room for the document's caption and page thumbnails


def test_a_pdf_whose_page_images_do_not_fit_goes_partly_as_text(loaded, qtbot, tmp_path, fake_engines):
    window = loaded
    qtbot.waitUntil(lambda: window.turn_memory.plan is not None, timeout=10_000)
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path))])
    wait_documents(qtbot, window, 1)
    (document,) = composer.documents()
    memory = window.turn_memory
    settings = window.conversations.settings.generation_settings(window.generation_settings)
    one_page = memory.turn_peak(settings, "Sum it up", (), [document.with_image_pages(1)], ())
    two_pages = memory.turn_peak(settings, "Sum it up", (), [document.with_image_pages(2)], ())
    assert one_page < two_pages
    budget = (one_page + two_pages) // 2
    window.library.budget = window.library.budget_override = MemoryBudget(budget, budget, 0, "cpu", "test")
    qtbot.keyClicks(composer.edit, "Sum it up")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT):
        qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    (sent,) = window.answers.session.turn(0).documents
    assert sent.image_pages == (1,) and sent.text_pages == (2, 3)
    assert len(fake_engines.last.calls[-1].messages[-1].expanded().images) == 1
    assert "report.pdf: pages 2-3 go as text" in window.notice.text()


def test_a_photo_added_after_a_pdf_takes_a_pages_slot(window, qtbot, tmp_path, png_file):
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path, texts=[f"Page {n}" for n in range(1, 8)]))])
    wait_documents(qtbot, window, 1)
    assert composer.documents()[0].image_pages == (1, 2, 3, 4, 5)
    with qtbot.waitSignal(composer.notice, timeout=20_000) as said:
        composer.add_files([str(png_file())])
        wait_images(qtbot, window, 1)
    assert said.args[0] == "report.pdf: page 5 now goes as text (a message carries at most 5 images)."
    document = composer.documents()[0]
    assert document.image_pages == (1, 2, 3, 4) and document.text_pages == (5, 6, 7)
    chip = composer.document_chips()[0]
    assert len(chip.page_chips) == 4 and chip.text_chip.text() == "pages 5-7 as text"


def test_a_question_with_a_pdf_shows_it_and_edits_with_it(window, qtbot, tmp_path):
    from desktop.dialogs.image_preview import ImagePreview
    from desktop.qtmodels.transcript_model import TranscriptEntry
    from desktop.workers.image_loader import thumbnail_qimage
    from models.documents.chat_documents import read_document
    from tests.desktop.widgets.test_chat_pane_copy_and_images import _find

    document = read_document(text_pdf(THREE_PAGES), "report.pdf", image_pages=2)
    thumbnails = tuple(thumbnail_qimage(image) for image in document.images)
    question = TranscriptEntry("user", "Sum it up", documents=(document,), document_thumbnails=thumbnails)
    window.transcript_model.set_entries(
        [question, TranscriptEntry("assistant", "Done.", finish_reason="stop")]
    )
    view = window.transcript
    view.executeDelayedItemsLayout()
    assert view.rendered(0).documents == ["report.pdf (3 pages): pages 1-2 as images; page 3 as text"]
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_find(view, 0, ("page", 1)))

    def preview() -> ImagePreview | None:
        shown = [w for w in QApplication.topLevelWidgets() if isinstance(w, ImagePreview) and w.isVisible()]
        return shown[0] if shown else None

    qtbot.waitUntil(lambda: preview() is not None, timeout=10_000)
    assert preview().windowTitle() == "report, page 2.png"
    qtbot.keyClick(preview(), Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: preview() is None, timeout=5_000)

    window.chat.edit_message(0)
    assert window.composer.text() == "Sum it up" and window.composer.documents() == [document]
    assert len(window.composer.document_chips()[0].page_chips) == 2


def test_a_conversation_with_a_pdf_opens_again_with_it_and_finds_its_text(loaded, qtbot, tmp_path):
    from tests.desktop.test_window_conversations import open_row

    window = loaded
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path, texts=["Armadillo census", "Pangolin scales", "The end"]))])
    wait_documents(qtbot, window, 1)
    qtbot.keyClicks(composer.edit, "What is counted?")
    with qtbot.waitSignal(window.answer_finished, timeout=ANSWER_TIMEOUT):
        qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    asked = window.answers.session.turn(0).documents
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.transcript_model.rowCount() == 0
    window.sidebar.search.setText("pangolin")  # only in page 2's text layer
    qtbot.waitUntil(
        lambda: window.sidebar.model.searching and window.sidebar.model.rowCount() == 1, timeout=5_000
    )
    open_row(qtbot, window, 0)
    entry = window.transcript_model.entry(0)
    assert entry.text == "What is counted?" and entry.documents == asked
    assert len(entry.document_thumbnails) == 3
    assert window.transcript.rendered(0).documents == ["report.pdf (3 pages): pages 1-3 as images"]
    assert window.answers.session.turn(0).documents == asked  # the next prompt has the pages again
