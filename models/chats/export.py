"""Conversations out of and into the store: Markdown to read, JSON to move between machines.

- ``export_markdown`` writes ``NAME.md`` and the images into ``NAME_images/`` beside it, linked
  with relative paths, so the folder reads well in any Markdown viewer.
- ``export_json`` gives one self-contained document (``FORMAT``, version ``FORMAT_VERSION``):
  the title, times, settings, and every message with its metadata and token ids; each image
  once, as base64 with its sha256, referenced from messages by hash.
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
"""

from __future__ import annotations

import base64
import errno
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from models import contained_paths
from models.atomic_files import replace_file, replace_in_folder
from models.chats.database import StoreError
from models.chats.export_format import (
    FORMAT,
    FORMAT_VERSION,
    MAX_IMPORT_BYTES,
    ChatImportError,
    ImportChecker,
    check_import_size,
    decoded_image,
)
from models.chats.images import SUFFIXES
from models.chats.store import (
    ConversationStore,
    StoredMessage,
)
from models.regular_files import InputFileError, read_regular_file

ROLE_HEADINGS = {"system": "System", "user": "You", "assistant": "Llama"}


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
            store.add_message(conversation.id, message.role, message.text, attached, **message.metadata)
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
    names: dict[str, tuple[str, str]] = {}  # sha256 -> (file name, media type)
    for message in store.messages(conversation_id):
        for image in message.images:
            if image.sha256 not in names:
                stem = re.sub(r"[^\w.-]+", "-", Path(image.name).stem).strip("-.") or "image"
                filename = f"{image.sha256[:12]}-{stem[:40]}{SUFFIXES.get(image.media_type, '.img')}"
                names[image.sha256] = (filename, image.media_type)
    if names:
        _write_images(store, folder, names)
    links = {sha: f"{quote(folder.name)}/{quote(filename)}" for sha, (filename, _) in names.items()}
    write_file_atomically(path, render_markdown(store, conversation_id, links).encode("utf-8"))
    return path


def _write_images(store: ConversationStore, folder: Path, names: dict[str, tuple[str, str]]) -> None:
    """Write each stored image (sha256 -> file name, media type) into ``folder`` (made if
    missing), one at a time and atomically. A ``folder`` that is a link (planted beside the
    export) is refused, never written through."""
    try:
        with contained_paths.open_folder(folder.parent, folder, create=True) as fd:
            for sha, (filename, media_type) in names.items():
                replace_in_folder(fd, filename, _stored_image(store, sha, media_type))
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
    "markdown_image_folder",
    "read_json",
    "render_markdown",
    "write_file_atomically",
    "write_json",
]
