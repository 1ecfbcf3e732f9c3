"""Reading PDFs a person attaches: checked, then pages rendered and text layers read, by PDFium.

Every PDF (a picked or dropped file, ``ask --file``, an API request's ``file`` part) is opened
here. A file that is not a usable PDF raises ``DocumentError`` with one line a person can act
on: empty, too large, a ZIP (or anything else) named .pdf, damaged or truncated, or protected by
a password (nothing is asked: the person is told).

The work is bounded whatever the file says. Opening reads only the cross-reference table; a
page is rendered only when it is sent as an image, at the size Llama 4's tiler wants for it
(``render_size``: at most ``ProcessorConfig.max_patches`` tiles, so a 20,000-point page costs
what a letter page does); its text is read at most ``MAX_PAGE_TEXT_CHARS`` long. Scripts,
forms and embedded files are never run or opened: the form environment is never initialised
and pages are rendered without forms.

PDFium is not thread-safe: every call into it holds ``_PDFIUM``, one page at a time, so two
documents read on two threads take turns (and a cancel is seen between pages).
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from models.inference.images import ChatImage
from models.inference.preprocess import ProcessorConfig, plan_tiles
from models.regular_files import InputFileError, read_regular_file

MAX_DOCUMENT_BYTES = 200 * 1024 * 1024
MAX_PAGE_TEXT_CHARS = 20_000  # a page's text layer, beyond this, is cut (a page holds ~3,000)
FILE_SUFFIXES = (".pdf",)
_PDFIUM = threading.Lock()
_PLANNING_SIDE = 100_000  # pixels of the long side a page is planned at (the tiler then shrinks it)
_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD
PNG_COMPRESS_LEVEL = 1  # a rendered page: 3x faster than level 6 and no larger (bench_documents.py)


class DocumentError(ValueError):
    """A document that cannot be used, with a reason fit to show as is; ``source`` names it."""

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message)
        self.source = source


MAX_NAME_CHARS = 128


def document_name(raw: str, default: str = "document.pdf") -> str:
    """A file name as it may go in one-line messages and the prompt: printable characters on one
    line (new lines and controls become spaces), at most ``MAX_NAME_CHARS``, ``default`` if none."""
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())[:MAX_NAME_CHARS]
    return name or default


def looks_like_pdf(data: bytes) -> bool:
    """Whether ``data`` starts as a PDF does (``%PDF-`` within its first KB, as readers allow)."""
    return b"%PDF-" in data[:1024]


def _kind_of(data: bytes) -> str | None:
    """What a file that is not a PDF is, when its first bytes tell."""
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "a ZIP archive"
    if data.startswith(b"\x89PNG") or data.startswith(b"\xff\xd8\xff"):
        return "an image"
    if data.startswith(b"\x00" * 16):
        return "empty bytes (zeros)"
    return None


def check_pdf_bytes(data: bytes, name: str) -> None:
    """Refuse ``data`` unless it could be a PDF, before PDFium sees it."""
    if not data:
        raise DocumentError(f"{name} is empty.", name)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{name} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.", name)
    if not looks_like_pdf(data):
        kind = _kind_of(data)
        raise DocumentError(f"{name} is {kind}, not a PDF." if kind else f"{name} is not a PDF.", name)


def read_document_file(path: str | Path) -> bytes:
    """The bytes of a PDF file (regular files only, never past ``MAX_DOCUMENT_BYTES``)."""
    name = document_name(Path(path).name)
    try:
        data = read_regular_file(path, MAX_DOCUMENT_BYTES, name)
    except InputFileError as exc:
        raise DocumentError(str(exc), name) from None
    check_pdf_bytes(data, name)
    return data


def render_size(width_pt: float, height_pt: float, processor: ProcessorConfig) -> tuple[int, int]:
    """The (width, height) in pixels a ``width_pt`` x ``height_pt`` page is rendered at: the size
    the tiler would shrink a very sharp rendering of it to (so it renders once, at the detail
    the model sees, and never more than ``max_patches`` tiles of pixels)."""
    if not (width_pt > 0 and height_pt > 0):
        raise ValueError("a page without size")
    long_side = max(width_pt, height_pt)
    width = max(1, round(width_pt / long_side * _PLANNING_SIDE))
    height = max(1, round(height_pt / long_side * _PLANNING_SIDE))
    plan = plan_tiles(width, height, processor)
    resized_h, resized_w = plan.resized
    scale = min(resized_w / width_pt, resized_h / height_pt)
    return max(1, min(resized_w, round(width_pt * scale))), max(1, min(resized_h, round(height_pt * scale)))


class PdfFile:
    """An open PDF: its page count, and per page its text layer and its rendering.

    Use ``open_pdf`` (a context manager: the document is closed at its end)."""

    def __init__(self, document, name: str):
        self._document = document
        self.name = name

    @property
    def page_count(self) -> int:
        with _PDFIUM:
            return len(self._document)

    def _page(self, number: int):
        if not 1 <= number <= len(self._document):
            raise DocumentError(f"{self.name} has no page {number}.", self.name)
        return self._document[number - 1]

    def page_text(self, number: int, max_chars: int = MAX_PAGE_TEXT_CHARS) -> str:
        """Page ``number``'s text layer (1-based), '' when it has none (a scan)."""
        import pypdfium2 as pdfium

        with _PDFIUM:
            try:
                page = self._page(number)
                try:
                    textpage = page.get_textpage()
                    try:
                        count = textpage.count_chars()
                        text = textpage.get_text_range(0, min(count, max_chars)) if count > 0 else ""
                    finally:
                        textpage.close()
                finally:
                    page.close()
            except pdfium.PdfiumError as exc:
                raise DocumentError(
                    f"{self.name}: page {number} cannot be read ({exc}).", self.name
                ) from None
        return clean_text(text)[:max_chars]

    def render_page(self, number: int, processor: ProcessorConfig) -> ChatImage:
        """Page ``number`` (1-based) as a PNG image at ``render_size``: white paper, the page's
        rotation applied, forms and annotations' scripts not run."""
        import pypdfium2 as pdfium

        with _PDFIUM:
            try:
                page = self._page(number)
                try:
                    width_pt, height_pt = page.get_size()
                    width, height = render_size(width_pt, height_pt, processor)
                    scale = min(width / width_pt, height / height_pt)
                    bitmap = page.render(scale=scale, may_draw_forms=False, fill_color=(255, 255, 255, 255))
                    picture = bitmap.to_pil().convert("RGB")
                    bitmap.close()
                finally:
                    page.close()
            except pdfium.PdfiumError as exc:
                raise DocumentError(
                    f"{self.name}: page {number} cannot be drawn ({exc}).", self.name
                ) from None
            except DocumentError:
                raise
            except ValueError:
                raise DocumentError(f"{self.name}: page {number} has no size.", self.name) from None
        buffer = io.BytesIO()
        picture.save(buffer, "PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
        data = buffer.getvalue()
        stem = Path(self.name).stem or "document"
        return ChatImage(hashlib.sha256(data).hexdigest(), f"{stem}, page {number}.png", data, picture.size)


def clean_text(text: str) -> str:
    """A text layer as message text: line ends as ``\\n``, control characters (other than tab
    and new line) and NULs gone, trailing spaces and blank lines trimmed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    kept = "".join(ch for ch in text if ch in "\n\t" or (ch >= " " and ch != "\x7f"))
    lines = [line.rstrip() for line in kept.split("\n")]
    return "\n".join(lines).strip("\n")


@contextmanager
def open_pdf(data: bytes, name: str = "document.pdf") -> Iterator[PdfFile]:
    """``data`` opened as a PDF, or ``DocumentError`` saying why not."""
    import pypdfium2 as pdfium

    name = document_name(name)
    check_pdf_bytes(data, name)
    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _PASSWORD_ERROR:
                raise DocumentError(
                    f"{name} is password-protected; remove the password and attach it again.", name
                ) from None
            raise DocumentError(f"{name} is damaged or not a PDF (it cannot be opened).", name) from None
        count = len(document)
    try:
        if count < 1:
            raise DocumentError(f"{name} has no pages.", name)
        yield PdfFile(document, name)
    finally:
        with _PDFIUM:
            document.close()
