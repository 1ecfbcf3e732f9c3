"""The open conversation as a Qt list model: a view of its ``ConversationSession``.

The session (``models.chats.conversation_session``) owns the turns; this model follows its
events: a reset, one inserted row, one changed row (``dataChanged`` for that row only, so
streaming costs the same whatever the conversation's length), removed rows. Each row is a
``TranscriptEntry``: the turn's fields, the thumbnails (``QImage``, kept by content hash) of
its images and of its PDFs' pages that went as images, and a ``revision`` bumped on every
change, so a view can tell a changed row from an unchanged one without comparing text. For
screen readers a row's ``Qt.AccessibleTextRole`` is its plain text with who wrote it ("You, 2
images, 1 PDF: …", "Llama: …", Markdown stripped) and its ``AccessibleDescriptionRole`` the
footer.

The model never changes a row on its own: what is asked and answered goes through the session
(``ConversationSession.ask``, ``apply``, …); ``set_entries`` and ``clear`` forward to it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QImage

from desktop.widgets.markdown_view import plain_text
from models.chats.conversation_session import (
    ConversationSession,
    SessionEvent,
    TurnAdded,
    TurnChanged,
    TurnsRemoved,
    TurnsReset,
)
from models.chats.turns import AnswerStats, Turn
from models.documents.chat_documents import ChatDocument
from models.inference.images import ChatImage


@dataclass
class TranscriptEntry:
    """One row as the view draws it (built from a ``Turn``; changing it changes nothing)."""

    role: str  # "user" | "assistant"
    text: str = ""
    images: tuple[ChatImage, ...] = ()
    thumbnails: tuple[QImage, ...] = ()
    token_ids: tuple[int, ...] | None = None
    streaming: bool = False
    finish_reason: str | None = None
    error: str | None = None
    stats: AnswerStats | None = field(default=None, repr=False)
    message_id: int | None = None  # the stored message, once the store has it
    interrupted: bool = False  # cut off by a crash or kill before it finished
    revision: int = field(default=0, compare=False)  # bumped by the model on every change
    documents: tuple[ChatDocument, ...] = ()  # a question's PDFs
    document_thumbnails: tuple[QImage, ...] = ()  # one per page of theirs that went as an image

    @classmethod
    def from_turn(
        cls,
        turn: Turn,
        thumbnails: tuple[QImage, ...] = (),
        revision: int = 0,
        document_thumbnails: tuple[QImage, ...] = (),
    ) -> TranscriptEntry:
        return cls(
            role=turn.role,
            text=turn.text,
            images=turn.images,
            thumbnails=thumbnails,
            token_ids=turn.token_ids,
            streaming=turn.streaming,
            finish_reason=turn.finish_reason,
            error=turn.error,
            stats=turn.stats,
            message_id=turn.message_id,
            interrupted=turn.interrupted,
            revision=revision,
            documents=turn.documents,
            document_thumbnails=document_thumbnails,
        )

    def turn(self) -> Turn:
        stats = self.stats
        if stats is not None and not isinstance(stats, AnswerStats):
            stats = AnswerStats.from_step(stats)
        return Turn(
            role="assistant" if self.role == "assistant" else "user",
            text=self.text,
            images=tuple(self.images),
            stats=stats,
            token_ids=self.token_ids,
            finish_reason=self.finish_reason,
            error=self.error,
            message_id=self.message_id,
            interrupted=self.interrupted,
            streaming=self.streaming,
            documents=tuple(self.documents),
        )

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
        stats = self.stats
        if stats is not None and stats.generation_tokens:
            parts.append(f"{stats.generation_tokens} tokens · {stats.generation_tps:.1f} tok/s")
        return " · ".join(parts)

    def spoken(self) -> str:
        """The message as a screen reader says it: who, how many images, the plain text."""
        who = "You" if self.role == "user" else "Llama"
        count = len(self.images)
        if count:
            who += f", {count} image{'s' if count != 1 else ''}"
        if self.documents:
            who += f", {len(self.documents)} PDF{'s' if len(self.documents) != 1 else ''}"
        text = plain_text(self.text) if self.role == "assistant" else self.text.strip()
        return f"{who}: {text or self.footer()}"


def _drawn(turn: Turn) -> Turn:
    """What the view shows of a turn (its message and token ids are not drawn)."""
    return replace(turn, message_id=None, token_ids=None)


def entry_from_stored(message, images=(), thumbnails=(), documents=(), page_thumbnails=()) -> TranscriptEntry:
    """A transcript entry for a ``models.chats.store.StoredMessage`` (its images and documents
    loaded, with their thumbnails)."""
    turn = Turn.from_stored(message, images, documents)
    return TranscriptEntry.from_turn(turn, tuple(thumbnails), 0, tuple(page_thumbnails))


class TranscriptModel(QAbstractListModel):
    EntryRole = Qt.ItemDataRole.UserRole + 1
    RoleNameRole = Qt.ItemDataRole.UserRole + 2
    FooterRole = Qt.ItemDataRole.UserRole + 3
    RevisionRole = Qt.ItemDataRole.UserRole + 4

    def __init__(self, session: ConversationSession | None = None, parent=None):
        super().__init__(parent)
        self.session = session if session is not None else ConversationSession()
        self._thumbnails: dict[str, QImage] = {}  # by the image's content hash
        self._shown: list[TranscriptEntry] | None = None  # set_entries' rows, while it resets
        self._entries = [self._entry(turn) for turn in self.session.turns]
        self.session.listen(self._on_session_event)

    # Following the session ---------------------------------------------------------------------
    def remember_thumbnails(self, images, thumbnails) -> None:
        """Thumbnails already made (by the composer, or off the UI thread) for these images."""
        for image, thumbnail in zip(images, thumbnails, strict=False):
            self._thumbnails[image.sha256] = thumbnail

    def _thumbnail(self, image: ChatImage) -> QImage:
        thumbnail = self._thumbnails.get(image.sha256)
        if thumbnail is None:
            from desktop.workers.image_loader import thumbnail_qimage

            thumbnail = self._thumbnails[image.sha256] = thumbnail_qimage(image)
        return thumbnail

    def _entry(self, turn: Turn, revision: int = 0) -> TranscriptEntry:
        pages = tuple(self._thumbnail(i) for document in turn.documents for i in document.images)
        return TranscriptEntry.from_turn(
            turn, tuple(self._thumbnail(i) for i in turn.images), revision, pages
        )

    def _on_session_event(self, event: SessionEvent) -> None:
        if isinstance(event, TurnChanged):
            old = self._entries[event.row]
            if _drawn(old.turn()) == _drawn(event.turn):  # only the stored ids: nothing to redraw
                self._entries[event.row] = self._entry(event.turn, old.revision)
                return
            self._entries[event.row] = self._entry(event.turn, old.revision + 1)
            index = self.index(event.row)
            self.dataChanged.emit(index, index)
        elif isinstance(event, TurnAdded):
            self.beginInsertRows(QModelIndex(), event.row, event.row)
            self._entries.insert(event.row, self._entry(event.turn))
            self.endInsertRows()
        elif isinstance(event, TurnsRemoved):
            self.beginRemoveRows(QModelIndex(), event.first, event.last)
            del self._entries[event.first : event.last + 1]
            self.endRemoveRows()
        elif isinstance(event, TurnsReset):
            self.beginResetModel()
            kept = {image.sha256 for turn in event.turns for image in turn.images}
            kept |= {image.sha256 for turn in event.turns for d in turn.documents for image in d.images}
            self._thumbnails = {key: value for key, value in self._thumbnails.items() if key in kept}
            shown, self._shown = self._shown, None
            if (
                shown is not None
                and len(shown) == len(event.turns)
                and all(len(e.thumbnails) == len(e.images) for e in shown)
                and all(len(e.document_thumbnails) == sum(len(d.images) for d in e.documents) for e in shown)
            ):
                self._entries = shown  # set_entries built them already: no second conversion
            else:
                self._entries = [self._entry(turn) for turn in event.turns]
            self.endResetModel()

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
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return entry.spoken()
        if role == Qt.ItemDataRole.AccessibleDescriptionRole:
            return entry.footer()
        return None

    def roleNames(self):  # noqa: N802
        return {
            Qt.ItemDataRole.DisplayRole: b"text",
            self.EntryRole: b"entry",
            self.RoleNameRole: b"role",
            self.FooterRole: b"footer",
            self.RevisionRole: b"revision",
        }

    # Reading -----------------------------------------------------------------------------------
    def entry(self, row: int) -> TranscriptEntry:
        return self._entries[row]

    def entries(self) -> list[TranscriptEntry]:
        return list(self._entries)

    # Changes, forwarded to the session ---------------------------------------------------------
    def clear(self) -> None:
        self.session.clear()

    def set_entries(self, entries: list[TranscriptEntry], conversation_id: int | None = None) -> None:
        """Show another conversation (one reset, not row by row)."""
        for entry in entries:
            self.remember_thumbnails(entry.images, entry.thumbnails)
            pages = [image for document in entry.documents for image in document.images]
            self.remember_thumbnails(pages, entry.document_thumbnails)
        self._shown = list(entries)
        try:
            self.session.show([entry.turn() for entry in entries], conversation_id)
        finally:
            self._shown = None
