"""The conversation store without a model: conversations, settings, images, messages, damaged
and shared databases."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.chats.answer_recorder import AnswerRecorder
from models.chats.conversation_session import stored_turns
from models.chats.database import StoreError
from models.chats.store import (
    ConversationNotFound,
    ConversationSettings,
    ConversationStore,
    title_from_question,
)
from models.chats.turns import chat_messages
from models.inference.images import load_image_bytes
from tests.support.stored_chats import (
    FakeStep,
    damage_messages_page,
    make_exchange,
    other_connection,
    picture,
)

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
        system_prompt="Be brief.",
        temperature=0.0,
        top_p=0.5,
        min_p=0.05,
        repetition_penalty=1.3,
        max_tokens=64,
        seed=7,
        context_length=4096,
    )
    a = store.create(settings=tuned)
    b = store.create()
    assert store.conversation(a.id).settings == tuned
    assert store.conversation(b.id).settings == ConversationSettings()

    store.update_settings(b.id, ConversationSettings(temperature=1.2))
    assert store.conversation(b.id).settings.temperature == 1.2
    assert store.conversation(a.id).settings == tuned
    store.update_settings(b.id, ConversationSettings(repetition_penalty=1.5))
    assert store.conversation(b.id).settings == ConversationSettings(repetition_penalty=1.5)
    with ConversationStore(store.folder) as reopened:
        assert reopened.conversation(a.id).settings == tuned
        assert reopened.conversation(b.id).settings.repetition_penalty == 1.5

    generation = store.conversation(a.id).settings.generation_settings(GenerationSettings(max_tokens=512))
    assert (
        generation.temperature,
        generation.top_p,
        generation.max_tokens,
        generation.seed,
        generation.context_length,
        generation.min_p,
        generation.repetition_penalty,
    ) == (0.0, 0.5, 64, 7, 4096, 0.05, 1.3)
    defaults = store.conversation(b.id).settings.generation_settings(GenerationSettings(max_tokens=512))
    assert defaults.max_tokens == 512 and defaults.top_p == GenerationSettings().top_p


# -- delete, undo, purge --------------------------------------------------------------------------


def test_delete_removes_the_saved_kv_cache_and_local_ranks_shares(store):
    from models.inference.prompt_cache_keeper import FOLDER_NAME, RANKS_FOLDER, SUFFIX

    doomed, kept = store.create(), store.create()
    caches = store.folder / FOLDER_NAME
    shares = caches / RANKS_FOLDER / "0123456789abcdef"
    files = {
        "doomed": [caches / f"{doomed.id}{SUFFIX}", shares / "layers-3-6" / f"{doomed.id}{SUFFIX}"],
        "kept": [caches / f"{kept.id}{SUFFIX}", shares / "layers-3-6" / f"{kept.id}{SUFFIX}"],
    }
    for path in files["doomed"] + files["kept"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"cache")
    store.delete(doomed.id)
    assert [p.exists() for p in files["doomed"]] == [False, False]
    assert [p.exists() for p in files["kept"]] == [True, True]


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
    assert stored_turns(store, kept.id)[0].images[0].data == shared.data
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
        originals = "SELECT sha256, original_sha256 FROM images"
        assert [tuple(r) for r in store.db.execute(originals)] == [(stored.sha256, big.sha256)]
        again = store.add_message(conversation.id, "user", "again", [big]).images[0]
        assert again.sha256 == stored.sha256  # found by the original's hash, not downscaled anew
        assert [tuple(r) for r in store.db.execute(originals)] == [(stored.sha256, big.sha256)]
        assert len([p for p in (store.folder / "images").rglob("*") if p.is_file()]) == 1
        assert stored_turns(store, conversation.id)[0].images[0].sha256 == stored.sha256


def test_regenerate_drops_the_last_answer_only(store):
    conversation, ids = make_exchange(store)
    last = store.messages(conversation.id)[-1]
    assert last.id == ids[-1] and last.text == "answer 1"
    assert store.truncate_after(last.id, inclusive=True) == 1
    assert [m.id for m in store.messages(conversation.id)] == ids[:3]
    recorder = AnswerRecorder(store, model="tiny")
    recorder.begin_answer(conversation.id)
    recorder.finish(FakeStep("a new answer", "stop", (5, 6)))
    texts = [m.text for m in store.messages(conversation.id)]
    assert texts == ["question 0", "answer 0", "question 1", "a new answer"]


def test_an_edit_replaces_the_question_and_what_followed_in_search_too(store):
    conversation, ids = make_exchange(store, turns=3)
    edited = store.add_message(conversation.id, "user", "question 1, edited")  # as an edit stores it
    store.add_message(conversation.id, "assistant", "answer 1, new")
    assert store.delete_between(ids[2], edited.id) == 4  # once the new answer has text
    messages = store.messages(conversation.id)
    assert [m.text for m in messages] == ["question 0", "answer 0", "question 1, edited", "answer 1, new"]
    assert [h.message_id for h in store.search("edited")] == [edited.id]
    assert store.search("answer 2") == [] and store.search("question 2") == []


def test_a_failed_transaction_leaves_nothing(store):
    conversation, ids = make_exchange(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.truncate_after(ids[0])
        store.add_message(conversation.id, "user", "half-done")
        raise RuntimeError("boom")
    assert [m.id for m in store.messages(conversation.id)] == ids


def test_the_stored_turns_are_what_the_engine_takes(store):
    conversation = store.create(settings=ConversationSettings(system_prompt="You are terse."))
    image = picture()
    store.add_message(conversation.id, "user", "look", [image])
    store.add_message(conversation.id, "assistant", "a red box", token_ids=[11, 12, 13], finish_reason="stop")
    store.add_message(conversation.id, "user", "again?")
    store.add_message(conversation.id, "assistant", "", finish_reason="error", error="boom")
    store.add_message(conversation.id, "user", "third time")
    system_prompt = store.conversation(conversation.id).settings.system_prompt
    history = chat_messages(stored_turns(store, conversation.id), system_prompt)
    assert [(m.role, m.text) for m in history] == [
        ("system", "You are terse."),
        ("user", "look"),
        ("assistant", "a red box"),
        ("user", "again?"),
        ("user", "third time"),
    ]
    assert history[2].token_ids == (11, 12, 13)
    assert history[1].images[0].data == image.data and history[1].images[0].sha256 == image.sha256


def test_a_missing_image_file_is_a_one_line_error(store):
    conversation = store.create()
    stored = store.add_message(conversation.id, "user", "look", [picture()]).images[0]
    stored.path.unlink()
    with pytest.raises(StoreError, match="missing"):
        stored_turns(store, conversation.id)


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
