"""Reading SQLite rows into records without trusting them: a value written by older code, by hand
or by a faulty import gets a safe stand-in, and a conversation that cannot be shown is marked
``damaged``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from models.chats.conversation_records import (
    FINISH_REASONS,
    MIN_TIMESTAMP,
    ROLES,
    Conversation,
    ConversationSettings,
    StoredDocument,
    StoredImage,
    StoredMessage,
    StoredPage,
    is_finite_number,
    is_whole_number,
    unpack_token_ids,
    valid_timestamp,
)
from models.chats.database import StoreError
from models.hub.model_names import shown_model_name

CONVERSATION_SELECT = (
    "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count"
    " FROM conversations c"
)
MESSAGE_SELECT = "SELECT m.* FROM messages m"


# The settings with a column of their own (schema 2), which older versions read and write; every
# other override is in the JSON ``settings`` column, by name.
SETTING_COLUMNS = ("system_prompt", "temperature", "top_p", "max_tokens", "seed", "context_length")


def settings_row(settings: ConversationSettings, stored_json: Any = None) -> tuple:
    """The values of ``SETTING_COLUMNS`` then the ``settings`` JSON: the overrides without a
    column, over ``stored_json`` (the row's JSON so far), whose keys this version does not know
    (a newer Llama Desk's) are kept."""
    values = settings.to_json()
    kept = {k: v for k, v in _stored_json(stored_json).items() if k not in values}
    extra = {
        name: value for name, value in values.items() if name not in SETTING_COLUMNS and value is not None
    }
    merged = {**kept, **extra}
    return (
        *(values[name] for name in SETTING_COLUMNS),
        json.dumps(merged, sort_keys=True) if merged else None,
    )


def _stored_json(value: Any) -> dict[str, Any]:
    """A stored JSON object as a dict; anything else (damaged, not an object) as {}."""
    if not isinstance(value, str | bytes) or not value:
        return {}
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def conversation_from_row(row) -> Conversation:
    """A conversation row as read, whatever it holds (see the module docstring)."""
    stored = _stored_json(row["settings"]) if "settings" in row.keys() else {}  # absent: read-only, older
    stored.update({name: row[name] for name in SETTING_COLUMNS})
    settings = ConversationSettings.from_stored(stored)
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
        message_count=stored_int(row["message_count"]),
        damaged="; ".join(problems),
    )


def message_from_row(
    r, images: tuple[StoredImage, ...], documents: tuple[StoredDocument, ...] = ()
) -> StoredMessage:
    """A message row as read: unreadable metadata is dropped, odd text is shown as text."""
    role = r["role"]
    if role not in ROLES:
        raise StoreError(f"Message {r['id']} is damaged (its role is {role!r}); delete its conversation.")
    finish_reason = r["finish_reason"]
    return StoredMessage(
        id=int(r["id"]),
        conversation_id=int(r["conversation_id"]),
        role=role,
        text=stored_text(r["text"]),
        created=valid_timestamp(r["created"]) or MIN_TIMESTAMP,
        images=images,
        model=shown_model_name(r["model"]) if isinstance(r["model"], str) else None,
        stats=_stored_stats(r["stats"]),
        finish_reason=finish_reason if finish_reason in FINISH_REASONS else None,
        error=r["error"] if isinstance(r["error"], str) else None,
        interrupted=bool(r["interrupted"]),
        token_ids=_stored_token_ids(r["token_ids"]),
        documents=documents,
    )


MAX_PAGE_NUMBER = 1_000_000  # far beyond any PDF a person attaches; a larger stored number is damage


def page_number(value: Any) -> int | None:
    """A stored page number (1..``MAX_PAGE_NUMBER``), or None for anything else."""
    return value if is_whole_number(value) and 1 <= value <= MAX_PAGE_NUMBER else None


def pack_pages(numbers: Sequence[int]) -> str:
    """Page numbers as stored in a text column: ``4,5,6``."""
    return ",".join(str(n) for n in numbers)


def unpack_pages(value: Any) -> tuple[int, ...]:
    """``pack_pages``'s text read back, sorted and each once; () for anything else."""
    if not isinstance(value, str) or not value:
        return ()
    parts = value.split(",")
    if len(parts) > MAX_PAGE_NUMBER or not all(p.isascii() and p.isdigit() and len(p) < 8 for p in parts):
        return ()
    numbers = [page_number(int(p)) for p in parts]
    return tuple(sorted({n for n in numbers if n is not None}))


def document_from_row(r, pages: list[StoredPage], path: Path) -> StoredDocument:
    """A ``message_documents`` row joined with its ``documents`` row, and its pages as read (a
    page whose number cannot be read is left out; the page count covers every page named)."""
    by_number: dict[int, StoredPage] = {}
    for page in pages:
        by_number.setdefault(page.number, page)
    left_out = tuple(n for n in unpack_pages(r["left_out"]) if n not in by_number)
    named = max([*by_number, *left_out, 1])
    count = r["page_count"]
    return StoredDocument(
        sha256=stored_text(r["sha256"]),
        name=stored_text(r["name"]),
        size=stored_int(r["size"]),
        page_count=count if is_whole_number(count) and count >= named else named,
        pages=tuple(by_number[n] for n in sorted(by_number)),
        left_out=left_out,
        path=path,
    )


def stored_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def stored_int(value: Any) -> int:
    return value if is_whole_number(value) else 0


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


def stats_json(stats: Mapping[str, float] | None) -> str | None:
    return None if stats is None else json.dumps(dict(stats), sort_keys=True)


def row_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row ``cursor`` just inserted."""
    if cursor.lastrowid is None:
        raise StoreError("The database did not report the new row's id.")
    return cursor.lastrowid


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
