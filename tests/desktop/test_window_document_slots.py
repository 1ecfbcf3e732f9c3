"""PDFs in the window, the review's cases: the five image slots go to PDFs in the order they
were attached (not the order their reads end), come back when an attachment goes, and scanned
pages past them are not called text; closing the window cancels a read; pages are rendered at
the loaded model's tiler size."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QThreadPool

from tests.desktop import test_window
from tests.desktop.test_window import wait_images
from tests.desktop.test_window_documents import gate, pdf_file, wait_documents
from tests.support.pdf_files import Page, pdf_bytes, scanned_pdf

window = test_window.window
loaded = test_window.loaded
__all__ = ["gate"]  # the fixture, shared


@pytest.fixture
def two_reads_at_once():
    """Room in the thread pool for two reads side by side (one held by the gate)."""

    pool = QThreadPool.globalInstance()
    before = pool.maxThreadCount()
    pool.setMaxThreadCount(max(before, 4))
    yield
    pool.setMaxThreadCount(before)


@pytest.mark.parametrize("first_attached_is_long", [True, False])
def test_page_image_slots_go_in_the_order_pdfs_were_attached(
    window, qtbot, tmp_path, gate, two_reads_at_once, first_attached_is_long
):
    """Whichever read ends first, the first PDF attached gets the first of the five slots: the
    short one (two pages: the gate at page 3 never holds it) ends first."""
    long_texts, short_texts = [f"Long page {n}" for n in range(1, 8)], ["Short page 1", "Short page 2"]
    a = pdf_file(tmp_path, "a.pdf", long_texts if first_attached_is_long else short_texts)
    b = pdf_file(tmp_path, "b.pdf", short_texts if first_attached_is_long else long_texts)
    composer = window.composer
    composer.add_files([str(a), str(b)])
    short = "b.pdf" if first_attached_is_long else "a.pdf"
    qtbot.waitUntil(lambda: [d.name for d in composer.documents()] == [short], timeout=20_000)
    (early,) = composer.documents()
    if first_attached_is_long:  # a.pdf, still being read, holds the slots it may need
        assert early.image_pages == () and early.text_pages == (1, 2)
    else:
        assert early.image_pages == (1, 2)
    gate.open()
    wait_documents(qtbot, window, 2)
    first, second = composer.documents()
    assert (first.name, second.name) == ("a.pdf", "b.pdf")
    if first_attached_is_long:
        assert first.image_pages == (1, 2, 3, 4, 5) and first.text_pages == (6, 7)
        assert second.image_pages == () and second.text_pages == (1, 2)
    else:
        assert first.image_pages == (1, 2) and first.text_pages == ()
        assert second.image_pages == (1, 2, 3) and second.text_pages == (4, 5, 6, 7)
    chips = composer.document_chips()
    assert [len(c.page_chips) for c in chips] == [len(first.image_pages), len(second.image_pages)]
    assert len(composer.document_thumbnails()) == 5


def test_a_photo_added_after_two_pdfs_takes_the_last_pdfs_slot(window, qtbot, tmp_path, png_file):
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path, "a.pdf")), str(pdf_file(tmp_path, "b.pdf", ["B1", "B2"]))])
    wait_documents(qtbot, window, 2)
    assert [d.image_pages for d in composer.documents()] == [(1, 2, 3), (1, 2)]
    with qtbot.waitSignal(composer.notice, timeout=20_000) as said:
        composer.add_files([str(png_file())])
        wait_images(qtbot, window, 1)
    assert said.args[0] == "b.pdf: page 2 now goes as text (a message carries at most 5 images)."
    assert window.notice.isVisible() and "b.pdf: page 2 now goes as text" in window.notice.text()
    assert [d.image_pages for d in composer.documents()] == [(1, 2, 3), (1,)]


def test_a_slot_given_back_goes_to_the_next_pdf_without_reading_it_again(window, qtbot, tmp_path):
    composer = window.composer
    composer.add_files(
        [str(pdf_file(tmp_path, "a.pdf")), str(pdf_file(tmp_path, "b.pdf", ["B1", "B2", "B3"]))]
    )
    wait_documents(qtbot, window, 2)
    assert [d.image_pages for d in composer.documents()] == [(1, 2, 3), (1, 2)]
    reads = composer.document_loader.pending
    qtbot.mouseClick(composer.document_chips()[0].remove_button, Qt.MouseButton.LeftButton)
    (b,) = composer.documents()
    assert b.name == "b.pdf" and b.image_pages == (1, 2, 3) and composer.document_loader.pending == reads
    assert len(composer.document_chips()[0].page_chips) == 3


def scan_chip(qtbot, window, tmp_path, data: bytes):
    path = tmp_path / "scan.pdf"
    path.write_bytes(data)
    window.composer.add_files([str(path)])
    wait_documents(qtbot, window, 1)
    return window.composer.document_chips()[0]


def test_scanned_pages_past_the_image_slots_are_not_called_text(window, qtbot, tmp_path):

    chip = scan_chip(qtbot, window, tmp_path, scanned_pdf(9))
    assert chip.document.textless_pages == (6, 7, 8, 9)
    assert not chip.text_chip.isVisible()
    assert chip.textless_chip.isVisible() and chip.textless_chip.text() == "pages 6-9 without text"
    assert chip.textless_chip.toolTip() == "scanned pages: no text layer, and no image slot left"
    assert (
        chip.toolTip()
        == "scan.pdf (9 pages): pages 1-5 as images; pages 6-9 without text (scans: only named)"
    )


def test_a_pdf_of_text_and_scans_names_each_kind(window, qtbot, tmp_path):
    pages = [Page(lines=(f"Text page {n}",)) for n in range(1, 6)]
    pages += [
        Page(scan=(96, 128, (40, 60, 200))),
        Page(lines=("Text page 7",)),
        Page(scan=(96, 128, (0, 0, 0))),
    ]
    chip = scan_chip(qtbot, window, tmp_path, pdf_bytes(pages))
    assert chip.text_chip.isVisible() and chip.text_chip.text() == "page 7 as text"
    assert chip.textless_chip.isVisible() and chip.textless_chip.text() == "pages 6, 8 without text"


def test_the_transcript_names_scanned_pages_without_text(window, qtbot):
    from desktop.qtmodels.transcript_model import TranscriptEntry
    from models.documents.chat_documents import read_document

    document = read_document(scanned_pdf(7), "scan.pdf", image_pages=5)
    window.transcript_model.set_entries([TranscriptEntry("user", "What is this?", documents=(document,))])
    window.transcript.executeDelayedItemsLayout()
    assert window.transcript.rendered(0).documents == [
        "scan.pdf (7 pages): pages 1-5 as images; pages 6-7 without text (scans: only named)"
    ]


def test_closing_the_window_cancels_a_read_in_progress(window, qtbot, tmp_path, gate):
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path, texts=[f"Page {n}" for n in range(1, 8)]))])
    chip = composer.document_chips()[0]
    qtbot.waitUntil(lambda: chip.status.text() == "Reading report.pdf — page 3 of 7", timeout=20_000)
    loader = composer.document_loader
    assert not loader.cancelling(chip.ticket)
    ticket = chip.ticket
    window.close()
    assert loader.cancelling(ticket)  # set before the gate opens: the read stops at its next page
    with qtbot.waitSignal(loader.cancelled, timeout=20_000) as stopped:
        gate.open()
    assert stopped.args == [ticket] and loader.pending == 0


def test_pages_are_rendered_at_the_loaded_models_tiler_size(window, qtbot, tmp_path, checkpoints):
    from models.documents.pdf_reading import render_size
    from models.inference.checkpoint import read_checkpoint
    from models.inference.preprocess import ProcessorConfig
    from tests.desktop.test_window import LOAD_TIMEOUT

    tiny = read_checkpoint(checkpoints["4bit"]).processor
    default_size, tiny_size = render_size(612, 792, ProcessorConfig()), render_size(612, 792, tiny)
    assert tiny_size != default_size
    composer = window.composer
    composer.add_files([str(pdf_file(tmp_path, "before.pdf"))])
    wait_documents(qtbot, window, 1)
    (before,) = composer.documents()
    assert {image.size for image in before.images} == {default_size}  # no model: the default tiler
    with qtbot.waitSignal(window.model_ready, timeout=LOAD_TIMEOUT):
        window.load_model(checkpoints["4bit"])
    composer.add_files([str(pdf_file(tmp_path, "after.pdf", ["Other 1", "Other 2"]))])
    wait_documents(qtbot, window, 2)
    kept, after = composer.documents()
    assert kept == before and {image.size for image in kept.images} == {default_size}  # kept as read
    assert {image.size for image in after.images} == {tiny_size}


def test_a_photo_taking_a_scans_slot_says_the_page_goes_without_text(window, qtbot, tmp_path, png_file):

    chip = scan_chip(qtbot, window, tmp_path, scanned_pdf(5))
    with qtbot.waitSignal(window.composer.notice, timeout=20_000) as said:
        window.composer.add_files([str(png_file())])
        wait_images(qtbot, window, 1)
    assert said.args[0] == (
        "scan.pdf: page 5 now goes without text, only named (a message carries at most 5 images)."
    )
    assert chip.textless_chip.text() == "page 5 without text" and not chip.text_chip.isVisible()
