"""The database file: schema versions, migration, WAL, damage."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace

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
        assert store.db.user_version == SCHEMA_VERSION == 3
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


# -- settings added after schema 2: one JSON column, no version bump ----------------------------

PREVIOUS_SCHEMA = 2  # what Llama Desk read before the settings column: it refuses anything newer
# The statements the previous version writes settings with (its store.py, verbatim).
PREVIOUS_INSERT = (
    "INSERT INTO conversations (title, created, updated, system_prompt, temperature, top_p,"
    " max_tokens, seed, context_length) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
PREVIOUS_UPDATE = (
    "UPDATE conversations SET system_prompt = ?, temperature = ?, top_p = ?, max_tokens = ?,"
    " seed = ?, context_length = ? WHERE id = ?"
)


def write_v2_database(folder) -> None:
    """A database as schema 2 left it (the released migrations, run by hand) with one tuned
    conversation."""
    from models.chats.database import MIGRATIONS

    folder.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(folder / "conversations.sqlite3", isolation_level=None)
    for migration in MIGRATIONS[:PREVIOUS_SCHEMA]:
        for statement in migration:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {PREVIOUS_SCHEMA}")
    conn.execute(PREVIOUS_INSERT, ("Tuned", 1600000000, 1600000000, "Be brief.", 0.3, 0.8, 64, 5, 4096))
    conn.close()


def test_a_database_with_new_settings_still_opens_in_the_previous_version(tmp_path):
    folder = tmp_path / "data"
    tuned = ConversationSettings(temperature=0.2, min_p=0.05, repetition_penalty=1.3, max_tokens=99)
    with ConversationStore(folder) as store:
        conversation = store.create("Tuned", tuned)
    conn = sqlite3.connect(folder / "conversations.sqlite3", isolation_level=None)
    conn.row_factory = sqlite3.Row
    # The settings column raised no version: the schema is the documents' (3), which the version
    # before it refuses on purpose (its purge would delete page images it does not know of).
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    row = conn.execute("SELECT c.* FROM conversations c WHERE id = ?", (conversation.id,)).fetchone()
    assert (row["temperature"], row["max_tokens"], row["top_p"]) == (0.2, 99, None)  # read as before
    # the previous version edits a conversation's settings and starts another, as it always did
    conn.execute(PREVIOUS_UPDATE, ("Terse.", 0.9, 0.5, 12, None, None, conversation.id))
    conn.execute(PREVIOUS_INSERT, ("Old", 1600000000, 1600000000, "", None, None, None, None, None))
    conn.close()
    with ConversationStore(folder) as store:
        edited = store.conversation(conversation.id).settings
        assert edited == ConversationSettings(
            system_prompt="Terse.",
            temperature=0.9,
            top_p=0.5,
            max_tokens=12,
            min_p=0.05,
            repetition_penalty=1.3,
        )
        (old,) = [c for c in store.list_conversations() if c.title == "Old"]
        assert old.settings == ConversationSettings()


def test_a_schema_2_database_gains_the_settings_column_and_keeps_its_settings(tmp_path):
    folder = tmp_path / "data"
    write_v2_database(folder)
    kept = ConversationSettings(
        system_prompt="Be brief.", temperature=0.3, top_p=0.8, max_tokens=64, seed=5, context_length=4096
    )
    with ConversationStore(folder) as store:
        assert store.db.user_version == SCHEMA_VERSION  # upgraded by migration 3, not by the column
        assert store.db.integrity_check() == "ok"
        (conversation,) = store.list_conversations()
        assert conversation.settings == kept
        store.update_settings(conversation.id, replace(kept, min_p=0.1))
    with ConversationStore(folder) as again:
        assert again.conversation(conversation.id).settings == replace(kept, min_p=0.1)
        columns = [r["name"] for r in again.db.execute("PRAGMA table_info(conversations)")]
        assert columns.count("settings") == 1  # added once


def test_a_read_only_schema_2_database_without_the_column_is_read(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    write_v2_database(folder)
    monkeypatch.setattr("models.chats.database._writable", lambda path: False, raising=False)
    with ConversationStore(folder) as store:
        (conversation,) = store.list_conversations()
        assert conversation.settings.temperature == 0.3 and conversation.settings.min_p is None


def test_stored_settings_json_is_not_trusted_and_a_newer_versions_keys_are_kept(store):
    conversation = store.create(settings=ConversationSettings(min_p=0.05))
    store.db.execute(
        "UPDATE conversations SET settings = ? WHERE id = ?",
        ('{"min_p": 7, "repetition_penalty": 1.2, "top_k": 40}', conversation.id),
    )
    settings = store.conversation(conversation.id).settings
    assert (settings.min_p, settings.repetition_penalty) == (None, 1.2)  # out of range: the default
    store.update_settings(conversation.id, ConversationSettings(min_p=0.1))
    stored = store.db.execute(
        "SELECT settings FROM conversations WHERE id = ?", (conversation.id,)
    ).fetchone()
    assert json.loads(stored[0]) == {"min_p": 0.1, "top_k": 40}  # a newer Llama Desk's knob survives
    for damaged in ("{not json", "[1, 2]", "null", "1e999"):
        store.db.execute("UPDATE conversations SET settings = ? WHERE id = ?", (damaged, conversation.id))
        assert store.conversation(conversation.id).settings == ConversationSettings()
