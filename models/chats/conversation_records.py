"""What a stored conversation is, as the rest of the app sees it: ``Conversation``,
``StoredMessage``, ``StoredImage``, ``StoredDocument`` (with its ``StoredPage``s), ``SearchHit``,
per-conversation ``ConversationSettings`` and the rules every stored or imported value must
meet (``setting_problem``, ``valid_timestamp``)."""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.chats.database import StoreError
from models.inference.prompt import Role
from models.inference.settings_spec import MAX_CONTEXT_LENGTH as MAX_CONTEXT_LENGTH
from models.inference.settings_spec import MAX_SEED as MAX_SEED
from models.inference.settings_spec import is_setting, setting

if TYPE_CHECKING:
    from models.inference.engine import GenerationSettings


TITLE_LENGTH = 60
UNTITLED = "New conversation"
PURGE_AFTER_S = 30 * 24 * 3600.0
ROLES = ("system", "user", "assistant")
DAMAGED_TITLE = "Damaged conversation"
# The times a conversation or message may carry: 1970 up to the start of year 9999 (later ones
# overflow date formatting in some time zones).
MIN_TIMESTAMP = 0.0
MAX_TIMESTAMP = 253_370_764_800.0
MAX_SYSTEM_PROMPT_CHARS = 1_000_000
FINISH_REASONS = ("stop", "length", "cancelled", "error")


class ConversationNotFound(StoreError, LookupError):
    """No (live) conversation or message with that id."""


@dataclass(frozen=True)
class ConversationSettings:
    """Per-conversation generation settings; ``None`` means "the app's default". Besides the
    system prompt, one field per setting of the table a conversation may override
    (``settings_spec.SETTINGS``, ``per_conversation``)."""

    system_prompt: str = ""
    temperature: float | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    context_length: int | None = None

    def generation_settings(self, base: GenerationSettings | None = None) -> GenerationSettings:
        """``base`` (a ``models.inference.engine.GenerationSettings``) with this conversation's values set."""
        from models.inference.engine import GenerationSettings

        base = base if base is not None else GenerationSettings()
        changes = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "system_prompt" and getattr(self, f.name) is not None
        }
        return replace(base, **changes)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConversationSettings:
        """Settings from ``to_json``'s dict; ``StoreError`` naming the first invalid value.

        Unknown keys are ignored (a newer Llama Desk may add some); ``null`` means the default.
        """
        values = {}
        for f in fields(cls):
            problem = setting_problem(f.name, data.get(f.name))
            if problem:
                raise StoreError(f"settings.{f.name} {problem}.")
            if data.get(f.name) is not None:
                values[f.name] = _setting_value(f.name, data[f.name])
        return cls(**values)

    @classmethod
    def from_stored(cls, data: Mapping[str, Any]) -> ConversationSettings:
        """Settings from stored values, each invalid one replaced by its default (never raises)."""
        values = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is not None and not setting_problem(f.name, value):
                values[f.name] = _setting_value(f.name, value)
        return cls(**values)


def is_finite_number(value: Any) -> bool:
    """A finite int or float (not a bool, not an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def setting_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid conversation setting ``name`` (None: it is, or it is unset):
    the system prompt's rule, or the range in the table of settings."""
    if value is None:
        return None
    if name == "system_prompt":
        if not isinstance(value, str):
            return "must be text"
        return "is too long" if len(value) > MAX_SYSTEM_PROMPT_CHARS else None
    return setting(name).problem(value) if is_setting(name) else None


def _setting_value(name: str, value: Any) -> Any:
    return setting(name).value(value) if is_setting(name) else value


def valid_timestamp(value: Any) -> float | None:
    """``value`` as a time the app can show (finite, 1970..9999), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return value if math.isfinite(value) and MIN_TIMESTAMP <= value <= MAX_TIMESTAMP else None


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str  # "" until the first question names it; show ``display_title``
    created: float
    updated: float
    settings: ConversationSettings = ConversationSettings()
    deleted_at: float | None = None  # set while deleted (undo-able until purged)
    message_count: int = 0
    damaged: str = ""  # why the stored row cannot be shown as it is ("" for a sound one)

    @property
    def display_title(self) -> str:
        if self.damaged:
            return DAMAGED_TITLE
        return self.title or UNTITLED


@dataclass(frozen=True)
class StoredImage:
    """An image attached to a message: its stored file and the name it was attached with."""

    sha256: str  # of the stored bytes (the original's unless downscaled)
    name: str
    media_type: str
    size: int
    width: int
    height: int
    path: Path


@dataclass(frozen=True)
class StoredPage:
    """A page of an attached document that went in: its number (from 1), its text layer, and
    its page image when it went in as one."""

    number: int
    text: str
    image: StoredImage | None = None


@dataclass(frozen=True)
class StoredDocument:
    """A document (PDF) attached to a question: its stored file, the name it was attached with,
    and the pages that went in (``left_out``: chosen pages whose text did not fit)."""

    sha256: str  # of the PDF's bytes
    name: str
    size: int
    page_count: int
    pages: tuple[StoredPage, ...]
    left_out: tuple[int, ...]
    path: Path

    @property
    def image_pages(self) -> tuple[int, ...]:
        return tuple(page.number for page in self.pages if page.image is not None)

    @property
    def text_pages(self) -> tuple[int, ...]:
        return tuple(page.number for page in self.pages if page.image is None)


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    role: Role
    text: str
    created: float
    images: tuple[StoredImage, ...] = ()
    model: str | None = None  # the checkpoint that wrote an answer
    stats: Mapping[str, float] | None = field(default=None, compare=False)
    finish_reason: str | None = None  # "stop", "length", "cancelled", "error"; None while streaming
    error: str | None = None
    interrupted: bool = False  # the answer was cut off (crash, kill) before it finished
    token_ids: tuple[int, ...] | None = field(default=None, repr=False)
    documents: tuple[StoredDocument, ...] = ()  # a question's attached PDFs, in order

    @property
    def can_continue(self) -> bool:
        """An answer that stopped at the token limit, or was cut off, and can be carried on."""
        return self.role == "assistant" and (self.finish_reason == "length" or self.interrupted)


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    message_id: int
    title: str
    role: Role
    snippet: str  # the matching passage, matches between the markers given to ``search``
    created: float
    document: str = ""  # the attached document whose page matched ("" for the message's text)
    page: int | None = None  # that page's number


def title_from_question(text: str, limit: int = TITLE_LENGTH) -> str:
    """A conversation title from its first question: one line, at most ``limit`` characters.

    Whitespace is collapsed; a longer question is cut at the last word boundary before the
    limit (mid-word only if one word is that long) and ends with "…".
    """
    words = " ".join(text.split())
    if len(words) <= limit:
        return words
    cut = words[: limit - 1]
    space = cut.rfind(" ")
    if words[len(cut)] != " " and space >= limit // 3:  # the cut splits a word: drop the piece
        cut = cut[:space]
    return cut.rstrip(" ,.;:-–—") + "…"


def pack_token_ids(token_ids: Sequence[int] | None) -> bytes | None:
    if token_ids is None:
        return None
    return struct.pack(f"<{len(token_ids)}I", *token_ids)


def unpack_token_ids(blob: bytes | None) -> tuple[int, ...] | None:
    if blob is None:
        return None
    return struct.unpack(f"<{len(blob) // 4}I", blob)
