"""Stored conversations: the Qt-free API the sidebar, the chat window and ``llama-desk chats`` use.

``ConversationStore`` opens (and upgrades) ``conversations.sqlite3`` in the data folder
(``models.chats.database.data_dir()``) and keeps attached images beside it
(``models.chats.images``). It offers:

- conversations: ``create``, ``conversation``, ``list_conversations``, ``rename``,
  ``update_settings`` (system prompt, temperature, top_p, max tokens, seed, context length),
  ``delete`` / ``restore`` (soft delete, for undo) and ``purge_deleted`` (for good, later);
- messages: ``add_message`` (the first question titles an untitled conversation), ``messages``,
  ``message``, ``last_assistant``, ``replace_message_text`` (edit), ``truncate_after``
  (regenerate, or drop what followed an edited question), ``update_message`` (used by
  ``models.chats.answer_recorder`` while an answer streams in);
- ``history``: a conversation as the ``ChatMessage`` list ``Engine.generate`` takes, assistant
  turns with the token ids they were generated as, so the KV cache is reused exactly;
- ``search``: SQLite FTS5 over message text, each hit with a snippet and its message id.

Times are Unix seconds (floats) from the injectable ``clock``. A store belongs to the thread
that opened it; open another on the same folder for another thread or process.

Reading never trusts the file: a row written by older code, by hand or by a faulty import is
read with safe stand-ins (a setting out of range means "the app's default", unreadable stats or
token ids are dropped), and a conversation whose times or title cannot be shown comes back with
``damaged`` set (``display_title`` is then "Damaged conversation") so it can be listed and
deleted instead of stopping the app.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import struct
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.chats.database import DATABASE_NAME, Database, StoreError, data_dir
from models.chats.images import MAX_STORED_BYTES, ImageFolder, StoredImageFile
from models.inference.images import ChatImage, ImageError
from models.inference.prompt import ChatMessage, Role

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
MAX_CONTEXT_LENGTH = 10_485_760  # Llama 4 Scout's 10M tokens
MAX_SEED = 2**63 - 1
MAX_SYSTEM_PROMPT_CHARS = 1_000_000
FINISH_REASONS = ("stop", "length", "cancelled", "error")

_UNCHANGED: Any = object()


class ConversationNotFound(StoreError, LookupError):
    """No (live) conversation or message with that id."""


@dataclass(frozen=True)
class ConversationSettings:
    """Per-conversation generation settings; ``None`` means "the app's default"."""

    system_prompt: str = ""
    temperature: float | None = None
    top_p: float | None = None
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def setting_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a valid conversation setting ``name`` (None: it is, or it is unset)."""
    if value is None:
        return None
    if name == "system_prompt":
        if not isinstance(value, str):
            return "must be text"
        return "is too long" if len(value) > MAX_SYSTEM_PROMPT_CHARS else None
    if name == "temperature":
        return None if is_finite_number(value) and 0 <= value <= 2 else "must be a number from 0 to 2"
    if name == "top_p":
        return None if is_finite_number(value) and 0 < value <= 1 else "must be a number above 0, at most 1"
    if name == "max_tokens":
        ok = _is_int(value) and 1 <= value <= MAX_CONTEXT_LENGTH
        return None if ok else f"must be a whole number from 1 to {MAX_CONTEXT_LENGTH:,}"
    if name == "seed":
        ok = _is_int(value) and 0 <= value <= MAX_SEED
        return None if ok else "must be a whole number from 0 to 2**63-1"
    if name == "context_length":
        ok = _is_int(value) and 2 <= value <= MAX_CONTEXT_LENGTH
        return None if ok else f"must be a whole number from 2 to {MAX_CONTEXT_LENGTH:,}"
    return None


def _setting_value(name: str, value: Any) -> Any:
    return float(value) if name in ("temperature", "top_p") else value


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

    @property
    def can_continue(self) -> bool:
        """An answer that stopped at the token limit, or was cut off, and can be carried on."""
        return self.role == "assistant" and (self.finish_reason == "length" or self.interrupted)

    def chat_message(self, images: tuple[ChatImage, ...] = ()) -> ChatMessage:
        return ChatMessage(self.role, self.text, images, self.token_ids)


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    message_id: int
    title: str
    role: Role
    snippet: str  # the matching passage, matches between the markers given to ``search``
    created: float


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


def fts_query(text: str) -> str:
    """An FTS5 query matching messages that hold every word of ``text`` (as a word prefix)."""
    terms = re.findall(r"\w+", text)
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


