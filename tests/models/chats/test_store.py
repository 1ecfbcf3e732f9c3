"""The conversation store without a model: schema, migration, messages, search, export, recorder."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

from models.chats.answer_recorder import AnswerRecorder
from models.chats.database import SCHEMA_VERSION, StoreError
from models.chats.export import ChatImportError, export_json, export_markdown, import_json
from models.chats.store import (
    ConversationNotFound,
    ConversationSettings,
    ConversationStore,
    title_from_question,
)
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


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    with ConversationStore(tmp_path / "data", clock=clock) as opened:
        yield opened


def picture(color=(200, 40, 40), size=(40, 30), name="photo.png", fmt="PNG"):
    return load_image_bytes(image_bytes(*size, fmt, color), name)


def other_connection(store: ConversationStore) -> ConversationStore:
    """A second store on the same folder: sees only what the first committed."""
    return ConversationStore(store.folder)


# -- titles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question, title",
    [
        ("  What is   this?\n", "What is this?"),
        ("word " * 20, "word word word word word word word word word word word word…"),
        ("x" * 80, "x" * 59 + "…"),
        (
            "Describe the picture, in detail, with every colour and every shape you can find there",
            "Describe the picture, in detail, with every colour and…",
        ),
    ],
)
def test_title_from_question(question, title):
    assert title_from_question(question) == title
    assert len(title) <= 60


def test_first_question_titles_the_conversation_and_rename_keeps_it(store, clock):
    conversation = store.create()
    assert conversation.title == "" and conversation.display_title == "New conversation"
    store.add_message(conversation.id, "user", "Why is the sky blue on a clear day?")
    clock.advance(5)
    store.add_message(conversation.id, "assistant", "Rayleigh scattering.")
    store.add_message(conversation.id, "user", "And at sunset?")
    got = store.conversation(conversation.id)
    assert got.title == "Why is the sky blue on a clear day?"
    assert got.message_count == 3 and got.updated == clock.now

    store.rename(conversation.id, "  Sky   colours ")
    assert store.conversation(conversation.id).title == "Sky colours"
    with pytest.raises(StoreError):
        store.rename(conversation.id, "   ")
    with pytest.raises(ConversationNotFound):
        store.rename(999, "x")


def test_list_orders_by_last_update(store, clock):
    first = store.create("first")
    store.create("second")
    clock.advance(10)
    store.add_message(first.id, "user", "bump")
    assert [c.title for c in store.list_conversations()] == ["first", "second"]


def test_settings_are_per_conversation(store):
    from models.inference.engine import GenerationSettings

    tuned = ConversationSettings(
        system_prompt="Be brief.", temperature=0.0, top_p=0.5, max_tokens=64, seed=7, context_length=4096
    )
    a = store.create(settings=tuned)
    b = store.create()
    assert store.conversation(a.id).settings == tuned
    assert store.conversation(b.id).settings == ConversationSettings()

    store.update_settings(b.id, ConversationSettings(temperature=1.2))
    assert store.conversation(b.id).settings.temperature == 1.2
    assert store.conversation(a.id).settings == tuned

    generation = store.conversation(a.id).settings.generation_settings(GenerationSettings(max_tokens=512))
    assert (
        generation.temperature,
        generation.top_p,
        generation.max_tokens,
        generation.seed,
        generation.context_length,
    ) == (0.0, 0.5, 64, 7, 4096)
    defaults = store.conversation(b.id).settings.generation_settings(GenerationSettings(max_tokens=512))
    assert defaults.max_tokens == 512 and defaults.top_p == GenerationSettings().top_p


# -- delete, undo, purge --------------------------------------------------------------------------


def test_delete_undo_and_purge(store, clock):
    kept, doomed = store.create(), store.create()
    shared, own = picture((1, 2, 3)), picture((9, 9, 9), name="own.png")
    store.add_message(kept.id, "user", "keep the zebra", [shared])
    store.add_message(doomed.id, "user", "drop the zebra", [shared, own])

    store.delete(doomed.id)
    assert [c.id for c in store.list_conversations()] == [kept.id]
    assert [c.id for c in store.list_conversations(deleted=True)] == [doomed.id]
    assert {h.conversation_id for h in store.search("zebra")} == {kept.id}
    with pytest.raises(ConversationNotFound):
        store.conversation(doomed.id)

    store.restore(doomed.id)  # undo
    assert {c.id for c in store.list_conversations()} == {kept.id, doomed.id}
    assert {h.conversation_id for h in store.search("zebra")} == {kept.id, doomed.id}

    store.delete(doomed.id)
    own_path = store.messages(doomed.id)[0].images[1].path
    shared_path = store.messages(kept.id)[0].images[0].path
    assert store.purge_deleted(older_than_s=3600) == 0  # too recent
    clock.advance(3601)
    assert store.purge_deleted(older_than_s=3600) == 1
    with pytest.raises(ConversationNotFound):
        store.conversation(doomed.id, include_deleted=True)
    assert not own_path.exists() and shared_path.exists()
    assert store.history(kept.id)[0].images[0].data == shared.data
    assert store.db.integrity_check() == "ok"


# -- images ---------------------------------------------------------------------------------------


def test_images_are_stored_once_by_hash_with_original_bytes(store):
    conversation = store.create()
    image = picture()
    store.add_message(conversation.id, "user", "one", [image])
    store.add_message(conversation.id, "user", "two", [image, picture((0, 0, 255), name="blue.png")])
    files = sorted(p for p in (store.folder / "images").rglob("*") if p.is_file())
    assert len(files) == 2
    first = store.messages(conversation.id)[0].images[0]
    assert first.sha256 == image.sha256 and first.name == "photo.png"
    assert first.path.read_bytes() == image.data
    assert (first.width, first.height, first.media_type) == (40, 30, "image/png")


def test_large_images_are_stored_downscaled(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 255, (400, 600, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    big = load_image_bytes(buffer.getvalue(), "noise.png")
    limit = 60_000
    assert len(big.data) > limit
    with ConversationStore(tmp_path / "data", max_image_bytes=limit) as store:
        conversation = store.create()
        stored = store.add_message(conversation.id, "user", "big", [big]).images[0]
        assert stored.media_type == "image/jpeg" and stored.size <= limit
        assert stored.sha256 != big.sha256 and stored.width < 600
        assert stored.width * 400 == pytest.approx(stored.height * 600, rel=0.02)
        (record,) = store.image_records()
        assert record.downscaled and record.original_sha256 == big.sha256
        again = store.add_message(conversation.id, "user", "again", [big]).images[0]
        assert again.sha256 == stored.sha256  # found by the original's hash, not downscaled anew
        assert len(list(store.image_records())) == 1
        assert store.history(conversation.id)[0].images[0].sha256 == stored.sha256


# -- messages: regenerate, edit, continue ---------------------------------------------------------


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


def test_regenerate_drops_the_last_answer_only(store):
    conversation, ids = make_exchange(store)
    last = store.last_assistant(conversation.id)
    assert last.id == ids[-1] and last.text == "answer 1"
    assert store.truncate_after(last.id, inclusive=True) == 1
    assert [m.id for m in store.messages(conversation.id)] == ids[:3]
    recorder = AnswerRecorder(store, model="tiny")
    recorder.begin_answer(conversation.id)
    recorder.finish(FakeStep("a new answer", "stop", (5, 6)))
    texts = [m.text for m in store.messages(conversation.id)]
    assert texts == ["question 0", "answer 0", "question 1", "a new answer"]


def test_edit_replaces_the_question_and_drops_what_followed(store):
    conversation, ids = make_exchange(store, turns=3)
    with store.transaction():
        store.replace_message_text(ids[2], "question 1, edited")
        assert store.truncate_after(ids[2]) == 3
    messages = store.messages(conversation.id)
    assert [m.text for m in messages] == ["question 0", "answer 0", "question 1, edited"]
    assert store.search("edited")[0].message_id == ids[2]
    assert store.search("answer 2") == []

    edited_answer = store.replace_message_text(ids[1], "answer 0, edited")
    assert edited_answer.token_ids is None  # no longer what the model generated
    assert store.message(ids[0]).text == "question 0"


def test_a_failed_transaction_leaves_nothing(store):
    conversation, ids = make_exchange(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.truncate_after(ids[0])
        store.add_message(conversation.id, "user", "half-done")
        raise RuntimeError("boom")
    assert [m.id for m in store.messages(conversation.id)] == ids


def test_history_is_what_the_engine_takes(store):
    conversation = store.create(settings=ConversationSettings(system_prompt="You are terse."))
    image = picture()
    store.add_message(conversation.id, "user", "look", [image])
    store.add_message(conversation.id, "assistant", "a red box", token_ids=[11, 12, 13], finish_reason="stop")
    store.add_message(conversation.id, "user", "again?")
    store.add_message(conversation.id, "assistant", "", finish_reason="error", error="boom")
    store.add_message(conversation.id, "user", "third time")
    history = store.history(conversation.id)
    assert [(m.role, m.text) for m in history] == [
        ("system", "You are terse."),
        ("user", "look"),
        ("assistant", "a red box"),
        ("user", "again?"),
        ("user", "third time"),
    ]
    assert history[2].token_ids == (11, 12, 13)
    assert history[1].images[0].data == image.data and history[1].images[0].sha256 == image.sha256
    assert [m.text for m in store.history(conversation.id, before=store.messages(conversation.id)[1].id)] == [
        "You are terse.",
        "look",
    ]


def test_a_missing_image_file_is_a_one_line_error(store):
    conversation = store.create()
    stored = store.add_message(conversation.id, "user", "look", [picture()]).images[0]
    stored.path.unlink()
    with pytest.raises(StoreError, match="missing"):
        store.history(conversation.id)


# -- search ---------------------------------------------------------------------------------------


def test_search_finds_a_word_from_an_old_conversation(store, clock):
    old = store.create()
    store.add_message(old.id, "user", "Tell me about the axolotl and its gills.")
    target = store.add_message(old.id, "assistant", "The axolotl keeps its larval gills for life.")
    for n in range(30):
        clock.advance(86400)
        newer = store.create()
        store.add_message(newer.id, "user", f"Unrelated question number {n} about cooking rice.")
    hits = store.search("gills LARVAL")  # every word, any case, any order
    assert [h.message_id for h in hits] == [target.id]
    assert hits[0].conversation_id == old.id
    assert hits[0].title == "Tell me about the axolotl and its gills."
    assert "[larval] [gills]" in hits[0].snippet
    assert {h.message_id for h in store.search("axo")} == {target.id, target.id - 1}  # prefixes match
    assert store.search("<b>", limit=5) == []
    marked = store.search("gills", start="\x02", end="\x03")
    assert all("\x02gills\x03" in h.snippet for h in marked)


@pytest.mark.parametrize("query", ['"', "AND", "OR NOT (", "*", "a:b", "NEAR(x y)", "", "   ", "'; DROP"])
def test_search_syntax_in_the_text_is_just_text(store, query):
    conversation = store.create()
    store.add_message(conversation.id, "user", "AND OR NOT near a:b")
    store.search(query)  # no FTS5 syntax error


def test_search_follows_partial_answers(store):
    conversation = store.create()
    recorder = AnswerRecorder(store, flush_interval_s=0)
    recorder.begin(conversation.id, "question")
    recorder.add("the quokka ")
    recorder.add("smiles")
    assert [h.message_id for h in store.search("quokka smiles")] == [recorder.answer_id]


# -- the answer recorder ----------------------------------------------------------------------------


def test_recorder_commits_the_question_first_and_flushes_every_two_seconds(store):
    tick = FakeClock(100.0)
    conversation = store.create()
    recorder = AnswerRecorder(store, model="tiny-4bit", clock=tick)
    question = recorder.begin(conversation.id, "What is in the box?", [picture()])
    reader = other_connection(store)
    try:
        question_seen, answer_seen = reader.messages(conversation.id)
        assert question_seen.id == question.id and question_seen.images[0].sha256 == picture().sha256
        assert (answer_seen.role, answer_seen.text, answer_seen.interrupted) == ("assistant", "", True)

        assert recorder.add("A red") is False
        tick.advance(1.9)
        assert recorder.add(" box") is False
        assert reader.message(answer_seen.id).text == ""
        tick.advance(0.1)
        assert recorder.add(",") is True
        assert reader.message(answer_seen.id).text == "A red box,"
        assert reader.message(answer_seen.id).interrupted

        tick.advance(0.5)
        recorder.add(" maybe")
        answer = recorder.finish(FakeStep(" two.", "stop", (1, 2, 3, 4)))
        seen = reader.message(answer.id)
        assert seen.text == "A red box, maybe two." and not seen.interrupted
        assert seen.finish_reason == "stop" and seen.token_ids == (1, 2, 3, 4)
        assert seen.model == "tiny-4bit"
        assert seen.stats == {
            "prompt_tokens": 7,
            "cached_tokens": 0,
            "generation_tokens": 3,
            "ttft_s": 0.25,
            "prompt_tps": 28.0,
            "generation_tps": 40.5,
            "peak_memory_gb": 0.125,
        }
    finally:
        reader.close()
    with pytest.raises(RuntimeError):
        recorder.add("late")


def test_recorder_keeps_errors_and_abandoned_answers(store):
    conversation = store.create()
    recorder = AnswerRecorder(store)
    recorder.begin(conversation.id, "q1")
    failed = recorder.finish(FakeStep("", "error", (), error="Generation failed: out of memory"))
    assert (failed.finish_reason, failed.error, failed.interrupted) == (
        "error",
        "Generation failed: out of memory",
        False,
    )

    recorder.begin(conversation.id, "q2")
    recorder.add("half an ans")
    abandoned = recorder.abandon()
    assert (abandoned.text, abandoned.interrupted, abandoned.finish_reason) == ("half an ans", True, None)
    assert abandoned.can_continue


def test_continue_an_answer_that_stopped_at_the_token_limit(store):
    conversation = store.create()
    recorder = AnswerRecorder(store)
    recorder.begin(conversation.id, "Count to six")
    first = recorder.finish(FakeStep("one two three", "length", (1, 2, 3)))
    assert first.can_continue and store.last_assistant(conversation.id).id == first.id

    resumed = recorder.resume(first.id)
    assert resumed.interrupted and resumed.finish_reason is None  # a kill now keeps "one two three"
    recorder.add(" four five")
    done = recorder.finish(FakeStep(" six", "stop", (4, 5, 6)))
    assert done.id == first.id and done.text == "one two three four five six"
    assert done.token_ids == (1, 2, 3, 4, 5, 6) and not done.can_continue
    assert len(store.messages(conversation.id)) == 2


# -- schema: versions and migration -----------------------------------------------------------------

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
        assert store.history(1)[0].images[0].data == data
        (record,) = store.image_records()
        assert record.original_sha256 == sha and not record.downscaled
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


# -- export and import ------------------------------------------------------------------------------


def rich_conversation(store):
    conversation = store.create(
        settings=ConversationSettings(system_prompt="Be exact.", temperature=0.0, seed=3, max_tokens=99)
    )
    red, jpeg = picture(), picture((0, 90, 200), (60, 90), "tall shot.jpg", "JPEG")
    store.add_message(conversation.id, "user", "Compare these", [red, jpeg])
    store.add_message(
        conversation.id,
        "assistant",
        "Red is wide, blue is tall.",
        model="tiny-4bit",
        stats={"generation_tokens": 6.0, "ttft_s": 0.5},
        finish_reason="stop",
        token_ids=[1, 2, 200000, 3],
    )
    store.add_message(conversation.id, "user", "Only the red one", [red])
    store.add_message(conversation.id, "assistant", "It is wi", interrupted=True)
    return store.conversation(conversation.id), (red, jpeg)


def comparable(store, conversation_id):
    conversation = store.conversation(conversation_id)
    messages = [
        (
            m.role,
            m.text,
            m.created,
            m.model,
            m.stats,
            m.finish_reason,
            m.error,
            m.interrupted,
            m.token_ids,
            [(i.name, i.sha256, i.path.read_bytes()) for i in m.images],
        )
        for m in store.messages(conversation_id)
    ]
    return conversation.title, conversation.created, conversation.updated, conversation.settings, messages


def test_json_export_and_import_give_back_the_same_conversation(store, tmp_path):
    conversation, (red, jpeg) = rich_conversation(store)
    document = json.loads(json.dumps(export_json(store, conversation.id)))
    assert len(document["images"]) == 2  # each image once
    assert {base64.b64decode(i["data"]) for i in document["images"]} == {red.data, jpeg.data}

    with ConversationStore(tmp_path / "elsewhere") as other:
        new_id = import_json(other, document)
        assert comparable(other, new_id) == comparable(store, conversation.id)
        imported_images = [i.path.read_bytes() for m in other.messages(new_id) for i in m.images]
        assert imported_images == [red.data, jpeg.data, red.data]
        assert other.search("wide")[0].conversation_id == new_id


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["images"][0].update(data=base64.b64encode(b"other").decode()), "does not match"),
        (lambda d: d["images"][0].update(data="%%%"), "base64"),
        (lambda d: d["images"].pop(), "does not hold"),
        (lambda d: d["messages"][0].update(role="robot"), "unknown role"),
        (lambda d: d["messages"][1].update(token_ids=["a"]), "token_ids"),
        (lambda d: d.update(format="something else"), "not a Llama Desk"),
        (lambda d: d.update(version=99), "version 99"),
    ],
)
def test_a_damaged_import_stores_nothing(store, tmp_path, damage, message):
    conversation, _ = rich_conversation(store)
    document = export_json(store, conversation.id)
    damage(document)
    with ConversationStore(tmp_path / "elsewhere") as other:
        with pytest.raises(ChatImportError, match=message):
            import_json(other, document)
        assert other.list_conversations() == []


def test_markdown_export_writes_images_beside_it(store, tmp_path):
    conversation, (red, jpeg) = rich_conversation(store)
    path = export_markdown(store, conversation.id, tmp_path / "out" / "chat.md")
    text = path.read_text()
    assert text.startswith("# Compare these\n")
    assert "## System\n\nBe exact." in text and "## Llama (tiny-4bit)" in text
    assert "*(answer interrupted)*" in text
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert [name for name, _ in links] == ["photo.png", "tall shot.jpg", "photo.png"]
    files = [path.parent / unquote(target) for _, target in links]
    assert [f.read_bytes() for f in files] == [red.data, jpeg.data, red.data]
    assert all(f.parent == tmp_path / "out" / "chat_images" for f in files)
    assert len(list((tmp_path / "out" / "chat_images").iterdir())) == 2


def test_delete_between_removes_only_the_replaced_turns(store):
    conversation = store.create()
    old = [
        store.add_message(conversation.id, role, text)
        for role, text in (("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"))
    ]
    new_question = store.add_message(conversation.id, "user", "Q2 edited")
    new_answer = store.add_message(conversation.id, "assistant", "A2 new")
    assert store.delete_between(old[2].id, new_question.id) == 2
    assert [m.text for m in store.messages(conversation.id)] == ["Q1", "A1", "Q2 edited", "A2 new"]
    assert store.delete_between(new_answer.id + 100, new_answer.id + 200) == 0


# -- damaged, read-only and shared databases (issue 9) ---------------------------------------------


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


@pytest.fixture
def damaged_folder(tmp_path):
    folder = tmp_path / "damaged"
    with ConversationStore(folder) as store:
        conversation = store.create()
        for n in range(50):
            store.add_message(conversation.id, "user", f"message {n} about zebras " * 10)
    damage_messages_page(folder)
    return folder


def test_a_damaged_page_is_a_one_line_store_error_and_a_new_chat_leaves_nothing(damaged_folder):
    with ConversationStore(damaged_folder) as store:
        before = len(store.list_conversations())
        with pytest.raises(StoreError, match=r"is damaged \("):  # not a bare sqlite3.DatabaseError
            with store.transaction():
                conversation = store.create()
                AnswerRecorder(store).begin(conversation.id, "Hello?")
        assert len(store.list_conversations()) == before
        with pytest.raises(StoreError, match="is damaged"):
            store.search("zebras")


def test_a_damaged_database_is_moved_aside_whole_and_a_new_one_starts(damaged_folder):
    import models.chats.database as chat_database

    path = damaged_folder / "conversations.sqlite3"
    damage = chat_database.check_database(path)
    assert isinstance(damage, chat_database.DatabaseDamaged) and damage.path == path
    old_bytes = path.read_bytes()
    with ConversationStore(damaged_folder) as store:
        store.db.execute("SELECT 1")  # an open connection keeps its -wal/-shm
        moved = store.db.move_aside_and_start_new()
        assert moved.name.startswith("conversations.damaged-") and moved.name.endswith(".sqlite3")
        assert moved.read_bytes() == old_bytes  # kept as it was
        assert store.list_conversations() == []
        conversation = store.create()
        store.add_message(conversation.id, "user", "A fresh start")
        assert store.search("fresh")[0].conversation_id == conversation.id
    assert chat_database.check_database(path) is None
    siblings = sorted(p.name for p in damaged_folder.iterdir() if p.name.startswith("conversations"))
    assert siblings[0].startswith("conversations.damaged-")


def test_a_read_only_data_folder_lists_shows_and_searches_and_refuses_writes(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    with ConversationStore(folder) as store:
        conversation = store.create()
        store.add_message(conversation.id, "user", "Where do puffins nest?")
    # Running as root ignores permissions, so the folder's writability is what is faked here.
    monkeypatch.setattr("models.chats.database._writable", lambda path: False, raising=False)
    with ConversationStore(folder) as store:
        assert [c.id for c in store.list_conversations()] == [conversation.id]
        assert [m.text for m in store.messages(conversation.id)] == ["Where do puffins nest?"]
        assert store.search("puffins")[0].conversation_id == conversation.id
        with pytest.raises(StoreError, match="read-only"):
            store.create()
        with pytest.raises(StoreError, match="read-only"):
            AnswerRecorder(store).begin(conversation.id, "And owls?")
    with ConversationStore(folder) as store:
        assert [m.text for m in store.messages(conversation.id)] == ["Where do puffins nest?"]


def test_a_second_turn_in_a_conversation_is_refused_until_the_first_finishes(store):
    conversation = store.create()
    first = AnswerRecorder(store, flush_interval_s=0)
    first.begin(conversation.id, "First question")
    with other_connection(store) as other:
        second = AnswerRecorder(other, flush_interval_s=0)
        with pytest.raises(StoreError, match=f"Conversation {conversation.id} is answering in another"):
            second.begin(conversation.id, "Second question")
        first.add("first ")
        first.finish(FakeStep("answer", finish_reason="stop"))
        second.begin(conversation.id, "Second question")
        second.finish(FakeStep("second answer", finish_reason="stop"))
    assert [m.text for m in store.messages(conversation.id)] == [
        "First question",
        "first answer",
        "Second question",
        "second answer",
    ]
    other_chat = store.create()  # another conversation is never held up
    AnswerRecorder(store).begin(other_chat.id, "Meanwhile")


def test_search_builds_its_snippet_from_a_bounded_window_of_a_huge_message(store, monkeypatch):
    import models.chats.store as conversations

    conversation = store.create()
    store.add_message(conversation.id, "user", "A short question about a zebra")
    huge = store.add_message(conversation.id, "assistant", "zebra " * 85_000)  # 510 KB, one word
    statements: list[str] = []
    store.db._conn.set_trace_callback(statements.append)
    windows: list[int] = []
    real_builder = getattr(conversations, "build_snippet", None)

    def recording_builder(window, *args, **kwargs):
        windows.append(len(window))
        return real_builder(window, *args, **kwargs)

    monkeypatch.setattr(conversations, "build_snippet", recording_builder, raising=False)
    hits = store.search("zebra")
    assert {h.message_id for h in hits} >= {huge.id}
    assert not any("snippet(" in sql for sql in statements)  # FTS5's snippet() is quadratic
    assert windows and max(windows) <= 2 * conversations.SNIPPET_WINDOW_CHARS
    (hit,) = [h for h in hits if h.message_id == huge.id]
    assert hit.snippet.startswith("[zebra] [zebra]") and hit.snippet.endswith("…")
    assert len(hit.snippet) < 200


def test_move_aside_takes_the_write_ahead_log_along(tmp_path):
    import models.chats.database as chat_database

    path = tmp_path / "conversations.sqlite3"
    for suffix, data in (("", b"damaged"), ("-wal", b"log"), ("-shm", b"index")):
        Path(f"{path}{suffix}").write_bytes(data)
    moved = chat_database.move_aside(path)
    assert [Path(f"{moved}{s}").read_bytes() for s in ("", "-wal", "-shm")] == [b"damaged", b"log", b"index"]
    assert not any(Path(f"{path}{s}").exists() for s in ("", "-wal", "-shm"))
    for suffix, data in (("", b"again"),):
        Path(f"{path}{suffix}").write_bytes(data)
    assert chat_database.move_aside(path) != moved  # never over an earlier one
