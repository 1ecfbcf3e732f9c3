"""Conversations out of and into the store: Markdown to read, JSON to move between machines.

- ``export_markdown`` writes ``NAME.md`` and the images into ``NAME_images/`` beside it, linked
  with relative paths, so the folder reads well in any Markdown viewer.
- ``export_json`` gives one self-contained document (``FORMAT``, version ``FORMAT_VERSION``):
  the title, times, settings, and every message with its metadata and token ids; each image
  once, as base64 with its sha256, referenced from messages by hash.
- ``import_json`` reads that document back as a new conversation with the same messages and
  byte-identical images (each checked against its sha256 and decoded before anything is stored);
  any fault raises ``ChatImportError`` with a one-line reason and stores nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from models.chat_database import StoreError
from models.chat_images import SUFFIXES
from models.conversations import (
    ROLES,
    ConversationSettings,
    ConversationStore,
    StoredMessage,
)
from models.images import ChatImage, ImageError, load_image_bytes
from models.regular_files import InputFileError, read_regular_file

FORMAT = "llama-desk-conversation"
FORMAT_VERSION = 1
MAX_IMPORT_BYTES = 1024 * 1024 * 1024  # a conversation file, images included (base64)
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
        out_messages.append({
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
        })
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
    path = Path(path)
    text = json.dumps(export_json(store, conversation_id), ensure_ascii=False, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def import_json(store: ConversationStore, document: Any) -> int:
    """Store ``document`` (from ``export_json``) as a new conversation; return its id."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ChatImportError("This is not a Llama Desk conversation export.")
    version = document.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ChatImportError(f"This conversation export is version {version}; this Llama Desk reads "
                              f"up to version {FORMAT_VERSION}.")
    images = {}
    for entry in _list(document, "images"):
        sha = _field(entry, "sha256", str)
        try:
            data = base64.b64decode(_field(entry, "data", str), validate=True)
        except (binascii.Error, ValueError):
            raise ChatImportError(f"Image {sha[:12]} is not valid base64.") from None
        if hashlib.sha256(data).hexdigest() != sha:
            raise ChatImportError(f"Image {sha[:12]} does not match its sha256; the file is damaged.")
        try:
            images[sha] = load_image_bytes(data, f"image {sha[:12]}")
        except ImageError as exc:
            raise ChatImportError(str(exc)) from None

    messages = []
    for entry in _list(document, "messages"):
        role = _field(entry, "role", str)
        if role not in ROLES:
            raise ChatImportError(f"A message has the unknown role {role!r}.")
        attached = []
        for ref in entry.get("images") or []:
            sha = _field(ref, "sha256", str)
            if sha not in images:
                raise ChatImportError(f"A message refers to image {sha[:12]}, which the file does not hold.")
            image = images[sha]
            attached.append(ChatImage(image.sha256, str(ref.get("name") or ""), image.image, image.data))
        token_ids = entry.get("token_ids")
        if token_ids is not None and not (
            isinstance(token_ids, list) and all(isinstance(t, int) and 0 <= t < 2**32 for t in token_ids)
        ):
            raise ChatImportError("A message's token_ids are not a list of token ids.")
        stats = entry.get("stats")
        if stats is not None and not isinstance(stats, dict):
            raise ChatImportError("A message's stats are not an object.")
        messages.append((role, _field(entry, "text", str), attached, entry, token_ids, stats))

    settings_data = document.get("settings") or {}
    if not isinstance(settings_data, dict):
        raise ChatImportError("The conversation's settings are not an object.")
    try:
        settings = ConversationSettings.from_json(settings_data)
    except TypeError as exc:
        raise ChatImportError(f"The conversation's settings are not valid ({exc}).") from None
    created = _number(document.get("created"))
    with store.transaction():
        conversation = store.create(str(document.get("title") or ""), settings, created=created)
        for role, text, attached, entry, token_ids, stats in messages:
            store.add_message(
                conversation.id, role, text, attached,
                model=_optional_str(entry.get("model")),
                stats=stats,
                finish_reason=_optional_str(entry.get("finish_reason")),
                error=_optional_str(entry.get("error")),
                interrupted=bool(entry.get("interrupted")),
                token_ids=token_ids,
                created=_number(entry.get("created")),
            )
        updated = _number(document.get("updated"))
        if updated is not None:
            store.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (updated, conversation.id))
    return conversation.id


def read_json(store: ConversationStore, path: str | Path) -> int:
    """Import the conversation export at ``path``; return the new conversation's id."""
    path = Path(path)
    try:
        document = json.loads(read_regular_file(path, MAX_IMPORT_BYTES).decode("utf-8"))
    except InputFileError as exc:  # missing, a folder, a device or FIFO, or too large
        raise ChatImportError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatImportError(f"{path} cannot be read ({exc}).") from None
    except json.JSONDecodeError as exc:
        raise ChatImportError(f"{path} is not JSON ({exc.msg}, line {exc.lineno}).") from None
    return import_json(store, document)


def _list(container: Any, key: str) -> list:
    value = container.get(key) if isinstance(container, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise ChatImportError(f"The conversation's {key} are not a list.")
    return value


def _field(container: Any, key: str, kind: type):
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise ChatImportError(f"An entry lacks its {key}.")
    return value


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# -- Markdown --------------------------------------------------------------------------------------


def markdown_image_folder(path: Path) -> Path:
    """Where ``export_markdown`` puts the images of ``path``: ``NAME_images`` beside it."""
    return path.with_name(f"{path.stem}_images")


def render_markdown(store: ConversationStore, conversation_id: int,
                    image_links: dict[str, str] | None = None) -> str:
    """The conversation as Markdown; ``image_links`` maps an image's sha256 to its link target
    (images without one are mentioned by name only)."""
    conversation = store.conversation(conversation_id, include_deleted=True)
    lines = [f"# {_escape_line(conversation.display_title)}", ""]
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
            (folder / filename).write_bytes(store.images.read(image.sha256, image.media_type))
            links[image.sha256] = f"{quote(folder.name)}/{quote(filename)}"
    path.write_text(render_markdown(store, conversation_id, links), encoding="utf-8")
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
