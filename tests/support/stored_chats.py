"""A conversation store to test with: a clock the test moves, generation steps without a model,
pictures, and a way to damage the database file as a bad disk block would."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from models.chats.store import ConversationStore
from models.inference.images import load_image_bytes
from tests.conftest import image_bytes


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class FakeStep:
    """The fields of models.inference.engine.GenerationStep the recorder reads."""

    text: str
    finish_reason: str | None = None
    token_ids: tuple[int, ...] = ()
    error: str | None = None
    prompt_tokens: int = 7
    cached_tokens: int = 0
    generation_tokens: int = 3
    ttft_s: float = 0.25
    prompt_tps: float = 28.0
    generation_tps: float = 40.5
    peak_memory_gb: float = 0.125


def picture(color=(200, 40, 40), size=(40, 30), name="photo.png", fmt="PNG"):
    return load_image_bytes(image_bytes(*size, fmt, color), name)


def other_connection(store: ConversationStore) -> ConversationStore:
    """A second store on the same folder: sees only what the first committed."""
    return ConversationStore(store.folder)


def make_exchange(store, turns=2):
    conversation = store.create()
    ids = []
    for n in range(turns):
        ids.append(store.add_message(conversation.id, "user", f"question {n}").id)
        ids.append(
            store.add_message(
                conversation.id, "assistant", f"answer {n}", token_ids=[n, n + 1], finish_reason="stop"
            ).id
        )
    return conversation, ids


def damage_messages_page(folder) -> None:
    """Overwrite the messages table's first page, as a bad disk block would."""
    path = folder / "conversations.sqlite3"
    raw = sqlite3.connect(path)
    try:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
        root = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()[0]
    finally:
        raw.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * page_size)
