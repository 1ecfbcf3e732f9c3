"""Run a plain function on Qt's thread pool and get its result back on the UI thread.

For disk work the window must not wait on: opening a conversation (its images), exporting,
importing. ``run_in_background(fn, on_done, on_error)`` calls ``fn()`` in a pool thread, then
``on_done(result)`` or ``on_error(message)`` in the thread that called it. With ``owner``, the
callbacks are skipped if that object was deleted before the task finished (a window closed
while its task still ran).

The relay that carries the result back is a QObject of the calling thread. It is parented to the
application (when called on its thread) and deleted with ``deleteLater`` there once it reported,
so the pool thread, which may drop the last Python reference to it, never destroys a QObject
that lives on another thread.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from desktop.lifetime import alive


class _Relay(QObject):
    """Lives on the caller's thread; its slots receive the pool thread's signals (queued)."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(
        self, on_done: Callable[[Any], None], on_error: Callable[[str], None], owner: QObject | None
    ):
        super().__init__(_parent_on_this_thread())
        self._on_done_callback, self._on_error_callback = on_done, on_error
        self._owner = weakref.ref(owner) if owner is not None else None
        self.done.connect(self._on_done)
        self.failed.connect(self._on_failed)

    def _release(self) -> None:
        """Reported: the relay goes, on its own thread (see the module docstring)."""
        _live.discard(self)
        if self.parent() is not None:
            self.deleteLater()

    def _owner_gone(self) -> bool:
        return self._owner is not None and not alive(self._owner())

    @Slot(object)
    def _on_done(self, result: Any) -> None:
        self._release()
        if not self._owner_gone():
            self._on_done_callback(result)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._release()
        if not self._owner_gone():
            self._on_error_callback(message)


def _parent_on_this_thread() -> QObject | None:
    app = QCoreApplication.instance()
    if app is not None and app.thread() == QThread.currentThread():
        return app
    return None


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay):
        super().__init__()
        self._fn, self._relay = fn, relay

    def run(self) -> None:
        try:
            try:
                result = self._fn()
            except Exception as exc:  # noqa: BLE001 - reported to the UI as a message
                self._relay.failed.emit(str(exc) or exc.__class__.__name__)
            else:
                self._relay.done.emit(result)
        except RuntimeError:  # the relay is gone: the application is quitting, nobody waits
            pass


_live: set[_Relay] = set()  # keeps each relay alive until its task reported


def run_in_background(
    fn: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[str], None],
    owner: QObject | None = None,
) -> None:
    relay = _Relay(on_done, on_error, owner)
    _live.add(relay)
    QThreadPool.globalInstance().start(_Task(fn, relay))
