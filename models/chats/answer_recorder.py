"""Writing an answer to the conversation store while it streams, so a crash loses little.

``AnswerRecorder`` is what the CLI and the window use around ``Engine.generate``
(``turns.chat_messages`` and ``conversation_session.stored_turns`` read the history)::

    recorder = AnswerRecorder(store, model=engine.name)
    recorder.claim(conversation_id)
    history = chat_messages(stored_turns(store, conversation_id))  # read under the lock
    recorder.begin(conversation_id, question, images)   # committed before generating
    for step in engine.generate(history + [ChatMessage("user", question, images)], settings):
        recorder.record(step)                            # add() each piece, finish() the last

- ``begin`` commits, in one transaction, the question with its images and an empty answer row
  marked ``interrupted``; ``begin_answer`` does only the latter (regenerating an answer whose
  question is stored), and ``resume`` re-opens a stored answer to carry it on.
- ``add(text)`` buffers and commits the answer so far when ``flush_interval_s`` (2 s) has passed
  since the last commit (the clock is injectable); ``flush()`` commits now.
- ``finish(final_step)`` appends the last step's text and commits the whole answer with its
  stats, token ids and finish reason, and clears ``interrupted``. ``abandon()`` commits what
  there is and leaves the answer marked interrupted (an exception, or Ctrl-C, with no final step).

Killed at any point, the database holds the question and the answer up to its last commit,
marked interrupted.

A turn holds its conversation's ``ConversationLock`` from ``claim`` (which ``begin``,
``begin_answer`` and ``resume`` call; call it yourself before reading the history) until
``finish``/``abandon``/``release``: a second turn on the same conversation, from another
window or command, gets ``ConversationBusy`` instead of interleaving with this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from models.chats.conversation_lock import ConversationLock
from models.chats.store import ConversationStore, StoredMessage
from models.chats.turns import STAT_FIELDS, AnswerStats
from models.documents.chat_documents import ChatDocument
from models.inference.images import ChatImage

if TYPE_CHECKING:
    from models.inference.engine import GenerationStep

__all__ = ["FLUSH_INTERVAL_S", "STAT_FIELDS", "AnswerRecorder", "step_stats"]

FLUSH_INTERVAL_S = 2.0


def step_stats(step: GenerationStep) -> dict[str, float]:
    """The numbers of a ``GenerationStep`` worth keeping with the answer."""
    return AnswerStats.from_step(step).as_stored()


class AnswerRecorder:
    """Records one answer at a time into ``store`` (see the module docstring)."""

    def __init__(
        self,
        store: ConversationStore,
        *,
        model: str | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.model = model
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.question: StoredMessage | None = None
        self.answer_id: int | None = None
        self._prefix = ""  # text the answer already had (when resumed)
        self._prefix_token_ids: tuple[int, ...] | None = ()
        self._parts: list[str] = []
        self._dirty = False
        self._last_flush = 0.0
        self._lock: ConversationLock | None = None

    def claim(self, conversation_id: int) -> None:
        """Hold the conversation's lock for this turn; ``ConversationBusy`` if another turn has it."""
        if self._lock is not None and self._lock.conversation_id == conversation_id and self._lock.held:
            return
        self.release()
        lock = ConversationLock(self.store.folder, conversation_id)
        lock.acquire()
        self._lock = lock

    def release(self) -> None:
        """Let another turn into the conversation (``finish`` and ``abandon`` do this)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    @property
    def text(self) -> str:
        """The answer so far, flushed or not."""
        return self._prefix + "".join(self._parts)

    @property
    def active(self) -> bool:
        return self.answer_id is not None

    def begin(
        self,
        conversation_id: int,
        text: str,
        images: Iterable[ChatImage] = (),
        documents: Iterable[ChatDocument] = (),
    ) -> StoredMessage:
        """Commit the question (with its images and documents) and an empty answer marked
        interrupted; return the question."""
        self.claim(conversation_id)
        try:
            with self.store.transaction():
                self.question = self.store.add_message(
                    conversation_id, "user", text, images, documents=documents
                )
                self._open(conversation_id)
        except BaseException:
            self.answer_id = None
            self.release()
            raise
        return self.question

    def begin_answer(self, conversation_id: int) -> StoredMessage:
        """Commit an empty answer marked interrupted (the question is already stored); return it."""
        self.question = None
        self.claim(conversation_id)
        try:
            self._open(conversation_id)
        except BaseException:
            self.release()
            raise
        return self.store.message(self._require_active())

    def resume(self, message_id: int) -> StoredMessage:
        """Re-open a stored answer (cut off, or stopped at the token limit) to append to it."""
        answer = self.store.message(message_id)
        if answer.role != "assistant":
            raise ValueError("only an answer can be continued")
        self.claim(answer.conversation_id)
        try:
            self._start(answer.id, answer.text, answer.token_ids)
            self.store.update_message(answer.id, interrupted=True, finish_reason=None, error=None)
        except BaseException:
            self.answer_id = None
            self.release()
            raise
        return self.store.message(answer.id)

    def _open(self, conversation_id: int) -> None:
        answer = self.store.add_message(conversation_id, "assistant", "", model=self.model, interrupted=True)
        self._start(answer.id, "", ())

    def _start(self, answer_id: int, prefix: str, prefix_token_ids: tuple[int, ...] | None) -> None:
        self.answer_id = answer_id
        self._prefix = prefix
        self._prefix_token_ids = prefix_token_ids
        self._parts = []
        self._dirty = False
        self._last_flush = self.clock()

    def add(self, text: str) -> bool:
        """Buffer a piece of the answer; commit if the interval has passed. True if it committed."""
        self._require_active()
        if text:
            self._parts.append(text)
            self._dirty = True
        if self._dirty and self.clock() - self._last_flush >= self.flush_interval_s:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Commit the answer so far (still marked interrupted)."""
        answer_id = self._require_active()
        if self._dirty:
            self.store.update_message(answer_id, text=self.text)
            self._dirty = False
        self._last_flush = self.clock()

    def record(self, step: GenerationStep) -> StoredMessage | None:
        """Feed one ``GenerationStep``: ``finish`` the last (returning the answer), ``add`` the others."""
        if step.finish_reason:
            return self.finish(step)
        self.add(step.text)
        return None

    def finish(self, final: GenerationStep) -> StoredMessage:
        """Commit the finished answer: the final step's text appended, its stats, token ids,
        finish reason and error; ``interrupted`` is cleared. Returns the stored answer."""
        answer_id = self._require_active()
        if final.text:
            self._parts.append(final.text)
        token_ids = None
        if self._prefix_token_ids is not None:
            token_ids = tuple(self._prefix_token_ids) + tuple(final.token_ids)
        self.store.update_message(
            answer_id,
            text=self.text,
            model=self.model,
            stats=step_stats(final),
            finish_reason=final.finish_reason,
            error=final.error,
            interrupted=False,
            token_ids=token_ids,
        )
        return self._close()

    def abandon(self, error: str | None = None) -> StoredMessage:
        """Commit what there is and leave the answer marked interrupted (no final step came)."""
        answer_id = self._require_active()
        self._dirty = True
        self.flush()
        if error is not None:
            self.store.update_message(answer_id, error=error)
        return self._close()

    def _close(self) -> StoredMessage:
        try:
            return self.store.message(self._require_active())
        finally:
            self.answer_id = None
            self._parts = []
            self._prefix = ""
            self.release()

    def _require_active(self) -> int:
        if self.answer_id is None:
            raise RuntimeError("AnswerRecorder: call begin(), begin_answer() or resume() first")
        return self.answer_id
