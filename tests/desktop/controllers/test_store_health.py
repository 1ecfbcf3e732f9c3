"""The damaged-database notice and its way out, without a window."""

from __future__ import annotations

from desktop.controllers.store_health import DAMAGE_ACTION, StoreHealth
from desktop.notices import SEARCH, STORE


def test_a_damaged_database_notice_carries_the_way_out(qtbot, tmp_path):
    health = StoreHealth(tmp_path / "data", busy=lambda: False)
    notices = []
    health.notice.connect(notices.append)
    health.report("The conversation database /x/conversations.sqlite3 is damaged (malformed).")
    health.report("The disk is full.")
    health.report("The search failed: no such table.", SEARCH)
    damaged, plain, search = notices
    assert damaged.action_label == DAMAGE_ACTION and damaged.action == health.move_aside
    assert "the old file is kept" in damaged.text
    assert plain.action_label is None and plain.text == "The disk is full."
    assert (damaged.source, plain.source, search.source) == (STORE, STORE, SEARCH)
    health.store.close()


def test_moving_aside_waits_for_the_answer_and_then_starts_new(qtbot, tmp_path):
    busy = [True]
    health = StoreHealth(tmp_path / "data", busy=lambda: busy[0])
    notices, started = [], []
    health.notice.connect(notices.append)
    health.started_new.connect(lambda: started.append(True))
    health.move_aside()
    assert "Stop the current answer first" in notices[-1].text and not started
    busy[0] = False
    health.move_aside()
    assert started == [True] and "a new one has started" in notices[-1].text
    health.store.close()
