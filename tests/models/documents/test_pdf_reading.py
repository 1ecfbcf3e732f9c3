"""Opening, rendering and reading PDFs: good ones of every kind, and the hostile ones, refused in
one line with bounded work."""

import os
import threading

import pytest

from models.documents.pdf_reading import (
    MAX_PAGE_TEXT_CHARS,
    DocumentError,
    clean_text,
    open_pdf,
    read_document_file,
    render_size,
)
from models.inference.images import decode_image
from models.inference.preprocess import ProcessorConfig, plan_tiles
from tests.support.pdf_files import Page, javascript_pdf, pdf_bytes, scanned_pdf, text_pdf

PROCESSOR = ProcessorConfig()


def test_a_text_page_reads_its_text_and_renders_on_white():
    with open_pdf(text_pdf(["Invoice 1042\nTotal due: 310.00 EUR", "Second page"]), "invoice.pdf") as pdf:
        assert pdf.page_count == 2
        assert pdf.page_text(1) == "Invoice 1042\nTotal due: 310.00 EUR"
        assert pdf.page_text(2) == "Second page"
        image = pdf.render_page(1, PROCESSOR)
    picture = decode_image(image.data)
    assert picture.size == image.size and image.name == "invoice, page 1.png"
    assert picture.getpixel((2, 2)) == (255, 255, 255)  # paper, not a transparent black
    assert picture.convert("L").getextrema()[0] < 100  # the text is drawn


def test_a_page_renders_at_the_size_the_tiler_keeps():
    with open_pdf(text_pdf(["x"]), "letter.pdf") as pdf:
        image = pdf.render_page(1, PROCESSOR)
    width, height = image.size
    plan = plan_tiles(width, height, PROCESSOR)
    assert plan.resized == (height, width)  # the tiler does not resize it again
    assert plan.rows * plan.cols <= PROCESSOR.max_patches
    assert max(width, height) > 2 * PROCESSOR.tile  # sharp enough to read small print


def test_a_scanned_page_has_no_text_but_its_picture():
    with open_pdf(scanned_pdf(1), "scan.pdf") as pdf:
        assert pdf.page_text(1) == ""
        picture = decode_image(pdf.render_page(1, PROCESSOR).data)
    colours = picture.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 2


def test_a_rotated_page_renders_turned():
    portrait = Page(width=400, height=800, lines=("turned",), rotate=90)
    with open_pdf(pdf_bytes([portrait]), "turned.pdf") as pdf:
        width, height = pdf.render_page(1, PROCESSOR).size
        assert pdf.page_text(1) == "turned"
    assert width > height  # shown as a reader shows it: landscape


def test_a_huge_page_renders_bounded_in_pixels():
    with open_pdf(pdf_bytes([Page(width=14400, height=14400, lines=("big",))]), "poster.pdf") as pdf:
        width, height = pdf.render_page(1, PROCESSOR).size
    assert width * height <= PROCESSOR.max_patches * PROCESSOR.tile**2


@pytest.mark.parametrize("size", [(20_000, 20_000), (1, 20_000), (20_000, 1), (0.5, 0.5)])
def test_render_size_is_bounded_whatever_the_page_says(size):
    width, height = render_size(*size, PROCESSOR)
    assert 1 <= width and 1 <= height
    assert width * height <= PROCESSOR.max_patches * PROCESSOR.tile**2


def test_a_long_text_layer_is_cut():
    line = "word " * 200
    with open_pdf(pdf_bytes([Page(lines=(line,) * 200, font_size=2)]), "dense.pdf") as pdf:
        assert len(pdf.page_text(1)) <= MAX_PAGE_TEXT_CHARS


def test_scripts_and_embedded_files_are_ignored():
    with open_pdf(javascript_pdf(), "script.pdf") as pdf:
        assert pdf.page_text(1) == "A page with a script"
        pdf.render_page(1, PROCESSOR)


