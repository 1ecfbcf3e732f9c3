"""The engine host: the one thread that owns MLX, the engine, every conversation's KV cache, and
the scheduler that answers many requests at once (continuous batching).

The window (through ``desktop.workers.inference_worker``, a thin Qt relay), ``llama-desk ask``
and the API server (``llama-desk serve`` or the window's File ▸ Serve API) all hand it ``Job``s
(``models.serving.jobs``). ``submit`` returns at once; the host's thread:

- loads and unloads the model when asked (``load``, ``unload``: futures);
- admits waiting jobs while fewer than ``parallel`` answers run (the window's own questions,
  ``priority`` 1, are admitted at once, past the limit, and prefill first), prepares each prompt,
  gives it its KV cache (``models.serving.live_caches``: the conversation's own, restored from
  its saved file when it is not in memory, or the API cache sharing the longest prefix) and adds
  it to the ``Batch`` (``models.inference.batch_generation``);
- steps the batch, one token per running answer and one prefill chunk a step, handing each job
  its events (``JobEvent``: started, each ``GenerationStep``, rejected, failed) through its
  ``deliver``, on this thread;
- when an answer ends, keeps its cache for the next turn and, for a stored conversation, saves a
  snapshot of it in the background (``PromptCacheKeeper``).

Past ``queue_limit`` waiting jobs, ``submit`` raises ``QueueFull`` (the API answers 429 with
``Retry-After``); ``position(job)`` says how many wait ahead of a job. A job's ``cancel`` stops it
within one token (or one prefill chunk); one cancelled while waiting never starts. An engine that
answers one at a time (a pipeline across a cluster; ``Engine.batched`` False) runs its jobs in
turn, with its own single cache. MLX's thread-local streams are released when the thread ends.
(Over 400 lines because one class owns the thread, the queue and its admission, and the hand-off
of each answer's cache; split apart, each part would reach into the others' locked state.)
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.hub.model_names import model_name
from models.inference.answer_defaults import PARALLEL
from models.inference.engine import (
    Engine,
    GenerationCancelled,
    GenerationSettings,
    GenerationStep,
    PromptError,
)
from models.inference.output_constraint import ConstraintError, OutputConstraint
from models.inference.prompt import ChatMessage, EncodedPrompt
from models.serving.jobs import (
    BLANK,
    EventKind,
    Job,
    JobEvent,
    QueueFull,
    fitted_prompt,
    rejection,
    run_job,
    send,
)
from models.serving.live_caches import LiveCaches

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = PARALLEL  # Settings ▸ Parallel requests and ``serve --parallel``
DEFAULT_QUEUE_LIMIT = 32
WINDOW_PRIORITY = 1


class EngineHost:
    """One thread answering every caller's jobs on one engine, ``parallel`` at a time."""

    def __init__(
        self,
        path: str | Path | None = None,
        loader: Callable[..., Any] = Engine.load,
        parallel: int = DEFAULT_PARALLEL,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        keeper=None,
        fits: Callable[[list[int]], bool] | None = None,
    ):
        self.path = Path(path) if path is not None else None
        self._loader = loader
        self.parallel = max(1, int(parallel))
        self.queue_limit = max(0, int(queue_limit))
        self.keeper = keeper  # PromptCacheKeeper: stored conversations' saved caches, or None
        # Whether answers reaching these context lengths fit in memory at once; None: the
        # memory planner's verdict for the loaded model (``slot_memory``), set at each load.
        self._given_fits = fits
        self.fits: Callable[[list[int]], bool] | None = fits
        self.engine: Any = None
        self.model_name = model_name(self.path) if self.path is not None else ""
        self.ready = threading.Event()
        self.load_error: str | None = None
        self._inbox: queue.Queue[Callable[[], None] | Job | None] = queue.Queue()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: deque[Job] = deque()  # guarded by _lock
        self._running: list[Job] = []  # guarded by _lock
        self._caches = LiveCaches(keep=self.parallel + 2)
        self._conversations: Any = None  # ConversationCaches, for an engine answering one at a time
        self.on_activity: Callable[[], None] | None = None  # called on the host's thread
        self._batch: Any = None
        self._sequences: dict[int, Any] = {}  # id(job) -> its Sequence (host thread only)
        self._closing = False
        self._thread = threading.Thread(target=self._main, name="llama-desk-engine", daemon=True)
        self._started = False

    # -- any thread ------------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> None:
        """Start the thread; with a ``path``, wait for the model to load and raise
        ``RuntimeError`` if it failed."""
        self._ensure_thread()
        if self.path is None:
            self.ready.set()
            return
        self.load(self.path).result(timeout)
        if self.load_error is not None:
            raise RuntimeError(self.load_error)

    def _ensure_thread(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()

    def load(self, path: str | Path, progress: Callable[[str], None] | None = None) -> Future:
        """Load ``path`` on the host's thread (the previous model is released first: never two
        resident). The future's result is the engine; it fails with the loader's exception."""
        self._ensure_thread()
        done: Future = Future()

        def run() -> None:
            self._release()
            self.ready.clear()
            try:
                engine = self._loader(path, progress=progress) if progress else self._loader(path)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self.load_error = str(exc) or type(exc).__name__
                self.ready.set()
                done.set_exception(exc.with_traceback(None))
                return
            self.engine, self.path, self.load_error = engine, Path(path), None
            if self._given_fits is None:
                from models.serving.slot_memory import memory_gate

                self.fits = memory_gate(Path(path), getattr(engine, "max_context", None))
            self.model_name = getattr(engine, "name", None) or model_name(path)
            self.ready.set()
            done.set_result(engine)

        self._inbox.put(run)
        return done

    def unload(self) -> Future:
        """Cancel what runs, release the model and every cache held in memory."""
        self._ensure_thread()
        done: Future = Future()

        def run() -> None:
            self._release()
            done.set_result(None)

        self._cancel_all()
        self._inbox.put(run)
        return done

    def call(self, work: Callable[[Any], Any]) -> Future:
        """Run ``work(engine)`` on the host's thread between steps (MLX work of other kinds)."""
        self._ensure_thread()
        done: Future = Future()

        def run() -> None:
            try:
                done.set_result(work(self.engine))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)

        self._inbox.put(run)
        return done

    def submit(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        deliver: Callable[[JobEvent], None],
        *,
        conversation: int | str | None = None,
        priority: int = 0,
        continue_final: bool = False,
        prepared: EncodedPrompt | None = None,
        cancel: threading.Event | None = None,
        constraint: OutputConstraint | None = None,
        fit_pages: bool = False,
    ) -> Job:
        """Queue an answer; ``deliver`` gets its events on the host's thread. ``cancel`` (else a
        new one: ``Job.cancel``) stops it; ``constraint`` decodes it under a grammar (a schema
        that cannot be compiled is ``REJECTED`` naming its field); ``fit_pages``: PDFs' last
        page images go as text while the prompt is longer than the context. Raises
        ``QueueFull`` when ``queue_limit`` jobs wait already (never for the window's own)."""
        self._ensure_thread()
        job = Job(
            list(messages),
            settings,
            deliver,
            number=next(self._numbers),
            conversation=conversation,
            priority=priority,
            continue_final=continue_final,
            prepared=prepared,
            constraint=constraint,
            fit_pages=fit_pages,
        )
        if cancel is not None:
            job.cancel_event = cancel
        with self._lock:
            if (
                priority <= 0
                and len(self._waiting) >= self.queue_limit
                and self._running_count() >= self.parallel
            ):
                raise QueueFull(len(self._waiting), self._retry_after())
            self._waiting.append(job)
        self._inbox.put(job)
        return job

    def generate(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        cancel: threading.Event | None = None,
        continue_final: bool = False,
        prepared: EncodedPrompt | None = None,
        *,
        conversation: int | str | None = None,
        priority: int = WINDOW_PRIORITY,
        constraint: OutputConstraint | None = None,
    ) -> Iterator[GenerationStep]:
        """``Engine.generate`` through the host, for a caller on another thread: the steps of
        the answer, the last with its ``finish_reason``. ``cancel`` (or closing the iterator)
        stops it."""
        events: queue.Queue[JobEvent] = queue.Queue()
        job = self.submit(
            messages,
            settings,
            events.put,
            conversation=conversation,
            priority=priority,
            continue_final=continue_final,
            prepared=prepared,
            cancel=cancel,
            constraint=constraint,
        )
        try:
            while True:
                event = events.get()
                if event.kind is EventKind.STARTED:
                    continue
                if event.kind is EventKind.STEP and event.step is not None:
                    yield event.step
                    if event.step.finish_reason is not None:
                        return
                    continue
                yield replace(BLANK, finish_reason="error", error=event.message or "The answer failed.")
                return
        finally:
            job.cancel()  # a no-op once it ended; stops it when the consumer went away
            job.done.wait(timeout=30)

    def position(self, job: Job) -> int:
        """How many jobs wait ahead of ``job`` (0: it runs, or is next)."""
        with self._lock:
            try:
                return list(self._waiting).index(job)
            except ValueError:
                return 0

    @property
    def waiting(self) -> int:
        """Jobs queued, not yet running."""
        with self._lock:
            return len(self._waiting)

    @property
    def running(self) -> int:
        with self._lock:
            return self._running_count()

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._running) or bool(self._waiting)

    def activity(self) -> str:
        """What the engine is doing, in words for a status bar ("" when idle)."""
        with self._lock:
            running, waiting = self._running_count(), len(self._waiting)
        if not running and not waiting:
            return ""
        words = f"Answering {running} request{'s' if running != 1 else ''}"
        return words + (f", {waiting} waiting" if waiting else "")

    def forget(self, conversation_id: int | str) -> None:
        """A conversation was deleted: drop its cache from memory (its file goes with the store)."""
        self.call(lambda _engine: self._caches.forget(conversation_id))

    def close(self, timeout: float | None = 30.0) -> None:
        """Cancel what runs, drop what waits, unload the model and end the thread."""
        self._cancel_all()
        self._closing = True
        self._inbox.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _cancel_all(self) -> None:
        with self._lock:
            jobs = list(self._running) + list(self._waiting)
        for job in jobs:
            job.cancel()

    def _running_count(self) -> int:
        return len(self._running)

    def _room_for(self, job: Job) -> bool:
        """Whether ``job`` may start beside the running ones (under ``_lock``): a free slot, and
        memory for every running answer's context and its own (the first always starts)."""
        if self._running_count() >= self.parallel:
            return False
        if self.fits is None or not self._running:
            return True
        return self.fits([_context_of(j) for j in [*self._running, job]])

    def _retry_after(self) -> int:
        return max(1, min(60, 2 * (len(self._waiting) // max(1, self.parallel) + 1)))

    # -- the host's thread -----------------------------------------------------------------------

    def _main(self) -> None:
        try:
            while True:
                self._admit()  # a job that waited for room starts as soon as there is
                idle = self._batch is None or not self._batch.active
                if not self._take_inbox(block=idle):
                    break
                self._admit()
                if self._batch is not None and self._batch.active:
                    self._step()
        except Exception:  # noqa: BLE001 - the host must not die silently
            log.exception("The engine host failed")
        finally:
            self._drain()
            self._release()
            self._release_streams()

    def _take_inbox(self, block: bool) -> bool:
        """Run queued commands; False once ``close`` was called."""
        while True:
            try:
                item = self._inbox.get(block=block, timeout=None)
            except queue.Empty:
                return True
            block = False
            if item is None:
                return False
            if callable(item) and not isinstance(item, Job):
                item()

    def _admit(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    return
                ahead = sorted(self._waiting, key=lambda j: (-j.priority, j.number))[0]
                if ahead.priority <= 0 and not self._room_for(ahead):
                    return
                self._waiting.remove(ahead)
                self._running.append(ahead)
            self._tell()
            self._start(ahead)

    def _start(self, job: Job) -> None:
        engine = self.engine
        if job.cancel_event.is_set():
            job.final = replace(BLANK, finish_reason="cancelled")
            send(job, JobEvent(EventKind.STEP, job.final))
            self._ended(job)
            return
        if engine is None:
            send(job, JobEvent(EventKind.FAILED, message="No model is loaded."))
            self._ended(job)
            return
        if not getattr(engine, "batched", False):
            if job.constraint is not None:
                message = "Structured output and forced tool calls are not supported across a cluster."
                param = "tools" if job.constraint.kind == "tool_call" else "response_format"
                code = "unsupported_parameter"
                send(job, JobEvent(EventKind.REJECTED, message=message, code=code, param=param))
                self._ended(job)
                return
            self._run_alone(engine, job)
            return
        try:
            prompt = job.prepared or fitted_prompt(engine, job)
        except PromptError as exc:
            send(job, rejection(exc))
            self._ended(job)
            return
        taken = self._caches.take(prompt.keys, job.conversation, job.number, self._restore(job))
        try:
            seq = engine.sequence(
                prompt,
                job.settings,
                job.cancel_event,
                taken.live,
                job.continue_final,
                job.priority,
                (job, taken),
                constraint=job.constraint,
            )
        except ConstraintError as exc:
            self._caches.give_back(taken.key, taken.live)
            send(job, JobEvent(EventKind.REJECTED, message=str(exc), code="invalid_value", param=exc.param))
            self._ended(job)
            return
        except GenerationCancelled:
            self._caches.give_back(taken.key, taken.live)
            job.final = replace(BLANK, finish_reason="cancelled", prompt_token_ids=tuple(prompt.ids))
            send(job, JobEvent(EventKind.STEP, job.final))
            self._ended(job)
            return
        except Exception as exc:  # noqa: BLE001 - a failed vision tower ends this job only
            log.exception("Starting an answer failed")
            self._caches.give_back(taken.key, type(taken.live)([]))
            send(job, JobEvent(EventKind.FAILED, message=f"Generation failed: {exc}"))
            self._ended(job)
            return
        job.messages = []  # the prompt is built: let the images go
        send(job, JobEvent(EventKind.STARTED))
        if self._batch is None:
            self._batch = engine.new_batch()
        if not self._batch.active:
            import mlx.core as mx

            mx.reset_peak_memory()
        self._batch.add(seq)

    def _run_alone(self, engine, job: Job) -> None:
        """An engine that answers one at a time: the job runs to its end now."""
        from models.inference.conversation_caches import ConversationCaches

        conversation = job.conversation
        if self.keeper is not None and self._conversations is None:
            self._conversations = ConversationCaches(self.keeper)
        conversations = self._conversations
        if conversations is not None and conversation is not None:
            conversations.open(engine, conversation, job.settings)
        elif conversations is not None:
            conversations.release()  # the engine's one cache is about to hold this request's
        try:
            run_job(engine, job)
        finally:
            if conversations is not None and conversation is not None and job.final is not None:
                conversations.keep(engine, conversation, job.final)
            self._ended(job)

    def _restore(self, job: Job):
        """How a conversation's saved cache is read back into memory (None: nowhere to look)."""
        if self.keeper is None or job.conversation is None:
            return None
        engine, keeper = self.engine, self.keeper

        def restore(conversation_id):
            from models.inference.batch_generation import LiveCache
            from models.inference.cache_snapshot import fitting_caches
            from models.inference.conversation_caches import kv_of

            try:
                result = keeper.load(
                    conversation_id, engine.identity, kv_of(job.settings), engine.cache_layout
                )
                if result.snapshot is None:
                    return None, result.outcome
                caches = fitting_caches(result.snapshot, engine.new_cache())
                if caches is None:
                    keeper.delete(conversation_id)
                    return None, result.outcome
                snap = result.snapshot
                return LiveCache(caches, list(snap.keys), tuple(snap.kv) if snap.kv else None), result.outcome
            except Exception:  # noqa: BLE001 - a saved cache only saves time; prefill in full
                log.warning(
                    "Could not restore the KV cache of conversation %s", conversation_id, exc_info=True
                )
                return None, None

        return restore

    def _step(self) -> None:
        for seq, step in self._batch.step():
            job, taken = seq.tag
            job.tokens = step.generation_tokens
            if step.finish_reason is not None:
                job.final = step
            send(job, JobEvent(EventKind.STEP, step))
            if step.finish_reason is not None:
                self._caches.give_back(taken.key, seq.cache)
                self._keep(job, seq)
                self._ended(job)

    def _keep(self, job: Job, seq) -> None:
        """Save a stored conversation's cache in the background after an answer that ended well."""
        from models.inference.conversation_caches import KEPT_AFTER
        from models.inference.engine import snapshot_of

        if self.keeper is None or job.conversation is None or job.final is None:
            return
        if job.final.finish_reason not in KEPT_AFTER:
            return
        try:
            snapshot = snapshot_of(seq.cache)
            if snapshot is not None:
                self.keeper.save_in_background(job.conversation, snapshot, self.engine.identity)
        except Exception:  # noqa: BLE001 - not saving costs a prefill later, nothing more
            log.warning("Could not save the KV cache of conversation %s", job.conversation, exc_info=True)

    def _ended(self, job: Job) -> None:
        job.messages = []
        with self._lock:
            if job in self._running:
                self._running.remove(job)
        job.done.set()
        self._tell()

    def _tell(self) -> None:
        if self.on_activity is not None:
            try:
                self.on_activity()
            except Exception:  # noqa: BLE001 - a listener must not stop the engine
                log.debug("The activity listener failed", exc_info=True)

    def requests_running(self) -> bool:
        """Whether an API request (not the window's own question) runs or waits."""
        with self._lock:
            return any(job.priority <= 0 for job in [*self._running, *self._waiting])

    def cancel_requests(self) -> None:
        """Stop every API request (running or waiting); the window's own answers go on."""
        with self._lock:
            jobs = [job for job in [*self._running, *self._waiting] if job.priority <= 0]
        for job in jobs:
            job.cancel()

    def open_conversation(self, conversation_id: int | str, settings: GenerationSettings) -> Future:
        """Bring a stored conversation's saved cache into memory now (when the window opens it),
        so its next question prefills only itself."""

        def work(engine) -> None:
            if engine is None or self.keeper is None:
                return
            if not getattr(engine, "batched", False):
                if self._conversations is None:
                    from models.inference.conversation_caches import ConversationCaches

                    self._conversations = ConversationCaches(self.keeper)
                self._conversations.open(engine, conversation_id, settings)
                return
            if self._caches.get(conversation_id) is not None:
                return
            probe = Job([], settings, lambda _event: None, conversation=conversation_id)
            restore = self._restore(probe)
            taken = self._caches.take([], conversation_id, 0, restore)
            self._caches.give_back(taken.key, taken.live)

        return self.call(work)

    def _release(self) -> None:
        """Let the model go (cancelling what runs) and every cache in memory."""
        if self._batch is not None:
            for seq in list(self._batch.sequences):
                seq.cancel.set()
            while self._batch.active:
                self._step()
            self._batch = None
        self._caches.clear()
        self._conversations = None
        if self.engine is None:
            return
        try:
            self.engine.close()  # which collects what Python held and frees MLX's buffers
        except Exception:  # noqa: BLE001 - closing must not stop the next load
            log.warning("Closing the engine failed", exc_info=True)
        self.engine = None
        import sys

        mx = sys.modules.get("mlx.core")
        if mx is not None:
            mx.clear_cache()

    def _drain(self) -> None:
        with self._lock:
            jobs = list(self._waiting)
            self._waiting.clear()
        for job in jobs:
            job.cancel()
            job.final = replace(BLANK, finish_reason="cancelled")
            send(job, JobEvent(EventKind.STEP, job.final))
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


def _context_of(job: Job) -> int:
    """The most tokens ``job``'s answer may reach: its context length (the model's when unset)."""
    return int(job.settings.context_length or 131072)