SNIPPET_WINDOW_CHARS = 2000  # of text on each side of the first match that a snippet is built from
SNIPPET_TOKEN_CHARS = 80  # a longer "word" is cut in a snippet


def _fold(word: str) -> str:
    """A word as FTS5's ``unicode61 remove_diacritics 2`` compares it: lower case, no accents."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _matches(token: str, terms: Sequence[str]) -> bool:
    folded = _fold(token)
    return any(folded.startswith(term) for term in terms)


def _text_window(text: str, terms: Sequence[str]) -> tuple[str, bool, bool]:
    """At most ``2 * SNIPPET_WINDOW_CHARS`` characters of ``text`` around its first matching word,
    cut at word boundaries; and whether it starts at the text's start / ends at its end."""
    position = 0
    if terms and len(text) > 2 * SNIPPET_WINDOW_CHARS:
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + ")", re.IGNORECASE)
        found = pattern.search(text)
        if found is not None:
            position = found.start()
        else:  # accents differ: compare word by word, as FTS5 does
            for word in re.finditer(r"\w+", text):
                if _matches(word.group(), terms):
                    position = word.start()
                    break
    first = max(0, position - SNIPPET_WINDOW_CHARS)
    last = min(len(text), position + SNIPPET_WINDOW_CHARS)
    window = text[first:last]
    at_start, at_end = first == 0, last == len(text)
    if not at_start:  # drop a word cut in two by the window's edge
        window = re.sub(r"^\w+", "", window)
    if not at_end:
        window = re.sub(r"\w+$", "", window)
    return window, at_start, at_end


