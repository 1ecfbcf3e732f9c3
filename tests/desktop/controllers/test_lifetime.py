"""Callbacks of objects that are gone are not called (a window closed before its task ended)."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThreadPool

from desktop.lifetime import alive
from desktop.workers.background_task import run_in_background


class _Owner(QObject):
    def __init__(self):
        super().__init__()
        self.calls = []

    def record(self, value):
        self.calls.append(value)
        return value


def _finish_pool_tasks() -> None:
    QThreadPool.globalInstance().waitForDone()
    QCoreApplication.processEvents()  # deliver the relays' queued results


def test_alive_is_false_for_none_and_a_deleted_object(qapp):
    owner = _Owner()
    assert alive(owner) and alive("not a Qt object")
    shiboken6.delete(owner)
    assert not alive(owner) and not alive(None)


def test_background_results_reach_a_live_owner_only(qapp):
    kept, gone = _Owner(), _Owner()
    results = []
    run_in_background(lambda: "kept", results.append, results.append, owner=kept)
    run_in_background(lambda: "gone", results.append, results.append, owner=gone)
    shiboken6.delete(gone)
    _finish_pool_tasks()
    assert results == ["kept"]
