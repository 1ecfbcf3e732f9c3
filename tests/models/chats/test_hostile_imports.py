"""Poisoned imports, hand-damaged rows and failing exports: each is one line, none stops the app.

No model: the store and ``llama-desk chats`` run in-process on the test's private data folder.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sqlite3

import pytest

from desktop.cli.main import main
from models.chats.conversation_session import stored_turns
from models.chats.database import DATABASE_NAME, data_dir
from models.chats.export import export_json, import_json
from models.chats.store import ConversationSettings, ConversationStore
from models.chats.turns import chat_messages
from models.inference.images import load_image_bytes
from tests.conftest import image_bytes

DAMAGED_TITLE = "Damaged conversation"


@pytest.fixture
def chats(capsys):
    """Run ``llama-desk chats ...`` in-process; (status, stdout, stderr)."""

    def run(*args):
        status = main(["chats", *map(str, args)])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


def saved_conversation() -> int:
    """A conversation with a question, an answer and an image, in the data folder; its id."""
    with ConversationStore() as store:
        conversation = store.create(settings=ConversationSettings(system_prompt="Be exact.", temperature=0.2))
        picture = load_image_bytes(image_bytes(40, 30), "red.png")
        store.add_message(conversation.id, "user", "What is red?", [picture])
        store.add_message(
            conversation.id,
            "assistant",
            "A colour.",
            model="tiny",
            finish_reason="stop",
            stats={"generation_tokens": 3.0},
            token_ids=[5, 6, 7],
        )
        return conversation.id


def exported(conversation_id: int) -> dict:
    with ConversationStore() as store:
        return json.loads(json.dumps(export_json(store, conversation_id)))


def poke(sql: str, *parameters) -> None:
    """Change the database behind the store's back, as older code or a hand edit could."""
    connection = sqlite3.connect(data_dir() / DATABASE_NAME)
    with connection:
        connection.execute(sql, parameters)
    connection.close()


# -- import: refused with one line naming the field --------------------------------------------------


def settings(**values):
    return lambda d: d["settings"].update(values)


def message(index, **values):
    return lambda d: d["messages"][index].update(values)


@pytest.mark.parametrize(
    "damage, names",
    [
        (settings(temperature="hot"), "settings.temperature"),
        (settings(temperature=float("nan")), "settings.temperature"),
        (settings(temperature=1e300), "settings.temperature"),
        (settings(temperature=-0.5), "settings.temperature"),
        (settings(temperature=10**400), "settings.temperature"),
        (settings(top_p=0), "settings.top_p"),
        (settings(seed="42"), "settings.seed"),
        (settings(seed=2**64), "settings.seed"),
        (settings(seed=1.5), "settings.seed"),
        (settings(max_tokens=-3), "settings.max_tokens"),
        (settings(max_tokens=True), "settings.max_tokens"),
        (settings(context_length=10**12), "settings.context_length"),
        (settings(system_prompt=["be", "nice"]), "settings.system_prompt"),
        (lambda d: d.update(settings="warm"), "settings"),
        (lambda d: d.update(title={"a": 1}), "title"),
        (lambda d: d.update(messages={"role": "user"}), "messages"),
        (lambda d: d["messages"].append("hello"), "messages[2]"),
        (message(0, role=7), "messages[0].role"),
        (message(0, text=None), "messages[0].text"),
        (message(0, text="x" * 2_000_001), "messages[0].text"),
        (message(0, images=[{"sha256": "0" * 64}] * 6), "images"),
        (message(1, token_ids=[1, -2]), "messages[1].token_ids"),
        (message(1, token_ids="1 2 3"), "messages[1].token_ids"),
        (lambda d: d["images"][0].update(sha256="../../etc/passwd"), "images[0].sha256"),
        (lambda d: d.update(version="1"), "version"),
    ],
)
def test_a_poisoned_import_is_refused_in_one_line_naming_the_field(chats, tmp_path, damage, names):
    document = exported(saved_conversation())
    damage(document)
    path = tmp_path / "poisoned.json"
    path.write_text(json.dumps(document))
    status, _, err = chats("import", path)
    assert status == 1 and one_line(err) and names in err
    status, out, _ = chats("list", "--json")
    assert status == 0 and len(json.loads(out)) == 1  # nothing stored, and the list still works


@pytest.mark.parametrize(
    "text, reason",
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"format": "llama-desk-conversation", "seed": ' + "9" * 5000 + "}", "not a conversation"),
    ],
)
def test_json_the_parser_cannot_take_is_one_line(chats, tmp_path, text, reason):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    status, _, err = chats("import", path)
    assert status == 1 and one_line(err) and reason in err


def test_an_oversized_file_is_refused_before_it_is_read(chats, tmp_path, monkeypatch):
    monkeypatch.setattr("models.chats.export_format.MAX_IMPORT_BYTES", 1000)
    path = tmp_path / "big.json"
    path.write_text(" " * 1001)
    status, _, err = chats("import", path)
    assert status == 1 and one_line(err) and "larger than" in err


# -- import: clamped, and the app keeps working -------------------------------------------------------


@pytest.mark.parametrize("when", [-1e300, 1e300, float("nan"), float("inf"), "yesterday", None, True])
def test_impossible_times_become_now_and_the_list_still_works(chats, tmp_path, when):
    document = exported(saved_conversation())
    document["updated"] = document["created"] = when
    document["messages"][0]["created"] = when
    path = tmp_path / "times.json"
    path.write_text(json.dumps(document))  # NaN and Infinity are written as the bare words
    with ConversationStore() as store:
        store.clock = lambda: 1_800_000_000.0
        new_id = import_json(store, json.loads(path.read_text()))
        conversation = store.conversation(new_id)
        assert (conversation.created, conversation.updated) == (1_800_000_000.0, 1_800_000_000.0)
        assert store.messages(new_id)[0].created == 1_800_000_000.0
        assert not conversation.damaged
    status, out, err = chats("list")
    assert status == 0 and err == "" and out.count("msgs") == 2