def build_snippet(
    window: str,
    terms: Sequence[str],
    *,
    start: str = "[",
    end: str = "]",
    context_tokens: int = 12,
    at_start: bool = True,
    at_end: bool = True,
) -> str:
    """About ``context_tokens`` words of ``window`` from a little before its first word that
    starts with one of ``terms`` (folded), every such word between ``start`` and ``end``, and
    "…" where text was left out (like FTS5's ``snippet()``). ``at_start``/``at_end``: whether
    ``window`` begins/ends the message."""
    words = list(re.finditer(r"\w+", window))
    if not words:
        return window.strip()[:SNIPPET_TOKEN_CHARS]
    first_hit = next((i for i, w in enumerate(words) if _matches(w.group(), terms)), 0)
    begin = max(0, first_hit - context_tokens // 4)
    finish = min(len(words), begin + context_tokens)
    begin = max(0, finish - context_tokens)
    parts: list[str] = []
    if begin > 0 or not at_start:
        parts.append("…")
    else:
        parts.append(window[: words[0].start()])
    for i in range(begin, finish):
        word = words[i].group()
        shown = word if len(word) <= SNIPPET_TOKEN_CHARS else word[:SNIPPET_TOKEN_CHARS] + "…"
        parts.append(f"{start}{shown}{end}" if _matches(word, terms) else shown)
        if i + 1 < finish:
            parts.append(window[words[i].end() : words[i + 1].start()][:SNIPPET_TOKEN_CHARS])
    if finish < len(words) or not at_end:
        parts.append("…")
    else:
        parts.append(window[words[-1].end() :][:SNIPPET_TOKEN_CHARS])
    return "".join(parts)


class ConversationStore(AbstractContextManager):
    """Conversations, messages and images in one data folder (see the module docstring)."""

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        max_image_bytes: int = MAX_STORED_BYTES,
        clock: Callable[[], float] = time.time,
    ):
        self.folder = Path(folder) if folder is not None else data_dir()
        self.clock = clock
        self.images = ImageFolder(self.folder / "images", max_image_bytes)
        self.db = Database(self.folder / DATABASE_NAME)

    def close(self) -> None:
        self.db.close()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager:
        """Group several calls atomically: ``with store.transaction(): ...``."""
        return self.db.transaction()

    # -- conversations --------------------------------------------------------------------------

    def create(
        self,
        title: str = "",
        settings: ConversationSettings = ConversationSettings(),
        *,
        created: float | None = None,
    ) -> Conversation:
        """A new, empty conversation (untitled unless ``title`` is given)."""
        now = self.clock() if created is None else created
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO conversations (title, created, updated, system_prompt, temperature, top_p,"
                " max_tokens, seed, context_length) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (" ".join(title.split()), now, now, *_settings_row(settings)),
            )
            conversation_id = _row_id(cursor)
        return self.conversation(conversation_id)

    def conversation(self, conversation_id: int, *, include_deleted: bool = False) -> Conversation:
        """The conversation; ``ConversationNotFound`` if there is none (or it is deleted)."""
        row = self.db.execute(_CONVERSATION_SELECT + " WHERE c.id = ?", (conversation_id,)).fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise ConversationNotFound(f"There is no conversation {conversation_id}.")
        return _conversation(row)

    def list_conversations(self, *, deleted: bool = False, limit: int | None = None) -> list[Conversation]:
        """Live conversations, most recently updated first (or the deleted ones, with ``deleted``)."""
        where = "IS NOT NULL" if deleted else "IS NULL"
        sql = f"{_CONVERSATION_SELECT} WHERE c.deleted_at {where} ORDER BY c.updated DESC, c.id DESC"
        parameters: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            parameters = (limit,)
        return [_conversation(row) for row in self.db.execute(sql, parameters)]

    def rename(self, conversation_id: int, title: str) -> Conversation:
        title = " ".join(title.split())
        if not title:
            raise StoreError("A conversation's title cannot be empty.")
        with self.db.transaction() as conn:
            self._require(conversation_id)
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
        return self.conversation(conversation_id)

    def update_settings(self, conversation_id: int, settings: ConversationSettings) -> Conversation:
        with self.db.transaction() as conn:
            self._require(conversation_id)
            conn.execute(
                "UPDATE conversations SET system_prompt = ?, temperature = ?, top_p = ?, max_tokens = ?,"
                " seed = ?, context_length = ? WHERE id = ?",
                (*_settings_row(settings), conversation_id),
            )
        return self.conversation(conversation_id)

    def delete(self, conversation_id: int) -> None:
        """Hide the conversation (it leaves lists and search); ``restore`` undoes it until purged."""
        with self.db.transaction() as conn:
            self._require(conversation_id)
            conn.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ?", (self.clock(), conversation_id)
            )
        # Its saved KV cache goes now (a restored conversation prefills again).
        from models.inference.prompt_cache_keeper import FOLDER_NAME, remove_saved_cache

        remove_saved_cache(self.folder / FOLDER_NAME, conversation_id)

    def restore(self, conversation_id: int) -> Conversation:
        """Undo ``delete``."""
        with self.db.transaction() as conn:
            self._require(conversation_id, include_deleted=True)
            conn.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conversation_id,))
        return self.conversation(conversation_id)

    def purge_deleted(self, older_than_s: float = PURGE_AFTER_S) -> int:
        """Erase conversations deleted more than ``older_than_s`` ago, and images no message uses.

        Returns how many conversations were erased. Call it now and then (e.g. at start-up).
        """
        cutoff = self.clock() - older_than_s
        with self.db.transaction() as conn:
            purged = conn.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,)
            ).rowcount
            unused = conn.execute(
                "SELECT sha256, media_type FROM images"
                " WHERE sha256 NOT IN (SELECT sha256 FROM message_images)"
            ).fetchall()
            conn.execute("DELETE FROM images WHERE sha256 NOT IN (SELECT sha256 FROM message_images)")
            # Remove the files while holding the write lock, so no other writer can re-add one.
            for row in unused:
                self.images.remove(row["sha256"], row["media_type"])
        known = {row["sha256"] for row in self.db.execute("SELECT sha256 FROM images")}
        self.images.remove_orphans(known)
        return purged

    # -- messages ---------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        images: Iterable[ChatImage] = (),
        *,
        model: str | None = None,
        stats: Mapping[str, float] | None = None,
        finish_reason: str | None = None,
        error: str | None = None,
        interrupted: bool = False,
        token_ids: Sequence[int] | None = None,
        created: float | None = None,
    ) -> StoredMessage:
        """Append a message (its images stored once by hash) and commit.

        The first question of an untitled conversation gives it its title.
        """
        if role not in ROLES:
            raise StoreError(f"A message's role is system, user or assistant, not {role!r}.")
        now = self.clock() if created is None else created
        with self.db.transaction() as conn:
            conversation = self._require(conversation_id)
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, text, created, model, stats, finish_reason,"
                " error, interrupted, token_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    role,
                    text,
                    now,
                    model,
                    _stats_json(stats),
                    finish_reason,
                    error,
                    int(interrupted),
                    pack_token_ids(token_ids),
                ),
            )
            message_id = _row_id(cursor)
            for position, image in enumerate(images):
                sha = self._store_image(image)
                conn.execute(
                    "INSERT INTO message_images (message_id, position, sha256, name) VALUES (?, ?, ?, ?)",
                    (message_id, position, sha, image.name),
                )
            title = conversation["title"]
            if role == "user" and not title and text.strip():
                title = title_from_question(text)
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?), title = ? WHERE id = ?",
                (now, title, conversation_id),
            )
        return self.message(message_id)

    def _store_image(self, image: ChatImage) -> str:
        """Store ``image`` (in the current transaction) unless already there; return the stored hash."""
        row = self.db.execute(
            "SELECT sha256, media_type FROM images WHERE original_sha256 = ? OR sha256 = ? LIMIT 1",
            (image.sha256, image.sha256),
        ).fetchone()
        if row is not None:
            if not self.images.path(row["sha256"], row["media_type"]).exists():  # repair a lost file
                record, data = self.images.prepare(image)
                if record.sha256 == row["sha256"]:
                    self.images.write(record, data)
            return str(row["sha256"])
        record, data = self.images.prepare(image)
        self.images.write(record, data)
        self.db.execute(
            "INSERT OR IGNORE INTO images (sha256, media_type, size, width, height, created, original_sha256,"
            " original_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.sha256,
                record.media_type,
                record.size,
                record.width,
                record.height,
                self.clock(),
                record.original_sha256,
                record.original_size,
            ),
        )
        return record.sha256

    def message(self, message_id: int) -> StoredMessage:
        rows = self.db.execute(_MESSAGE_SELECT + " WHERE m.id = ?", (message_id,)).fetchall()
        if not rows:
            raise ConversationNotFound(f"There is no message {message_id}.")
        return self._messages(rows)[0]

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """The conversation's messages, oldest first."""
        self._require(conversation_id, include_deleted=True)
        rows = self.db.execute(
            _MESSAGE_SELECT + " WHERE m.conversation_id = ? ORDER BY m.id", (conversation_id,)
        ).fetchall()
        return self._messages(rows)

    def last_assistant(self, conversation_id: int) -> StoredMessage | None:
        """The latest answer (to regenerate or continue), or None."""
        row = self.db.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND role = 'assistant'"
            " ORDER BY id DESC LIMIT 1",
            (conversation_id,),
        ).fetchone()
        return None if row is None else self.message(int(row["id"]))

    def update_message(
        self,
        message_id: int,
        *,
        text: str = _UNCHANGED,
        model: str | None = _UNCHANGED,
        stats: Mapping[str, float] | None = _UNCHANGED,
        finish_reason: str | None = _UNCHANGED,
        error: str | None = _UNCHANGED,
        interrupted: bool = _UNCHANGED,
        token_ids: Sequence[int] | None = _UNCHANGED,
    ) -> None:
        """Change the given fields of a message and commit (others stay as they are)."""
        values = {
            "text": text,
            "model": model,
            "stats": _stats_json(stats) if stats is not _UNCHANGED else stats,
            "finish_reason": finish_reason,
            "error": error,
            "interrupted": int(interrupted) if interrupted is not _UNCHANGED else interrupted,
            "token_ids": pack_token_ids(token_ids) if token_ids is not _UNCHANGED else token_ids,
        }
        changes = {k: v for k, v in values.items() if v is not _UNCHANGED}
        if not changes:
            return
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise ConversationNotFound(f"There is no message {message_id}.")
            conn.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id))
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?) WHERE id = ?",
                (self.clock(), row["conversation_id"]),
            )

    def replace_message_text(self, message_id: int, text: str) -> StoredMessage:
        """Edit a message's text. An edited answer forgets its token ids (they no longer match).

        To re-ask an edited question, follow with ``truncate_after(message_id)`` (in one
        ``transaction()`` if both must happen or neither).
        """
        message = self.message(message_id)
        if message.role == "assistant":
            self.update_message(message_id, text=text, token_ids=None)
        else:
            self.update_message(message_id, text=text)
        return self.message(message_id)

    def truncate_after(self, message_id: int, *, inclusive: bool = False) -> int:
        """Delete the messages after ``message_id`` in its conversation (and it too, if ``inclusive``).

        Regenerate the last answer: ``truncate_after(last_assistant(c).id, inclusive=True)``;
        re-ask an edited question: ``truncate_after(question.id)``. Returns how many were deleted.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise ConversationNotFound(f"There is no message {message_id}.")
            operator = ">=" if inclusive else ">"
            deleted = conn.execute(
                f"DELETE FROM messages WHERE conversation_id = ? AND id {operator} ?",
                (row["conversation_id"], message_id),
            ).rowcount
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?) WHERE id = ?",
                (self.clock(), row["conversation_id"]),
            )
        return deleted

    def delete_between(self, first_id: int, before_id: int) -> int:
        """Delete ``first_id`` and the messages after it that come before ``before_id`` (same
        conversation): the old turns an edit or a regenerate replaces, once the new ones exist."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (first_id,)).fetchone()
            if row is None:
                return 0
            return conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND id >= ? AND id < ?",
                (row["conversation_id"], first_id, before_id),
            ).rowcount

    # -- for the engine ---------------------------------------------------------------------------

    def load_image(self, image: StoredImage) -> ChatImage:
        """Decode a stored image for the engine or a preview; ``StoreError`` if its file is gone."""
        try:
            return self.images.load(image.sha256, image.media_type, image.name)
        except FileNotFoundError:
            raise StoreError(
                f"The stored image {image.name or image.sha256[:12]} is missing from {self.images.root}."
            ) from None
        except (OSError, ImageError) as exc:
            name = image.name or image.sha256[:12]
            raise StoreError(f"The stored image {name} cannot be read: {exc}") from None

    def history(self, conversation_id: int, *, before: int | None = None) -> list[ChatMessage]:
        """The conversation as ``Engine.generate`` takes it: system prompt first, then the turns.

        Answers carry the token ids they were generated as (None for cut-off or edited ones,
        which are re-tokenized). Empty answers (an error, or a crash before any text) are left
        out. ``before``: only the messages older than that message id.
        """
        conversation = self.conversation(conversation_id, include_deleted=True)
        result: list[ChatMessage] = []
        if conversation.settings.system_prompt.strip():
            result.append(ChatMessage("system", conversation.settings.system_prompt))
        for message in self.messages(conversation_id):
            if before is not None and message.id >= before:
                break
            if message.role == "assistant" and not message.text:
                continue
            images = tuple(self.load_image(image) for image in message.images)
            result.append(message.chat_message(images))
        return result

    # -- search -----------------------------------------------------------------------------------

    def search(
        self, text: str, *, limit: int = 50, start: str = "[", end: str = "]", context_tokens: int = 12
    ) -> list[SearchHit]:
        """Messages of live conversations holding every word of ``text`` (prefixes match), best first.

        Each hit names its conversation and message, and has a snippet with the matches between
        ``start`` and ``end`` (the text is not escaped: a GUI escapes it and uses marker characters).
        FTS5 finds the messages; the snippet is built here from at most ``SNIPPET_WINDOW_CHARS``
        of the text around the first match (FTS5's own ``snippet()`` costs time quadratic in the
        message's size), so a search takes the same time whatever the messages' lengths.
        """
        query = fts_query(text)
        if not query:
            return []
        rows = self.db.execute(
            "SELECT m.id, m.conversation_id, m.role, m.created, c.title"
            " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE messages_fts MATCH ? AND c.deleted_at IS NULL"
            " ORDER BY rank, m.id DESC LIMIT ?",
            (query, limit),
        ).fetchall()
        terms = [_fold(term) for term in re.findall(r"\w+", text)]
        hits = []
        for r in rows:
            window, at_start, at_end = _text_window(self._message_text(int(r["id"])), terms)
            snippet = build_snippet(
                window,
                terms,
                start=start,
                end=end,
                context_tokens=max(1, min(64, context_tokens)),
                at_start=at_start,
                at_end=at_end,
            )
            title = r["title"] if isinstance(r["title"], str) else DAMAGED_TITLE
            hits.append(
                SearchHit(
                    int(r["conversation_id"]),
                    int(r["id"]),
                    title or UNTITLED,
                    r["role"],
                    snippet,
                    valid_timestamp(r["created"]) or MIN_TIMESTAMP,
                )
            )
        return hits

    def _message_text(self, message_id: int) -> str:
        row = self.db.execute("SELECT text FROM messages WHERE id = ?", (message_id,)).fetchone()
        return "" if row is None else _stored_text(row["text"])

    # -- internals --------------------------------------------------------------------------------

    def _require(self, conversation_id: int, *, include_deleted: bool = False):
        row = self.db.execute(
            "SELECT id, title, deleted_at FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise ConversationNotFound(f"There is no conversation {conversation_id}.")
        return row

    def _messages(self, rows) -> list[StoredMessage]:
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        images: dict[int, list[StoredImage]] = {i: [] for i in ids}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                "SELECT mi.message_id, mi.name, i.sha256, i.media_type, i.size, i.width, i.height"
                " FROM message_images mi JOIN images i ON i.sha256 = mi.sha256"
                f" WHERE mi.message_id IN ({marks})"
                " ORDER BY mi.message_id, mi.position",
                chunk,
            ):
                images[int(r["message_id"])].append(
                    StoredImage(
                        r["sha256"],
                        _stored_text(r["name"]),
                        r["media_type"],
                        _stored_int(r["size"]),
                        _stored_int(r["width"]),
                        _stored_int(r["height"]),
                        self.images.path(r["sha256"], r["media_type"]),
                    )
                )
        return [_message(r, tuple(images[int(r["id"])])) for r in rows]

    def image_records(self) -> Iterator[StoredImageFile]:
        """Every stored image file's record (for checks and maintenance)."""
        for r in self.db.execute("SELECT * FROM images ORDER BY sha256"):
            yield StoredImageFile(
                r["sha256"],
                r["media_type"],
                int(r["size"]),
                int(r["width"]),
                int(r["height"]),
                r["original_sha256"],
                int(r["original_size"]),
            )


