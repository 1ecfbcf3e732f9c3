"""The one owner of the open conversation's turns: what is asked, streamed, replaced and kept.

``ConversationSession`` holds the turn list of one conversation (frozen ``Turn``s) and tells a
listener about every change with a plain event (``TurnsReset``, ``TurnAdded``, ``TurnChanged``,
``TurnsRemoved``); the window's transcript model is a view that follows them, and
``llama-desk ask --chat`` drives the same object without Qt.

Each action returns the ``AnswerJob`` that ``answer_run.run_answer`` carries out, and feeding
the run's events back through ``apply`` keeps the turns in step with the store:

- ask: the question and a streaming answer are added; the job stores both before generating.
  With ``replacing_row`` (edit and resend) the turns from that row on are replaced: they leave
  the list now, and the store deletes them once the new answer has text.
- regenerate: the last answer is replaced the same way; continue: the last answer streams
  again and is carried on, in the list and in the store.
- stop: the answer keeps what it has ("cancelled"). An engine failure that produced text keeps
  it (finish reason "error"); one that produced nothing puts the turns back as they were (the
  store drops what it added) and ``apply`` returns True so the caller can give the draft back.
- fresh start (``carry_over``): a new conversation starts from copies of the last exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from models.chats.answer_run import (
    AnswerEnded,
    AnswerEvent,
    AnswerJob,
    EndReason,
    RowsStored,
    TextGenerated,
)
from models.chats.store import ConversationSettings, StoreError
from models.chats.turns import AnswerStats, Turn, chat_messages

if TYPE_CHECKING:
    from models.chats.store import ConversationStore
    from models.documents.chat_documents import ChatDocument
    from models.inference.images import ChatImage
    from models.inference.prompt import ChatMessage


@dataclass(frozen=True)
class TurnsReset:
    """The whole list changed (another conversation, a fresh start, a failed answer undone)."""

    turns: tuple[Turn, ...]


@dataclass(frozen=True)
class TurnAdded:
    row: int
    turn: Turn


@dataclass(frozen=True)
class TurnChanged:
    row: int
    turn: Turn
    appended: str = ""  # when the change is text added at the end (streaming)


@dataclass(frozen=True)
class TurnsRemoved:
    first: int  # rows first..last, inclusive
    last: int


SessionEvent = TurnsReset | TurnAdded | TurnChanged | TurnsRemoved
Listener = Callable[[SessionEvent], None]


def stored_turns(store: ConversationStore, conversation_id: int) -> list[Turn]:
    """The stored conversation's turns, images and documents loaded (a PDF on many questions
    read once)."""
    read: dict[str, bytes] = {}
    return [
        Turn.from_stored(
            message,
            tuple(store.load_image(image) for image in message.images),
            tuple(store.load_document(document, read) for document in message.documents),
        )
        for message in store.messages(conversation_id)
    ]


class ConversationSession:
    """The turns of the open conversation (see the module docstring)."""

    def __init__(self, listener: Listener | None = None):
        self._turns: list[Turn] = []
        self._listeners: list[Listener] = [listener] if listener is not None else []
        self.conversation_id: int | None = None
        self.answer_row: int | None = None  # the answer being generated
        self._question_row: int | None = None
        self._continuing = False
        self._new_text = False
        self._before: list[Turn] | None = None  # the turns to put back if the answer fails empty

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _tell(self, event: SessionEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # Reading -----------------------------------------------------------------------------------
    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def turn(self, row: int) -> Turn:
        return self._turns[row]

    def __len__(self) -> int:
        return len(self._turns)

    @property
    def answering(self) -> bool:
        return self.answer_row is not None

    def messages(self, system_prompt: str | None = None) -> list[ChatMessage]:
        """The finished turns as engine messages (the streaming answer is left out)."""
        return chat_messages(self._turns, system_prompt)

    # Plain changes (each one event) ------------------------------------------------------------
    def show(self, turns: Iterable[Turn], conversation_id: int | None = None) -> None:
        """Show another conversation (or none): one reset."""
        self._turns = list(turns)
        self.conversation_id = conversation_id
        self.answer_row = None
        self._before = None
        self._tell(TurnsReset(tuple(self._turns)))

    def clear(self) -> None:
        self.show([], None)

    def append(self, turn: Turn) -> int:
        row = len(self._turns)
        self._turns.append(turn)
        self._tell(TurnAdded(row, turn))
        return row

    def update(self, row: int, **changes: Any) -> Turn:
        turn = replace(self._turns[row], **changes)
        self._turns[row] = turn
        self._tell(TurnChanged(row, turn))
        return turn

    def append_text(self, row: int, text: str) -> None:
        turn = replace(self._turns[row], text=self._turns[row].text + text)
        self._turns[row] = turn
        self._tell(TurnChanged(row, turn, appended=text))

    def remove_from(self, row: int) -> None:
        """Drop rows ``row`` to the end."""
        if row >= len(self._turns):
            return
        last = len(self._turns) - 1
        del self._turns[row:]
        self._tell(TurnsRemoved(row, last))

    def finish_answer(self, row: int, step: Any, continued: bool = False) -> Turn:
        """Record how an answer ended (a ``GenerationStep``); a continued answer extends its ids."""
        turn = self._turns[row]
        new_ids = tuple(getattr(step, "token_ids", ()) or ())
        if continued:
            # Unknown ids stay unknown: the text is re-tokenized rather than half-described.
            token_ids = None if turn.token_ids is None else turn.token_ids + new_ids
        else:
            token_ids = new_ids or None
        return self.update(
            row,
            streaming=False,
            stats=AnswerStats.from_step(step) if step is not None else None,
            finish_reason=getattr(step, "finish_reason", "error"),
            error=getattr(step, "error", None),
            token_ids=token_ids,
        )

    # Actions -----------------------------------------------------------------------------------
    def ask(
        self,
        text: str,
        images: Sequence[ChatImage] = (),
        *,
        documents: Sequence[ChatDocument] = (),
        settings: Any,
        system_prompt: str | None = None,
        conversation_id: int | None = None,
        replacing_row: int | None = None,
        create_with: ConversationSettings | None = None,
        store_settings: ConversationSettings | None = None,
    ) -> AnswerJob:
        """Add the question (with its attached ``documents``: their pages go into its prompt)
        and a streaming answer; the job stores them (``conversation_id`` or ``create_with``),
        replacing the turns from ``replacing_row`` on (edit and resend)."""
        self._require_idle()
        self._before = list(self._turns)
        truncate_from = None
        if replacing_row is not None:
            truncate_from = self._turns[replacing_row].message_id
            self.remove_from(replacing_row)
        if conversation_id is not None:
            self.conversation_id = conversation_id
        self._question_row = self.append(Turn("user", text, tuple(images), documents=tuple(documents)))
        messages = self.messages(system_prompt)
        self._start(self.append(Turn("assistant", streaming=True)), continuing=False)
        return AnswerJob(
            messages=messages,
            settings=settings,
            conversation_id=self.conversation_id,
            question=(text, tuple(images)),
            question_documents=tuple(documents),
            truncate_from=truncate_from,
            create_with=create_with,
            store_settings=store_settings,
        )

    def regenerate(
        self, row: int, *, settings: Any, system_prompt: str | None = None, conversation_id: int | None = None
    ) -> AnswerJob:
        """Answer the last question again, replacing the answer at ``row`` (the last one)."""
        self._require_idle()
        if conversation_id is not None:
            self.conversation_id = conversation_id
        if row != len(self._turns) - 1 or self._turns[row].role != "assistant":
            raise ValueError("only the last answer can be regenerated")
        self._before = list(self._turns)
        truncate_from = self._turns[row].message_id
        self.remove_from(row)
        self._question_row = None
        messages = self.messages(system_prompt)
        self._start(self.append(Turn("assistant", streaming=True)), continuing=False)
        return AnswerJob(
            messages=messages,
            settings=settings,
            conversation_id=self.conversation_id,
            truncate_from=truncate_from,
        )

    def continue_answer(
        self, row: int, *, settings: Any, system_prompt: str | None = None, conversation_id: int | None = None
    ) -> AnswerJob:
        """Carry on the last answer (cut at the token limit, stopped or interrupted)."""
        self._require_idle()
        if conversation_id is not None:
            self.conversation_id = conversation_id
        if row != len(self._turns) - 1 or self._turns[row].role != "assistant":
            raise ValueError("only the last answer can be continued")
        self._before = None  # a continued answer keeps what it had, whatever happens
        messages = self.messages(system_prompt)  # the answer so far is the prompt's last turn
        self._question_row = None
        self.update(row, streaming=True)
        self._start(row, continuing=True)
        return AnswerJob(
            messages=messages,
            settings=settings,
            continue_final=True,
            conversation_id=self.conversation_id,
            resume_message_id=self._turns[row].message_id,
        )

    def _start(self, row: int, *, continuing: bool) -> None:
        self.answer_row = row
        self._continuing = continuing
        self._new_text = False

    def _require_idle(self) -> None:
        if self.answer_row is not None:
            raise RuntimeError("an answer is being generated in this conversation")

    # Following a run ---------------------------------------------------------------------------
    def apply(self, event: AnswerEvent) -> bool:
        """Take in one event of the running answer. True when it ended with nothing and the
        turns were put back as before it (give the question's draft back)."""
        row = self.answer_row
        if row is None:
            return False
        if isinstance(event, RowsStored):
            self.conversation_id = event.conversation_id
            if event.question_id is not None and self._question_row is not None:
                self.update(self._question_row, message_id=event.question_id)
            self.update(row, message_id=event.answer_id)
        elif isinstance(event, TextGenerated) and event.text:
            self._new_text = True
            self.append_text(row, event.text)
        elif isinstance(event, AnswerEnded):
            return self._end(row, event)
        return False

    def _end(self, row: int, event: AnswerEnded) -> bool:
        self.answer_row = None
        before, self._before = self._before, None
        if event.reason is EndReason.FAILED and not self._new_text and before is not None:
            # The store dropped what this answer added (and the conversation, if that left it empty).
            self.show(before, self.conversation_id if before else None)
            return True
        self.finish_answer(row, event.final, continued=self._continuing)
        return False

    # Fresh start -------------------------------------------------------------------------------
    def carry_over(self, store: ConversationStore | None, conversation_id: int | None) -> str | None:
        """Continue in conversation ``conversation_id`` (new, empty) from copies of the last
        exchange, stored when there is a store; returns why the copies could not be stored."""
        self._require_idle()
        carried = [t for t in self._turns if not t.streaming][-2:]
        problem = None
        copies = []
        for turn in carried:
            copy = replace(turn, message_id=None, stats=None)
            if store is not None and conversation_id is not None:
                try:
                    stored = store.add_message(
                        conversation_id,
                        turn.role,
                        turn.text,
                        turn.images,
                        finish_reason=turn.finish_reason,
                        token_ids=turn.token_ids,
                        documents=turn.documents,
                    )
                    copy = replace(copy, message_id=stored.id)
                except (StoreError, OSError) as exc:
                    problem = f"The earlier messages could not be copied: {exc}"
            copies.append(copy)
        self.show(copies, conversation_id)
        return problem
