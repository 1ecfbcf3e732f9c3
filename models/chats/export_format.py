"""The JSON export's format: its name and version, the limits an import must stay within, and
the checks every imported field passes before anything is stored (``ImportChecker``); a refusal
is a ``ChatImportError`` naming the field."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, replace
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
from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage, ImageError, load_image_bytes
from models.inference.prompt import Role

FORMAT = "llama-desk-conversation"
FORMAT_VERSION = 1


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
class CheckedMessage:
    role: Role
    text: str
    images: list[tuple[str, str]]  # (sha256, name) of each attached image
    metadata: dict[str, Any]  # add_message's keyword arguments


@dataclass(frozen=True)
class CheckedDocument:
    title: str
    created: float
    updated: float
    settings: ConversationSettings
    messages: list[CheckedMessage]
    images: dict[str, bytes]  # sha256 -> bytes, each checked to decode


def decoded_image(data: bytes, name: str) -> ChatImage:
    try:
        image = load_image_bytes(data, name or "image", verify=False)  # the checker decoded it
    except ImageError as exc:
        raise ChatImportError(str(exc)) from None
    return replace(image, name=name)


class ImportChecker:
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
        messages = [
            self.message(entry, i, images)
            for i, entry in enumerate(_list(document, "messages", MAX_MESSAGES))
        ]
        created = self.time(document.get("created"))
        updated = max(created, self.time(document.get("updated")))
        return CheckedDocument(title, created, updated, settings, messages, images)

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

    def message(self, entry: Any, index: int, images: dict[str, bytes]) -> CheckedMessage:
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
        return CheckedMessage(cast(Role, role), text, attached, metadata)


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
