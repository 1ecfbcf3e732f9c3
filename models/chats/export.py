"""Conversations out of and into the store: Markdown to read, JSON to move between machines.

- ``export_markdown`` writes ``NAME.md`` and the images into ``NAME_images/`` beside it, linked
  with relative paths, so the folder reads well in any Markdown viewer.
- ``export_json`` gives one self-contained document (``FORMAT``, version ``FORMAT_VERSION``):
  the title, times, settings, and every message with its metadata and token ids; each image
  once, as base64 with its sha256, referenced from messages by hash.
- ``import_json`` reads that document back as a new conversation with the same messages and
  byte-identical images (each checked against its sha256 and decoded before anything is stored);
  every field is checked for type, range and size first (``_ImportChecker`` says which faults
  are refused and which clamped), and a refusal raises ``ChatImportError`` with a one-line
  reason naming the field and stores nothing.
- Files are written atomically (``write_file_atomically``): an export over an existing file
  leaves either the old file or the new one, never a mix, even on a full disk.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard, cast
from urllib.parse import quote

from models.chats.database import StoreError
from models.chats.images import SUFFIXES
from models.chats.store import (
    FINISH_REASONS,
    ROLES,
    ConversationSettings,
    ConversationStore,
    StoredMessage,
    is_finite_number,
    title_from_question,
    valid_timestamp,
)
from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage, ImageError, load_image_bytes
from models.inference.prompt import Role
from models.regular_files import InputFileError, read_regular_file

FORMAT = "llama-desk-conversation"
FORMAT_VERSION = 1
ROLE_HEADINGS = {"system": "System", "user": "You", "assistant": "Llama"}


class ChatImportError(StoreError):
    """A conversation file that cannot be imported; the message says why."""


# -- JSON ------------------------------------------------------------------------------------------


def export_json(store: ConversationStore, conversation_id: int) -> dict[str, Any]:
    """The conversation as a JSON-ready dict (see the module docstring)."""
    conversation = store.conversation(conversation_id, include_deleted=True)
    messages = store.messages(conversation_id)
    images: dict[str, dict[str, Any]] = {}
    out_messages = []
    for message in messages:
        for image in message.images:
            if image.sha256 not in images:
                data = store.images.read(image.sha256, image.media_type) if image.path.exists() else None
                if data is None:
                    raise StoreError(f"The stored image {image.name or image.sha256[:12]} is missing.")
                images[image.sha256] = {
                    "sha256": image.sha256,
                    "media_type": image.media_type,
                    "data": base64.b64encode(data).decode("ascii"),
                }
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
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "title": conversation.title,
        "created": conversation.created,
        "updated": conversation.updated,
        "settings": conversation.settings.to_json(),
        "messages": out_messages,
        "images": list(images.values()),
    }


def write_json(store: ConversationStore, conversation_id: int, path: str | Path) -> Path:
    """Write the export to ``path`` atomically (see ``write_file_atomically``)."""
    path = Path(path)
    text = json.dumps(export_json(store, conversation_id), ensure_ascii=False, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, (text + "\n").encode("utf-8"))
    return path


def import_json(store: ConversationStore, document: Any) -> int:
    """Store ``document`` (from ``export_json``) as a new conversation; return its id.

    Every field is checked before anything is stored (see ``_ImportChecker``); a fault raises
    ``ChatImportError`` with a one-line reason naming the field.
    """
    checked = _ImportChecker(store.clock()).document(document)
    with store.transaction():
        conversation = store.create(checked.title, checked.settings, created=checked.created)
        for message in checked.messages:
            # Decoded one message at a time: holding every decoded image at once could take far
            # more memory than the file's size suggests.
            attached = [_decoded(checked.images[sha], name) for sha, name in message.images]
            store.add_message(conversation.id, message.role, message.text, attached, **message.metadata)
        store.db.execute(
            "UPDATE conversations SET updated = ? WHERE id = ?", (checked.updated, conversation.id)
        )
    return conversation.id


def read_json(store: ConversationStore, path: str | Path) -> int:
    """Import the conversation export at ``path``; return the new conversation's id."""
    path = Path(path)
    _check_import_size(path)
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


# Limits on what an import may hold. Beyond them the file is refused, except where noted.
MAX_IMPORT_BYTES = 512 * 1024 * 1024
MAX_MESSAGES = 100_000
MAX_IMAGES = 10_000
MAX_TEXT_CHARS = 2_000_000  # a message's text
MAX_TITLE_CHARS = 200  # longer titles are cut
MAX_LABEL_CHARS = 10_000  # model, error, image names: longer ones are cut
MAX_TOKEN_IDS = 10_485_760  # per message
MAX_STATS = 64  # numbers per message; stats that are not a small object of numbers are dropped
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_import_size(path: Path) -> None:
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
class _CheckedMessage:
    role: Role
    text: str
    images: list[tuple[str, str]]  # (sha256, name) of each attached image
    metadata: dict[str, Any]  # add_message's keyword arguments


