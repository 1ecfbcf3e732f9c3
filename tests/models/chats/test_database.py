"""The database file: schema versions, migration, WAL, damage."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from models.chats.conversation_session import stored_turns
from models.chats.database import SCHEMA_VERSION, StoreError
from models.chats.store import (
    ConversationSettings,
    ConversationStore,
)
from tests.conftest import image_bytes

V1_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, updated REAL NOT NULL, deleted REAL);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    text TEXT NOT NULL DEFAULT '', created REAL NOT NULL);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE TABLE images (
    sha256 TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE message_images (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, sha256 TEXT NOT NULL REFERENCES images(sha256),
    name TEXT NOT NULL DEFAULT '', PRIMARY KEY (message_id, position));
CREATE INDEX message_images_by_image ON message_images(sha256);
PRAGMA user_version = 1;
"""


def write_v1_database(folder, image_data: bytes) -> str:
    """A database as the first schema left it, written by hand (not by the code under test)."""
    sha = hashlib.sha256(image_data).hexdigest()
    (folder / "images" / sha[:2]).mkdir(parents=True)
    (folder / "images" / sha[:2] / f"{sha}.png").write_bytes(image_data)
    conn = sqlite3.connect(folder / "conversations.sqlite3")
    conn.executescript(V1_SCHEMA)
    conn.executescript(f"""
        INSERT INTO conversations VALUES (1, 'Pangolin facts', 1600000000, 1600000100, NULL);
        INSERT INTO conversations VALUES (2, 'Gone', 1600000000, 1600000000, 1600000500);
        INSERT INTO messages VALUES (1, 1, 'user', 'Do pangolins have scales?', 1600000000);
        INSERT INTO messages VALUES (2, 1, 'assistant', 'Yes: overlapping keratin scales.', 1600000050);
        INSERT INTO messages VALUES (3, 2, 'user', 'keratin in a deleted chat', 1600000000);
        INSERT INTO images VALUES ('{sha}', 'image/png', {len(image_data)}, 40, 30, 1600000000);
        INSERT INTO message_images VALUES (1, 0, '{sha}', 'pangolin.png');
    """)
    conn.commit()
    conn.close()
    return sha


def test_migration_from_schema_1_keeps_everything(tmp_path):
    data = image_bytes(40, 30, "PNG")
    folder = tmp_path / "data"
    folder.mkdir()
    sha = write_v1_database(folder, data)
    with ConversationStore(folder) as store:
        assert store.db.user_version == SCHEMA_VERSION == 2
        assert store.db.integrity_check() == "ok"
        assert [c.title for c in store.list_conversations()] == ["Pangolin facts"]
        assert [c.id for c in store.list_conversations(deleted=True)] == [2]
        conversation = store.conversation(1)
        assert conversation.settings == ConversationSettings() and conversation.updated == 1600000100
        question, answer = store.messages(1)
        assert question.images[0].sha256 == sha and question.images[0].name == "pangolin.png"
        assert (answer.interrupted, answer.token_ids, answer.finish_reason) == (False, None, None)
        (hit,) = store.search("keratin")  # the old text is indexed; the deleted chat is not found
        assert (hit.conversation_id, hit.message_id) == (1, 2)
        assert stored_turns(store, 1)[0].images[0].data == data
        images = [tuple(r) for r in store.db.execute("SELECT sha256, original_sha256 FROM images")]
        assert images == [(sha, sha)]  # the original's hash recorded, and not downscaled
        # and the upgraded database works like a new one
        store.add_message(1, "user", "And armadillos?")
        assert store.search("armadillos")[0].conversation_id == 1
    with ConversationStore(folder) as again:  # opening an upgraded database changes nothing
        assert again.db.user_version == SCHEMA_VERSION and len(again.messages(1)) == 3


def test_a_newer_schema_is_refused(tmp_path):
    folder = tmp_path / "data"
    ConversationStore(folder).close()
    conn = sqlite3.connect(folder / "conversations.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer Llama Desk"):
        ConversationStore(folder)


def test_a_damaged_file_is_a_one_line_error(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "conversations.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="damaged") as info:
        ConversationStore(folder)
    assert "\n" not in str(info.value)


def test_new_database_uses_wal(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.user_version == SCHEMA_VERSION
