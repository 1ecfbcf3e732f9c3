"""One answer, generated and stored: a generator of typed events, like mlx-lm's ``stream_generate``.

``run_answer(engine, job, store)`` prepares the prompt, stores what the job says to store
(``AnswerJob``, built by ``ConversationSession``), drives ``Engine.generate`` and yields:

- ``RowsStored`` once the question and the empty answer (or the re-opened answer) are committed;
- ``TextGenerated`` pieces of the answer, joined to at most one every ``coalesce_s``;
- ``StorageFailed`` when the store refuses a write (the answer goes on, unsaved);
- ``AnswerEnded`` last, always, with an ``EndReason`` and the final ``GenerationStep``.

What is stored when (the storage half of the conversation policy):

- a question: the question and an empty answer marked interrupted, in one transaction (with the
  conversation itself for ``create_with``) before the first token; the answer every 2 s
  (``AnswerRecorder``) and whole at the end;
- edit and resend, regenerate (``truncate_from``): the new rows are added first; the replaced
  ones are deleted once the new answer has produced text, or when it ends without failing;
- an answer that fails with no text: the rows it added are removed again (and a conversation
  left empty by that), so the store is as it was; a continued answer keeps what it had;
- stop (``job.cancel``): the answer so far, finish reason "cancelled";
- an exception from the engine, or the consumer closing the generator early: what there is,
  left marked interrupted.

The generator never imports Qt; the desktop worker runs it on the MLX thread and turns the
events into signals, ``llama-desk ask --chat`` runs it in the foreground.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from models.chats.answer_recorder import AnswerRecorder
from models.chats.conversation_lock import ConversationBusy
from models.chats.store import ConversationSettings, ConversationStore, StoreError

if TYPE_CHECKING:
    from models.documents.chat_documents import ChatDocument
    from models.inference.engine import GenerationStep
    from models.inference.images import ChatImage
    from models.inference.prompt import ChatMessage

COALESCE_S = 0.03


class EndReason(Enum):
    """How an answer ended (``GenerationStep.finish_reason`` as a type)."""

    FINISHED = "stop"
    TOKEN_LIMIT = "length"
    STOPPED = "cancelled"
    FAILED = "error"

    @classmethod
    def of(cls, step: GenerationStep) -> EndReason:
        try:
            return cls(step.finish_reason)
        except ValueError:
            return cls.FAILED


@dataclass(frozen=True)
class AnswerJob:
    """One answer to generate, and what to store for it.

    ``messages``/``settings``/``continue_final`` go to ``Engine.generate``. With a
    ``conversation_id`` (or ``create_with``) the answer is stored: the ``question`` with an empty
    answer, or for ``resume_message_id`` that stored answer carried on (continue), or else an
    empty answer to the stored question (regenerate); ``truncate_from`` (a message id) and every
    later message are the turns it replaces (see the module docstring for when they go).
    ``create_with``: create the conversation with these settings in the question's transaction;
    ``store_settings``: replace the conversation's settings in that transaction.
    """

    messages: list[ChatMessage]
    settings: Any  # models.inference.engine.GenerationSettings
    continue_final: bool = False
    conversation_id: int | None = None
    question: tuple[str, tuple[ChatImage, ...]] | None = None  # (text, images)
    question_documents: tuple[ChatDocument, ...] = ()  # the question's attached PDFs, stored with it
    truncate_from: int | None = None
    resume_message_id: int | None = None
    create_with: ConversationSettings | None = None
    store_settings: ConversationSettings | None = None
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)

    @property
    def stored(self) -> bool:
        return self.conversation_id is not None or self.create_with is not None


@dataclass(frozen=True)
class RowsStored:
    conversation_id: int
    question_id: int | None  # None when no question was added (regenerate, continue)
    answer_id: int


@dataclass(frozen=True)
class TextGenerated:
    text: str


@dataclass(frozen=True)
class StorageFailed:
    message: str  # a sentence fit to show
    cause: Exception = field(compare=False)


@dataclass(frozen=True)
class AnswerEnded:
    reason: EndReason
    final: GenerationStep  # the last step: text, token ids, figures, error
    stored_answer_id: int | None = None  # the answer row, when it is (still) stored

    @property
    def error(self) -> str | None:
        return self.final.error


AnswerEvent = RowsStored | TextGenerated | StorageFailed | AnswerEnded


def error_step(message: str, prompt_ids: tuple[int, ...] = ()) -> GenerationStep:
    """A final step for an answer that failed before or while generating."""
    from models.inference.engine import GenerationStep

    return GenerationStep(
        text="",
        token=None,
        prompt_tokens=0,
        cached_tokens=0,
        generation_tokens=0,
        ttft_s=0.0,
        prompt_tps=0.0,
        generation_tps=0.0,
        peak_memory_gb=0.0,
        finish_reason="error",
        error=message,
        prompt_token_ids=tuple(prompt_ids),
    )


def _ended(final: GenerationStep, answer_id: int | None = None) -> AnswerEnded:
    return AnswerEnded(EndReason.of(final), final, answer_id)


class _Storage:
    """The store side of one run (see the module docstring); every failure becomes an event."""

    def __init__(self, job: AnswerJob, store: ConversationStore, recorder: AnswerRecorder):
        self.job = job
        self.store = store
        self.recorder: AnswerRecorder | None = recorder  # None once storing failed
        self.conversation_id = job.conversation_id
        self.first_new: int | None = None
        self.answer_id: int | None = None
        self.replacement_settled = job.truncate_from is None
        self.failures: list[StorageFailed] = []

    def _failed(self, message: str, exc: Exception) -> None:
        self.failures.append(StorageFailed(f"{message}: {exc}", exc))

    def _stored_id(self) -> int:
        """The conversation's id: a stored job has one, or ``begin`` creates it first."""
        assert self.conversation_id is not None, "a stored job names or creates its conversation"
        return self.conversation_id

    def begin(self) -> RowsStored | None:
        """Store the question / open the answer row. ``ConversationBusy`` propagates."""
        job, recorder = self.job, self.recorder
        assert recorder is not None, "begin runs first, once"
        try:
            with self.store.transaction():
                if job.create_with is not None and self.conversation_id is None:
                    self.conversation_id = self.store.create(settings=job.create_with).id
                elif job.store_settings is not None:
                    self.store.update_settings(self._stored_id(), job.store_settings)
                if job.resume_message_id is not None:
                    recorder.resume(job.resume_message_id)
                elif job.question is not None:
                    recorder.begin(
                        self._stored_id(), job.question[0], job.question[1], job.question_documents
                    )
                else:
                    recorder.begin_answer(self._stored_id())
        except ConversationBusy:
            raise
        except (StoreError, OSError, ValueError) as exc:
            recorder.release()
            self._failed("This answer is not being saved", exc)
            self.recorder = None
            return None
        question = recorder.question.id if recorder.question is not None else None
        answer_id = recorder.answer_id
        assert answer_id is not None, "begin, begin_answer and resume open the answer row"
        self.answer_id = answer_id
        self.first_new = question if question is not None else answer_id
        return RowsStored(self._stored_id(), question, answer_id)

    def record(self, step: GenerationStep) -> None:
        if self.recorder is None:
            return
        try:
            self.recorder.record(step)
        except (StoreError, OSError) as exc:
            self._failed("The answer could not be saved", exc)
            self.recorder = None

    def settle_replacement(self) -> None:
        """Delete the turns an edit/regenerate replaces, now that the new answer exists."""
        if self.replacement_settled or self.recorder is None:
            return
        self.replacement_settled = True
        # Not settled at the start: the job replaces turns; the recorder is left: begin stored rows.
        truncate_from, first_new = self.job.truncate_from, self.first_new
        assert truncate_from is not None and first_new is not None
        try:
            self.store.delete_between(truncate_from, first_new)
        except (StoreError, OSError) as exc:
            self._failed("The replaced messages could not be removed", exc)

    def abandon(self, error: str | None) -> None:
        if self.recorder is not None and self.recorder.active:
            try:
                self.recorder.abandon(error)
            except (StoreError, OSError):
                pass

    def drop_new_rows(self) -> None:
        """Remove the question and empty answer this failed run added (and a conversation left
        empty without them), so that the store is as it was."""
        if self.job.resume_message_id is not None or self.first_new is None:
            return  # a continued answer keeps what it had
        try:
            self.store.truncate_after(self.first_new, inclusive=True)
            if not self.store.messages(self._stored_id()):
                self.store.delete(self._stored_id())
        except (StoreError, OSError) as exc:
            self._failed("The failed question could not be removed", exc)

    def drain(self) -> Iterator[StorageFailed]:
        failures, self.failures = self.failures, []
        yield from failures


