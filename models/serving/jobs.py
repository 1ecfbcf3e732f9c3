"""Jobs for the engine host: one answer to generate, and the events it delivers.

A ``Job`` is queued with ``EngineHost.submit`` (``models.serving.engine_host``); the host's
thread hands its ``JobEvent``s (started, each ``GenerationStep``, rejected, failed) to the job's
``deliver`` callable, from that thread, so an asyncio server passes them on with
``loop.call_soon_threadsafe``. ``Job.cancel`` sets the job's cancel ``Event`` (checked at every
token, between prefill chunks and images), so a client that goes away frees its place within one
token; a job cancelled while still queued never starts.

A job lets go of its messages when it ends: images are decoded while the prompt is built and
never kept, so a finished job holds its numbers and final step, not its pixels. ``run_job``
answers one job on an engine that answers one at a time (a pipeline across a cluster).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

from models.inference.engine import Engine, GenerationSettings, GenerationStep, PromptError
from models.inference.images import ImageError
from models.inference.output_constraint import OutputConstraint
from models.inference.prompt import ChatMessage, EncodedPrompt

log = logging.getLogger(__name__)


class EventKind(Enum):
    STARTED = "started"  # the job left the queue and its prompt was accepted; generation begins
    STEP = "step"  # a GenerationStep; the last one has a finish_reason
    REJECTED = "rejected"  # the prompt cannot be answered (too long, bad template): the client's fault
    FAILED = "failed"  # something broke on this side


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    step: GenerationStep | None = None
    message: str = ""
    code: str | None = None  # REJECTED: "invalid_image" (else the prompt is too long)
    param: str | None = None  # REJECTED for an image: where it was (its name)


BLANK = GenerationStep("", None, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)


@dataclass(eq=False)
class Job:
    """One answer to generate. ``deliver`` receives its events on the owner thread."""

    messages: list[ChatMessage]
    settings: GenerationSettings
    deliver: Callable[[JobEvent], None]
    number: int = 0
    cancel_event: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    tokens: int = 0  # generated so far
    tokens_at_cancel: int | None = None  # how many had been generated when cancel() was called
    final: GenerationStep | None = None
    conversation: int | str | None = None  # a stored conversation: its KV cache is its own
    priority: int = 0  # the window's own questions (1) go before API requests (0)
    continue_final: bool = False  # continue the last (assistant) message
    prepared: EncodedPrompt | None = None  # the prompt, when the caller built it already
    constraint: OutputConstraint | None = None  # structured output: what the answer must be
    fit_pages: bool = False  # PDFs' last page images go as text while the prompt is too long (API)

    def cancel(self) -> None:
        if not self.cancel_event.is_set():
            self.tokens_at_cancel = self.tokens
            self.cancel_event.set()


class QueueFull(RuntimeError):
    """Too many requests wait already; ``retry_after_s`` is a guess at when to try again."""

    def __init__(self, waiting: int, retry_after_s: int):
        super().__init__(f"{waiting} requests are waiting for the model; try again shortly.")
        self.retry_after_s = retry_after_s


class JobRunner(Protocol):
    """What the HTTP side needs: a model name and a queue to put jobs in (``EngineHost``, the
    server's or the window's); ``submit`` raises ``QueueFull`` past the queue's limit. The API
    passes ``constraint`` only for structured output, ``fit_pages`` only with PDFs."""

    @property
    def model_name(self) -> str: ...

    def submit(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        deliver: Callable[[JobEvent], None],
        *,
        constraint: OutputConstraint | None = None,
        fit_pages: bool = False,
    ) -> Job: ...


def send(job: Job, event: JobEvent) -> None:
    """Hand ``event`` to the job's consumer; a consumer that is gone cancels the job."""
    try:
        job.deliver(event)
    except Exception:  # noqa: BLE001 - a consumer that is gone must not stop the engine
        log.debug("Delivering a job event failed", exc_info=True)
        job.cancel()


def run_job(engine: Engine | None, job: Job) -> None:
    """Answer ``job`` on ``engine`` in the calling thread, which must be the one owning MLX.

    Every job ends with a final step (``finish_reason`` set), ``REJECTED`` or ``FAILED``, and
    then holds no messages (nor their images)."""
    try:
        _run(engine, job)
    finally:
        job.messages = []


def fitted_prompt(engine: Engine, job: Job) -> EncodedPrompt:
    """``job``'s prompt. With ``job.fit_pages`` (an API request), while it is longer than the
    context, the last page image of its latest message with one goes as text instead, and the
    job keeps the messages that fit; a prompt refused for another reason, or without page
    images to spare, raises its ``PromptError``."""
    messages = list(job.messages)
    while True:
        try:
            prompt = engine.prepare(messages, job.settings, job.continue_final)
        except PromptError as exc:
            spare = next((i for i in reversed(range(len(messages))) if messages[i].page_images), None)
            if not job.fit_pages or not exc.prompt_ids or spare is None:  # prompt_ids: too long
                raise
            messages[spare] = messages[spare].with_image_pages(messages[spare].page_images - 1)
            continue
        job.messages = messages
        return prompt


def rejection(exc: PromptError) -> JobEvent:
    """What a prompt that cannot be answered is for the client: a damaged image or messages the
    chat template refuses are its fault (400), a model whose tokenizer failed is ours (500)."""
    from models.inference.tokenizer_guard import TokenizerFailure

    cause = exc.__cause__
    if isinstance(cause, ImageError):  # decoded only now: a damaged image is the client's fault
        return JobEvent(EventKind.REJECTED, message=str(cause), code="invalid_image", param=cause.source)
    if isinstance(cause, TokenizerFailure):
        return JobEvent(EventKind.FAILED, message=str(exc))
    if cause is not None:  # the chat template refused these messages (or found them too costly)
        return JobEvent(EventKind.REJECTED, message=str(exc), code="invalid_prompt", param="messages")
    return JobEvent(EventKind.REJECTED, message=str(exc), code="context_length_exceeded")


def _run(engine: Engine | None, job: Job) -> None:
    if job.cancel_event.is_set():
        job.final = replace(BLANK, finish_reason="cancelled")
        send(job, JobEvent(EventKind.STEP, job.final))
        return
    if engine is None:
        send(job, JobEvent(EventKind.FAILED, message="No model is loaded."))
        return
    try:
        prompt = job.prepared or fitted_prompt(engine, job)
    except PromptError as exc:
        send(job, rejection(exc))
        return
    send(job, JobEvent(EventKind.STARTED))
    try:
        steps = engine.generate(
            job.messages, job.settings, job.cancel_event, job.continue_final, prepared=prompt
        )
        for step in steps:
            job.tokens = step.generation_tokens
            if step.finish_reason is not None:
                job.final = step
            send(job, JobEvent(EventKind.STEP, step))
    except Exception as exc:  # noqa: BLE001 - one failed answer must not end the server
        log.exception("Generation failed")
        send(job, JobEvent(EventKind.FAILED, message=f"Generation failed: {exc}"))