_CONVERSATION_SELECT = (
    "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"
    " FROM conversations c"
)
_MESSAGE_SELECT = "SELECT m.* FROM messages m"


def _settings_row(settings: ConversationSettings) -> tuple:
    return (
        settings.system_prompt,
        settings.temperature,
        settings.top_p,
        settings.max_tokens,
        settings.seed,
        settings.context_length,
    )


def _conversation(row) -> Conversation:
    """A conversation row as read, whatever it holds (see the module docstring)."""
    settings = ConversationSettings.from_stored({name: row[name] for name in _SETTING_COLUMNS})
    problems = []
    created, updated = valid_timestamp(row["created"]), valid_timestamp(row["updated"])
    if created is None:
        problems.append("its creation time is not valid")
    if updated is None:
        problems.append("its last-used time is not valid")
    title = row["title"]
    if not isinstance(title, str):
        problems.append("its title is not text")
        title = ""
    deleted_at = row["deleted_at"]
    if deleted_at is not None:
        deleted_at = valid_timestamp(deleted_at) or MIN_TIMESTAMP  # purged at the next clean-up
    return Conversation(
        id=int(row["id"]),
        title=title,
        created=created or MIN_TIMESTAMP,
        updated=updated or MIN_TIMESTAMP,
        settings=settings,
        deleted_at=deleted_at,
        message_count=_stored_int(row["message_count"]),
        damaged="; ".join(problems),
    )


