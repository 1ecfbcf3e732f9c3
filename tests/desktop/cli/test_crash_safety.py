"""A killed ``llama-desk ask --chat`` leaves a sound database with the question and the partial answer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from models.chats.store import ConversationStore

POLL_LIMIT_S = 60.0


def partial_answer(database) -> str | None:
    """The streamed answer's text once another process has committed some of it, else None."""
    if not database.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "SELECT text FROM messages WHERE role = 'assistant' AND text != '' ORDER BY id DESC LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created or not migrated yet
        return None
    return row[0] if row else None


def test_sigkill_mid_answer_keeps_the_question_and_the_partial_answer(checkpoints, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", LLAMA_DESK_DATA_DIR=str(tmp_path))
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "desktop.cli",
            "ask",
            "--model",
            str(checkpoints["4bit"]),
            "--chat",
            "new",
            "--temperature",
            "0",
            "--max-tokens",
            "1000000",
            "Tell me the longest story you know.",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    database = tmp_path / "conversations.sqlite3"
    try:
        deadline = time.monotonic() + POLL_LIMIT_S
        seen = None
        while seen is None and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.1)  # polling another process's database: there is no event to wait on
            seen = partial_answer(database)
        assert child.poll() is None, f"the answer ended before it could be killed: {child.stderr.read()}"
        assert seen, "no partial answer was committed in time"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()

    raw = sqlite3.connect(database)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
    with ConversationStore(tmp_path) as store:
        (conversation,) = store.list_conversations()
        assert conversation.title == "Tell me the longest story you know."
        question, answer = store.messages(conversation.id)
        assert (question.role, question.text) == ("user", "Tell me the longest story you know.")
        assert answer.role == "assistant" and answer.interrupted and answer.finish_reason is None
        assert answer.text.startswith(seen)  # what was seen, or more, never less
        assert answer.can_continue and answer.model == "tiny-llama4-4bit"

    # The conversation goes on from the cut-off answer.
    follow_up = subprocess.run(
        [
            sys.executable,
            "-m",
            "desktop.cli",
            "ask",
            "--model",
            str(checkpoints["4bit"]),
            "--chat",
            str(conversation.id),
            "--json",
            "--max-tokens",
            "2",
            "Go on.",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert follow_up.returncode == 0, follow_up.stderr
    assert json.loads(follow_up.stdout)["chat_id"] == conversation.id
    with ConversationStore(tmp_path) as store:
        messages = store.messages(conversation.id)
        assert [m.text for m in messages[:3]] == [question.text, answer.text, "Go on."]
        assert not messages[3].interrupted and messages[3].finish_reason == "length"