def test_many_pages_open_without_reading_them():
    data = text_pdf([f"Page {n}" for n in range(1, 3001)])
    with open_pdf(data, "long.pdf") as pdf:
        assert pdf.page_count == 3000
        assert pdf.page_text(2999) == "Page 2999"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "is empty"),
        (b"PK\x03\x04" + b"\x00" * 100, "is a ZIP archive, not a PDF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "is an image, not a PDF"),
        (b"just some text", "is not a PDF"),
        (text_pdf(["Hello"])[:120], "is damaged or not a PDF"),
        (pdf_bytes([Page(lines=("secret",))], encrypt=True), "is password-protected"),
        (b"%PDF-1.7\n" + b"\x00" * 4096, "is damaged or not a PDF"),
    ],
    ids=["empty", "zip", "png", "text", "truncated", "encrypted", "zeros"],
)
def test_hostile_files_are_refused_in_one_line(data, says):
    with pytest.raises(DocumentError) as error:
        with open_pdf(data, "upload.pdf"):
            pass
    message = str(error.value)
    assert says in message and "\n" not in message and message.startswith("upload.pdf")


def test_a_truncated_file_with_a_damaged_page_is_refused_or_read_never_crashes():
    data = text_pdf(["one", "two", "three"])
    for cut in range(len(data) // 2, len(data), 97):
        try:
            with open_pdf(data[:cut], "cut.pdf") as pdf:
                for n in range(1, pdf.page_count + 1):
                    pdf.page_text(n)
        except DocumentError as exc:
            assert "\n" not in str(exc)


def test_special_files_are_refused_before_they_are_read(tmp_path):
    with pytest.raises(DocumentError, match="not a regular file"):
        read_document_file("/dev/zero")
    fifo = tmp_path / "pipe.pdf"
    os.mkfifo(fifo)
    with pytest.raises(DocumentError, match="FIFO"):
        read_document_file(fifo)
    folder = tmp_path / "folder.pdf"
    folder.mkdir()
    with pytest.raises(DocumentError, match="folder"):
        read_document_file(folder)
    fake = tmp_path / "archive.pdf"
    fake.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    with pytest.raises(DocumentError, match="ZIP"):
        read_document_file(fake)


def test_two_threads_reading_at_once_take_turns():
    data = text_pdf([f"Page {n}" for n in range(1, 21)])
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with open_pdf(data, "shared.pdf") as pdf:
                for n in range(1, 21):
                    assert pdf.page_text(n) == f"Page {n}"
                pdf.render_page(1, PROCESSOR)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_clean_text_keeps_lines_and_drops_control_characters():
    assert clean_text("a\r\nb\x00c\x07\rd  \n\n") == "a\nbc\nd"


def test_a_page_claiming_20000_points_square_renders_bounded():
    with open_pdf(
        pdf_bytes([Page(width=20_000, height=20_000, lines=("vast",), font_size=400)]), "vast.pdf"
    ) as pdf:
        image = pdf.render_page(1, PROCESSOR)
    assert image.size[0] * image.size[1] <= PROCESSOR.max_patches * PROCESSOR.tile**2


def test_a_page_past_the_end_is_named_not_called_sizeless():
    with open_pdf(text_pdf(["one"]), "one.pdf") as pdf:
        with pytest.raises(DocumentError, match="has no page 2"):
            pdf.render_page(2, PROCESSOR)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("report\n.pdf", "report .pdf"),
        ("a\x00b\tc.pdf", "a b c.pdf"),
        ("", "document.pdf"),
        ("x" * 300, "x" * 128),
    ],
)
def test_file_names_are_one_printable_line(raw, shown, tmp_path):
    from models.documents.pdf_reading import document_name

    assert document_name(raw) == shown
    with pytest.raises(DocumentError) as error:
        with open_pdf(b"PK\x03\x04" + b"\x00" * 64, raw):
            pass
    assert "\n" not in str(error.value) and str(error.value).startswith(shown)
