"""The JSON export's format: its name and version, the limits an import must stay within, and
the checks every imported field passes before anything is stored (``ImportChecker``); a refusal
is a ``ChatImportError`` naming the field.

Long because every field of a hostile file (messages, images, documents and their pages) has
its own bound and check, and they stay together so that one table says what an import accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeGuard, cast

from models.chats.database import StoreError
from models.chats.store import (
    FINISH_REASONS,
    ROLES,
    ConversationSettings,
    is_finite_number,
    title_from_question,
    valid_timestamp,
)
from models.documents.chat_documents import MAX_TEXT_CHARS as MAX_DOCUMENT_TEXT_CHARS
from models.documents.chat_documents import ChatDocument, DocumentPage
from models.documents.pdf_reading import MAX_DOCUMENT_BYTES, MAX_PAGE_TEXT_CHARS, DocumentError, open_pdf
from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage, ImageError, load_image_bytes
from models.inference.prompt import Role

FORMAT = "llama-desk-conversation"
# 2: questions may carry documents (PDFs inside, base64); an export without any is still written
# as version 1, which every Llama Desk reads.
FORMAT_VERSION = 2
DOCUMENTS_FORMAT_VERSION = 2


# The Markdown export's headings and its document lines (``export.render_markdown`` writes them,
# ``markdown_import`` reads them).
ROLE_HEADINGS = {"system": "System", "user": "You", "assistant": "Llama"}
DOCUMENT_LABEL = "*Document:*"  # starts the line that links a message's document


class ChatImportError(StoreError):
    """A conversation file that cannot be imported; the message says why."""


# Limits on what an import may hold. Beyond them the file is refused, except where noted.
MAX_IMPORT_BYTES = 512 * 1024 * 1024
MAX_MESSAGES = 100_000
MAX_IMAGES = 10_000
MAX_TEXT_CHARS = 2_000_000  # a message's text
MAX_TITLE_CHARS = 200  # longer titles are cut
MAX_LABEL_CHARS = 10_000  # model, error, image names: longer ones are cut
MAX_TOKEN_IDS = 10_485_760  # per message
MAX_STATS = 64  # numbers per message; stats that are not a small object of numbers are dropped
MAX_DOCUMENTS = 1_000  # documents (PDFs) in one export
MAX_DOCUMENTS_PER_MESSAGE = 20
MAX_NAME_CHARS = 255  # a document's name: a longer one is cut
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_import_size(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        return  # reading it says why
    if size > MAX_IMPORT_BYTES:
        raise ChatImportError(
            f"{path} is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB, the most "
            "a conversation export may be."
        )


@dataclass(frozen=True)
class CheckedPage:
    number: int
    text: str
    image: tuple[str, str] | None  # (sha256, name) of its page image


@dataclass(frozen=True)
class CheckedAttachment:
    """A document attached to a message: which PDF, under what name, its pages that went in."""

    sha256: str
    name: str
    page_count: int
    pages: list[CheckedPage]
    left_out: tuple[int, ...]


@dataclass(frozen=True)
class CheckedMessage:
    role: Role
    text: str
    images: list[tuple[str, str]]  # (sha256, name) of each attached image
    metadata: dict[str, Any]  # add_message's keyword arguments
    documents: list[CheckedAttachment] = field(default_factory=list)


@dataclass(frozen=True)
class CheckedDocument:
    title: str
    created: float
    updated: float
    settings: ConversationSettings
    messages: list[CheckedMessage]
    images: dict[str, bytes]  # sha256 -> bytes, each checked to decode
    documents: dict[str, bytes] = field(default_factory=dict)  # sha256 -> a PDF's bytes, checked


@dataclass(frozen=True)
class CheckedPdf:
    data: bytes
    page_count: int


def decoded_image(data: bytes, name: str) -> ChatImage:
    try:
        image = load_image_bytes(data, name or "image", verify=False)  # the checker decoded it
    except ImageError as exc:
        raise ChatImportError(str(exc)) from None
    return replace(image, name=name)


def checked_document(
    attachment: CheckedAttachment, data: bytes, image_data: dict[str, bytes]
) -> ChatDocument:
    """The ``ChatDocument`` an import stores for ``attachment`` (its PDF's and page images' bytes)."""
    pages = tuple(
        DocumentPage(
            page.number,
            page.text,
            decoded_image(image_data[page.image[0]], page.image[1]) if page.image is not None else None,
        )
        for page in attachment.pages
    )
    return ChatDocument(
        attachment.sha256, attachment.name, data, attachment.page_count, pages, attachment.left_out
    )


def check_pdf(data: bytes, name: str) -> int:
    """The page count of the PDF ``data``; ``ChatImportError`` (one line) unless it opens."""
    try:
        with open_pdf(data, name) as pdf:
            return pdf.page_count
    except DocumentError as exc:
        raise ChatImportError(str(exc)) from None


def base64_limit(max_bytes: int) -> int:
    """The longest base64 text that can decode to at most ``max_bytes`` bytes."""
    return 4 * ((max_bytes + 2) // 3)


def check_attachment(
    entry: Any, where: str, page_count: int, sha: str, images: dict[str, Any]
) -> CheckedAttachment:
    """A message's ``documents[i]`` entry (of the PDF ``sha`` of ``page_count`` pages), whose
    page images must be in ``images``. Refused: pages that are not 1..``page_count`` in
    increasing order (at least one), text that is not text or too long, a page image the file
    does not hold, ``left_out`` pages that are not pages, or that went in."""
    name = (_label(entry.get("name")) or "document.pdf")[:MAX_NAME_CHARS]
    pages: list[CheckedPage] = []
    total = 0
    for i, page in enumerate(_list(entry, "pages", page_count, where)):
        at = f"{where}.pages[{i}]"
        if not isinstance(page, dict):
            raise ChatImportError(f"{at} is not an object.")
        number = page.get("number")
        if not _is_int(number) or not 1 <= number <= page_count:
            shown = str(number)[:20]
            raise ChatImportError(f"{at}.number: the document has no page {shown} (it has {page_count}).")
        if pages and number <= pages[-1].number:
            raise ChatImportError(f"{at}.number: the pages are not in order, each once.")
        text = page.get("text", "")
        if not isinstance(text, str):
            raise ChatImportError(f"{at}.text is not text.")
        total += len(text)
        if len(text) > MAX_PAGE_TEXT_CHARS or total > MAX_DOCUMENT_TEXT_CHARS:
            raise ChatImportError(f"{at}.text is longer than a page's text layer may be.")
        image = None
        if page.get("image") is not None:
            image_sha = _field(page["image"], "sha256", str, f"{at}.image")
            if image_sha not in images:
                raise ChatImportError(f"{at} refers to image {image_sha[:12]}, which the file does not hold.")
            image = (image_sha, _label(page["image"].get("name")) or "")
        pages.append(CheckedPage(number, text, image))
    if not pages:
        raise ChatImportError(f"{where} has no pages.")
    left_out = _list(entry, "left_out", page_count, where)
    went_in = {page.number for page in pages}
    pages_left_out = all(_is_int(n) and 1 <= n <= page_count and n not in went_in for n in left_out)
    if not pages_left_out or left_out != sorted(set(left_out)):  # ints by now: each once, in order
        raise ChatImportError(f"{where}.left_out are not pages of the document that were left out.")
    return CheckedAttachment(sha, name, page_count, pages, tuple(left_out))


class ImportChecker:
    """Checks an import document field by field.

    Refused (one line naming the field): a wrong format or version; messages, images or settings
    of the wrong type; an unknown role; a text, system prompt or title that is not text, or too
    long a text; more than ``MAX_IMAGES_PER_MESSAGE`` images on a message; an image that is
    missing, not base64, not matching its sha256 or not decodable; a setting out of its range
    (``null`` means the default); an answer's token ids that are not a list of uint32 (whether
    they are in the model's vocabulary is checked when they are used: the engine re-tokenizes
    the text of an answer whose ids it cannot take); a document (version 2) that is too large,
    not base64, not matching its sha256 or not a PDF that opens (a ZIP, damaged, encrypted), or
    attached to an answer; a document's pages that are not its pages in increasing order, whose
    text is too long, whose image the file does not hold, or whose images with the message's own
    make more than ``MAX_IMAGES_PER_MESSAGE``; ``left_out`` pages that are not left-out pages.

    Clamped, because the conversation is still worth having: a time that is missing, not a
    number or outside 1970..9999 becomes now (``updated`` is never before ``created``); a long
    title or label is cut; stats that are not a small object of numbers, token ids on a
    question, an unknown finish reason and an ``interrupted`` that is not true/false are dropped.
    """

    def __init__(self, now: float):
        self.now = now

    def document(self, document: Any) -> CheckedDocument:
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ChatImportError("This is not a Llama Desk conversation export.")
        version = document.get("version")
        if not _is_int(version) or version < 1:
            raise ChatImportError("This conversation export has no valid version.")
        if version > FORMAT_VERSION:
            raise ChatImportError(
                f"This conversation export is version {str(version)[:20]}; this Llama Desk reads "
                f"up to version {FORMAT_VERSION}."
            )
        title = document.get("title")
        if title is not None and not isinstance(title, str):
            raise ChatImportError("The conversation's title is not text.")
        title = title_from_question(title or "", MAX_TITLE_CHARS)
        settings = self.settings(document.get("settings"))
        images = self.images(_list(document, "images", MAX_IMAGES))
        pdfs = self.pdfs(_list(document, "documents", MAX_DOCUMENTS))
        messages = [
            self.message(entry, i, images, pdfs)
            for i, entry in enumerate(_list(document, "messages", MAX_MESSAGES))
        ]
        created = self.time(document.get("created"))
        updated = max(created, self.time(document.get("updated")))
        documents = {sha: pdf.data for sha, pdf in pdfs.items()}
        return CheckedDocument(title, created, updated, settings, messages, images, documents)

    def time(self, value: Any) -> float:
        stamp = valid_timestamp(value)
        return self.now if stamp is None else stamp

    def settings(self, data: Any) -> ConversationSettings:
        if data is None:
            return ConversationSettings()
        if not isinstance(data, dict):
            raise ChatImportError("The conversation's settings are not an object.")
        try:
            return ConversationSettings.from_json(data)
        except StoreError as exc:
            raise ChatImportError(f"The conversation's {exc}") from None

    def images(self, entries: list) -> dict[str, bytes]:
        images: dict[str, bytes] = {}
        for i, entry in enumerate(entries):
            where = f"images[{i}]"
            sha = _field(entry, "sha256", str, where)
            if not _SHA256.fullmatch(sha):
                raise ChatImportError(f"{where}.sha256 is not a sha256 (64 lowercase hex digits).")
            if sha in images:
                continue
            try:
                data = base64.b64decode(_field(entry, "data", str, where), validate=True)
            except (binascii.Error, ValueError):
                raise ChatImportError(f"Image {sha[:12]} is not valid base64.") from None
            if hashlib.sha256(data).hexdigest() != sha:
                raise ChatImportError(f"Image {sha[:12]} does not match its sha256; the file is damaged.")
            try:
                load_image_bytes(data, f"image {sha[:12]}")  # decodes, then lets the pixels go
            except ImageError as exc:
                raise ChatImportError(str(exc)) from None
            images[sha] = data
        return images

    def pdfs(self, entries: list) -> dict[str, CheckedPdf]:
        """The export's documents: each a PDF (checked to open) matching its sha256."""
        pdfs: dict[str, CheckedPdf] = {}
        for i, entry in enumerate(entries):
            where = f"documents[{i}]"
            sha = _field(entry, "sha256", str, where)
            if not _SHA256.fullmatch(sha):
                raise ChatImportError(f"{where}.sha256 is not a sha256 (64 lowercase hex digits).")
            if sha in pdfs:
                continue
            text = _field(entry, "data", str, where)
            if len(text) > base64_limit(MAX_DOCUMENT_BYTES):
                raise ChatImportError(
                    f"Document {sha[:12]} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB."
                )
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ChatImportError(f"Document {sha[:12]} is not valid base64.") from None
            if hashlib.sha256(data).hexdigest() != sha:
                raise ChatImportError(f"Document {sha[:12]} does not match its sha256; the file is damaged.")
            pdfs[sha] = CheckedPdf(data, check_pdf(data, f"Document {sha[:12]}"))
        return pdfs

    def message(
        self, entry: Any, index: int, images: dict[str, bytes], pdfs: dict[str, CheckedPdf] | None = None
    ) -> CheckedMessage:
        where = f"messages[{index}]"
        if not isinstance(entry, dict):
            raise ChatImportError(f"{where} is not an object.")
        role = _field(entry, "role", str, where)
        if role not in ROLES:
            raise ChatImportError(f"{where} has the unknown role {role[:40]!r}.")
        text = _field(entry, "text", str, where)
        if len(text) > MAX_TEXT_CHARS:
            raise ChatImportError(f"{where}.text is longer than {MAX_TEXT_CHARS:,} characters.")
        refs = _list(entry, "images", MAX_IMAGES_PER_MESSAGE, where)
        attached = []
        for ref in refs:
            sha = _field(ref, "sha256", str, f"{where}.images")
            if sha not in images:
                raise ChatImportError(f"A message refers to image {sha[:12]}, which the file does not hold.")
            attached.append((sha, _label(ref.get("name")) or ""))
        documents = self.attachments(entry, where, role, pdfs or {}, images)
        page_images = sum(1 for d in documents for page in d.pages if page.image is not None)
        if len(attached) + page_images > MAX_IMAGES_PER_MESSAGE:
            raise ChatImportError(
                f"{where} has {len(attached) + page_images} images with its documents' pages; "
                f"at most {MAX_IMAGES_PER_MESSAGE} are allowed."
            )
        finish_reason = entry.get("finish_reason")
        interrupted = entry.get("interrupted")
        metadata = {
            "model": _label(entry.get("model")),
            "stats": _stats(entry.get("stats")),
            "finish_reason": finish_reason if finish_reason in FINISH_REASONS else None,
            "error": _label(entry.get("error")),
            "interrupted": interrupted if isinstance(interrupted, bool) else False,
            "token_ids": _token_ids(entry.get("token_ids"), where) if role == "assistant" else None,
            "created": self.time(entry.get("created")),
        }
        return CheckedMessage(cast(Role, role), text, attached, metadata, documents)

    def attachments(
        self, entry: dict, where: str, role: str, pdfs: dict[str, CheckedPdf], images: dict[str, Any]
    ) -> list[CheckedAttachment]:
        refs = _list(entry, "documents", MAX_DOCUMENTS_PER_MESSAGE, where)
        if refs and role != "user":
            raise ChatImportError(f"{where} is not a question; only a question carries documents.")
        documents = []
        for i, ref in enumerate(refs):
            at = f"{where}.documents[{i}]"
            sha = _field(ref, "sha256", str, at)
            if sha not in pdfs:
                raise ChatImportError(f"{at} refers to document {sha[:12]}, which the file does not hold.")
            documents.append(check_attachment(ref, at, pdfs[sha].page_count, sha, images))
        return documents


def _list(container: dict, key: str, limit: int, where: str = "The conversation") -> list:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ChatImportError(f"{where}'s {key} are not a list.")
    if len(value) > limit:
        raise ChatImportError(f"{where} has {len(value):,} {key}; at most {limit:,} are allowed.")
    return value


def _field(container: Any, key: str, kind: type, where: str) -> Any:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise ChatImportError(f"{where}.{key} is missing or not {'text' if kind is str else kind.__name__}.")
    return value


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _label(value: Any) -> str | None:
    return value[:MAX_LABEL_CHARS] if isinstance(value, str) else None


def _stats(value: Any) -> dict[str, float] | None:
    if not isinstance(value, dict) or len(value) > MAX_STATS:
        return None
    good = all(isinstance(k, str) and len(k) <= 100 and is_finite_number(v) for k, v in value.items())
    return dict(value) if good else None


def _token_ids(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if not (
        isinstance(value, list)
        and len(value) <= MAX_TOKEN_IDS
        and all(_is_int(t) and 0 <= t < 2**32 for t in value)
    ):
        raise ChatImportError(f"{where}.token_ids are not a list of token ids (whole numbers 0..2**32-1).")
    return value
