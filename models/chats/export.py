"""Conversations out of and into the store: Markdown to read, JSON to move between machines.

- ``export_markdown`` writes ``NAME.md``, the images (documents' page images too) into
  ``NAME_images/`` and the documents' PDFs into ``NAME_documents/`` beside it, linked with
  relative paths, so the folder reads well in any Markdown viewer; a document is a line with
  its link and its page list. ``read_markdown`` (``models.chats.markdown_import``) reads such a
  folder back: the messages, images and documents (times, settings other than the system
  prompt, figures and token ids are the JSON's).
- ``export_json`` gives one self-contained document (``FORMAT``, version ``FORMAT_VERSION``):
  the title, times, settings, and every message with its metadata and token ids; each image
  once, as base64 with its sha256, referenced from messages by hash; each document (PDF) once
  too, under ``documents``, and on its message the pages that went in (number, text layer,
  page image by hash) and those left out. An export without documents is written as version
  1, which earlier versions read.
- ``read_export`` imports either, by the file's suffix.
- ``import_json`` reads that document back as a new conversation with the same messages and
  byte-identical images (each checked against its sha256 and decoded before anything is stored);
  every field is checked for type, range and size first (``ImportChecker`` says which faults
  are refused and which clamped), and a refusal raises ``ChatImportError`` with a one-line
  reason naming the field and stores nothing.
- What a document must be to be imported (the limits, each field's checks) is
  ``models.chats.export_format``; its names are re-exported here.
- Files are written atomically (``write_file_atomically``): an export over an existing file
  leaves either the old file or the new one, never a mix, even on a full disk. The place is
  the person's choice, but nothing planted there is followed: a ``NAME_images`` that is a link
  is refused, and temporary files are never opened through a link at their name.

Over 400 lines because both formats are written and read here with their images and documents,
each side beside the other, so that a change to one shows in the other.
"""

from __future__ import annotations

import base64
import errno
import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from models import contained_paths
from models.atomic_files import replace_file, replace_in_folder
from models.chats.database import StoreError
from models.chats.document_files import PDF_MEDIA_TYPE
from models.chats.export_format import (
    DOCUMENT_LABEL,
    DOCUMENTS_FORMAT_VERSION,
    FORMAT,
    FORMAT_VERSION,
    MAX_IMPORT_BYTES,
    ROLE_HEADINGS,
    ChatImportError,
    ImportChecker,
    check_import_size,
    checked_document,
    decoded_image,
)
from models.chats.images import SUFFIXES
from models.chats.markdown_import import read_markdown
from models.chats.store import (
    ConversationStore,
    StoredDocument,
    StoredImage,
    StoredMessage,
)
from models.documents.chat_documents import page_list
from models.regular_files import InputFileError, read_regular_file

# -- JSON ------------------------------------------------------------------------------------------


