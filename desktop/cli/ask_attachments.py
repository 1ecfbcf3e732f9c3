"""What ``llama-desk ask`` attaches to its question: images (``--image``) and files (``--file``:
an image or a PDF, told apart by their bytes), read and checked before the model loads.

A PDF given with ``--file`` (``looks_like_pdf``; a name ending in .pdf whose bytes are no image
is refused as the PDF it claims to be) is opened and its page
list (``--pages``, the same list for every PDF given) checked at once, so a damaged, encrypted or
mis-named file is refused in one line before a model is loaded; anything else given with
``--file`` is an image, as with ``--image``. Once the model is loaded its pages are read
(``read_document``) at its tiler's size: the first of the chosen pages go as images, as many as
the 5-images-a-message rule leaves after the question's own images (shared by the PDFs in the
order given), the rest as text. When the prompt would not fit the context, the last page images
go as text instead (``fit_documents``), until it fits or none is left (then the answer fails
with the usual "longer than the context" line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desktop.cli.command_error import CommandError

if TYPE_CHECKING:
    from models.documents.chat_documents import ChatDocument
    from models.inference.images import ChatImage
    from models.inference.prompt import ChatMessage


@dataclass(frozen=True)
class PdfAttachment:
    """A PDF given with ``--file``: its bytes, checked, and the pages chosen of it."""

    name: str
    data: bytes
    page_count: int
    pages: tuple[int, ...]


def _read_file(path: str, pages: str | None):
    """``--file PATH``: a PdfAttachment for a PDF, else the image it must be."""
    from models.documents.chat_documents import parse_pages
    from models.documents.pdf_reading import (
        FILE_SUFFIXES,
        MAX_DOCUMENT_BYTES,
        DocumentError,
        check_pdf_bytes,
        looks_like_pdf,
        open_pdf,
    )
    from models.inference.images import MAX_FILE_BYTES, ImageError, load_image_bytes
    from models.regular_files import InputFileError, read_regular_file

    name = Path(path).name or path
    try:
        data = read_regular_file(path, max(MAX_DOCUMENT_BYTES, MAX_FILE_BYTES), name)
    except InputFileError as exc:
        raise CommandError(str(exc)) from None
    if not looks_like_pdf(data):
        try:
            if len(data) > MAX_FILE_BYTES:
                raise ImageError(f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.", name)
            return load_image_bytes(data, name)
        except ImageError as exc:
            if not name.lower().endswith(FILE_SUFFIXES):
                raise CommandError(str(exc)) from None
            # Named as a PDF: say what it is instead (a ZIP, zeros, damaged...), below.
    try:
        check_pdf_bytes(data, name)
        with open_pdf(data, name) as pdf:
            count = pdf.page_count
        return PdfAttachment(name, data, count, parse_pages(pages, count, name))
    except DocumentError as exc:
        raise CommandError(str(exc)) from None


def read_attachments(given: Sequence[tuple[str, str]], pages: str | None) -> list:
    """``--image`` and ``--file`` in the order given (``(flag, path)`` pairs), read and checked:
    images as ``ChatImage``s, PDFs as ``PdfAttachment``s. Raises ``CommandError`` in one line."""
    from models.inference.images import ChatImage, ImageError, check_image_count, load_image_file

    attachments: list = []
    for flag, path in given:
        if flag == "image":
            try:
                attachments.append(load_image_file(path))
            except ImageError as exc:
                raise CommandError(str(exc)) from None
        else:
            attachments.append(_read_file(path, pages))
    if pages is not None and not any(isinstance(a, PdfAttachment) for a in attachments):
        raise CommandError("--pages chooses pages of the PDFs given with --file; no PDF was given.", 2)
    try:
        check_image_count(sum(isinstance(a, ChatImage) for a in attachments))
    except ImageError as exc:
        raise CommandError(str(exc)) from None
    return attachments


def read_documents(
    attachments: Sequence, processor
) -> tuple[tuple[ChatImage, ...], tuple[ChatDocument, ...]]:
    """The question's own images and its PDFs read as ``ChatDocument``s: the first chosen pages
    rendered at ``processor``'s size, as many as the 5-images rule leaves (the PDFs in order)."""
    from models.documents.chat_documents import read_document
    from models.documents.pdf_reading import DocumentError
    from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage

    images = tuple(a for a in attachments if isinstance(a, ChatImage))
    room = max(0, MAX_IMAGES_PER_MESSAGE - len(images))
    documents = []
    for pdf in (a for a in attachments if isinstance(a, PdfAttachment)):
        try:
            document = read_document(
                pdf.data, pdf.name, pages=pdf.pages, image_pages=room, processor=processor
            )
        except DocumentError as exc:
            raise CommandError(str(exc)) from None
        room -= len(document.image_pages)
        documents.append(document)
    return images, tuple(documents)


def fit_documents(
    engine,
    history: list[ChatMessage],
    text: str,
    images: tuple[ChatImage, ...],
    documents: tuple[ChatDocument, ...],
    settings,
) -> tuple[tuple[ChatDocument, ...], bool]:
    """``documents`` with as many of their last page images going as text as the prompt
    (``history`` and this question) needs to fit the context, and whether it was seen to fit
    (with every page as text, too); unchanged when it fits, or when it fails for another reason
    (the answer then reports it)."""
    from models.documents.chat_documents import message_parts
    from models.inference.generation_types import PromptError
    from models.inference.prompt import ChatMessage
    from models.memory.turn_size import demoted_to_fit

    limit = min(settings.context_length or engine.max_context, engine.max_context)
    if not any(document.image_pages for document in documents):
        return documents, False
    while True:
        question, pictures = message_parts(text, images, documents)
        try:
            engine.prepare([*history, ChatMessage("user", question, pictures)], settings)
        except PromptError as exc:
            if not exc.prompt_ids or not any(document.image_pages for document in documents):
                return documents, False  # another failure, or too long even as text: reported
            documents = demoted_to_fit(documents, len(exc.prompt_ids) - limit + 1, engine.encoder.processor)
            continue
        return documents, True


def attachment_json(attachments: Sequence, documents: Sequence[ChatDocument]) -> list[dict]:
    """``--json``'s ``attachments``: each one given, in order, and for a PDF how its pages went."""
    read = iter(documents)
    out: list[dict] = []
    for attachment in attachments:
        if not isinstance(attachment, PdfAttachment):
            out.append({"name": attachment.name, "kind": "image"})
            continue
        document = next(read)
        out.append(
            {
                "name": document.name,
                "kind": "pdf",
                "page_count": document.page_count,
                "pages_as_images": list(document.image_pages),
                "pages_as_text": list(document.text_pages),
                "left_out": list(document.left_out),
            }
        )
    return out
