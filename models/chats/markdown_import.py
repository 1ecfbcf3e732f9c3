"""Reading a Markdown export back into the store (``read_markdown``).

A Markdown export (``models.chats.export.export_markdown``) is ``NAME.md`` with its images and
documents in folders beside it. Read back are the title, the system prompt, and each message:
its role (and an answer's model), text, images and documents (each document's PDF, which pages
went in as images, as text and left out; the page images are the exported files, the text
layers are read again from the PDF as ``read_document`` reads them). An answer's note (stopped,
interrupted, failed) becomes its finish reason. Times, other settings, figures and token ids are
only in the JSON export.

Everything is hostile until checked, and all of it is checked before anything is stored: the
file and each linked file are bounded in size, a link must name a file in a folder beside the
export (``folder/file``; never ``..``, an absolute path, or a link on disk, which is refused,
never followed), images must decode, PDFs must open with the page count the line gives, page
lists must be pages of the document, and a message carries at most
``MAX_IMAGES_PER_MESSAGE`` images with its page images. A refusal is a ``ChatImportError``
with one line naming the message; nothing is stored.

A message's text that holds a line exactly like a heading of the export (``## You``) is read as
two messages: the export writes text as it is, to read well.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from models.chats import export_format
from models.chats.conversation_records import MAX_SYSTEM_PROMPT_CHARS, UNTITLED, ConversationSettings
from models.chats.document_files import read_contained_file
from models.chats.export_format import (
    DOCUMENT_LABEL,
    MAX_DOCUMENTS_PER_MESSAGE,
    MAX_MESSAGES,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    ROLE_HEADINGS,
    ChatImportError,
    check_import_size,
)
from models.chats.store import ConversationStore, title_from_question
from models.documents.chat_documents import MAX_TEXT_CHARS as MAX_DOCUMENT_TEXT_CHARS
from models.documents.chat_documents import ChatDocument, DocumentPage, text_within
from models.documents.pdf_reading import MAX_DOCUMENT_BYTES, DocumentError, open_pdf
from models.inference.images import (
    MAX_FILE_BYTES,
    MAX_IMAGES_PER_MESSAGE,
    ChatImage,
    ImageError,
    load_image_bytes,
)
from models.inference.prompt import Role
from models.regular_files import InputFileError, read_regular_file

_ROLES = {heading: role for role, heading in ROLE_HEADINGS.items()}
_HEADING = re.compile(r"## (System|You|Llama)(?: \((.*)\))?")
_LINK = r"\[((?:\\.|[^\]\\])*)\]\(([^()\s]*)\)"
_IMAGE = re.compile(r"!" + _LINK)
_DOCUMENT = re.compile(re.escape(DOCUMENT_LABEL) + " " + _LINK + r" \((\d{1,7}) pages?\): (.+)")
_PAGE_PART = re.compile(r"pages? ([0-9, -]+) (as images|as text|left out)")
_RANGE = re.compile(r"(\d{1,7})(?:-(\d{1,7}))?")
_NOTES: dict[str, dict[str, Any]] = {
    "*(answer interrupted)*": {"interrupted": True},
    "*(stopped at the token limit)*": {"finish_reason": "length"},
    "*(stopped)*": {"finish_reason": "cancelled"},
    "*(failed)*": {"finish_reason": "error"},
}
_FAILED = re.compile(r"\*\(failed: (.*)\)\*")


@dataclass
class _Message:
    role: Role
    model: str | None
    text: str = ""
    images: list[ChatImage] = field(default_factory=list)
    documents: list[ChatDocument] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Reader:
    """The files beside one export, read without following links and within one byte budget."""

    def __init__(self, path: Path, budget: int):
        self.root = path.parent
        self.budget = budget
        self._read: dict[str, bytes] = {}  # a file linked from many messages is read (and counted) once

    def read(self, target: str, max_bytes: int, where: str) -> tuple[str, bytes]:
        """The file a link names (its shown name, its bytes)."""
        parts = unquote(target).split("/")
        if len(parts) != 2 or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
            raise ChatImportError(f"{where}: {target[:80]} is not a file in a folder beside the export.")
        shown = "/".join(parts)
        if shown in self._read:
            return parts[1], self._read[shown]
        try:
            data = read_contained_file(
                self.root, self.root / parts[0] / parts[1], min(max_bytes, self.budget)
            )
        except FileNotFoundError:
            raise ChatImportError(f"{where}: {shown[:80]} is missing beside the export.") from None
        except OSError as exc:
            raise ChatImportError(f"{where}: {shown[:80]} cannot be read ({exc.strerror or exc}).") from None
        self.budget -= len(data)
        self._read[shown] = data
        return parts[1], data


def read_markdown(store: ConversationStore, path: str | Path) -> int:
    """Import the Markdown export at ``path`` as a new conversation; return its id."""
    path = Path(path)
    check_import_size(path)
    try:
        text = read_regular_file(path, export_format.MAX_IMPORT_BYTES).decode("utf-8")
    except InputFileError as exc:
        raise ChatImportError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatImportError(f"{path} cannot be read ({exc}).") from None
    title, system_prompt, messages = _parse(text, _Reader(path, export_format.MAX_IMPORT_BYTES))
    with store.transaction():
        conversation = store.create(title, ConversationSettings(system_prompt=system_prompt))
        for message in messages:
            store.add_message(
                conversation.id,
                message.role,
                message.text,
                message.images,
                documents=message.documents,
                model=message.model,
                **message.metadata,
            )
    return conversation.id


def _unescape(text: str) -> str:
    return text.replace("\\[", "[").replace("\\]", "]")


def _parse(text: str, reader: _Reader) -> tuple[str, str, list[_Message]]:
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or not lines[0].startswith("# "):
        raise ChatImportError("This is not a Llama Desk Markdown export (it does not start with its title).")
    title = _unescape(lines[0][2:].strip())
    title = "" if title == UNTITLED else title_from_question(title, MAX_TITLE_CHARS)
    sections: list[tuple[str, str | None, list[str]]] = []
    for line in lines[1:]:
        heading = _HEADING.fullmatch(line)
        if heading is not None:
            if len(sections) >= MAX_MESSAGES + 1:
                raise ChatImportError(f"The export has more than {MAX_MESSAGES:,} messages.")
            sections.append((heading.group(1), heading.group(2), []))
        elif sections:
            sections[-1][2].append(line)
    system_prompt = ""
    if sections and sections[0][0] == "System" and sections[0][1] is None:
        system_prompt = "\n".join(sections.pop(0)[2]).strip()
        if len(system_prompt) > MAX_SYSTEM_PROMPT_CHARS:
            raise ChatImportError("The export's system prompt is too long.")
    messages = [
        _message(cast(Role, _ROLES[name]), model, body, f"Message {i + 1}", reader)
        for i, (name, model, body) in enumerate(sections)
    ]
    return title, system_prompt, messages


def _message(role: Role, model: str | None, body: list[str], where: str, reader: _Reader) -> _Message:
    message = _Message(role, model[:MAX_NAME_CHARS] if model and role == "assistant" else None)
    i = _skip_blank(body, 0)
    while i < len(body):
        document = _DOCUMENT.fullmatch(body[i])
        image = _IMAGE.fullmatch(body[i])
        if document is not None:
            if role != "user" or len(message.documents) >= MAX_DOCUMENTS_PER_MESSAGE:
                raise ChatImportError(f"{where} carries a document it cannot carry.")
            i = _document(message, document, body, i + 1, where, reader)
        elif image is not None and "/" in image.group(2):
            message.images.append(_image(image, where, reader))
            i += 1
        else:
            break
        if len(message.images) + sum(len(d.images) for d in message.documents) > MAX_IMAGES_PER_MESSAGE:
            raise ChatImportError(
                f"{where} has more images than the {MAX_IMAGES_PER_MESSAGE} a message may carry."
            )
    rest = body[_skip_blank(body, i) :]
    while rest and not rest[-1].strip():
        rest.pop()
    if role == "assistant":
        message.metadata = {"finish_reason": "stop"}
        if rest and (rest[-1] in _NOTES or _FAILED.fullmatch(rest[-1])):
            note = rest.pop()
            failed = _FAILED.fullmatch(note)
            message.metadata = dict(
                _NOTES.get(note) or {"finish_reason": "error", "error": failed and failed[1]}
            )
            if message.metadata.get("interrupted"):
                message.metadata["finish_reason"] = None
            while rest and not rest[-1].strip():
                rest.pop()
    message.text = "\n".join(rest)
    if len(message.text) > MAX_TEXT_CHARS:
        raise ChatImportError(f"{where} is longer than {MAX_TEXT_CHARS:,} characters.")
    return message


def _skip_blank(lines: list[str], i: int) -> int:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


def _image(match: re.Match, where: str, reader: _Reader) -> ChatImage:
    name = _unescape(match.group(1))[:MAX_NAME_CHARS]
    _, data = reader.read(match.group(2), MAX_FILE_BYTES, where)
    try:
        return load_image_bytes(data, name or "image")
    except ImageError as exc:
        raise ChatImportError(f"{where}: {exc}") from None


def _pages(spec: str, page_count: int, name: str, where: str) -> dict[str, list[int]]:
    """The page numbers of each kind in ``pages 1-2 as images; page 3 as text``."""
    kinds: dict[str, list[int]] = {"as images": [], "as text": [], "left out": []}
    if spec == "no pages":
        return kinds
    for part in spec.split("; "):
        match = _PAGE_PART.fullmatch(part)
        if match is None:
            raise ChatImportError(f"{where}: '{part[:60]}' is not a list of pages of {name}.")
        for piece in match.group(1).split(", "):
            numbers = _RANGE.fullmatch(piece)
            if numbers is None:
                raise ChatImportError(f"{where}: '{piece[:30]}' is not a page or a range of pages of {name}.")
            first = int(numbers.group(1))
            last = int(numbers.group(2) or first)
            if not 1 <= first <= last or last > page_count:
                raise ChatImportError(f"{where}: {name} has {page_count} pages; there is no page {last}.")
            kinds[match.group(2)].extend(range(first, last + 1))
    every = [n for numbers in kinds.values() for n in numbers]
    if len(every) != len(set(every)):
        raise ChatImportError(f"{where}: {name}'s page list names a page twice.")
    return kinds


def _document(
    message: _Message, match: re.Match, body: list[str], i: int, where: str, reader: _Reader
) -> int:
    """Read the document of the line ``match`` and the page images after it (from ``body[i]``);
    add it to ``message``; return the index of the line after its page images."""
    name = _unescape(match.group(1))[:MAX_NAME_CHARS] or "document.pdf"
    _, data = reader.read(match.group(2), MAX_DOCUMENT_BYTES, where)
    stated = int(match.group(3))
    try:
        with open_pdf(data, name) as pdf:
            if pdf.page_count != stated:
                raise ChatImportError(f"{where}: {name} has {pdf.page_count} pages, not {stated}.")
            kinds = _pages(match.group(4), stated, name, where)
            chosen = sorted(kinds["as images"] + kinds["as text"])
            if not chosen:
                raise ChatImportError(f"{where}: no pages of {name} went in.")
            images: list[ChatImage] = []
            while len(images) < len(kinds["as images"]) and i < len(body):
                line = _IMAGE.fullmatch(body[i])
                if line is None:
                    break
                images.append(_image(line, where, reader))
                i += 1
            if len(images) != len(kinds["as images"]):
                listed = len(kinds["as images"])
                raise ChatImportError(
                    f"{where}: {name} lists {listed} page images but {len(images)} follow it."
                )
            by_number = dict(zip(kinds["as images"], images, strict=True))
            pages, budget = [], MAX_DOCUMENT_TEXT_CHARS  # read as read_document reads them
            for number in chosen:
                whole = pdf.page_text(number)
                pages.append(DocumentPage(number, text_within(whole, budget), by_number.get(number)))
                budget -= len(whole)
    except DocumentError as exc:
        raise ChatImportError(f"{where}: {exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    message.documents.append(ChatDocument(sha, name, data, stated, tuple(pages), tuple(kinds["left out"])))
    return i
