"""The SQLite file that holds conversations: where it lives, how it opens, how it upgrades.

In the spirit of qutebrowser's ``misc/sql.py``: one connection in autocommit mode, explicit
transactions as context managers (``with db.transaction(): ...``; nested ones are savepoints),
the schema version in ``PRAGMA user_version`` and a list of forward migrations, each applied in
its own transaction together with the version bump, so a crash mid-upgrade leaves the previous
version intact. Columns that older versions can ignore (``ADDED_COLUMNS``) are added without a
version bump, so those versions keep opening the file. The journal is WAL with
``synchronous=FULL``: a committed transaction survives a killed process (and a power cut), and
readers in other processes never block the writer.

Every failure a person can meet (a damaged file, a file from a newer Llama Desk, a locked or
read-only database) is raised as ``StoreError`` with a one-line message; a damaged file as its
subclass ``DatabaseDamaged``, which the CLI (``chats repair``) and the window answer with
``move_aside``: the damaged file (with its -wal/-shm) is renamed
``conversations.damaged-<timestamp>.sqlite3`` and kept, and a new database starts. A database
whose folder or file cannot be written is opened read-only (``Database.read_only``): it can be
listed, shown and searched; a write reports one line.

Over 400 lines because every released migration stays here as it was released (never edited),
beside the code that opens, upgrades and checks the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

# The data folder is defined once, in models.app_folders; re-exported for this package.
from models.app_folders import APP_NAME as APP_NAME
from models.app_folders import DATA_DIR_ENV as DATA_DIR_ENV
from models.app_folders import data_dir as data_dir

DATABASE_NAME = "conversations.sqlite3"  # in data_dir(), with the images folder beside it
_FILE_SUFFIXES = ("", "-wal", "-shm", "-journal")  # SQLite opens these by name, following a link


class StoreError(Exception):
    """A conversation-storage failure, with a message fit to show as is."""


class DatabaseDamaged(StoreError):
    """The database file is damaged; ``move_aside(path)`` keeps it and lets a new one start."""

    def __init__(self, message: str, path: Path):
        super().__init__(message)
        self.path = path


class DatabaseReadOnly(StoreError):
    """A write to a database that could only be opened read-only."""


# Each migration takes the database from version i to i + 1 (MIGRATIONS[0]: 0 -> 1). Statements
# are run one by one (not with executescript, which would commit the surrounding transaction).
# Never edit a released migration: append a new one.
MIGRATIONS: list[Sequence[str]] = [
    # 1: conversations, messages, images stored by content hash.
    (
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            title TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            updated REAL NOT NULL,
            deleted REAL
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            text TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL
        )""",
        "CREATE INDEX messages_by_conversation ON messages(conversation_id, id)",
        """CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            created REAL NOT NULL
        )""",
        """CREATE TABLE message_images (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES images(sha256),
            name TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (message_id, position)
        )""",
        "CREATE INDEX message_images_by_image ON message_images(sha256)",
    ),
    # 2: per-conversation settings, answer metadata for crash safety and exact KV-cache reuse,
    # the original hash of downscaled images, and full-text search over message text.
    (
        "ALTER TABLE conversations RENAME COLUMN deleted TO deleted_at",
        "ALTER TABLE conversations ADD COLUMN system_prompt TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE conversations ADD COLUMN temperature REAL",
        "ALTER TABLE conversations ADD COLUMN top_p REAL",
        "ALTER TABLE conversations ADD COLUMN max_tokens INTEGER",
        "ALTER TABLE conversations ADD COLUMN seed INTEGER",
        "ALTER TABLE conversations ADD COLUMN context_length INTEGER",
        "CREATE INDEX conversations_by_updated ON conversations(deleted_at, updated)",
        "ALTER TABLE messages ADD COLUMN model TEXT",
        "ALTER TABLE messages ADD COLUMN stats TEXT",  # JSON of the GenerationStep's numbers
        "ALTER TABLE messages ADD COLUMN finish_reason TEXT",
        "ALTER TABLE messages ADD COLUMN error TEXT",
        "ALTER TABLE messages ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN token_ids BLOB",  # little-endian uint32s
        "ALTER TABLE images ADD COLUMN original_sha256 TEXT",
        "ALTER TABLE images ADD COLUMN original_size INTEGER",
        "UPDATE images SET original_sha256 = sha256, original_size = size",
        "CREATE INDEX images_by_original ON images(original_sha256)",
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            text, content='messages', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )""",
        """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
        END""",
        """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END""",
        """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
            INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
        END""",
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    ),
    # 3: documents (PDFs) attached to questions: each file once by hash, per message the
    # documents in order, per document the pages that went in (text layer, and the page image,
    # an ordinary row of ``images``), and full-text search over the pages' text. A version
    # before this one refuses the file (it would purge the page images it does not know of).
    (
        """CREATE TABLE documents (
            sha256 TEXT PRIMARY KEY,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            page_count INTEGER NOT NULL,
            created REAL NOT NULL
        )""",
        """CREATE TABLE message_documents (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES documents(sha256),
            name TEXT NOT NULL DEFAULT '',
            left_out TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (message_id, position)
        )""",
        "CREATE INDEX message_documents_by_document ON message_documents(sha256)",
        """CREATE TABLE document_pages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            message_id INTEGER NOT NULL,
            position INTEGER NOT NULL,
            number INTEGER NOT NULL,
            text TEXT NOT NULL DEFAULT '',
            image_sha256 TEXT REFERENCES images(sha256),
            image_name TEXT NOT NULL DEFAULT '',
            FOREIGN KEY (message_id, position)
                REFERENCES message_documents(message_id, position) ON DELETE CASCADE
        )""",
        "CREATE INDEX document_pages_by_document ON document_pages(message_id, position, number)",
        "CREATE INDEX document_pages_by_image ON document_pages(image_sha256)",
        """CREATE VIRTUAL TABLE document_pages_fts USING fts5(
            text, content='document_pages', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )""",
        """CREATE TRIGGER document_pages_fts_insert AFTER INSERT ON document_pages BEGIN
            INSERT INTO document_pages_fts(rowid, text) VALUES (new.id, new.text);
        END""",
        """CREATE TRIGGER document_pages_fts_delete AFTER DELETE ON document_pages BEGIN
            INSERT INTO document_pages_fts(document_pages_fts, rowid, text)
                VALUES ('delete', old.id, old.text);
        END""",
        """CREATE TRIGGER document_pages_fts_update AFTER UPDATE OF text ON document_pages BEGIN
            INSERT INTO document_pages_fts(document_pages_fts, rowid, text)
                VALUES ('delete', old.id, old.text);
            INSERT INTO document_pages_fts(rowid, text) VALUES (new.id, new.text);
        END""",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)
DOCUMENTS_SCHEMA = 3  # the first schema with stored documents
# A read-only file cannot be upgraded: from this schema on it is read as it is (a schema 2 file
# as one without documents, ``Database.holds_documents``).
OLDEST_READ_ONLY_SCHEMA = 2

# Columns an older Llama Desk ignores (nullable, read by name only by the code that added them):
# added when missing at every read-write open, without raising ``user_version``, so a database
# this version wrote still opens in the versions before it (they refuse any ``user_version``
# above their own ``SCHEMA_VERSION``). A migration must not rely on them.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # JSON object: a conversation's overrides of the settings with no column of their own
    # (models.chats.stored_rows.SETTING_COLUMNS has those), so a new knob needs no migration.
    ("conversations", "settings", "TEXT"),
)


class Database:
    """One connection to the conversation database, upgraded to ``SCHEMA_VERSION`` on open.

    A ``Database`` belongs to the thread that opened it; another thread (or process) opens its
    own on the same file.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0):
        self.path = Path(path)
        self._depth = 0
        self._busy_timeout_s = busy_timeout_s
        self.read_only = False
        if not self.path.parent.is_dir():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = exc.strerror or exc
                raise StoreError(f"Cannot create the data folder {self.path.parent}: {reason}.") from None
        self._connect()

    def _connect(self) -> None:
        """Open (read-write, or read-only when the file or its folder cannot be written) and upgrade."""
        if links := [n for n in (f"{self.path}{s}" for s in _FILE_SUFFIXES) if os.path.islink(n)]:
            raise StoreError(f"Cannot open the conversation database: {links[0]} is a link (not followed).")
        self.read_only = not _writable(self.path)
        if self.read_only and not self.path.exists():
            raise DatabaseReadOnly(
                f"The data folder {self.path.parent} is read-only; no conversations can be stored there."
            )
        self._depth = 0
        try:
            if self.read_only:
                self._conn = _open_read_only(self.path, self._busy_timeout_s)
            else:
                self._conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"Cannot open the conversation database {self.path}: {exc}.") from None
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._inode = os.stat(self.path).st_ino if self.path.exists() else None
            if self.read_only:
                self._check_version(self.user_version)
                if self.user_version < OLDEST_READ_ONLY_SCHEMA:
                    raise DatabaseReadOnly(
                        f"The conversation database {self.path} is read-only and needs "
                        "an upgrade; make its folder writable."
                    )
                return
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"The conversation database {self.path} cannot use a write-ahead log.")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise _error(exc, self.path) from None
        except BaseException:
            self._conn.close()
            raise

    def move_aside_and_start_new(self) -> Path:
        """Close, rename the damaged file (and its -wal/-shm) aside, and open a new, empty database.

        Returns where the old file now is. Other connections to the old file (another thread's
        store) keep reading it until they reopen; see ``replaced_on_disk``.
        """
        self.close()
        moved = move_aside(self.path)
        self._connect()
        return moved

    def replaced_on_disk(self) -> bool:
        """True if the file this connection opened was moved aside (or removed) since."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    # -- transactions -------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block atomically: commit at its end, roll back if it raises.

        The outermost transaction takes the write lock at once (``BEGIN IMMEDIATE``), so it never
        fails half-way on a lock; nested ones are savepoints that roll back on their own.
        """
        if self.read_only:
            raise DatabaseReadOnly(
                f"The conversation database {self.path} is read-only (its folder or "
                "file cannot be written); nothing was changed."
            )
        conn = self._conn
        if self._depth == 0:
            self._run(conn.execute, "BEGIN IMMEDIATE")
            begin, commit, rollback = None, "COMMIT", "ROLLBACK"
        else:
            name = f"sp{self._depth}"
            begin, commit, rollback = f"SAVEPOINT {name}", f"RELEASE {name}", f"ROLLBACK TO {name}"
            self._run(conn.execute, begin)
        self._depth += 1
        try:
            yield conn
        except BaseException as exc:
            self._depth -= 1
            with contextlib.suppress(sqlite3.Error):
                conn.execute(rollback)
                if self._depth > 0:
                    conn.execute(commit)  # a rolled-back savepoint stays open until released
            if isinstance(exc, sqlite3.DatabaseError):
                raise _error(exc, self.path) from None
            raise
        self._depth -= 1
        try:
            self._run(conn.execute, commit)
        except BaseException:
            if self._depth == 0:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def execute(self, sql: str, parameters: Sequence | dict = ()) -> _Cursor:
        """Run one statement (in the current transaction, or on its own) with sqlite3 errors as
        StoreError, also while its rows are read."""
        return _Cursor(self._run(self._conn.execute, sql, parameters), self.path)

    def _run(self, function, *args):
        try:
            return function(*args)
        except sqlite3.DatabaseError as exc:
            raise _error(exc, self.path) from None

    @property
    def holds_documents(self) -> bool:
        """Whether the file has the tables of stored documents (a read-only schema 2 file has not)."""
        return not self.read_only or self.user_version >= DOCUMENTS_SCHEMA

    @property
    def user_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        """``"ok"`` for a sound database, else SQLite's first complaint."""
        return str(self.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    # -- migrations ---------------------------------------------------------------------------

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"The conversation database {self.path} was written by a newer Llama Desk "
                f"(schema {version}; this version reads up to {SCHEMA_VERSION})."
            )

    def _migrate(self) -> None:
        version = self.user_version
        self._check_version(version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction() as conn:
                # Re-read under the write lock: another process may have upgraded meanwhile.
                if self.user_version >= target:
                    continue
                for statement in MIGRATIONS[target - 1]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")
        if any(not self._has_column(table, column) for table, column, _ in ADDED_COLUMNS):
            with self.transaction() as conn:
                for table, column, declaration in ADDED_COLUMNS:
                    if not self._has_column(table, column):  # re-read under the write lock
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _has_column(self, table: str, column: str) -> bool:
        return any(row[1] == column for row in self.execute(f"PRAGMA table_info({table})"))


def check_database(path: str | Path) -> DatabaseDamaged | None:
    """Open the database on its own connection and run SQLite's quick check: the damage found,
    or None. Other failures (busy, read-only) are not damage and are left to the caller's use."""
    try:
        database = Database(path)
    except DatabaseDamaged as exc:
        return exc
    except StoreError:
        return None
    try:
        verdict = str(database.execute("PRAGMA quick_check(1)").fetchone()[0])
    except DatabaseDamaged as exc:
        return exc
    except StoreError:
        return None
    finally:
        database.close()
    if verdict == "ok":
        return None
    message = f"The conversation database {database.path} is damaged ({verdict})."
    return DatabaseDamaged(message, database.path)


class _Cursor:
    """A cursor whose row reads report sqlite3 errors (a damaged page met mid-scan) as StoreError."""

    def __init__(self, cursor: sqlite3.Cursor, path: Path):
        self._cursor, self._path = cursor, path

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def fetchone(self):
        try:
            return self._cursor.fetchone()
        except sqlite3.DatabaseError as exc:
            raise _error(exc, self._path) from None

    def fetchall(self) -> list:
        try:
            return self._cursor.fetchall()
        except sqlite3.DatabaseError as exc:
            raise _error(exc, self._path) from None

    def __iter__(self):
        return iter(self.fetchall())


def move_aside(path: str | Path) -> Path:
    """Rename a (damaged) database and its -wal/-shm to ``<stem>.damaged-<timestamp><suffix>``.

    Nothing is deleted. The log files go first, so a new database at ``path`` never meets the old
    log. No connection to ``path`` may be open in this process. Returns the new name.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}"), 1
    while any(os.path.lexists(f"{target}{suffix}") for suffix in _FILE_SUFFIXES):
        n += 1
        target = path.with_name(f"{path.stem}.damaged-{stamp}-{n}{path.suffix}")
    try:
        for suffix in ("-journal", "-wal", "-shm", ""):  # lexists: a link goes aside as a link
            if os.path.lexists(f"{path}{suffix}"):
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
    except OSError as exc:
        raise StoreError(f"Cannot move {path} aside: {exc.strerror or exc}.") from None
    return target


def _writable(path: Path) -> bool:
    """Whether the database (or, before it exists, its folder) and its folder can be written."""
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return False
    return not path.exists() or os.access(path, os.W_OK)


def _open_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection; ``immutable`` if SQLite cannot even set up the shared-memory file."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout, isolation_level=None)


def _error(exc: sqlite3.DatabaseError, path: Path) -> StoreError:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return DatabaseDamaged(f"The conversation database {path} is damaged ({text}).", path)
    if "locked" in text or "busy" in text:
        return StoreError(f"The conversation database {path} is busy in another process; try again.")
    if "readonly" in text or "read-only" in text:
        return DatabaseReadOnly(f"The conversation database {path} is read-only.")
    return StoreError(f"Conversation database error in {path}: {text}.")
