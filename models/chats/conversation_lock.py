"""One answer at a time per conversation, across windows and commands.

A turn (reading the history, storing the question, streaming the answer) holds an exclusive
``fcntl.flock`` on ``<data folder>/locks/<id>.lock``; a second turn on the same conversation,
in this process or another, is refused with ``ConversationBusy`` instead of interleaving. The
kernel drops the lock when the holder exits, even when it is killed. The lock file is opened
without following links (``models.contained_paths``): a link at ``locks/`` or at the lock's name
is refused in one line, never followed to create a file elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from models import contained_paths
from models.chats.database import StoreError


class ConversationBusy(StoreError):
    """Another window or command is answering in this conversation."""


class ConversationLock:
    """The lock for one conversation's turn: ``acquire()`` (non-blocking), then ``release()``."""

    def __init__(self, folder: str | Path, conversation_id: int):
        self.conversation_id = int(conversation_id)
        self.folder = Path(folder)
        self.path = self.folder / "locks" / f"{self.conversation_id}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``ConversationBusy`` (someone else has it) / ``StoreError``."""
        if self._fd is not None:
            return
        try:
            fd = contained_paths.open_file(self.folder, self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except contained_paths.LinkRefused as exc:
            raise StoreError(f"Cannot lock conversation {self.conversation_id}: {exc}.") from None
        except OSError as exc:
            raise StoreError(
                f"Cannot lock conversation {self.conversation_id} ({self.path}): {exc.strerror or exc}."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConversationBusy(
                f"Conversation {self.conversation_id} is answering in another window or "
                "command; try again when it finishes."
            ) from None
        except OSError as exc:
            os.close(fd)
            reason = exc.strerror or exc
            raise StoreError(f"Cannot lock conversation {self.conversation_id}: {reason}.") from None
        self._fd = fd

    def release(self) -> None:
        """Let the next turn in (the lock file stays; it is empty)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __del__(self) -> None:
        self.release()