_SETTING_COLUMNS = ("system_prompt", "temperature", "top_p", "max_tokens", "seed", "context_length")


def _message(r, images: tuple[StoredImage, ...]) -> StoredMessage:
    """A message row as read: unreadable metadata is dropped, odd text is shown as text."""
    role = r["role"]
    if role not in ROLES:
        raise StoreError(f"Message {r['id']} is damaged (its role is {role!r}); delete its conversation.")
    finish_reason = r["finish_reason"]
    return StoredMessage(
        id=int(r["id"]),
        conversation_id=int(r["conversation_id"]),
        role=role,
        text=_stored_text(r["text"]),
        created=valid_timestamp(r["created"]) or MIN_TIMESTAMP,
        images=images,
        model=r["model"] if isinstance(r["model"], str) else None,
        stats=_stored_stats(r["stats"]),
        finish_reason=finish_reason if finish_reason in FINISH_REASONS else None,
        error=r["error"] if isinstance(r["error"], str) else None,
        interrupted=bool(r["interrupted"]),
        token_ids=_stored_token_ids(r["token_ids"]),
    )


def _stored_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _stored_int(value: Any) -> int:
    return value if _is_int(value) else 0


def _stored_stats(value: Any) -> dict[str, float] | None:
    """A message's stats JSON as a dict of finite numbers, or None if it is anything else."""
    if not isinstance(value, str | bytes) or not value:
        return None
    try:
        stats = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(stats, dict):
        return None
    return {k: v for k, v in stats.items() if is_finite_number(v)}


def _stored_token_ids(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, bytes) or len(value) % 4:
        return None
    return unpack_token_ids(value)


def _stats_json(stats: Mapping[str, float] | None) -> str | None:
    return None if stats is None else json.dumps(dict(stats), sort_keys=True)


def _row_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row ``cursor`` just inserted."""
    if cursor.lastrowid is None:
        raise StoreError("The database did not report the new row's id.")
    return cursor.lastrowid


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
