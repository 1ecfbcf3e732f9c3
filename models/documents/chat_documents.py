"""A document attached to a question: which of its pages go in, as images or as text, and how
they read in the prompt.

``read_document`` turns a PDF's bytes into a ``ChatDocument``: the pages chosen (``--pages
1-3,7``, the window's page picker; all by default), the first ``image_pages`` of them rendered as
images (``models.documents.pdf_reading``), every chosen page's text layer read. Work is bounded:
only pages sent as images are rendered, and text is read until ``max_text_chars`` are in (later
pages are left out, and said to be). Progress is reported per page; a cancel is seen between
pages.

In the prompt a document is its page images (before the person's own images, as Llama 4's
template puts a message's images before its text) and, before the person's text, a block that
names each page: ``message_parts`` builds both, so the prompt of a 3-page PDF is, token for
token, the prompt of its three page images and that text (``document_text``).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from models.documents.pdf_reading import DocumentError, document_name, open_pdf
from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage
from models.inference.preprocess import ProcessorConfig

MAX_TEXT_CHARS = 400_000  # text layers read for one document (~100K tokens)
MAX_PAGE_SPEC_CHARS = 1_000
TEXT_CUT = "[… the rest of this page's text is left out: the document's text is too long]"


class DocumentCancelled(Exception):
    """Reading a document was cancelled (between two pages)."""


@dataclass(frozen=True)
class DocumentPage:
    """One page that goes in: its number (from 1), its text layer ('' for a scan), and its
    rendering when it goes in as an image."""

    number: int
    text: str = ""
    image: ChatImage | None = None


@dataclass(frozen=True)
class ChatDocument:
    """An attached PDF: its bytes (stored once, by ``sha256``), its page count, and the pages
    that go in, in order. ``left_out``: chosen pages whose text did not fit ``max_text_chars``."""

    sha256: str
    name: str
    data: bytes = field(compare=False, repr=False)
    page_count: int
    pages: tuple[DocumentPage, ...]
    left_out: tuple[int, ...] = ()

    @property
    def image_pages(self) -> tuple[int, ...]:
        return tuple(page.number for page in self.pages if page.image is not None)

    @property
    def text_pages(self) -> tuple[int, ...]:
        return tuple(page.number for page in self.pages if page.image is None)

    @property
    def images(self) -> tuple[ChatImage, ...]:
        return tuple(page.image for page in self.pages if page.image is not None)

    @property
    def textless_pages(self) -> tuple[int, ...]:
        """Pages that go as text but have none (scans past the image slots): only named."""
        return tuple(page.number for page in self.pages if page.image is None and not page.text)

    def with_image_pages(self, count: int) -> ChatDocument:
        """The document with only its first ``count`` image pages kept as images, the later
        ones going in as text (what the memory planner asks when images would not fit)."""
        pages, kept = [], 0
        for page in self.pages:
            if page.image is not None:
                if kept >= count:
                    page = replace(page, image=None)
                else:
                    kept += 1
            pages.append(page)
        return replace(self, pages=tuple(pages))

    def summary(self) -> str:
        """One line for chips, the CLI and the transcript: which pages went in how."""
        parts = []
        if self.image_pages:
            kind = "as an image" if len(self.image_pages) == 1 else "as images"
            parts.append(f"{page_list(self.image_pages)} {kind}")
        textless = set(self.textless_pages)
        if as_text := [n for n in self.text_pages if n not in textless]:
            parts.append(f"{page_list(as_text)} as text")
        if textless:
            parts.append(f"{page_list(sorted(textless))} without text (scans: only named)")
        if self.left_out:
            parts.append(f"{page_list(self.left_out)} left out")
        pages = f"{self.page_count} page" + ("s" if self.page_count != 1 else "")
        return f"{self.name} ({pages}): " + "; ".join(parts or ["no pages"])


def page_list(numbers: Sequence[int]) -> str:
    """``1, 2, 3, 7`` as ``pages 1-3, 7`` (``page 4`` for one)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    ranges = [f"{first}-{last}" if last != first else f"{first}" for first, last in runs]
    word = "page" if len(numbers) == 1 else "pages"
    return f"{word} {', '.join(ranges)}"


_SPEC = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d*)\s*)?$")


