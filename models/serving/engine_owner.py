"""The one thread that owns MLX for the server: it loads the engine, then answers queued jobs
one at a time, in the order they came.

``EngineOwner.submit`` queues a ``Job`` and returns at once; the owner thread hands the job's
``JobEvent``s (started, each ``GenerationStep``, rejected, failed) to the job's ``deliver``
callable, from the owner thread, so an asyncio server passes them on with
``loop.call_soon_threadsafe``. ``Job.cancel`` sets the engine's cancel ``Event`` (checked at
every token, between prefill chunks and images), so a client that goes away frees the engine
within one token; a job cancelled while still queued never starts. The engine's KV cache
outlives a job, so a client that resends the whole conversation prefills only the new tokens.
MLX's thread-local streams are released when the thread ends (``mx.clear_streams``).

A job lets go of its messages when it ends (``run_job``): images are decoded while the prompt
is built and never kept, so a finished job holds its numbers and final step, not its pixels.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Protocol

from models.hub.model_names import model_name
from models.inference.engine import Engine, GenerationSettings, GenerationStep, PromptError
from models.inference.images import ImageError
from models.inference.prompt import ChatMessage

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


_BLANK = GenerationStep("", None, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)


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

    def cancel(self) -> None:
        if not self.cancel_event.is_set():
            self.tokens_at_cancel = self.tokens
            self.cancel_event.set()


class JobRunner(Protocol):
    """What the HTTP side needs: a model name and a queue to put jobs in (``EngineOwner``, or the
    window's worker thread through ``desktop.controllers.server_controller``)."""

    @property
    def model_name(self) -> str: ...

    def submit(
        self, messages: list[ChatMessage], settings: GenerationSettings, deliver: Callable[[JobEvent], None]
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


def _rejection(exc: PromptError) -> JobEvent:
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
        job.final = replace(_BLANK, finish_reason="cancelled")
        send(job, JobEvent(EventKind.STEP, job.final))
        return
    if engine is None:
        send(job, JobEvent(EventKind.FAILED, message="No model is loaded."))
        return
    try:
        prompt = engine.prepare(job.messages, job.settings)
    except PromptError as exc:
        send(job, _rejection(exc))
        return
    send(job, JobEvent(EventKind.STARTED))
    try:
        for step in engine.generate(job.messages, job.settings, job.cancel_event, prepared=prompt):
            job.tokens = step.generation_tokens
            if step.finish_reason is not None:
                job.final = step
            send(job, JobEvent(EventKind.STEP, step))
    except Exception as exc:  # noqa: BLE001 - one failed answer must not end the server
        log.exception("Generation failed")
        send(job, JobEvent(EventKind.FAILED, message=f"Generation failed: {exc}"))


class EngineOwner:
    """A thread that loads ``path`` into an ``Engine`` and runs jobs on it one at a time."""

    def __init__(self, path: str | Path, loader: Callable[[Path], Engine] = Engine.load):
        self.path = Path(path)
        self._loader = loader
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting = 0
        self._running: Job | None = None
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.model_name = model_name(self.path)  # never a snapshot's commit
        self._thread = threading.Thread(target=self._main, name="llama-desk-engine", daemon=True)

    def start(self, timeout: float | None = None) -> None:
        """Start the thread and wait for the model to load; raise ``RuntimeError`` if it failed."""
        self._thread.start()
        self.ready.wait(timeout)
        if self.load_error is not None:
            raise RuntimeError(self.load_error)

    def submit(
        self, messages: list[ChatMessage], settings: GenerationSettings, deliver: Callable[[JobEvent], None]
    ) -> Job:
        job = Job(list(messages), settings, deliver, number=next(self._numbers))
        with self._lock:
            self._waiting += 1
        self._queue.put(job)
        return job

    @property
    def waiting(self) -> int:
        """Jobs queued behind the one running."""
        with self._lock:
            return self._waiting

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running is not None

    def close(self, timeout: float | None = 30.0) -> None:
        """Cancel what runs, drop what waits, unload the model and end the thread."""
        with self._lock:
            running = self._running
        if running is not None:
            running.cancel()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the owner thread ------------------------------------------------------------------

    def _main(self) -> None:
        engine = None
        try:
            try:
                engine = self._loader(self.path)
                self.model_name = engine.name
            except Exception as exc:  # noqa: BLE001 - a failed load is reported, not raised here
                self.load_error = str(exc) or type(exc).__name__
                return
            finally:
                self.ready.set()
            while (job := self._queue.get()) is not None:
                with self._lock:
                    self._waiting -= 1
                    self._running = job
                try:
                    run_job(engine, job)
                finally:
                    with self._lock:
                        self._running = None
                    job.done.set()
            self._drain()
        finally:
            if engine is not None:
                engine.close()
            self._release_streams()

    def _drain(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.cancel()
                send(job, JobEvent(EventKind.STEP, replace(_BLANK, finish_reason="cancelled")))
                job.done.set()

    @staticmethod
    def _release_streams() -> None:
        import sys

        mx = sys.modules.get("mlx.core")
        clear = getattr(mx, "clear_streams", None)
        if clear is not None:
            try:
                clear()
            except Exception:  # noqa: BLE001 - best effort at thread exit
                log.debug("mx.clear_streams failed", exc_info=True)
