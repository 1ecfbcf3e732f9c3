"""The turns of a conversation as plain values, and the figures an answer ended with.

``Turn`` is one question or answer as the conversation owner (``conversation_session``) keeps
it: frozen, so a change is a new ``Turn`` and an event. ``AnswerStats`` is the figures an
answer ended with, whether it just streamed (``from_step``) or was read back from the store
(``from_stored``), replacing the ``GenerationStep`` / ``SimpleNamespace`` mix.

A conversation's size for the memory check is ``models.memory.turn_size.conversation_tokens``
(a ``Turn`` has the fields it reads).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from models.documents.chat_documents import ChatDocument
from models.inference.images import ChatImage
from models.inference.prompt import ChatMessage, Role

if TYPE_CHECKING:
    from models.chats.store import StoredMessage
    from models.inference.engine import GenerationStep


@dataclass(frozen=True)
class AnswerStats:
    """The figures of a finished answer, as stored with it."""

    prompt_tokens: int = 0  # prefilled for this turn (the cache held the rest)
    cached_tokens: int = 0
    generation_tokens: int = 0
    ttft_s: float = 0.0
    prompt_tps: float = 0.0
    generation_tps: float = 0.0
    peak_memory_gb: float = 0.0
    prompt_token_ids: tuple[int, ...] = field(default=(), repr=False, compare=False)  # not stored

    @classmethod
    def from_step(cls, step: GenerationStep) -> AnswerStats:
        """The figures of a final step (a partial step-like object gives zeros for what it lacks)."""
        values: dict[str, Any] = {f.name: getattr(step, f.name, f.default) for f in fields(cls)}
        values["prompt_token_ids"] = tuple(values["prompt_token_ids"] or ())
        return cls(**values)

    @classmethod
    def from_stored(cls, stats: Mapping[str, float] | None) -> AnswerStats | None:
        """Figures read back from the store (unknown keys ignored, missing ones zero)."""
        if not stats:
            return None
        names = {f.name for f in fields(cls)} - {"prompt_token_ids"}
        values: dict[str, Any] = {name: stats[name] for name in names if name in stats}
        return cls(**values)

    def as_stored(self) -> dict[str, float]:
        """The figures worth keeping with the answer (what ``StoredMessage.stats`` holds)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "prompt_token_ids"}


STAT_FIELDS = tuple(name for name in AnswerStats().as_stored())


@dataclass(frozen=True)
class Turn:
    """One question or answer of the open conversation."""

    role: Role  # "user" | "assistant" (a system prompt is a setting, not a turn)
    text: str = ""
    images: tuple[ChatImage, ...] = ()
    stats: AnswerStats | None = None
    token_ids: tuple[int, ...] | None = None  # the ids an answer was generated as
    finish_reason: str | None = None  # "stop", "length", "cancelled", "error"
    error: str | None = None
    message_id: int | None = None  # the stored message, once the store has it
    interrupted: bool = False  # cut off by a crash or kill before it finished
    streaming: bool = False
    documents: tuple[ChatDocument, ...] = ()  # a question's attached PDFs (their pages chosen)

    @classmethod
    def from_stored(
        cls, message: StoredMessage, images: Iterable[ChatImage] = (), documents: Iterable[ChatDocument] = ()
    ) -> Turn:
        return cls(
            role=message.role,
            text=message.text,
            images=tuple(images),
            documents=tuple(documents),
            stats=AnswerStats.from_stored(message.stats),
            token_ids=message.token_ids,
            finish_reason=message.finish_reason,
            error=message.error,
            message_id=message.id,
            interrupted=message.interrupted,
        )

    @property
    def in_prompt(self) -> bool:
        """Whether the turn goes to the engine: not while streaming, and not an answer without
        text (a failure, or one cut off before its first token)."""
        if self.streaming or self.role == "system":
            return False
        return not (self.role == "assistant" and not self.text)

    def chat_message(self) -> ChatMessage:
        if self.role == "assistant":
            return ChatMessage("assistant", self.text, token_ids=self.token_ids)
        return ChatMessage("user", self.text, self.images, documents=self.documents)


def chat_messages(turns: Iterable[Turn], system_prompt: str | None = None) -> list[ChatMessage]:
    """The turns as engine messages, the system prompt first."""
    out = [ChatMessage("system", system_prompt)] if system_prompt else []
    out.extend(turn.chat_message() for turn in turns if turn.in_prompt)
    return out
