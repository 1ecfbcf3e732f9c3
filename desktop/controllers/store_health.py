"""The conversation database's health: opening it (or a temporary one when it can't open),
SQLite's quick check at start on the thread pool, and moving a damaged file aside on request.

A storage failure becomes a ``Notice`` (``desktop.notices``), under the source it came from (the
store itself unless said); one that says the database is damaged carries the "Move Aside and
Start New" action, and what moving it aside says replaces it. The window only shows notices.

Signals:
    notice(object): a ``Notice`` for the person.
    started_new(): the damaged database was moved aside and an empty one is open.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop import notices
from desktop.notices import Notice
from desktop.workers.background_task import run_in_background
from models.chats.database import DatabaseDamaged, check_database, move_aside
from models.chats.store import ConversationStore, StoreError

DAMAGE_ACTION = "Move Aside and Start New"
_DAMAGE_MARK = " is damaged ("  # how models.chats.database words DatabaseDamaged


class StoreHealth(QObject):
    notice = Signal(object)
    started_new = Signal()

    def __init__(
        self, data_folder: str | Path | None, busy: Callable[[], bool], parent: QObject | None = None
    ):
        """``busy()``: True while an answer is being written (the database can't move then)."""
        super().__init__(parent)
        self._busy = busy
        self._damaged_database: Path | None = None
        self._temporary_folder: tempfile.TemporaryDirectory | None = None
        self.store, self.problem = self._open(data_folder)

    def _open(self, data_folder: str | Path | None) -> tuple[ConversationStore, str | None]:
        """The conversation store, or a temporary one (and why) when the real one can't open."""
        try:
            return ConversationStore(data_folder), None
        except (StoreError, OSError) as exc:
            if isinstance(exc, DatabaseDamaged):
                self._damaged_database = exc.path
            self._temporary_folder = tempfile.TemporaryDirectory(prefix="llama-desk-")
            return (
                ConversationStore(self._temporary_folder.name),
                f"Conversations cannot be saved this session: {exc}",
            )

    def check(self) -> None:
        """SQLite's quick check of the database, on the thread pool; a ``notice`` if damaged."""
        path = self.store.db.path
        run_in_background(lambda: check_database(path), self._on_checked, lambda _message: None, owner=self)

    def _on_checked(self, damage: DatabaseDamaged | None) -> None:
        if damage is not None:
            self.report(str(damage))

    def report(self, message: str, source: str = notices.STORE) -> None:
        """A storage failure as ``source``'s notice; a damaged database's is the store's, with
        the way out."""
        if _DAMAGE_MARK in message:
            self.notice.emit(
                Notice(
                    notices.STORE,
                    f"{message} Move it aside to start a new one; the old file is kept.",
                    DAMAGE_ACTION,
                    self.move_aside,
                )
            )
        else:
            self.notice.emit(Notice(source, message))

    def move_aside(self) -> None:
        """Rename the damaged database (kept) and start an empty one."""
        if self._damaged_database is not None:  # this session uses a temporary store
            try:
                moved = move_aside(self._damaged_database)
            except StoreError as exc:
                self.notice.emit(Notice(notices.STORE, str(exc)))
                return
            self._damaged_database = None
            self.notice.emit(
                Notice(
                    notices.STORE,
                    f"The damaged database was moved to {moved}. Restart Llama Desk to start a new one.",
                )
            )
            return
        if self._busy():
            self.notice.emit(
                Notice(
                    notices.STORE,
                    "Stop the current answer first, then move the damaged database aside.",
                    DAMAGE_ACTION,
                    self.move_aside,
                )
            )
            return
        try:
            moved = self.store.db.move_aside_and_start_new()
        except StoreError as exc:
            self.notice.emit(Notice(notices.STORE, str(exc)))
            return
        self.started_new.emit()
        self.notice.emit(
            Notice(notices.STORE, f"The damaged database was moved to {moved} (kept); a new one has started.")
        )
