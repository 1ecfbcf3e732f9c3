"""Stored conversations: the Qt-free API the sidebar, the chat window and ``llama-desk chats`` use.

``ConversationStore`` opens (and upgrades) ``conversations.sqlite3`` in the data folder
(``models.chats.database.data_dir()``) and keeps attached images beside it
(``models.chats.images``), and attached documents (PDFs) too (``models.chats.document_files``).
It offers:

- conversations: ``create``, ``conversation``, ``list_conversations``, ``rename``,
  ``update_settings`` (the system prompt and the overrides of ``settings_spec.SETTINGS``),
  ``delete`` / ``restore`` (soft delete, for undo) and ``purge_deleted`` (for good, later);
- messages: ``add_message`` (the first question titles an untitled conversation; a question's
  documents are stored with their pages: the PDF once by hash, each page's text layer, each page
  image as a stored image), ``messages``
  (with each answer's token ids, so the KV cache is reused exactly), ``message``,
  ``update_message`` (used by ``models.chats.answer_recorder`` while an answer streams in),
  ``truncate_after`` and ``delete_between`` (the turns a regenerate or an edit replaces);
  ``load_image`` decodes a stored image and ``load_document`` reads a stored document back as
  the ``ChatDocument`` it was attached as (``conversation_session.stored_turns`` reads a
  conversation for the engine with these);
- ``search``: SQLite FTS5 over message text and the text layers of attached documents' pages,
  each hit with a snippet and its message id (and, for a page, its document and number).

Times are Unix seconds (floats) from the injectable ``clock``. A store belongs to the thread
that opened it; open another on the same folder for another thread or process.

Reading never trusts the file: a row written by older code, by hand or by a faulty import is
read with safe stand-ins (a setting out of range means "the app's default", unreadable stats or
token ids are dropped), and a conversation whose times or title cannot be shown comes back with
``damaged`` set (``display_title`` is then "Damaged conversation") so it can be listed and
deleted instead of stopping the app.

Long because ``ConversationStore`` is the one place that writes the schema: every statement that
touches the tables is here, so a schema change is checked in one file. What a record is
(``conversation_records``), search snippets (``search_snippets``) and reading untrusted rows
(``stored_rows``) are modules of their own, re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from models.chats.conversation_records import (
    DAMAGED_TITLE,
    FINISH_REASONS,
    MAX_CONTEXT_LENGTH,
    MAX_SEED,
    MAX_SYSTEM_PROMPT_CHARS,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    PURGE_AFTER_S,
    ROLES,
    TITLE_LENGTH,
    UNTITLED,
    Conversation,
    ConversationNotFound,
    ConversationSettings,
    SearchHit,
    StoredDocument,
    StoredImage,
    StoredMessage,
    StoredPage,
    is_finite_number,
    pack_token_ids,
    setting_problem,
    title_from_question,
    unpack_token_ids,
    valid_timestamp,
)
from models.chats.database import DATABASE_NAME, Database, StoreError, data_dir
from models.chats.document_files import PDF_MEDIA_TYPE, DocumentFolder
from models.chats.images import MAX_STORED_BYTES, ImageFolder
from models.chats.search_snippets import (
    SNIPPET_TOKEN_CHARS,
    SNIPPET_WINDOW_CHARS,
    build_snippet,
    fold,
    fts_query,
    text_window,
)
from models.chats.stored_rows import (
    CONVERSATION_SELECT,
    MESSAGE_SELECT,
    SETTING_COLUMNS,
    chunks,
    conversation_from_row,
    document_from_row,
    message_from_row,
    pack_pages,
    page_number,
    row_id,
    settings_row,
    stats_json,
    stored_int,
    stored_text,
)
from models.documents.chat_documents import ChatDocument, DocumentPage
from models.inference.images import ChatImage, ImageError
from models.inference.prompt import Role

_UNCHANGED: Any = object()
_log = logging.getLogger(__name__)
_DEFAULT_SETTINGS = ConversationSettings()
_SETTING_NAMES = ", ".join(SETTING_COLUMNS)
_SETTING_MARKS = ", ".join("?" for _ in SETTING_COLUMNS)

__all__ = [
    "DAMAGED_TITLE",
    "FINISH_REASONS",
    "MAX_CONTEXT_LENGTH",
    "MAX_SEED",
    "MAX_SYSTEM_PROMPT_CHARS",
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "PURGE_AFTER_S",
    "ROLES",
    "SNIPPET_TOKEN_CHARS",
    "SNIPPET_WINDOW_CHARS",
    "TITLE_LENGTH",
    "UNTITLED",
    "Conversation",
    "ConversationNotFound",
    "ConversationSettings",
    "ConversationStore",
    "SearchHit",
    "StoredDocument",
    "StoredImage",
    "StoredMessage",
    "StoredPage",
    "build_snippet",
    "fts_query",
    "is_finite_number",
    "pack_token_ids",
    "setting_problem",
    "title_from_question",
    "unpack_token_ids",
    "valid_timestamp",
]


class ConversationStore(AbstractContextManager):
    """Conversations, messages and images in one data folder (see the module docstring)."""

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        max_image_bytes: int = MAX_STORED_BYTES,
        clock: Callable[[], float] = time.time,
    ):
        self.folder = Path(folder) if folder is not None else data_dir()
        self.clock = clock
        self.images = ImageFolder(self.folder / "images", max_image_bytes)
        self.documents = DocumentFolder(self.folder / "documents")
        self.db = Database(self.folder / DATABASE_NAME)

    def close(self) -> None:
        self.db.close()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager:
        """Group several calls atomically: ``with store.transaction(): ...``."""
        return self.db.transaction()

    # -- conversations --------------------------------------------------------------------------

    def create(
        self,
        title: str = "",
        settings: ConversationSettings = _DEFAULT_SETTINGS,
        *,
        created: float | None = None,
    ) -> Conversation:
        """A new, empty conversation (untitled unless ``title`` is given)."""
        now = self.clock() if created is None else created
        with self.db.transaction() as conn:
            cursor = conn.execute(
                f"INSERT INTO conversations (title, created, updated, {_SETTING_NAMES}, settings)"
                f" VALUES (?, ?, ?, {_SETTING_MARKS}, ?)",
                (" ".join(title.split()), now, now, *settings_row(settings)),
            )
            conversation_id = row_id(cursor)
        return self.conversation(conversation_id)

    def conversation(self, conversation_id: int, *, include_deleted: bool = False) -> Conversation:
        """The conversation; ``ConversationNotFound`` if there is none (or it is deleted)."""
        row = self.db.execute(CONVERSATION_SELECT + " WHERE c.id = ?", (conversation_id,)).fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise ConversationNotFound(f"There is no conversation {conversation_id}.")
        return conversation_from_row(row)

    def list_conversations(self, *, deleted: bool = False, limit: int | None = None) -> list[Conversation]:
        """Live conversations, most recently updated first (or the deleted ones, with ``deleted``)."""
        where = "IS NOT NULL" if deleted else "IS NULL"
        sql = f"{CONVERSATION_SELECT} WHERE c.deleted_at {where} ORDER BY c.updated DESC, c.id DESC"
        parameters: tuple = ()
        if limit is not None:
            sql += " LIMIT ?"
            parameters = (limit,)
        return [conversation_from_row(row) for row in self.db.execute(sql, parameters)]

    def rename(self, conversation_id: int, title: str) -> Conversation:
        title = " ".join(title.split())
        if not title:
            raise StoreError("A conversation's title cannot be empty.")
        with self.db.transaction() as conn:
            self._require(conversation_id)
            conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
        return self.conversation(conversation_id)

    def update_settings(self, conversation_id: int, settings: ConversationSettings) -> Conversation:
        with self.db.transaction() as conn:
            self._require(conversation_id)
            stored = conn.execute("SELECT settings FROM conversations WHERE id = ?", (conversation_id,))
            assignments = ", ".join(f"{name} = ?" for name in (*SETTING_COLUMNS, "settings"))
            conn.execute(
                f"UPDATE conversations SET {assignments} WHERE id = ?",
                (*settings_row(settings, stored.fetchone()[0]), conversation_id),
            )
        return self.conversation(conversation_id)

    def delete(self, conversation_id: int) -> None:
        """Hide the conversation (it leaves lists and search); ``restore`` undoes it until purged."""
        with self.db.transaction() as conn:
            self._require(conversation_id)
            conn.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ?", (self.clock(), conversation_id)
            )
        # Its saved KV cache goes now (a restored conversation prefills again).
        from models.inference.prompt_cache_keeper import FOLDER_NAME, remove_saved_cache

        remove_saved_cache(self.folder / FOLDER_NAME, conversation_id)

    def restore(self, conversation_id: int) -> Conversation:
        """Undo ``delete``."""
        with self.db.transaction() as conn:
            self._require(conversation_id, include_deleted=True)
            conn.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conversation_id,))
        return self.conversation(conversation_id)

    def purge_deleted(self, older_than_s: float = PURGE_AFTER_S) -> int:
        """Erase conversations deleted more than ``older_than_s`` ago, and the images and documents
        no message uses (a page image is used while its page is stored).

        Returns how many conversations were erased. Call it now and then (e.g. at start-up).
        """
        cutoff = self.clock() - older_than_s
        with self.db.transaction() as conn:
            purged = conn.execute(
                "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?", (cutoff,)
            ).rowcount
            unused_images = (
                " WHERE sha256 NOT IN (SELECT sha256 FROM message_images)"
                " AND sha256 NOT IN (SELECT image_sha256 FROM document_pages WHERE image_sha256 IS NOT NULL)"
            )
            unused = conn.execute("SELECT sha256, media_type FROM images" + unused_images).fetchall()
            conn.execute("DELETE FROM images" + unused_images)
            unused_documents = " WHERE sha256 NOT IN (SELECT sha256 FROM message_documents)"
            documents = conn.execute("SELECT sha256 FROM documents" + unused_documents).fetchall()
            conn.execute("DELETE FROM documents" + unused_documents)
            # Remove the files while holding the write lock, so no other writer can re-add one.
            for row in unused:
                self.images.remove(row["sha256"], row["media_type"])
            for row in documents:
                self.documents.remove(row["sha256"])
        known = {row["sha256"] for row in self.db.execute("SELECT sha256 FROM images")}
        self.images.remove_orphans(known)
        known = {row["sha256"] for row in self.db.execute("SELECT sha256 FROM documents")}
        self.documents.remove_orphans(known)
        return purged

    # -- messages ---------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        images: Iterable[ChatImage] = (),
        *,
        documents: Iterable[ChatDocument] = (),
        model: str | None = None,
        stats: Mapping[str, float] | None = None,
        finish_reason: str | None = None,
        error: str | None = None,
        interrupted: bool = False,
        token_ids: Sequence[int] | None = None,
        created: float | None = None,
    ) -> StoredMessage:
        """Append a message (its images and documents stored once by hash) and commit.

        The first question of an untitled conversation gives it its title.
        """
        if role not in ROLES:
            raise StoreError(f"A message's role is system, user or assistant, not {role!r}.")
        now = self.clock() if created is None else created
        with self.db.transaction() as conn:
            conversation = self._require(conversation_id)
            cursor = conn.execute(
                "INSERT INTO messages (conversation_id, role, text, created, model, stats, finish_reason,"
                " error, interrupted, token_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    role,
                    text,
                    now,
                    model,
                    stats_json(stats),
                    finish_reason,
                    error,
                    int(interrupted),
                    pack_token_ids(token_ids),
                ),
            )
            message_id = row_id(cursor)
            for position, image in enumerate(images):
                sha = self._store_image(image)
                conn.execute(
                    "INSERT INTO message_images (message_id, position, sha256, name) VALUES (?, ?, ?, ?)",
                    (message_id, position, sha, image.name),
                )
            for position, document in enumerate(documents):
                self._store_document(message_id, position, document)
            title = conversation["title"]
            if role == "user" and not title and text.strip():
                title = title_from_question(text)
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?), title = ? WHERE id = ?",
                (now, title, conversation_id),
            )
        return self.message(message_id)

    def _store_image(self, image: ChatImage) -> str:
        """Store ``image`` (in the current transaction) unless already there; return the stored hash."""
        row = self.db.execute(
            "SELECT sha256, media_type FROM images WHERE original_sha256 = ? OR sha256 = ? LIMIT 1",
            (image.sha256, image.sha256),
        ).fetchone()
        if row is not None:
            if not self.images.path(row["sha256"], row["media_type"]).exists():  # repair a lost file
                record, data = self.images.prepare(image)
                if record.sha256 == row["sha256"]:
                    self.images.write(record, data)
            return str(row["sha256"])
        record, data = self.images.prepare(image)
        self.images.write(record, data)
        self.db.execute(
            "INSERT OR IGNORE INTO images (sha256, media_type, size, width, height, created, original_sha256,"
            " original_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.sha256,
                record.media_type,
                record.size,
                record.width,
                record.height,
                self.clock(),
                record.original_sha256,
                record.original_size,
            ),
        )
        return record.sha256

    def _store_document(self, message_id: int, position: int, document: ChatDocument) -> None:
        """Store ``document`` as the ``position``-th of message ``message_id`` (in the current
        transaction): its PDF unless already there, its pages, their images."""
        name = document.name or "document"
        sha = hashlib.sha256(document.data).hexdigest()
        if sha != document.sha256:
            raise StoreError(f"The document {name} does not match its hash; it was not stored.")
        numbers = [page.number for page in document.pages] + list(document.left_out)
        if any(page_number(n) is None or n > document.page_count for n in numbers):
            raise StoreError(f"The document {name} names a page it does not have; it was not stored.")
        row = self.db.execute("SELECT sha256 FROM documents WHERE sha256 = ?", (sha,)).fetchone()
        if row is None or not self.documents.exists(sha):  # new, or a lost file repaired
            self.documents.write(sha, document.data)
        if row is None:
            self.db.execute(
                "INSERT INTO documents (sha256, media_type, size, page_count, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (sha, PDF_MEDIA_TYPE, len(document.data), document.page_count, self.clock()),
            )
        self.db.execute(
            "INSERT INTO message_documents (message_id, position, sha256, name, left_out)"
            " VALUES (?, ?, ?, ?, ?)",
            (message_id, position, sha, document.name, pack_pages(document.left_out)),
        )
        for page in document.pages:
            image_sha, image_name = None, ""
            if page.image is not None:
                image_sha, image_name = self._store_image(page.image), page.image.name
            self.db.execute(
                "INSERT INTO document_pages (message_id, position, number, text, image_sha256, image_name)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (message_id, position, page.number, page.text, image_sha, image_name),
            )

    def message(self, message_id: int) -> StoredMessage:
        rows = self.db.execute(MESSAGE_SELECT + " WHERE m.id = ?", (message_id,)).fetchall()
        if not rows:
            raise ConversationNotFound(f"There is no message {message_id}.")
        return self._messages(rows)[0]

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """The conversation's messages, oldest first."""
        self._require(conversation_id, include_deleted=True)
        rows = self.db.execute(
            MESSAGE_SELECT + " WHERE m.conversation_id = ? ORDER BY m.id", (conversation_id,)
        ).fetchall()
        return self._messages(rows)

    def update_message(
        self,
        message_id: int,
        *,
        text: str = _UNCHANGED,
        model: str | None = _UNCHANGED,
        stats: Mapping[str, float] | None = _UNCHANGED,
        finish_reason: str | None = _UNCHANGED,
        error: str | None = _UNCHANGED,
        interrupted: bool = _UNCHANGED,
        token_ids: Sequence[int] | None = _UNCHANGED,
    ) -> None:
        """Change the given fields of a message and commit (others stay as they are)."""
        values = {
            "text": text,
            "model": model,
            "stats": stats_json(stats) if stats is not _UNCHANGED else stats,
            "finish_reason": finish_reason,
            "error": error,
            "interrupted": int(interrupted) if interrupted is not _UNCHANGED else interrupted,
            "token_ids": pack_token_ids(token_ids) if token_ids is not _UNCHANGED else token_ids,
        }
        changes = {k: v for k, v in values.items() if v is not _UNCHANGED}
        if not changes:
            return
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self.db.transaction() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise ConversationNotFound(f"There is no message {message_id}.")
            conn.execute(f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id))
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?) WHERE id = ?",
                (self.clock(), row["conversation_id"]),
            )

    def truncate_after(self, message_id: int, *, inclusive: bool = False) -> int:
        """Delete the messages after ``message_id`` in its conversation (and it too, if ``inclusive``).

        Returns how many were deleted.
        """
        with self.db.transaction() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise ConversationNotFound(f"There is no message {message_id}.")
            operator = ">=" if inclusive else ">"
            deleted = conn.execute(
                f"DELETE FROM messages WHERE conversation_id = ? AND id {operator} ?",
                (row["conversation_id"], message_id),
            ).rowcount
            conn.execute(
                "UPDATE conversations SET updated = max(updated, ?) WHERE id = ?",
                (self.clock(), row["conversation_id"]),
            )
        return deleted

    def delete_between(self, first_id: int, before_id: int) -> int:
        """Delete ``first_id`` and the messages after it that come before ``before_id`` (same
        conversation): the old turns an edit or a regenerate replaces, once the new ones exist."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (first_id,)).fetchone()
            if row is None:
                return 0
            return conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND id >= ? AND id < ?",
                (row["conversation_id"], first_id, before_id),
            ).rowcount

    # -- for the engine ---------------------------------------------------------------------------

    def load_image(self, image: StoredImage) -> ChatImage:
        """Decode a stored image for the engine or a preview; ``StoreError`` if its file is gone."""
        try:
            return self.images.load(image.sha256, image.media_type, image.name)
        except FileNotFoundError:
            raise StoreError(
                f"The stored image {image.name or image.sha256[:12]} is missing from {self.images.root}."
            ) from None
        except (OSError, ImageError) as exc:
            name = image.name or image.sha256[:12]
            raise StoreError(f"The stored image {name} cannot be read: {exc}") from None

    def load_document(self, document: StoredDocument, read: dict[str, bytes] | None = None) -> ChatDocument:
        """A stored document as the ``ChatDocument`` it was attached as (its PDF's bytes, its
        pages with their images decoded); ``StoreError`` if a page image is gone. ``read``: the
        PDFs already read while loading a conversation, by hash (one PDF on many questions is
        read, and held, once). A PDF file that is gone or unreadable leaves ``data`` empty: its
        pages, all a prompt needs, are stored apart (reading other pages then says it is empty)."""
        name = document.name or document.sha256[:12]
        data = read.get(document.sha256) if read is not None else None
        if data is None:
            try:
                data = self.documents.read(document.sha256)
            except OSError as exc:
                reason = "missing" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
                _log.warning("The stored document %s cannot be read (%s); its pages are kept.", name, reason)
                data = b""
            if read is not None:
                read[document.sha256] = data
        pages = tuple(
            DocumentPage(page.number, page.text, self.load_image(page.image) if page.image else None)
            for page in document.pages
        )
        return ChatDocument(
            document.sha256, document.name, data, document.page_count, pages, document.left_out
        )

    # -- search -----------------------------------------------------------------------------------

    def search(
        self, text: str, *, limit: int = 50, start: str = "[", end: str = "]", context_tokens: int = 12
    ) -> list[SearchHit]:
        """Messages of live conversations holding every word of ``text`` (prefixes match) in their
        text or in one page of an attached document's text layer, best first, each message once.

        Each hit names its conversation and message (and the document and page that matched, its
        snippet then starting "report.pdf, page 3: "), and has a snippet with the matches between
        ``start`` and ``end`` (the text is not escaped: a GUI escapes it and uses marker characters).
        FTS5 finds the messages; the snippet is built here from at most ``SNIPPET_WINDOW_CHARS``
        of the text around the first match (FTS5's own ``snippet()`` costs time quadratic in the
        message's size), so a search takes the same time whatever the messages' lengths.
        """
        query = fts_query(text)
        if not query:
            return []
        rows = self.db.execute(
            "SELECT m.id, m.conversation_id, m.role, m.created, c.title, messages_fts.rank AS score,"
            " NULL AS page_id FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE messages_fts MATCH ? AND c.deleted_at IS NULL"
            " ORDER BY rank, m.id DESC LIMIT ?",
            (query, limit),
        ).fetchall()
        pages = self._matching_pages(query, 4 * limit)
        best: dict[int, Any] = {}  # message id -> its best-ranked row (its text's, or a page's)
        for r in sorted([*rows, *pages], key=lambda r: (_score(r["score"]), r["page_id"] is not None)):
            best.setdefault(int(r["id"]), r)
        chosen = sorted(best.values(), key=lambda r: (_score(r["score"]), -int(r["id"])))[:limit]
        terms = [fold(term) for term in re.findall(r"\w+", text)]
        hits = []
        for r in chosen:
            document, page, prefix = "", None, ""
            if r["page_id"] is None:
                searched = self._message_text(int(r["id"]))
            else:
                document, page = stored_text(r["document"]), page_number(r["number"])
                searched = self._page_text(int(r["page_id"]))
                prefix = f"{' '.join(document.split())[:80] or 'document'}, page {page}: "
            window, at_start, at_end = text_window(searched, terms)
            snippet = prefix + build_snippet(
                window,
                terms,
                start=start,
                end=end,
                context_tokens=max(1, min(64, context_tokens)),
                at_start=at_start,
                at_end=at_end,
            )
            title = r["title"] if isinstance(r["title"], str) else DAMAGED_TITLE
            hits.append(
                SearchHit(
                    int(r["conversation_id"]),
                    int(r["id"]),
                    title or UNTITLED,
                    r["role"],
                    snippet,
                    valid_timestamp(r["created"]) or MIN_TIMESTAMP,
                    document,
                    page,
                )
            )
        return hits

    def _matching_pages(self, query: str, limit: int) -> list:
        """The rows of the best ``limit`` document pages of live conversations matching ``query``."""
        if not self.db.holds_documents:
            return []
        return self.db.execute(
            "SELECT m.id, m.conversation_id, m.role, m.created, c.title,"
            " document_pages_fts.rank AS score, p.id AS page_id, p.number, md.name AS document"
            " FROM document_pages_fts JOIN document_pages p ON p.id = document_pages_fts.rowid"
            " JOIN message_documents md ON md.message_id = p.message_id AND md.position = p.position"
            " JOIN messages m ON m.id = p.message_id JOIN conversations c ON c.id = m.conversation_id"
            " WHERE document_pages_fts MATCH ? AND c.deleted_at IS NULL"
            " ORDER BY rank, p.id LIMIT ?",
            (query, limit),
        ).fetchall()

    def _message_text(self, message_id: int) -> str:
        row = self.db.execute("SELECT text FROM messages WHERE id = ?", (message_id,)).fetchone()
        return "" if row is None else stored_text(row["text"])

    def _page_text(self, page_id: int) -> str:
        row = self.db.execute("SELECT text FROM document_pages WHERE id = ?", (page_id,)).fetchone()
        return "" if row is None else stored_text(row["text"])

    # -- internals --------------------------------------------------------------------------------

    def _require(self, conversation_id: int, *, include_deleted: bool = False):
        row = self.db.execute(
            "SELECT id, title, deleted_at FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None or (row["deleted_at"] is not None and not include_deleted):
            raise ConversationNotFound(f"There is no conversation {conversation_id}.")
        return row

    def _messages(self, rows) -> list[StoredMessage]:
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        images: dict[int, list[StoredImage]] = {i: [] for i in ids}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                "SELECT mi.message_id, mi.name, i.sha256, i.media_type, i.size, i.width, i.height"
                " FROM message_images mi JOIN images i ON i.sha256 = mi.sha256"
                f" WHERE mi.message_id IN ({marks})"
                " ORDER BY mi.message_id, mi.position",
                chunk,
            ):
                images[int(r["message_id"])].append(
                    StoredImage(
                        r["sha256"],
                        stored_text(r["name"]),
                        r["media_type"],
                        stored_int(r["size"]),
                        stored_int(r["width"]),
                        stored_int(r["height"]),
                        self.images.path(r["sha256"], r["media_type"]),
                    )
                )
        documents = self._documents(ids)
        return [
            message_from_row(r, tuple(images[int(r["id"])]), documents.get(int(r["id"]), ())) for r in rows
        ]

    def _documents(self, ids: list[int]) -> dict[int, tuple[StoredDocument, ...]]:
        """The documents of the messages ``ids``, in order, with their pages as read."""
        found: dict[int, list[StoredDocument]] = defaultdict(list)
        if not self.db.holds_documents:
            return {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            pages: dict[tuple[int, int], list[StoredPage]] = defaultdict(list)
            for r in self.db.execute(
                "SELECT p.message_id, p.position, p.number, p.text, p.image_name,"
                " i.sha256, i.media_type, i.size, i.width, i.height"
                " FROM document_pages p LEFT JOIN images i ON i.sha256 = p.image_sha256"
                f" WHERE p.message_id IN ({marks}) ORDER BY p.message_id, p.position, p.id",
                chunk,
            ):
                number = page_number(r["number"])
                if number is None:
                    continue
                image = None
                if isinstance(r["sha256"], str):
                    image = StoredImage(
                        r["sha256"],
                        stored_text(r["image_name"]),
                        r["media_type"],
                        stored_int(r["size"]),
                        stored_int(r["width"]),
                        stored_int(r["height"]),
                        self.images.path(r["sha256"], r["media_type"]),
                    )
                key = (int(r["message_id"]), stored_int(r["position"]))
                pages[key].append(StoredPage(number, stored_text(r["text"]), image))
            for r in self.db.execute(
                "SELECT md.message_id, md.position, md.name, md.left_out, d.sha256, d.size, d.page_count"
                " FROM message_documents md JOIN documents d ON d.sha256 = md.sha256"
                f" WHERE md.message_id IN ({marks}) ORDER BY md.message_id, md.position",
                chunk,
            ):
                key = (int(r["message_id"]), stored_int(r["position"]))
                path = self.documents.path(stored_text(r["sha256"]))
                found[key[0]].append(document_from_row(r, pages[key], path))
        return {message_id: tuple(documents) for message_id, documents in found.items()}


def _score(value: Any) -> float:
    """An FTS5 rank as a sort key (lower is better; an unreadable one sorts last)."""
    return float(value) if is_finite_number(value) else float("inf")
