"""The conversation on screen, as a Qt list model.

Holds the turns (text, images and their thumbnails, the exact token ids of answers, how each
answer ended) and hands the engine a list of ``ChatMessage``s. A streaming answer grows
through ``append_text``, which signals ``dataChanged`` for that one row only. Every change
bumps the entry's ``revision``, so a view can tell a changed row from an unchanged one without
comparing text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QImage

from models.inference.images import ChatImage
from models.inference.prompt import ChatMessage


@dataclass
class TranscriptEntry:
    role: str  # "user" | "assistant"
    text: str = ""
    images: tuple[ChatImage, ...] = ()
    thumbnails: tuple[QImage, ...] = ()
    token_ids: tuple[int, ...] | None = None
    streaming: bool = False
    finish_reason: str | None = None
    error: str | None = None
    stats: object | None = field(default=None, repr=False)  # the final GenerationStep
    message_id: int | None = None  # the stored message, once the store has it
    interrupted: bool = False  # cut off by a crash or kill before it finished
    revision: int = field(default=0, compare=False)  # bumped by the model on every change

    def footer(self) -> str:
        """A short line under an answer: how it ended and its speed."""
        if self.role != "assistant":
            return ""
        if self.streaming:
            return "Answering…" if self.text else "Thinking…"
        parts = []
        if self.interrupted and self.finish_reason is None:
            parts.append("Interrupted")
        elif self.finish_reason == "cancelled":
            parts.append("Stopped")
        elif self.finish_reason == "length":
            parts.append("Reached the token limit")
        elif self.finish_reason == "error":
            parts.append(f"Error: {self.error}" if self.error else "Error")
        step = self.stats
        if step is not None and getattr(step, "generation_tokens", 0):
            parts.append(f"{step.generation_tokens} tokens · {step.generation_tps:.1f} tok/s")
        return " · ".join(parts)


def entry_from_stored(message, images=(), thumbnails=()) -> TranscriptEntry:
    """A transcript entry for a ``models.chats.store.StoredMessage``."""
    from types import SimpleNamespace

    stats = SimpleNamespace(**message.stats) if message.stats else None
    return TranscriptEntry(
        role=message.role,
        text=message.text,
        images=tuple(images),
        thumbnails=tuple(thumbnails),
        token_ids=message.token_ids,
        finish_reason=message.finish_reason,
        error=message.error,
        stats=stats,
        message_id=message.id,
        interrupted=message.interrupted,
    )


class TranscriptModel(QAbstractListModel):
    EntryRole = Qt.ItemDataRole.UserRole + 1
    RoleNameRole = Qt.ItemDataRole.UserRole + 2
    FooterRole = Qt.ItemDataRole.UserRole + 3
    RevisionRole = Qt.ItemDataRole.UserRole + 4

    def __init__(self, parent=None):
        super().__init__(parent)
        self._entries: list[TranscriptEntry] = []

    # Qt model interface ------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008,N802
        return 0 if parent.isValid() else len(self._entries)

    def data(self, index, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._entries):
            return None
        entry = self._entries[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.text
        if role == self.EntryRole:
            return entry
        if role == self.RoleNameRole:
            return entry.role
        if role == self.FooterRole:
            return entry.footer()
        if role == self.RevisionRole:
            return entry.revision
        return None

    def roleNames(self):  # noqa: N802
        return {
            Qt.ItemDataRole.DisplayRole: b"text",
            self.EntryRole: b"entry",
            self.RoleNameRole: b"role",
            self.FooterRole: b"footer",
            self.RevisionRole: b"revision",
        }

    # Changes ---------------------------------------------------------------------------------
    def entry(self, row: int) -> TranscriptEntry:
        return self._entries[row]

    def entries(self) -> list[TranscriptEntry]:
        return list(self._entries)

    def _append(self, entry: TranscriptEntry) -> int:
        row = len(self._entries)
        self.beginInsertRows(QModelIndex(), row, row)
        self._entries.append(entry)
        self.endInsertRows()
        return row

    def append_user(self, text: str, images=(), thumbnails=()) -> int:
        return self._append(TranscriptEntry("user", text, tuple(images), tuple(thumbnails)))

    def begin_answer(self) -> int:
        return self._append(TranscriptEntry("assistant", streaming=True))

    def _changed(self, row: int) -> None:
        self._entries[row].revision += 1
        index = self.index(row)
        self.dataChanged.emit(index, index)

    def append_text(self, row: int, text: str) -> None:
        self._entries[row].text += text
        self._changed(row)

    def resume_answer(self, row: int) -> None:
        """Mark an answer as streaming again (it is being continued)."""
        self._entries[row].streaming = True
        self._changed(row)

    def finish_answer(self, row: int, step, continued: bool = False) -> None:
        """Record how an answer ended; a continued answer extends its token ids."""
        entry = self._entries[row]
        entry.streaming = False
        entry.stats = step
        entry.finish_reason = getattr(step, "finish_reason", "error")
        entry.error = getattr(step, "error", None)
        new_ids = tuple(getattr(step, "token_ids", ()) or ())
        if continued:
            # Unknown ids stay unknown: the text is re-tokenized rather than half-described.
            entry.token_ids = None if entry.token_ids is None else entry.token_ids + new_ids
        else:
            entry.token_ids = new_ids or None
        self._changed(row)

    def remove_from(self, row: int) -> None:
        """Drop rows ``row`` to the end (a failed question and its empty answer)."""
        if row >= len(self._entries):
            return
        self.beginRemoveRows(QModelIndex(), row, len(self._entries) - 1)
        del self._entries[row:]
        self.endRemoveRows()

    def clear(self) -> None:
        self.set_entries([])

    def set_entries(self, entries: list[TranscriptEntry]) -> None:
        """Show another conversation (one reset, not row by row)."""
        self.beginResetModel()
        self._entries = list(entries)
        self.endResetModel()

    def row_of_message(self, message_id: int) -> int | None:
        for row, entry in enumerate(self._entries):
            if entry.message_id == message_id:
                return row
        return None

    def messages(self, system_prompt: str | None = None) -> list[ChatMessage]:
        """The finished turns as engine messages (the streaming answer is left out)."""
        out = [ChatMessage("system", system_prompt)] if system_prompt else []
        for entry in self._entries:
            if entry.streaming or entry.role == "system":
                continue
            if entry.role == "assistant":
                if entry.finish_reason == "error" and not entry.text:
                    continue
                out.append(ChatMessage("assistant", entry.text, token_ids=entry.token_ids))
            else:
                out.append(ChatMessage("user", entry.text, entry.images))
        return out