def parse_pages(spec: str | None, page_count: int, name: str = "the document") -> tuple[int, ...]:
    """The pages ``spec`` names (``"1-3,7"``, ``"5-"`` for 5 to the end), sorted, each once;
    every page when ``spec`` is empty. A page past the end or a malformed range is refused."""
    if spec is None or not spec.strip():
        return tuple(range(1, page_count + 1))
    if len(spec) > MAX_PAGE_SPEC_CHARS:
        raise DocumentError("The page list is too long.", name)
    chosen: set[int] = set()
    for part in spec.split(","):
        match = _SPEC.match(part)
        if match is None:
            raise DocumentError(f"'{part.strip()}' is not a page or a range of pages (like 1-3,7).", name)
        first = int(match.group(1))
        last = first if match.group(2) is None else (int(match.group(2)) if match.group(2) else page_count)
        if first < 1 or last < first:
            raise DocumentError(f"'{part.strip()}' is not a range of pages.", name)
        if last > page_count:
            raise DocumentError(
                f"{name} has {page_count} page{'s' if page_count != 1 else ''}; there is no page {last}.",
                name,
            )
        chosen.update(range(first, last + 1))
    return tuple(sorted(chosen))


def text_within(whole: str, budget: int) -> str:
    """A page's text layer within the ``budget`` of characters left; cut, it says so in its text
    (so a stored page reads the same in a prompt built again)."""
    text = whole[: max(budget, 0)]
    if len(text) < len(whole):
        text = (text.rstrip() + " " if text.strip() else "") + TEXT_CUT
    return text


def read_document(
    data: bytes,
    name: str,
    *,
    pages: str | Sequence[int] | None = None,
    image_pages: int = MAX_IMAGES_PER_MESSAGE,
    processor: ProcessorConfig | None = None,
    max_text_chars: int = MAX_TEXT_CHARS,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> ChatDocument:
    """Read ``data`` (a PDF) as an attachment: the ``pages`` chosen (a spec like ``"1-3,7"`` or
    page numbers; all by default), the first ``image_pages`` of them rendered, the text of all
    of them read until ``max_text_chars``. ``progress(done, total)`` after each page."""
    processor = processor or ProcessorConfig()
    name = document_name(name)
    with open_pdf(data, name) as pdf:
        count = pdf.page_count
        if pages is None or isinstance(pages, str):
            chosen = parse_pages(pages, count, name)
        else:
            chosen = parse_pages(",".join(str(n) for n in pages), count, name) if pages else ()
        if not chosen:
            raise DocumentError(f"No pages of {name} were chosen.", name)
        out: list[DocumentPage] = []
        left_out: list[int] = []
        budget = max_text_chars
        for done, number in enumerate(chosen, start=1):
            if cancel is not None and cancel.is_set():
                raise DocumentCancelled
            image = pdf.render_page(number, processor) if len(out) < image_pages else None
            if image is None and budget <= 0:
                left_out.append(number)
            else:
                whole = pdf.page_text(number)
                text = text_within(whole, budget)
                budget -= len(whole)
                out.append(DocumentPage(number, text, image))
            if progress is not None:
                progress(done, len(chosen))
    return ChatDocument(hashlib.sha256(data).hexdigest(), name, data, count, tuple(out), tuple(left_out))


def document_text(document: ChatDocument, first_image: int = 1) -> str:
    """The block that stands for ``document`` in its message's text: what it is, which of the
    message's images are its pages, and each page's text layer under its number.
    ``first_image``: the number (from 1) of its first page's image in the message."""
    lines = [
        f"[Document: {document.name}, {document.page_count} page{'s' if document.page_count != 1 else ''}]"
    ]
    image_pages = document.image_pages
    if image_pages:
        last = first_image + len(image_pages) - 1
        images = f"image {first_image}" if last == first_image else f"images {first_image}-{last}"
        lines.append(f"[{page_list(image_pages).capitalize()}: {images} of this message, in order]")
    if document.text_pages:
        lines.append(f"[{page_list(document.text_pages).capitalize()}: text only]")
    if document.left_out:
        lines.append(f"[{page_list(document.left_out).capitalize()}: left out (too long)]")
    for page in document.pages:
        lines.append("")
        if page.text:
            lines.append(f"[Page {page.number}]")
            lines.append(page.text)
        else:
            lines.append(f"[Page {page.number}: no text layer]")
    lines.append(f"[End of {document.name}]")
    return "\n".join(lines)


def message_parts(
    text: str, images: Sequence[ChatImage], documents: Sequence[ChatDocument]
) -> tuple[str, tuple[ChatImage, ...]]:
    """A question's text and images with its ``documents`` in them: their page images first,
    then the question's own images; their text blocks, then the question's text."""
    if not documents:
        return text, tuple(images)
    page_images: list[ChatImage] = []
    blocks: list[str] = []
    for document in documents:
        blocks.append(document_text(document, len(page_images) + 1))
        page_images.extend(document.images)
    return "\n\n".join([*blocks, text]) if text else "\n\n".join(blocks), (*page_images, *images)
