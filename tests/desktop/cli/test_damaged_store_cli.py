"""``llama-desk ask --chat`` and ``chats`` on a damaged, a read-only and a busy conversation store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from desktop.cli.main import main
from models.chats.answer_recorder import AnswerRecorder
from models.chats.store import ConversationStore
from tests.models.chats.test_store import FakeStep, damage_messages_page


def run_cli(data_dir, *args, timeout=180):
    env = dict(os.environ, HF_HUB_OFFLINE="1", LLAMA_DESK_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "desktop.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def conversation_count(data_dir) -> int:
    raw = sqlite3.connect(f"file:{data_dir / 'conversations.sqlite3'}?mode=ro", uri=True)
    try:
        return raw.execute("SELECT count(*) FROM conversations").fetchone()[0]
    finally:
        raw.close()


@pytest.fixture
def damaged(tmp_path):
    data_dir = tmp_path / "data"
    with ConversationStore(data_dir) as store:
        conversation = store.create()
        for n in range(50):
            store.add_message(conversation.id, "user", f"message {n} about zebras " * 10)
    damage_messages_page(data_dir)
    return data_dir


def test_ask_chat_new_on_a_damaged_database_says_so_once_and_adds_nothing(checkpoints, damaged):
    for _ in range(2):
        result = run_cli(
            damaged, "ask", "--model", checkpoints["4bit"], "--chat", "new", "--max-tokens", "2", "Hello?"
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "is damaged" in result.stderr and "llama-desk chats repair" in result.stderr
        assert conversation_count(damaged) == 1  # no empty conversation left by a failed try

    result = run_cli(damaged, "chats", "repair")
    assert result.returncode == 0, result.stderr
    assert "conversations.damaged-" in result.stdout
    kept = [p for p in damaged.iterdir() if p.name.startswith("conversations.damaged-")]
    assert len(kept) == 1 and kept[0].name.endswith(".sqlite3")
    result = run_cli(
        damaged, "ask", "--model", checkpoints["4bit"], "--chat", "new", "--max-tokens", "2", "Hello again?"
    )
    assert result.returncode == 0, result.stderr
    assert conversation_count(damaged) == 1


def test_chats_work_read_only_and_writes_say_why(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    with ConversationStore(data_dir) as store:
        conversation = store.create()
        store.add_message(conversation.id, "user", "Where do puffins nest?")
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(data_dir))
    # Running as root ignores permissions, so the folder's writability is what is faked here.
    monkeypatch.setattr("models.chats.database._writable", lambda path: False, raising=False)
    assert main(["chats", "list"]) == 0
    assert main(["chats", "show", str(conversation.id)]) == 0
    assert main(["chats", "search", "puffins"]) == 0
    out, err = capsys.readouterr()
    assert "Where do puffins nest?" in out and err == ""
    export = tmp_path / "exported.json"
    assert main(["chats", "export", str(conversation.id), "--format", "json", "--out", str(export)]) == 0
    capsys.readouterr()
    assert main(["chats", "import", str(export)]) == 1
    _, err = capsys.readouterr()
    assert "read-only" in err and len(err.strip().splitlines()) == 1


def test_a_second_ask_in_a_busy_conversation_is_refused_then_works(checkpoints, tmp_path):
    data_dir = tmp_path / "data"
    with ConversationStore(data_dir) as store:
        conversation = store.create()
        recorder = AnswerRecorder(store)
        recorder.begin(conversation.id, "A first question, still being answered")

        busy = run_cli(
            data_dir,
            "ask",
            "--model",
            checkpoints["4bit"],
            "--chat",
            conversation.id,
            "--max-tokens",
            "2",
            "A second question",
        )
        assert busy.returncode == 1 and "Traceback" not in busy.stderr
        assert busy.stderr.strip() == (
            f"llama-desk: Conversation {conversation.id} is answering in another "
            "window or command; try again when it finishes."
        )
        assert len(store.messages(conversation.id)) == 2  # nothing interleaved

        recorder.finish(FakeStep("the first answer", finish_reason="stop"))
        after = run_cli(
            data_dir,
            "ask",
            "--model",
            checkpoints["4bit"],
            "--chat",
            conversation.id,
            "--max-tokens",
            "2",
            "A second question",
        )
        assert after.returncode == 0, after.stderr
        assert [m.text for m in store.messages(conversation.id)][:3] == [
            "A first question, still being answered",
            "the first answer",
            "A second question",
        ]


def test_ask_chat_on_a_read_only_folder_says_so_before_loading_the_model(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    ConversationStore(data_dir).close()
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(data_dir))
    monkeypatch.setattr("models.chats.database._writable", lambda path: False, raising=False)
    assert main(["ask", "--model", str(tmp_path / "no-such-model"), "--chat", "new", "Hello?"]) == 1
    _, err = capsys.readouterr()
    assert "is read-only" in err and len(err.strip().splitlines()) == 1
