"""run_in_background: results come back on the UI thread, and each relay is deleted there."""

from __future__ import annotations

import threading

from PySide6.QtCore import QCoreApplication, QEvent, QObject

from desktop.workers import background_task
from desktop.workers.background_task import run_in_background


def _relays() -> list[QObject]:
    app = QCoreApplication.instance()
    return [child for child in app.children() if type(child).__name__ == "_Relay"]


def test_many_results_arrive_on_the_ui_thread_and_their_relays_are_deleted(qtbot):
    before = len(_relays())  # earlier tests' relays may still be there, and go meanwhile
    ui_thread = threading.get_ident()
    results: list[tuple[int, int]] = []
    errors: list[str] = []

    def work(n: int) -> int:
        if n % 50 == 7:
            raise ValueError(f"bad {n}")
        return n * n

    for n in range(300):
        run_in_background(
            lambda n=n: work(n),
            lambda value: results.append((value, threading.get_ident())),
            errors.append,
        )
    qtbot.waitUntil(lambda: len(results) + len(errors) == 300, timeout=30_000)
    assert sorted(v for v, _ in results) == sorted(n * n for n in range(300) if n % 50 != 7)
    assert {thread for _, thread in results} == {ui_thread}
    assert sorted(errors) == sorted(f"bad {n}" for n in range(300) if n % 50 == 7)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert len(_relays()) <= before
    assert not background_task._live


def test_a_task_whose_owner_was_deleted_reports_nothing(qtbot):
    owner = QObject()
    gate = threading.Event()
    called: list[object] = []
    run_in_background(gate.wait, called.append, called.append, owner=owner)
    owner.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gate.set()
    qtbot.waitUntil(lambda: not background_task._live, timeout=10_000)
    assert called == []
