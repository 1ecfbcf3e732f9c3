"""Searching stored conversations: FTS5 with any text typed, snippets from a bounded window."""

from __future__ import annotations

import pytest

from models.chats.answer_recorder import AnswerRecorder


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
