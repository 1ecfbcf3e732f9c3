"""The sidebar's search runs on the thread pool and shows only the latest query's hits."""

from __future__ import annotations

import threading

import pytest

import desktop.widgets.sidebar as sidebar_module
from desktop.widgets.sidebar import Sidebar
from models.chats.store import ConversationStore


@pytest.fixture
def store(tmp_path):
    with ConversationStore(tmp_path / "data") as opened:
        for question in ("Where do puffins nest?", "How do penguins swim?"):
            conversation = opened.create()
            opened.add_message(conversation.id, "user", question)
        yield opened


def test_search_runs_off_the_ui_thread(qtbot, store, monkeypatch):
    threads: list[threading.Thread] = []
    real_search = getattr(sidebar_module, "search_messages", None)

    def recording_search(folder, text):
        threads.append(threading.current_thread())
        return real_search(folder, text)

    monkeypatch.setattr(sidebar_module, "search_messages", recording_search, raising=False)
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.search.setText("puffins")
    qtbot.waitUntil(lambda: sidebar.model.searching and sidebar.model.rowCount() == 1, timeout=5_000)
    assert "«puffins»" in sidebar.model.row(0).detail
    assert threads and all(t is not threading.main_thread() for t in threads)


def test_a_slow_older_search_does_not_replace_a_newer_one(qtbot, store, monkeypatch):
    release = threading.Event()
    real_search = sidebar_module.search_messages

    def search(folder, text):
        if text == "puffins":  # the first query is slow: its hits arrive last
            release.wait(10)
        return real_search(folder, text)

    monkeypatch.setattr(sidebar_module, "search_messages", search)
    delivered: list[int] = []
    real_done = Sidebar._on_search_done

    def on_search_done(self, serial, hits):
        real_done(self, serial, hits)
        delivered.append(serial)

    monkeypatch.setattr(Sidebar, "_on_search_done", on_search_done)
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    sidebar.search.blockSignals(True)  # no typing delay: each refresh() is one query
    sidebar.search.setText("puffins")
    sidebar.refresh()
    sidebar.search.setText("penguins")
    sidebar.refresh()
    qtbot.waitUntil(lambda: len(delivered) == 1, timeout=5_000)
    release.set()
    qtbot.waitUntil(lambda: len(delivered) == 2, timeout=5_000)  # the stale result came, and was dropped
    assert ["«penguins»" in r.detail for r in sidebar.model.rows()] == [True]


def search_for(qtbot, sidebar, text, hits):
    sidebar.search.setText(text)
    qtbot.waitUntil(lambda: sidebar.model.searching and sidebar.model.rowCount() == hits, timeout=5_000)


def test_esc_in_the_search_box_clears_the_search(qtbot, store):
    from PySide6.QtCore import Qt

    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    search_for(qtbot, sidebar, "puffins", 1)
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Escape)
    assert sidebar.search.text() == ""
    assert not sidebar.model.searching and sidebar.model.rowCount() == 2


def test_a_conversation_made_current_outside_the_hits_is_not_hidden_by_the_search(qtbot, store):
    sidebar = Sidebar(store)
    qtbot.addWidget(sidebar)
    search_for(qtbot, sidebar, "puffins", 1)
    puffins = sidebar.model.row(0).conversation_id
    sidebar.set_current(puffins)  # a hit opened: the search stays
    assert sidebar.search.text() == "puffins" and sidebar.model.searching

    started = store.create()  # a chat just started, its first question stored
    store.add_message(started.id, "user", "Hello there")
    sidebar.set_current(started.id)
    assert sidebar.search.text() == ""
    assert not sidebar.model.searching and sidebar.model.rowCount() == 3
    assert sidebar.model.row(sidebar.view.currentIndex().row()).conversation_id == started.id
