"""``llama-desk ask --chat`` and ``llama-desk chats ...`` end to end, on a throwaway data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import unquote

import pytest

from desktop.cli.main import main
from models.chats.store import ConversationSettings, ConversationStore
from tests.conftest import image_bytes


def run_ask(data_dir, *args, timeout=180):
    env = dict(os.environ, HF_HUB_OFFLINE="1", LLAMA_DESK_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "desktop.cli", "ask", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def contains_run(sequence: list[int], run: list[int]) -> bool:
    return any(sequence[i : i + len(run)] == run for i in range(len(sequence) - len(run) + 1))


@pytest.fixture(scope="module")
def chat(checkpoints, tmp_path_factory):
    """A conversation made by two ``ask`` runs: a new one with an image, then a follow-up."""
    data_dir = tmp_path_factory.mktemp("chat-data")
    picture = tmp_path_factory.mktemp("chat-images") / "red square.png"
    picture.write_bytes(image_bytes(112, 56, "PNG"))
    first = run_ask(
        data_dir,
        "--model",
        checkpoints["4bit"],
        "--chat",
        "new",
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "5",
        "--system",
        "You are terse.",
        "--image",
        picture,
        "What colour is the flamingo in this picture?",
    )
    assert first.returncode == 0, first.stderr
    first = json.loads(first.stdout)
    second = run_ask(
        data_dir, "--model", checkpoints["4bit"], "--chat", first["chat_id"], "--json", "And the pelican?"
    )
    assert second.returncode == 0, second.stderr
    return data_dir, picture, first, json.loads(second.stdout)


@pytest.fixture
def chats(chat, monkeypatch, capsys):
    """Run ``llama-desk chats ...`` in-process on the chat's data folder; (status, stdout, stderr)."""
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(chat[0]))

    def run(*args):
        status = main(["chats", *map(str, args)])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_ask_chat_stores_the_exchange_and_continues_it(chat):
    data_dir, picture, first, second = chat
    assert second["chat_id"] == first["chat_id"]
    # The follow-up's prompt holds the first answer as the very token ids it was generated as.
    assert contains_run(second["prompt_token_ids"], first["token_ids"])
    assert second["prompt_token_ids"][: len(first["prompt_token_ids"])] == first["prompt_token_ids"]
    # --max-tokens, --temperature and --system were stored with the conversation and reused.
    assert second["generation_tokens"] == 5 and second["finish_reason"] == "length"

    with ConversationStore(data_dir) as store:
        conversation = store.conversation(first["chat_id"])
        assert conversation.title == "What colour is the flamingo in this picture?"
        assert (
            conversation.settings.system_prompt,
            conversation.settings.temperature,
            conversation.settings.max_tokens,
        ) == ("You are terse.", 0.0, 5)
        messages = store.messages(conversation.id)
        assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
        assert messages[0].images[0].name == "red square.png"
        assert messages[0].images[0].path.read_bytes() == picture.read_bytes()
        for answer, out in ((messages[1], first), (messages[3], second)):
            assert answer.id == out["message_id"]
            assert answer.text == out["text"] and list(answer.token_ids) == out["token_ids"]
            assert (answer.finish_reason, answer.interrupted) == ("length", False)
            assert answer.model == "tiny-llama4-4bit"
            assert answer.stats["generation_tokens"] == 5
            assert answer.stats["prompt_tokens"] == out["prompt_tokens"]


def test_ask_without_chat_stores_nothing(checkpoints, tmp_path):
    result = run_ask(tmp_path / "data", "--model", checkpoints["4bit"], "--max-tokens", "1", "Hi")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data").exists()


def test_chats_list_show_and_search(chat, chats):
    chat_id = chat[2]["chat_id"]
    status, out, _ = chats("list", "--json")
    assert status == 0
    assert [(c["id"], c["messages"], c["title"]) for c in json.loads(out)] == [
        (chat_id, 4, "What colour is the flamingo in this picture?")
    ]
    status, out, _ = chats("list")
    assert status == 0 and f"{chat_id}  " in out and "4 msgs" in out

    status, out, _ = chats("show", chat_id)
    assert status == 0
    assert out.startswith("# What colour is the flamingo in this picture?")
    assert "## System\n\nYou are terse." in out and "*[image: red square.png]*" in out
    assert "## You\n\nAnd the pelican?" in out and out.count("## Llama (tiny-llama4-4bit)") == 2

    status, out, _ = chats("search", "pelic")
    assert status == 0 and out.startswith(f"{chat_id}#") and "[pelican]" in out
    status, out, _ = chats("search", "flamingo", "--json")
    (hit,) = json.loads(out)
    assert hit["chat_id"] == chat_id and "[flamingo]" in hit["snippet"]
    status, _, err = chats("search", "walrus")
    assert status == 1 and "Nothing found" in err