def export_json(store: ConversationStore, conversation_id: int) -> dict[str, Any]:
    """The conversation as a JSON-ready dict (see the module docstring)."""
    conversation = store.conversation(conversation_id, include_deleted=True)
    messages = store.messages(conversation_id)
    images: dict[str, dict[str, Any]] = {}
    pdfs: dict[str, dict[str, Any]] = {}

    def keep_image(image: StoredImage) -> None:
        if image.sha256 not in images:
            data = store.images.read(image.sha256, image.media_type) if image.path.exists() else None
            if data is None:
                raise StoreError(f"The stored image {image.name or image.sha256[:12]} is missing.")
            images[image.sha256] = {
                "sha256": image.sha256,
                "media_type": image.media_type,
                "data": base64.b64encode(data).decode("ascii"),
            }

    out_messages = []
    for message in messages:
        for image in message.images:
            keep_image(image)
        for document in message.documents:
            if document.sha256 not in pdfs:
                pdfs[document.sha256] = {
                    "sha256": document.sha256,
                    "media_type": PDF_MEDIA_TYPE,
                    "data": base64.b64encode(_stored_pdf(store, document)).decode("ascii"),
                }
            for page in document.pages:
                if page.image is not None:
                    keep_image(page.image)
        out_messages.append(
            {
                "role": message.role,
                "text": message.text,
                "created": message.created,
                "images": [{"sha256": image.sha256, "name": image.name} for image in message.images],
                "model": message.model,
                "stats": dict(message.stats) if message.stats is not None else None,
                "finish_reason": message.finish_reason,
                "error": message.error,
                "interrupted": message.interrupted,
                "token_ids": list(message.token_ids) if message.token_ids is not None else None,
            }
        )
        if message.documents:
            out_messages[-1]["documents"] = [_document_json(document) for document in message.documents]
    out: dict[str, Any] = {
        "format": FORMAT,
        "version": DOCUMENTS_FORMAT_VERSION if pdfs else 1,  # 1 is read by every Llama Desk
        "title": conversation.title,
        "created": conversation.created,
        "updated": conversation.updated,
        "settings": conversation.settings.to_json(),
        "messages": out_messages,
        "images": list(images.values()),
    }
    if pdfs:
        out["documents"] = list(pdfs.values())
    return out


def _document_json(document: StoredDocument) -> dict[str, Any]:
    """A message's document as exported: the PDF by hash, the pages that went in (each page
    image by hash, among the export's images), the pages left out."""
    return {
        "sha256": document.sha256,
        "name": document.name,
        "page_count": document.page_count,
        "pages": [
            {
                "number": page.number,
                "text": page.text,
                "image": {"sha256": page.image.sha256, "name": page.image.name} if page.image else None,
            }
            for page in document.pages
        ],
        "left_out": list(document.left_out),
    }


def _stored_pdf(store: ConversationStore, document: StoredDocument) -> bytes:
    try:
        return store.documents.read(document.sha256)
    except FileNotFoundError:
        raise StoreError(f"The stored document {document.name or document.sha256[:12]} is missing.") from None
    except OSError as exc:
        name = document.name or document.sha256[:12]
        raise StoreError(f"The stored document {name} cannot be read ({exc.strerror or exc}).") from None


def write_json(store: ConversationStore, conversation_id: int, path: str | Path) -> Path:
    """Write the export to ``path`` atomically (see ``write_file_atomically``)."""
    path = Path(path)
    text = json.dumps(export_json(store, conversation_id), ensure_ascii=False, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, (text + "\n").encode("utf-8"))
    return path


def import_json(store: ConversationStore, document: Any) -> int:
    """Store ``document`` (from ``export_json``) as a new conversation; return its id.

    Every field is checked before anything is stored (see ``ImportChecker``); a fault raises
    ``ChatImportError`` with a one-line reason naming the field.
    """
    checked = ImportChecker(store.clock()).document(document)
    with store.transaction():
        conversation = store.create(checked.title, checked.settings, created=checked.created)
        for message in checked.messages:
            # Decoded one message at a time: holding every decoded image at once could take far
            # more memory than the file's size suggests.
            attached = [decoded_image(checked.images[sha], name) for sha, name in message.images]
            documents = [
                checked_document(document, checked.documents[document.sha256], checked.images)
                for document in message.documents
            ]
            store.add_message(
                conversation.id, message.role, message.text, attached, documents=documents, **message.metadata
            )
        store.db.execute(
            "UPDATE conversations SET updated = ? WHERE id = ?", (checked.updated, conversation.id)
        )
    return conversation.id


def read_json(store: ConversationStore, path: str | Path) -> int:
    """Import the conversation export at ``path``; return the new conversation's id."""
    path = Path(path)
    check_import_size(path)
    try:
        document = json.loads(read_regular_file(path, MAX_IMPORT_BYTES).decode("utf-8"))
    except InputFileError as exc:  # missing, a folder, a device or FIFO, or too large
        raise ChatImportError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatImportError(f"{path} cannot be read ({exc}).") from None
    except json.JSONDecodeError as exc:
        raise ChatImportError(f"{path} is not JSON ({exc.msg}, line {exc.lineno}).") from None
    except RecursionError:
        raise ChatImportError(f"{path} is nested too deeply to be a conversation export.") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ChatImportError(f"{path} is not a conversation export ({exc}).") from None
    return import_json(store, document)


