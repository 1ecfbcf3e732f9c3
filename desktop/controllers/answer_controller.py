"""The answer flow: asking, editing and resending, regenerating, continuing and stopping.

``AnswerController`` turns each request into a ``ConversationSession`` job (checked against the
memory budget by ``TurnMemory`` first, with a fresh start offered when the conversation has
outgrown it), hands the job to the MLX worker, feeds the worker's events back into the session
and reports how the answer ended. It owns the job in flight, the question being edited and the
actions waiting for the answer to end. It draws nothing: the window connects its signals to the
composer, status bar and sidebar.

Signals:
    question_taken(object): the ``Draft`` was sent; the composer lets it go.
    answer_started(): a job went to the worker.
    answer_ended(object): the ``AnswerEnded`` event, once the session took it in.
    draft_returned(object): the ``Draft`` of a question whose answer failed with nothing.
    current_changed(object): the open conversation (its id, or None) was stored or replaced.
    storage_failed(str): the store refused a write of the answer.
    notice(str, str): a one-line message for the person, and its source (``desktop.notices``:
        a question that could not go now, PDF pages sent as text to fit memory, or an answer
        that failed).
    answer_finished(object): the final ``GenerationStep``, after the waiting actions ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop import notices
from desktop.controllers.conversation_controller import ConversationController
from desktop.controllers.model_controller import ModelController
from desktop.controllers.turn_memory import TurnMemory
from desktop.workers.inference_worker import InferenceWorker
from models.chats.answer_run import AnswerEnded, AnswerEvent, AnswerJob, EndReason, RowsStored, StorageFailed
from models.chats.conversation_session import ConversationSession


@dataclass(frozen=True)
class Draft:
    """A question as the composer holds it; ``thumbnails`` travel with it to be given back."""

    text: str
    images: Sequence[Any] = ()  # models.inference.images.ChatImage
    thumbnails: Sequence[Any] = ()  # QImage, one per image
    images_pending: int = 0  # attached images still being read
    documents: Sequence[Any] = ()  # models.documents.chat_documents.ChatDocument
    document_thumbnails: Sequence[Any] = ()  # QImage, one per page that goes as an image
    documents_pending: int = 0  # attached PDFs still being read


class AnswerController(QObject):
    question_taken = Signal(object)
    answer_started = Signal()
    answer_ended = Signal(object)
    draft_returned = Signal(object)
    current_changed = Signal(object)
    storage_failed = Signal(str)
    notice = Signal(str, str)
    answer_finished = Signal(object)

    def __init__(
        self,
        session: ConversationSession,
        worker: InferenceWorker,
        models: ModelController,
        conversations: ConversationController,
        turn_memory: TurnMemory,
        *,
        generation_settings: Any,
        system_prompt: str | None = None,
        confirm_fresh_start: Callable[[str], bool] = lambda _reason: False,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.session = session
        self.worker = worker
        self.models = models
        self.conversations = conversations
        self.turn_memory = turn_memory
        self.generation_settings = generation_settings  # the defaults a new conversation uses
        self.system_prompt = system_prompt
        self.editing_row: int | None = None  # the question being edited in the composer
        self._confirm_fresh_start = confirm_fresh_start
        self._job: AnswerJob | None = None
        self._sent_draft: Draft | None = None
        self._next_settings = None
        self._after_answer: list[Callable[[], Any]] = []
        self._closed = False
        worker.answer_event.connect(self._on_worker_answer_event)

    # State -------------------------------------------------------------------------------------
    @property
    def generating(self) -> bool:
        return self.session.answering

    @property
    def busy(self) -> bool:
        """A job was handed to the worker and has not ended."""
        return self._job is not None

    def shut_down(self) -> None:
        """The window is closing: events still arriving are dropped."""
        self._closed = True

    # Asking ------------------------------------------------------------------------------------
    def ask(self, draft: Draft) -> bool:
        """Send ``draft`` (replacing the question being edited, if any); False, with a notice
        or a fresh start offered, when it cannot go now."""
        if self.generating or not (draft.text.strip() or draft.images or draft.documents):
            return False
        if self.models.name is None:
            self.notice.emit(
                "Still loading the model; your question is kept."
                if self.models.loading
                else "No model is loaded; open one with File ▸ Open Model Folder…. Your question is kept.",
                notices.SEND,
            )
            return False
        if draft.images_pending:
            self.notice.emit("An image is still being read; try again in a moment.", notices.SEND)
            return False
        if draft.documents_pending:
            self.notice.emit("A PDF is still being read; try again in a moment.", notices.SEND)
            return False
        settings = self.conversations.settings.generation_settings(self.generation_settings)
        documents, demoted = self.turn_memory.fit_documents(
            settings, draft.text, draft.images, draft.documents, self.session.turns
        )
        turn_settings, too_big = self._turn_settings(draft.text, draft.images, documents)
        if too_big is not None:
            self._offer_fresh_start(too_big)
            return False
        self._next_settings = turn_settings
        self._sent_draft = draft
        self.question_taken.emit(draft)
        # Sending an edited question replaces it and everything after it.
        replacing_row, self.editing_row = self.editing_row, None
        # A new conversation is created with its first question, in the question's transaction:
        # a question refused before it is stored leaves no empty conversation behind.
        conversation_id = self.conversations.current_id
        self._submit(
            self.session.ask(
                draft.text,
                draft.images,
                documents=documents,
                settings=self._take_turn_settings(),
                system_prompt=self._effective_system_prompt(),
                conversation_id=conversation_id,
                replacing_row=replacing_row,
                create_with=self.conversations.new_settings(self.system_prompt or "")
                if conversation_id is None
                else None,
            )
        )
        if demoted:
            self.notice.emit(demoted, notices.PAGES)
        return True

    def regenerate(self, row: int) -> None:
        """Answer the last question again, replacing the answer at ``row``."""
        if not self._last_answer(row) or not self._plan_turn():
            return
        self._sent_draft = None
        self._submit(
            self.session.regenerate(
                row,
                settings=self._take_turn_settings(),
                system_prompt=self._effective_system_prompt(),
                conversation_id=self.conversations.current_id,
            )
        )

    def continue_answer(self, row: int) -> None:
        """Continue the last answer where the token limit cut it."""
        if not self._last_answer(row) or not self._plan_turn():
            return
        self._sent_draft = None
        self._submit(
            self.session.continue_answer(
                row,
                settings=self._take_turn_settings(),
                system_prompt=self._effective_system_prompt(),
                conversation_id=self.conversations.current_id,
            )
        )

    def stop(self) -> None:
        """Stop this window's answer (running or waiting its turn) and whatever job the engine
        runs now: an API request's too (File ▸ Serve API answers on the same worker)."""
        if self.generating and self._job is not None:
            self._job.cancel.set()
        self.worker.cancel()

    def when_idle(self, action: Callable[[], Any]) -> bool:
        """Run ``action`` now, or after the answer being generated is stopped; True if now."""
        if self.generating:
            self._after_answer.append(action)
            self.stop()
            return False
        action()
        return True

    def after_answer(self, action: Callable[[], Any]) -> None:
        """Run ``action`` once the answer being generated ends (without stopping it)."""
        self._after_answer.append(action)

    def _last_answer(self, row: int) -> bool:
        if self.models.name is None or row != len(self.session) - 1:
            return False
        return self.session.turn(row).role == "assistant"

    def _effective_system_prompt(self) -> str | None:
        if self.conversations.current is not None:
            return self.conversations.settings.system_prompt.strip() or None
        return self.system_prompt

    def _turn_settings(
        self, text: str, images: Sequence[Any], documents: Sequence[Any] = ()
    ) -> tuple[Any, str | None]:
        """The next turn's settings with a prefill chunk that keeps the peak in budget, or why
        the turn would outgrow memory (``TurnMemory``)."""
        settings = self.conversations.settings.generation_settings(self.generation_settings)
        return self.turn_memory.turn_settings(settings, text, images, self.session.turns, documents)

    def _plan_turn(self) -> bool:
        """Check the next turn against the memory budget and keep its settings; say why not."""
        turn_settings, too_big = self._turn_settings("", ())
        if too_big is not None:
            self.notice.emit(too_big, notices.SEND)
            return False
        self._next_settings = turn_settings
        return True

    def _take_turn_settings(self) -> Any:
        """The settings ``_plan_turn``/``ask`` chose for this turn (or the conversation's)."""
        settings = self._next_settings or self.conversations.settings.generation_settings(
            self.generation_settings
        )
        self._next_settings = None
        return settings

    def _offer_fresh_start(self, reason: str) -> None:
        """The next turn would outgrow memory: say so, and offer to carry on in a new conversation
        that keeps only the last exchange (the draft stays in the composer either way)."""
        if not self._confirm_fresh_start(reason):
            self.notice.emit(reason, notices.SEND)
            return
        self.editing_row = None
        system_prompt = self._effective_system_prompt() or ""
        self.conversations.new()
        conversation_id = self.conversations.ensure_current(system_prompt)
        problem = self.session.carry_over(self.conversations.store, conversation_id)
        if problem is not None:
            self.storage_failed.emit(problem)
        self.conversations.reload_current()
        self.current_changed.emit(self.conversations.current_id)
        self.notice.emit("Continued in a new conversation with the last exchange; press Send.", notices.SEND)

    # Following the worker ----------------------------------------------------------------------
    def _submit(self, job: AnswerJob) -> None:
        """Hand the session's job to the worker (which runs and stores it)."""
        self._job = job
        self.answer_started.emit()
        self.worker.request_generate.emit(job)

    def _on_worker_answer_event(self, event: AnswerEvent) -> None:
        if self._closed or not self.session.answering:
            return
        gave_back = self.session.apply(event)
        if isinstance(event, RowsStored):
            self.conversations.stored_in(event.conversation_id)
            self.current_changed.emit(self.conversations.current_id)
        elif isinstance(event, StorageFailed):
            self.storage_failed.emit(event.message)
        elif isinstance(event, AnswerEnded):
            self._on_answer_ended(event, gave_back)

    def _on_answer_ended(self, event: AnswerEnded, gave_back: bool) -> None:
        step = event.final
        self.answer_ended.emit(event)
        if event.reason is EndReason.FAILED:
            if gave_back:
                # Nothing came back: the conversation is as it was; give the draft back.
                if self._sent_draft is not None:
                    self.draft_returned.emit(self._sent_draft)
                self.conversations.reload_current()  # the worker removed what it had added
            self.notice.emit(step.error or "The answer failed.", notices.ANSWER)
        else:
            self.turn_memory.record_peak(step)
        self._sent_draft = None
        self._job = None
        pending, self._after_answer = self._after_answer, []
        for action in pending:
            action()
        self.answer_finished.emit(step)