def run_answer(
    engine: Any,
    job: AnswerJob,
    store: Callable[[], ConversationStore] | None = None,
    *,
    recorder: AnswerRecorder | None = None,
    coalesce_s: float = COALESCE_S,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[AnswerEvent, None, None]:
    """Answer ``job`` with ``engine``, storing it through ``store()`` (see the module docstring).

    ``recorder``: one that already holds the conversation's lock (the command line claims it
    before loading the model). Always ends with an ``AnswerEnded``.
    """
    from models.inference.engine import PromptError

    if engine is None:
        yield _ended(error_step("No model is loaded."))
        return
    try:
        prepared = engine.prepare(job.messages, job.settings, job.continue_final)
    except PromptError as exc:  # nothing was stored or computed: the window gives the draft back
        yield _ended(error_step(str(exc), exc.prompt_ids))
        return
    except Exception as exc:  # noqa: BLE001
        yield _ended(error_step(f"Could not build the prompt: {exc}"))
        return

    storage = None
    if job.stored and store is not None:
        try:
            opened = store()
        except (StoreError, OSError) as exc:
            yield StorageFailed(f"This answer is not being saved: {exc}", exc)
        else:
            name = getattr(engine, "name", None)
            if recorder is None:
                recorder = AnswerRecorder(opened, model=name)
            else:
                recorder.model = name
            storage = _Storage(job, opened, recorder)
            try:
                rows = storage.begin()
            except ConversationBusy as exc:  # another window or command is answering there
                yield _ended(error_step(str(exc)))
                return
            yield from storage.drain()
            if rows is not None:
                yield rows

    pending: list[str] = []
    any_text = False
    last_emit = clock()
    final = None
    steps = None
    try:
        steps = engine.generate(job.messages, job.settings, job.cancel, job.continue_final, prepared=prepared)
        for step in steps:
            if storage is not None:
                storage.record(step)
            if step.text:
                pending.append(step.text)
                any_text = True
                if storage is not None:
                    storage.settle_replacement()
            if storage is not None:
                yield from storage.drain()
            if step.finish_reason:
                final = step
                break
            now = clock()
            if pending and now - last_emit >= coalesce_s:
                yield TextGenerated("".join(pending))
                pending.clear()
                last_emit = now
    except Exception as exc:  # noqa: BLE001 - the answer ends with a message, the caller goes on
        final = error_step(f"The answer failed: {exc}")
        if storage is not None:
            storage.abandon(str(exc))
    finally:
        if steps is not None:
            steps.close()
        if final is None and storage is not None:  # closed early (Ctrl-C, an error in the consumer)
            storage.abandon(None)
    if final is None:
        final = error_step("The answer ended without a result.")
        if storage is not None:
            storage.abandon(final.error)
    answer_id = None
    if storage is not None:
        answer_id = storage.answer_id
        if final.finish_reason == "error" and not any_text and storage.recorder is not None:
            storage.drop_new_rows()
            answer_id = job.resume_message_id  # None unless a continued answer kept its row
        elif final.finish_reason != "error":
            storage.settle_replacement()
        yield from storage.drain()
    if pending:
        yield TextGenerated("".join(pending))
    yield _ended(final, answer_id)
