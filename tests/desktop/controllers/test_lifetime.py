"""Callbacks of objects that are gone are not called (a window closed before its task ended)."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QThreadPool

from desktop.lifetime import alive, weak_callback
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


def test_a_weak_callback_calls_a_live_object_and_skips_a_deleted_one(qapp):
    owner = _Owner()
    callback = weak_callback(owner.record)
    assert callback(1) == 1 and owner.calls == [1]
    calls = owner.calls
    shiboken6.delete(owner)
    assert not alive(owner)
    assert callback(2) is None and calls == [1]


def test_a_weak_callback_does_not_keep_its_object(qapp):
    callback = weak_callback(_Owner().record)
    assert callback(1) is None  # the owner was garbage-collected


def test_background_results_reach_a_live_owner_only(qapp):
    kept, gone = _Owner(), _Owner()
    results = []
    run_in_background(lambda: "kept", results.append, results.append, owner=kept)
    run_in_background(lambda: "gone", results.append, results.append, owner=gone)
    shiboken6.delete(gone)
    _finish_pool_tasks()
    assert results == ["kept"]