def read_export(store: ConversationStore, path: str | Path) -> int:
    """Import the export at ``path`` (Markdown for ``.md``/``.markdown``, else JSON); return the
    new conversation's id."""
    if Path(path).suffix.lower() in (".md", ".markdown"):
        return read_markdown(store, path)
    return read_json(store, path)


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once: written to a temporary file in the same
    folder, synced, then renamed over it. On failure the old file is left as it was, the
    temporary file is removed and ``StoreError`` says why in one line."""
    try:
        replace_file(path, data)
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        message = f"{path} could not be written ({reason}); an earlier file there is unchanged."
        raise StoreError(message) from None


# -- Markdown --------------------------------------------------------------------------------------


def markdown_image_folder(path: Path) -> Path:
    """Where ``export_markdown`` puts the images of ``path``: ``NAME_images`` beside it."""
    return path.with_name(f"{path.stem}_images")


def markdown_document_folder(path: Path) -> Path:
    """Where ``export_markdown`` puts the documents (PDFs) of ``path``: ``NAME_documents`` beside it."""
    return path.with_name(f"{path.stem}_documents")


def document_pages_line(page_count: int, image_pages, text_pages, left_out) -> str:
    """``(3 pages): pages 1-2 as images; page 3 as text``: what went in of a document, and how."""
    parts = []
    if image_pages:
        parts.append(f"{page_list(image_pages)} as images")
    if text_pages:
        parts.append(f"{page_list(text_pages)} as text")
    if left_out:
        parts.append(f"{page_list(left_out)} left out")
    return f"({page_count} page{'s' if page_count != 1 else ''}): " + "; ".join(parts or ["no pages"])


def render_markdown(
    store: ConversationStore,
    conversation_id: int,
    image_links: dict[str, str] | None = None,
    document_links: dict[str, str] | None = None,
) -> str:
    """The conversation as Markdown; ``image_links`` / ``document_links`` map an image's / a
    document's sha256 to its link target (those without one are mentioned by name only). A
    document is a line (``*Document:* [name](link) (3 pages): pages 1-2 as images; page 3 as
    text``) followed by its page images, before the message's own images."""
    conversation = store.conversation(conversation_id, include_deleted=True)
    lines = [f"# {_escape_line(conversation.display_title)}", ""]
    if conversation.damaged:
        lines += [f"*({_escape_line(conversation.damaged)})*", ""]
    if conversation.settings.system_prompt.strip():
        lines += ["## System", "", conversation.settings.system_prompt.strip(), ""]
    for message in store.messages(conversation_id):
        heading = ROLE_HEADINGS[message.role]
        if message.role == "assistant" and message.model:
            heading += f" ({message.model})"
        lines += [f"## {heading}", ""]
        shown_images = [page.image for document in message.documents for page in document.pages if page.image]
        for document in message.documents:
            name = _escape_line(document.name or document.sha256[:12])
            target = (document_links or {}).get(document.sha256)
            pages = document_pages_line(
                document.page_count, document.image_pages, document.text_pages, document.left_out
            )
            lines.append(
                f"{DOCUMENT_LABEL} [{name}]({target}) {pages}" if target else f"*[document: {name}]* {pages}"
            )
            for page in document.pages:
                if page.image is not None:
                    lines.append(_image_line(page.image, image_links))
        for image in message.images:
            lines.append(_image_line(image, image_links))
        if message.images or shown_images or message.documents:
            lines.append("")
        if message.text:
            lines += [message.text.rstrip(), ""]
        note = _answer_note(message)
        if note:
            lines += [f"*{note}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _image_line(image: StoredImage, links: dict[str, str] | None) -> str:
    name = _escape_line(image.name or image.sha256[:12])
    target = (links or {}).get(image.sha256)
    return f"![{name}]({target})" if target else f"*[image: {name}]*"


def _file_stem(name: str, default: str) -> str:
    return (re.sub(r"[^\w.-]+", "-", Path(name).stem).strip("-.") or default)[:40]


def export_markdown(store: ConversationStore, conversation_id: int, path: str | Path) -> Path:
    """Write the conversation to ``path``, its images (page images too) to ``NAME_images/`` and
    its documents' PDFs to ``NAME_documents/`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder, document_folder = markdown_image_folder(path), markdown_document_folder(path)
    images: dict[str, tuple[str, Callable[[], bytes]]] = {}  # sha256 -> (file name, its bytes)
    documents: dict[str, tuple[str, Callable[[], bytes]]] = {}

    def keep_image(image: StoredImage) -> None:
        if image.sha256 not in images:
            suffix = SUFFIXES.get(image.media_type, ".img")
            filename = f"{image.sha256[:12]}-{_file_stem(image.name, 'image')}{suffix}"
            images[image.sha256] = (filename, partial(_stored_image, store, image.sha256, image.media_type))

    for message in store.messages(conversation_id):
        for document in message.documents:
            if document.sha256 not in documents:
                filename = f"{document.sha256[:12]}-{_file_stem(document.name, 'document')}.pdf"
                documents[document.sha256] = (filename, partial(_stored_pdf, store, document))
            for page in document.pages:
                if page.image is not None:
                    keep_image(page.image)
        for image in message.images:
            keep_image(image)
    if images:
        _write_files(folder, images)
    if documents:
        _write_files(document_folder, documents)
    links = {sha: f"{quote(folder.name)}/{quote(filename)}" for sha, (filename, _) in images.items()}
    document_links = {
        sha: f"{quote(document_folder.name)}/{quote(filename)}" for sha, (filename, _) in documents.items()
    }
    markdown = render_markdown(store, conversation_id, links, document_links)
    write_file_atomically(path, markdown.encode("utf-8"))
    return path


def _write_files(folder: Path, files: dict[str, tuple[str, Callable[[], bytes]]]) -> None:
    """Write each stored file (sha256 -> file name, what reads its bytes) into ``folder`` (made
    if missing), one at a time and atomically. A ``folder`` that is a link (planted beside the
    export) is refused, never written through."""
    try:
        with contained_paths.open_folder(folder.parent, folder, create=True) as fd:
            for filename, read in files.values():
                replace_in_folder(fd, filename, read())
    except contained_paths.LinkRefused as exc:
        raise StoreError(f"{exc}; the export was not written.") from None
    except OSError as exc:
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise StoreError(f"{folder} could not be written ({reason}).") from None


def _stored_image(store: ConversationStore, sha256: str, media_type: str) -> bytes:
    try:
        return store.images.read(sha256, media_type)
    except OSError as exc:
        raise StoreError(f"The stored image {sha256[:12]} cannot be read ({exc.strerror or exc}).") from None


def _answer_note(message: StoredMessage) -> str:
    if message.role != "assistant":
        return ""
    if message.interrupted:
        return "(answer interrupted)"
    if message.finish_reason == "length":
        return "(stopped at the token limit)"
    if message.finish_reason == "cancelled":
        return "(stopped)"
    if message.finish_reason == "error":
        return f"(failed: {message.error})" if message.error else "(failed)"
    return ""


def _escape_line(text: str) -> str:
    return " ".join(text.split()).replace("[", "\\[").replace("]", "\\]")


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_IMPORT_BYTES",
    "ROLE_HEADINGS",
    "ChatImportError",
    "export_json",
    "export_markdown",
    "import_json",
    "markdown_document_folder",
    "markdown_image_folder",
    "read_export",
    "read_json",
    "read_markdown",
    "render_markdown",
    "write_file_atomically",
    "write_json",
]