@dataclass(frozen=True)
class _CheckedDocument:
    title: str
    created: float
    updated: float
    settings: ConversationSettings
    messages: list[_CheckedMessage]
    images: dict[str, bytes]  # sha256 -> bytes, each checked to decode


def _decoded(data: bytes, name: str) -> ChatImage:
    try:
        image = load_image_bytes(data, name or "image")  # decoded once already by the checker
    except ImageError as exc:
        raise ChatImportError(str(exc)) from None
    return ChatImage(image.sha256, name, image.image, image.data)


class _ImportChecker:
    """Checks an import document field by field.

    Refused (one line naming the field): a wrong format or version; messages, images or settings
    of the wrong type; an unknown role; a text, system prompt or title that is not text, or too
    long a text; more than ``MAX_IMAGES_PER_MESSAGE`` images on a message; an image that is
    missing, not base64, not matching its sha256 or not decodable; a setting out of its range
    (``null`` means the default); an answer's token ids that are not a list of uint32 (whether
    they are in the model's vocabulary is checked when they are used: the engine re-tokenizes
    the text of an answer whose ids it cannot take).

    Clamped, because the conversation is still worth having: a time that is missing, not a
    number or outside 1970..9999 becomes now (``updated`` is never before ``created``); a long
    title or label is cut; stats that are not a small object of numbers, token ids on a
    question, an unknown finish reason and an ``interrupted`` that is not true/false are dropped.
    """

    def __init__(self, now: float):
        self.now = now

    def document(self, document: Any) -> _CheckedDocument:
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
        messages = [
            self.message(entry, i, images)
            for i, entry in enumerate(_list(document, "messages", MAX_MESSAGES))
        ]
        created = self.time(document.get("created"))
        updated = max(created, self.time(document.get("updated")))
        return _CheckedDocument(title, created, updated, settings, messages, images)

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

    def message(self, entry: Any, index: int, images: dict[str, bytes]) -> _CheckedMessage:
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
        return _CheckedMessage(cast(Role, role), text, attached, metadata)


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


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` all at once: written to a temporary file in the same
    folder, synced, then renamed over it. On failure the old file is left as it was, the
    temporary file is removed and ``StoreError`` says why in one line."""
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view[:_WRITE_CHUNK]) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        message = f"{path} could not be written ({reason}); an earlier file there is unchanged."
        raise StoreError(message) from None
    _fsync_folder(path.parent)


_WRITE_CHUNK = 1024 * 1024


def _fsync_folder(path: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- Markdown --------------------------------------------------------------------------------------


def markdown_image_folder(path: Path) -> Path:
    """Where ``export_markdown`` puts the images of ``path``: ``NAME_images`` beside it."""
    return path.with_name(f"{path.stem}_images")


def render_markdown(
    store: ConversationStore, conversation_id: int, image_links: dict[str, str] | None = None
) -> str:
    """The conversation as Markdown; ``image_links`` maps an image's sha256 to its link target
    (images without one are mentioned by name only)."""
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
        for image in message.images:
            name = _escape_line(image.name or image.sha256[:12])
            target = (image_links or {}).get(image.sha256)
            lines.append(f"![{name}]({target})" if target else f"*[image: {name}]*")
        if message.images:
            lines.append("")
        if message.text:
            lines += [message.text.rstrip(), ""]
        note = _answer_note(message)
        if note:
            lines += [f"*{note}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def export_markdown(store: ConversationStore, conversation_id: int, path: str | Path) -> Path:
    """Write the conversation to ``path`` and its images to ``NAME_images/`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = markdown_image_folder(path)
    links: dict[str, str] = {}
    for message in store.messages(conversation_id):
        for image in message.images:
            if image.sha256 in links:
                continue
            stem = re.sub(r"[^\w.-]+", "-", Path(image.name).stem).strip("-.") or "image"
            filename = f"{image.sha256[:12]}-{stem[:40]}{SUFFIXES.get(image.media_type, '.img')}"
            folder.mkdir(parents=True, exist_ok=True)
            write_file_atomically(folder / filename, store.images.read(image.sha256, image.media_type))
            links[image.sha256] = f"{quote(folder.name)}/{quote(filename)}"
    write_file_atomically(path, render_markdown(store, conversation_id, links).encode("utf-8"))
    return path


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