def test_null_settings_mean_the_defaults_and_metadata_is_cleaned(tmp_path):
    document = exported(saved_conversation())
    document["settings"] = {"system_prompt": None, "temperature": None, "seed": 7, "unknown": "kept out"}
    document["title"] = "  A   long\n title " + "word " * 100
    answer = document["messages"][1]
    answer.update(stats={"deep": [[[1]]]}, finish_reason="exploded", interrupted="yes", model=["x"])
    document["messages"][0]["stats"] = {"huge": 10**400}
    document["messages"][0]["token_ids"] = [1, 2, 3]  # a question carries none
    with ConversationStore() as store:
        new_id = import_json(store, document)
        conversation = store.conversation(new_id)
        assert conversation.settings == ConversationSettings(seed=7)
        assert len(conversation.title) <= 200 and "\n" not in conversation.title
        question, imported = store.messages(new_id)
        assert (question.token_ids, question.stats) == (None, None)
        assert (imported.stats, imported.finish_reason, imported.interrupted, imported.model) == (
            None,
            None,
            False,
            None,
        )
        assert imported.token_ids == (5, 6, 7)


# -- stored rows that older code or a hand edit left behind -------------------------------------------


@pytest.mark.parametrize(
    "column, value",
    [
        ("updated", -1e300),
        ("updated", 1e300),
        ("updated", 1e999),
        ("created", "garbage"),
        ("updated", b"\x00\x01"),
        ("title", b"\xff\xfe"),
    ],
)
def test_a_damaged_row_is_listed_as_damaged_and_can_be_deleted(chats, column, value):
    good = saved_conversation()
    bad = saved_conversation()
    poke(f"UPDATE conversations SET {column} = ? WHERE id = ?", value, bad)
    status, out, err = chats("list")
    assert status == 0 and err == ""
    assert DAMAGED_TITLE in out and f"chats delete {bad}" in out and "What is red?" in out
    status, out, _ = chats("list", "--json")
    listed = {c["id"]: c for c in json.loads(out)}
    assert listed[bad]["title"] == DAMAGED_TITLE and listed[bad]["damaged"]
    assert "damaged" not in listed[good] and all(math.isfinite(c["updated"]) for c in listed.values())
    poke("UPDATE messages SET created = 'garbage' WHERE conversation_id = ?", bad)
    status, out, _ = chats("search", "red", "--json")
    assert status == 0 and {h["chat_id"] for h in json.loads(out)} == {good, bad}
    status, out, _ = chats("show", bad)
    assert status == 0 and out.startswith(f"# {DAMAGED_TITLE}") and "What is red?" in out

    status, _, err = chats("delete", bad)
    assert status == 0 and one_line(err) and f"Deleted conversation {bad}" in err
    status, out, _ = chats("list", "--json")
    assert [c["id"] for c in json.loads(out)] == [good]


def test_poisoned_settings_and_metadata_are_read_as_defaults(chats):
    conversation_id = saved_conversation()
    poke(
        "UPDATE conversations SET temperature = 'hot', top_p = 7, max_tokens = -5, seed = 'x',"
        " context_length = 1e999, system_prompt = X'FF' WHERE id = ?",
        conversation_id,
    )
    poke(
        "UPDATE messages SET stats = ?, token_ids = X'010203', created = -1e300, model = X'00',"
        " finish_reason = 'boom' WHERE role = 'assistant'",
        "[" * 100_000,
    )
    with ConversationStore() as store:
        conversation = store.conversation(conversation_id)
        assert conversation.settings == ConversationSettings()
        assert not conversation.damaged
        settings = conversation.settings.generation_settings()
        assert (settings.temperature, settings.top_p, settings.max_tokens) == (0.6, 0.9, 1024)
        answer = store.messages(conversation_id)[1]
        assert (answer.stats, answer.token_ids, answer.created, answer.model, answer.finish_reason) == (
            None,
            None,
            0.0,
            None,
            None,
        )
        assert [m.role for m in chat_messages(stored_turns(store, conversation_id))] == ["user", "assistant"]
    status, out, _ = chats("show", conversation_id)
    assert status == 0 and "A colour." in out
    status, out, _ = chats("export", conversation_id, "--format", "json")
    assert status == 0 and json.loads(out)["messages"][1]["token_ids"] is None


# -- export over an existing file ---------------------------------------------------------------------


def failing_after_half(real_write=os.write):
    """``os.write`` that writes half of the first chunk and then finds the disk full."""
    calls = []

    def write(fd, data):
        if calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        calls.append(fd)
        return real_write(fd, bytes(data[: max(1, len(data) // 2)]))

    return write


@pytest.mark.parametrize("fmt", ["json", "md"])
def test_an_export_that_fails_mid_write_keeps_the_old_file(chats, tmp_path, monkeypatch, fmt):
    conversation_id = saved_conversation()
    target = tmp_path / f"old.{fmt}"
    target.write_text("the previous export\n")
    with monkeypatch.context() as patch:
        patch.setattr(os, "write", failing_after_half())
        status, _, err = chats("export", conversation_id, "--format", fmt, "--out", target)
    assert status == 1 and one_line(err) and "disk is full" in err and str(tmp_path) in err
    assert target.read_text() == "the previous export\n"
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []

    status, _, _ = chats("export", conversation_id, "--format", fmt, "--out", target)
    assert status == 0 and "What is red?" in target.read_text()