def test_chats_export_json_then_import_gives_the_same_conversation(chat, chats, tmp_path):
    chat_id = chat[2]["chat_id"]
    path = tmp_path / "exported.json"
    status, _, err = chats("export", chat_id, "--format", "json", "--out", path)
    assert status == 0 and str(path) in err
    status, out, _ = chats("import", path, "--json")
    assert status == 0
    new_id = json.loads(out)["chat_id"]
    try:
        assert new_id != chat_id
        assert chats("show", new_id)[1] == chats("show", chat_id)[1]
        with ConversationStore(chat[0]) as store:
            old, new = store.messages(chat_id), store.messages(new_id)
            assert [(m.role, m.text, m.token_ids, m.stats) for m in new] == [
                (m.role, m.text, m.token_ids, m.stats) for m in old
            ]
            assert new[0].images[0].path.read_bytes() == chat[1].read_bytes()
        # stdout export is the same document
        status, out, _ = chats("export", chat_id, "--format", "json")
        assert json.loads(out) == json.loads(path.read_text())
    finally:
        with ConversationStore(chat[0]) as store:  # leave the module's data folder as it was
            store.delete(new_id)
            store.purge_deleted(older_than_s=0)


def test_chats_export_markdown_then_import_gives_the_messages_back(chat, chats, tmp_path):
    chat_id = chat[2]["chat_id"]
    path = tmp_path / "exported.md"
    status, _, err = chats("export", chat_id, "--format", "md", "--out", path)
    assert status == 0, err
    status, out, err = chats("import", path, "--json")
    assert status == 0, err
    new_id = json.loads(out)["chat_id"]
    try:
        with ConversationStore(chat[0]) as store:
            old, new = store.messages(chat_id), store.messages(new_id)
            assert [(m.role, m.text) for m in new] == [(m.role, m.text) for m in old if m.role != "system"]
            assert new[0].images[0].path.read_bytes() == chat[1].read_bytes()
    finally:
        with ConversationStore(chat[0]) as store:
            store.delete(new_id)
            store.purge_deleted(older_than_s=0)


def test_chats_export_markdown_writes_images_beside_it(chat, chats, tmp_path):
    chat_id = chat[2]["chat_id"]
    status, _, err = chats("export", chat_id, "--format", "md")
    assert status == 2 and "--out" in err and len(err.strip().splitlines()) == 1
    path = tmp_path / "notes" / "flamingo.md"
    status, _, _ = chats("export", chat_id, "--format", "md", "--out", path)
    assert status == 0
    text = path.read_text()
    link = text.split("![red square.png](", 1)[1].split(")", 1)[0]
    assert link.startswith("flamingo_images/")
    assert (path.parent / unquote(link)).read_bytes() == chat[1].read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "999"], "no conversation 999"),
        (["export", "999", "--format", "json"], "no conversation 999"),
        (["import", "{missing}"], "does not exist"),
        (["import", "{not_json}"], "is not JSON"),
        (["import", "{other_json}"], "not a Llama Desk conversation"),
        (["search", "x", "--limit", "0"], "--limit"),
    ],
)
def test_chats_errors_are_one_line(chats, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.json").write_text('{"a": 1}')
    args = [
        a.format(
            missing=tmp_path / "missing.json",
            not_json=tmp_path / "notes.txt",
            other_json=tmp_path / "other.json",
        )
        for a in args
    ]
    status, _, err = chats(*args)
    assert status != 0 and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_ask_with_an_unknown_chat_is_one_line(checkpoints, tmp_path):
    result = run_ask(tmp_path, "--model", checkpoints["4bit"], "--chat", "42", "Hi")
    assert result.returncode == 1 and "no conversation 42" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_damaged_database_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "conversations.sqlite3").write_bytes(b"not a database at all" * 50)
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(tmp_path))
    assert main(["chats", "list"]) == 1
    err = capsys.readouterr().err
    assert "damaged" in err and len(err.strip().splitlines()) == 1


def test_ask_continues_a_chat_whose_stored_settings_are_poisoned(checkpoints, tmp_path):
    """Settings written by hand or older code (text in number columns, out of range) are read as
    the defaults: the chat continues instead of failing inside the sampler."""
    import sqlite3

    data_dir = tmp_path / "data"
    with ConversationStore(data_dir) as store:
        conversation = store.create()
        store.add_message(conversation.id, "user", "Hello")
        store.add_message(conversation.id, "assistant", "Hi", token_ids=[1, 2, 3])
    connection = sqlite3.connect(data_dir / "conversations.sqlite3")
    with connection:
        connection.execute(
            "UPDATE conversations SET temperature = 'hot', top_p = 7, seed = 'x',"
            " context_length = -1, updated = -1e300 WHERE id = ?",
            (conversation.id,),
        )
        connection.execute("UPDATE messages SET token_ids = X'0102', stats = '[[[' WHERE role = 'assistant'")
    connection.close()
    result = run_ask(
        data_dir,
        "--model",
        checkpoints["4bit"],
        "--chat",
        conversation.id,
        "--json",
        "--max-tokens",
        "3",
        "And again?",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chat_id"] == conversation.id
    with ConversationStore(data_dir) as store:
        settings = store.conversation(conversation.id).settings
        assert settings == ConversationSettings(max_tokens=3)
        assert len(store.messages(conversation.id)) == 4


def test_ask_chat_keeps_the_kv_cache_and_delete_removes_it(chat, chats):
    """The follow-up (another process) continued from the first run's saved KV cache."""
    data_dir, _picture, first, second = chat
    assert second["cached_tokens"] >= len(first["prompt_token_ids"]) + len(first["token_ids"]) - 1
    assert second["prompt_tokens"] == len(second["prompt_token_ids"]) - second["cached_tokens"]
    saved = data_dir / "kv-caches" / f"{first['chat_id']}.safetensors"
    assert saved.is_file()
    status, _out, _err = chats("delete", first["chat_id"])
    assert status == 0 and not saved.exists()
