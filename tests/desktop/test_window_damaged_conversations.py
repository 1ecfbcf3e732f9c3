"""The window with hand-damaged rows in its database: it starts, lists them as damaged, opens
and deletes them. No model is loaded."""

from __future__ import annotations

import sqlite3

import pytest

from desktop import notices
from desktop.widgets.sidebar import _when
from models.chats.database import DATABASE_NAME
from models.chats.store import ConversationSettings, ConversationStore
from tests.support.window_helpers import make_window

DAMAGED_TITLE = "Damaged conversation"


@pytest.fixture
def data(tmp_path):
    """A data folder with a sound conversation and one whose times and settings are poisoned."""
    folder = tmp_path / "data"
    with ConversationStore(folder) as store:
        good = store.create(settings=ConversationSettings(temperature=0.3))
        store.add_message(good.id, "user", "A sound question")
        bad = store.create()
        store.add_message(bad.id, "user", "A question in a damaged row")
        store.add_message(bad.id, "assistant", "An answer")
    connection = sqlite3.connect(folder / DATABASE_NAME)
    with connection:
        connection.execute(
            "UPDATE conversations SET updated = -1e300, created = 1e999, temperature = 'hot',"
            " seed = 'x' WHERE id = ?",
            (bad.id,),
        )
        connection.execute(
            "UPDATE messages SET stats = '{{{', token_ids = X'0102' WHERE conversation_id = ?", (bad.id,)
        )
    connection.close()
    return folder, good.id, bad.id


@pytest.mark.parametrize("timestamp", [-1e300, 1e300, float("nan"), float("inf"), float("-inf")])
def test_impossible_times_are_words_not_exceptions(timestamp):
    assert _when(timestamp, now=1_800_000_000.0) in ("date unknown", "just now")


def test_the_window_starts_lists_opens_and_deletes_a_damaged_row(qtbot, tmp_path, data):
    folder, good, bad = data
    window = make_window(qtbot, tmp_path, data=folder)
    rows = {row.conversation_id: row for row in window.sidebar.model.rows()}
    assert rows[good].title == "A sound question"
    assert rows[bad].title == DAMAGED_TITLE and "right-click to delete" in rows[bad].detail

    with qtbot.waitSignal(window.conversation_opened, timeout=10_000):
        window.sidebar.view.clicked.emit(window.sidebar.model.index_of(bad))
    assert window.conversations.current_id == bad
    assert [window.transcript_model.entry(i).text for i in range(window.transcript_model.rowCount())] == [
        "A question in a damaged row",
        "An answer",
    ]
    assert window.conversations.settings == ConversationSettings()  # poisoned values read as defaults

    window.delete_conversation(bad)
    assert [row.conversation_id for row in window.sidebar.model.rows()] == [good]
    assert f"Deleted “{DAMAGED_TITLE}”" in window.notice.text()
    window.close()


@pytest.mark.parametrize(
    "text, reason",
    [
        (
            '{"format": "llama-desk-conversation", "version": 1, "settings": {"temperature": "hot"}}',
            "settings.temperature",
        ),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_poisoned_import_is_a_notice_in_the_window(qtbot, tmp_path, text, reason):
    window = make_window(qtbot, tmp_path)
    path = tmp_path / "poisoned.json"
    path.write_text(text)
    with qtbot.waitSignal(window.conversations.notice, timeout=10_000) as blocker:
        window.conversations.import_file(str(path))
    message, source = blocker.args
    assert source == notices.IMPORT
    assert message.startswith("Import failed:") and reason in message and "\n" not in message
    assert window.sidebar.model.rows() == []
    window.close()
