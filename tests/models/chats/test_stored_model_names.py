"""An answer stored with a snapshot's commit as its author (before models were named by repo)
reads, and exports, as the repo's name while the hub cache holds that snapshot."""

from __future__ import annotations

from models.chats.export import export_json, export_markdown
from tests.support.fake_hub_repo import COMMIT, SCOUT_NAME, cache_snapshot


def test_an_answer_stored_under_a_commit_reads_as_the_repo_name(store, checkpoints, tmp_path):
    cache_snapshot(checkpoints["4bit"])
    conversation = store.create()
    store.add_message(conversation.id, "user", "Hello")
    store.add_message(conversation.id, "assistant", "Hi", model=COMMIT)
    store.add_message(conversation.id, "assistant", "Again", model="f" * 40)  # not in the cache
    assert [m.model for m in store.messages(conversation.id)] == [None, SCOUT_NAME, "f" * 40]

    markdown = export_markdown(store, conversation.id, tmp_path / "chat.md").read_text(encoding="utf-8")
    assert f"## Llama ({SCOUT_NAME})" in markdown and COMMIT not in markdown
    assert [m["model"] for m in export_json(store, conversation.id)["messages"]][1] == SCOUT_NAME
