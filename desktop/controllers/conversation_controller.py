"""Which conversation is open, and everything done to stored conversations from the window.

Holds the UI thread's connection to the conversation store for reads and one-row edits
(create, rename, delete/undo, settings). Work that touches image files (opening a
conversation with its images, export, import) runs on the thread pool and reports back by
signal. The open conversation's turns belong to its ``ConversationSession``; answers are
stored by ``models.chats.answer_run.run_answer`` on the MLX worker's thread.

Signals:
    opened(object): (conversation or None, transcript entries, row to show or None).
    list_changed(): the sidebar should re-read the list.
    notice(str, str): a one-line message for the person, and its source (``desktop.notices``:
        the store, an export or an import).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from desktop import notices
from desktop.qtmodels.transcript_model import entry_from_stored
from desktop.workers.background_task import run_in_background
from desktop.workers.image_loader import thumbnail_qimage
from models.chats.store import (
    Conversation,
    ConversationNotFound,
    ConversationSettings,
    ConversationStore,
    StoreError,
)


def _load_conversation(folder: Path, conversation_id: int, message_id: int | None):
    """Runs in a pool thread with its own store connection."""
    with ConversationStore(folder) as store:
        conversation = store.conversation(conversation_id)
        entries = []
        read: dict[str, bytes] = {}  # a PDF on many questions is read, and held, once
        for message in store.messages(conversation_id):
            images = tuple(store.load_image(image) for image in message.images)
            documents = tuple(store.load_document(document, read) for document in message.documents)
            pages = tuple(thumbnail_qimage(i) for document in documents for i in document.images)
            thumbnails = tuple(thumbnail_qimage(i) for i in images)
            entries.append(entry_from_stored(message, images, thumbnails, documents, pages))
    row = None
    if message_id is not None:
        row = next((i for i, e in enumerate(entries) if e.message_id == message_id), None)
    return conversation, entries, row


class ConversationController(QObject):
    opened = Signal(object)
    list_changed = Signal()
    notice = Signal(str, str)

    def __init__(self, store: ConversationStore, parent=None):
        super().__init__(parent)
        self.store = store
        self.current: Conversation | None = None
        self._opening: int | None = None

    def purge_old_deleted(self) -> None:
        """Forget conversations deleted long ago (past their undo), on the thread pool."""
        folder = self.store.folder

        def work() -> int:
            with ConversationStore(folder) as store:
                return store.purge_deleted()

        run_in_background(work, lambda _count: None, lambda _message: None, owner=self)

    @property
    def current_id(self) -> int | None:
        return self.current.id if self.current is not None else None

    @property
    def settings(self) -> ConversationSettings:
        return self.current.settings if self.current is not None else ConversationSettings()

    def ensure_current(self, system_prompt: str) -> int | None:
        """The open conversation's id, creating one (with the default system prompt) if needed."""
        if self.current is None:
            try:
                self.current = self.store.create(settings=self.new_settings(system_prompt))
            except StoreError as exc:
                self.notice.emit(f"This conversation cannot be saved: {exc}", notices.STORE)
                return None
        return self.current.id

    @staticmethod
    def new_settings(system_prompt: str) -> ConversationSettings:
        """The settings a conversation started now is created with (the default system prompt)."""
        return ConversationSettings(system_prompt=system_prompt)

    def stored_in(self, conversation_id: int) -> None:
        """An answer's rows were stored in ``conversation_id``: the conversation its first question
        created becomes the open one; either way its record is re-read."""
        if self.current is None:
            try:
                self.current = self.store.conversation(conversation_id)
            except ConversationNotFound:
                # Gone already: the answer failed with nothing and took its new rows (and the
                # conversation they created) back out before this was read; its end says so.
                return
            except StoreError as exc:
                self.notice.emit(f"The conversation could not be read back: {exc}", notices.STORE)
        self.reload_current()

    def reload_current(self) -> None:
        """Re-read the open conversation's record (its title is set by its first question)."""
        if self.current is not None:
            try:
                self.current = self.store.conversation(self.current.id)
            except StoreError:
                self.current = None  # deleted (a failed first question leaves nothing behind)
        self.list_changed.emit()

    def new(self) -> None:
        self.current = None
        self._opening = None  # a conversation still loading is no longer wanted

    def open(self, conversation_id: int, message_id: int | None = None) -> None:
        """Load a conversation off the UI thread; ``opened`` follows."""
        self._opening = conversation_id
        folder = self.store.folder

        def on_done(result) -> None:
            conversation, entries, row = result
            if self._opening != conversation.id:
                return  # another conversation was chosen meanwhile
            self._opening = None
            self.opened.emit((conversation, entries, row))  # the window makes it current

        def on_error(message: str) -> None:
            if self._opening == conversation_id:
                self._opening = None
                self.notice.emit(f"The conversation could not be opened: {message}", notices.STORE)

        run_in_background(
            lambda: _load_conversation(folder, conversation_id, message_id), on_done, on_error, owner=self
        )

    def rename(self, conversation_id: int, title: str) -> None:
        try:
            renamed = self.store.rename(conversation_id, title)
        except StoreError as exc:
            self.notice.emit(str(exc), notices.STORE)
            return
        if self.current_id == conversation_id:
            self.current = renamed
        self.list_changed.emit()

    def delete(self, conversation_id: int) -> str | None:
        """Delete (undoably); returns the title for the undo message."""
        try:
            title = self.store.conversation(conversation_id).display_title
            self.store.delete(conversation_id)
        except StoreError as exc:
            self.notice.emit(str(exc), notices.STORE)
            return None
        if self.current_id == conversation_id:
            self.current = None
        if self._opening == conversation_id:
            self._opening = None
        self.list_changed.emit()
        return title

    def restore(self, conversation_id: int) -> None:
        try:
            self.store.restore(conversation_id)
        except StoreError as exc:
            self.notice.emit(str(exc), notices.STORE)
        self.list_changed.emit()

    def update_settings(self, settings: ConversationSettings) -> None:
        if self.current is None:
            return
        try:
            self.current = self.store.update_settings(self.current.id, settings)
        except StoreError as exc:
            self.notice.emit(str(exc), notices.STORE)

    def export(self, conversation_id: int, fmt: str, path: str) -> None:
        from models.chats import export as chat_export

        folder = self.store.folder

        def work():
            with ConversationStore(folder) as store:
                if fmt == "md":
                    chat_export.export_markdown(store, conversation_id, Path(path))
                else:
                    chat_export.write_json(store, conversation_id, Path(path))
            return path

        run_in_background(
            work,
            lambda p: self.notice.emit(f"Exported to {p}.", notices.EXPORT),
            lambda message: self.notice.emit(f"Export failed: {message}", notices.EXPORT),
            owner=self,
        )

    def import_file(self, path: str) -> None:
        from models.chats import export as chat_export

        folder = self.store.folder

        def work() -> int:
            with ConversationStore(folder) as store:
                return chat_export.read_export(store, Path(path))

        def on_done(conversation_id: int) -> None:
            self.list_changed.emit()
            self.open(conversation_id)

        run_in_background(
            work,
            on_done,
            lambda message: self.notice.emit(f"Import failed: {message}", notices.IMPORT),
            owner=self,
        )
