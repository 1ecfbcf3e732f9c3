"""The one QObject that owns MLX: it loads, runs and unloads the engine on its own QThread.

Everything MLX happens in this object's thread; the window talks to it through queued
signals (``request_load``, ``request_generate``, ``request_unload``) and cancels through
``cancel()``, which only sets a ``threading.Event`` and so is safe to call from the UI thread
while the worker's event loop is busy generating.

Signals:
    load_started(str): a model began loading (its display name).
    load_progress(str): a loading stage, for the status bar.
    loaded(str, str): the model is ready (its display name, its folder).
    load_failed(str): loading failed or was cancelled; a message fit to show.
    unloaded(): the previous model is gone (its memory released).
    text_ready(str): new answer text, coalesced to at most one signal per ~30 ms.
    recorded(object): (question message id or None, answer message id) once an answer that is
        being stored has its rows in the conversation store.
    storage_failed(str): the conversation store could not record the answer (it still streams).
    finished(object): the last GenerationStep of an answer (finish_reason set).

Answers that belong to a stored conversation are written by this thread too (an
``AnswerRecorder``): the question before generation starts, the partial answer every 2 s, the
rest when it ends, so the UI thread never waits on the database and a crash loses at most 2 s.

Each stored conversation's KV cache is kept on disk (``ConversationCaches``): saved in the
background when an answer ends, loaded before the conversation's next answer, or earlier on
``request_open_conversation`` (conversation id, GenerationSettings) when the window opens it.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

_COALESCE_S = 0.03


class _LoadCancelled(Exception):
    """Raised from the load's progress callback when the person cancelled the load."""


@dataclass(frozen=True)
class AnswerJob:
    """One answer to generate, and how to record it.

    ``messages``/``settings``/``continue_final`` go to ``Engine.generate``. With a
    ``conversation_id`` the answer is stored: first ``truncate_from`` (a message id) and every
    later message are removed (edit and resend, regenerate), then the ``question`` is stored, or
    for ``resume_message_id`` that stored answer is carried on (continue).
    """

    messages: list
    settings: object
    continue_final: bool = False
    conversation_id: int | None = None
    question: tuple[str, tuple] | None = None  # (text, images)
    truncate_from: int | None = None
    resume_message_id: int | None = None
    cancel: threading.Event = field(default_factory=threading.Event, compare=False)


class InferenceWorker(QObject):
    load_started = Signal(str)
    load_progress = Signal(str)
    loaded = Signal(str, str)
    load_failed = Signal(str)
    unloaded = Signal()
    text_ready = Signal(str)
    recorded = Signal(object)
    storage_failed = Signal(str)
    finished = Signal(object)

    # Requests from the UI thread (queued into this object's thread).
    request_load = Signal(str, object)  # folder, a threading.Event that cancels this load
    request_generate = Signal(object)  # an AnswerJob
    request_unload = Signal()
    request_open_conversation = Signal(object, object)  # conversation id, GenerationSettings

    def __init__(self, engine_factory=None, data_folder: str | Path | None = None):
        super().__init__()
        self._engine = None
        self._data_folder = data_folder
        self._store = None  # this thread's own ConversationStore connection
        self._replacement_settled = False
        self._new_rows: tuple[int | None, int | None] = (None, None)
        self._engine_factory = engine_factory
        self._cancel = threading.Event()  # the running answer's (AnswerJob.cancel)
        self._cancel_load = threading.Event()  # the running load's
        self.request_load.connect(self._on_request_load)
        self.request_generate.connect(self._on_request_generate)
        self.request_unload.connect(self._on_request_unload)
        self.request_open_conversation.connect(self._on_request_open_conversation)
        self._kv_caches = None  # ConversationCaches: KV caches saved per conversation

    @property
    def engine(self):
        return self._engine

    def cancel(self) -> None:
        """Stop the running answer within one token (thread-safe). A queued answer is stopped
        through its own ``AnswerJob.cancel``."""
        self._cancel.set()

    def cancel_load(self) -> None:
        """Abandon the model load in progress (thread-safe); the half-loaded model is released."""
        self._cancel_load.set()

    @staticmethod
    def _return_memory() -> None:
        """Collect what Python still holds, then hand MLX's cached buffers back to the system."""
        import sys

        gc.collect()
        mx = sys.modules.get("mlx.core")
        if mx is not None:
            mx.clear_cache()

    def _release(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            self._return_memory()
            self.unloaded.emit()

    @Slot(str, object)
    def _on_request_load(self, path: str, cancel: threading.Event) -> None:
        from models.inference.checkpoint import CheckpointError
        from models.inference.engine import Engine, ModelLoadError

        self._cancel_load = cancel
        self._release()  # never two models resident
        name = Path(path).name
        if cancel.is_set():
            self.load_failed.emit("Loading was cancelled.")
            return
        self.load_started.emit(name)
        factory = self._engine_factory or Engine.load

        def progress(stage: str) -> None:
            if cancel.is_set():
                raise _LoadCancelled
            self.load_progress.emit(stage)

        failure = None
        engine = None
        try:
            engine = factory(path, progress=progress)
        except _LoadCancelled:
            failure = "Loading was cancelled."
        except (CheckpointError, ModelLoadError) as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the app goes on
            failure = f"Could not load {name}: {' '.join(str(exc).split()) or type(exc).__name__}"
        if failure is not None:
            # Outside the except blocks: their traceback no longer holds the half-loaded model.
            self._return_memory()
            self.load_failed.emit(failure)
            return
        if cancel.is_set():
            engine.close()
            self._return_memory()
            self.load_failed.emit("Loading was cancelled.")
            return
        self._engine = engine
        self.loaded.emit(engine.name, str(engine.checkpoint.path))

    @Slot()
    def _on_thread_finished(self) -> None:
        self._release()
        if self._store is not None:
            self._store.close()
            self._store = None

    @Slot()
    def _on_request_unload(self) -> None:
        self._release()

    def _conversation_caches(self):
        from models.inference.conversation_caches import ConversationCaches
        from models.inference.prompt_cache_keeper import FOLDER_NAME, PromptCacheKeeper

        if self._kv_caches is None:
            folder = Path(self._data_folder) / FOLDER_NAME if self._data_folder is not None else None
            self._kv_caches = ConversationCaches(PromptCacheKeeper(folder))
        return self._kv_caches

    @Slot(object, object)
    def _on_request_open_conversation(self, conversation_id, settings) -> None:
        """Load the conversation's saved KV cache now, so its next question prefills only itself."""
        if self._engine is not None and conversation_id is not None:
            self._conversation_caches().open(self._engine, conversation_id, settings)

    def _conversation_store(self):
        from models.chats.store import ConversationStore

        if self._store is not None and self._store.db.replaced_on_disk():  # a damaged file moved aside
            self._store.close()
            self._store = None
        if self._store is None:
            self._store = ConversationStore(self._data_folder)
        return self._store

    def _begin_recording(self, job: AnswerJob):
        """Store the question / open the answer row; None (and a signal) if storage fails."""
        from models.chats.answer_recorder import AnswerRecorder
        from models.chats.conversation_lock import ConversationBusy
        from models.chats.store import StoreError

        if job.conversation_id is None:
            return None
        try:
            store = self._conversation_store()
            recorder = AnswerRecorder(store, model=self._engine.name if self._engine else None)
            with store.transaction():
                # An edit or a regenerate adds its new rows first; the rows it replaces are
                # deleted only once the new answer has produced text (see _settle_replacement).
                if job.resume_message_id is not None:
                    recorder.resume(job.resume_message_id)
                elif job.question is not None:
                    recorder.begin(job.conversation_id, job.question[0], job.question[1])
                else:
                    recorder.begin_answer(job.conversation_id)
        except ConversationBusy:
            raise  # another window or command is answering in this conversation: refuse this one
        except (StoreError, OSError, ValueError) as exc:
            self.storage_failed.emit(f"This answer is not being saved: {exc}")
            return None
        question = recorder.question.id if recorder.question is not None else None
        self._new_rows = (question, recorder.answer_id)
        self.recorded.emit((question, recorder.answer_id))
        return recorder

    def _record(self, recorder, step) -> object:
        from models.chats.store import StoreError

        if recorder is None:
            return None
        try:
            recorder.record(step)
        except (StoreError, OSError) as exc:
            self.storage_failed.emit(f"The answer could not be saved: {exc}")
            return None
        return recorder

    @Slot(object)
    def _on_request_generate(self, job: AnswerJob) -> None:
        """Answer one job. Always ends with ``finished``, whatever goes wrong."""
        try:
            self._answer(job)
        except Exception as exc:  # noqa: BLE001 - the window must never wait forever
            self.finished.emit(_error_step(f"The answer failed: {exc}"))

    def _answer(self, job: AnswerJob) -> None:
        from models.chats.conversation_lock import ConversationBusy
        from models.inference.engine import PromptError

        self._replacement_settled = False
        self._new_rows = (None, None)
        self._cancel = job.cancel
        if self._engine is None:
            self.finished.emit(_error_step("No model is loaded."))
            return
        try:
            prepared = self._engine.prepare(job.messages, job.settings, job.continue_final)
        except PromptError as exc:
            # Nothing was stored or computed: the window gives the draft back.
            self.finished.emit(_error_step(str(exc), exc.prompt_ids))
            return
        except Exception as exc:  # noqa: BLE001
            self.finished.emit(_error_step(f"Could not build the prompt: {exc}"))
            return
        if job.conversation_id is not None:
            self._conversation_caches().open(self._engine, job.conversation_id, job.settings)
        try:
            recorder = self._begin_recording(job)
        except ConversationBusy as exc:  # nothing was stored: the window gives the draft back
            self.finished.emit(_error_step(str(exc)))
            return
        pending: list[str] = []
        last_emit = time.monotonic()
        final = None
        steps = None
        try:
            steps = self._engine.generate(
                job.messages, job.settings, job.cancel, job.continue_final, prepared=prepared
            )
            for step in steps:
                recorder = self._record(recorder, step)
                if step.text:
                    pending.append(step.text)
                    self._settle_replacement(job, recorder)
                if step.finish_reason:
                    final = step
                    break
                now = time.monotonic()
                if pending and now - last_emit >= _COALESCE_S:
                    self.text_ready.emit("".join(pending))
                    pending.clear()
                    last_emit = now
        except Exception as exc:  # noqa: BLE001 - the answer ends with a message, the app goes on
            final = _error_step(f"The answer failed: {exc}")
            self._abandon(recorder, str(exc))
        finally:
            if steps is not None:
                steps.close()
        if final is None:
            final = _error_step("The answer ended without a result.")
            self._abandon(recorder, final.error)
        if final.finish_reason == "error" and recorder is not None and not recorder.text:
            self._drop_new_rows(job, recorder)  # nothing came back: the store is as it was
        elif final.finish_reason != "error":
            self._settle_replacement(job, recorder)
        if pending:
            self.text_ready.emit("".join(pending))
        self.finished.emit(final)
        if job.conversation_id is not None:  # written on the keeper's thread, not this one
            self._conversation_caches().keep(self._engine, job.conversation_id, final)

    def _settle_replacement(self, job: AnswerJob, recorder) -> None:
        """Delete the turns an edit/regenerate replaces, now that the new answer exists."""
        from models.chats.store import StoreError

        if job.truncate_from is None or recorder is None or self._replacement_settled:
            return
        self._replacement_settled = True
        question, answer = self._new_rows
        first_new = question if question is not None else answer
        try:
            self._conversation_store().delete_between(job.truncate_from, first_new)
        except (StoreError, OSError) as exc:
            self.storage_failed.emit(f"The replaced messages could not be removed: {exc}")

    def _drop_new_rows(self, job: AnswerJob, recorder) -> None:
        """Remove the question and empty answer this failed job added (and a conversation that
        is empty without them), so that the store matches what the window shows again."""
        from models.chats.store import StoreError

        if job.resume_message_id is not None:
            return  # a continued answer keeps what it had
        question, answer = self._new_rows
        first_new = question if question is not None else answer
        if first_new is None:
            return
        try:
            store = self._conversation_store()
            store.truncate_after(first_new, inclusive=True)
            if not store.messages(job.conversation_id):
                store.delete(job.conversation_id)
        except (StoreError, OSError) as exc:
            self.storage_failed.emit(f"The failed question could not be removed: {exc}")

    def _abandon(self, recorder, error: str | None) -> None:
        from models.chats.store import StoreError

        if recorder is not None and recorder.active:
            try:
                recorder.abandon(error)
            except (StoreError, OSError):
                pass


def _error_step(message: str, prompt_ids=()):
    from models.inference.engine import GenerationStep

    return GenerationStep(
        "",
        None,
        0,
        0,
        0,
        0.0,
        0.0,
        0.0,
        0.0,
        finish_reason="error",
        error=message,
        prompt_token_ids=tuple(prompt_ids),
    )


class WorkerThread:
    """Owns the QThread the worker lives on, and shuts both down in order."""

    def __init__(self, worker: InferenceWorker):
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("mlx-worker")
        worker.moveToThread(self.thread)
        # Runs in the worker's thread as it ends: the model and the database go with it.
        self.thread.finished.connect(worker._on_thread_finished, Qt.ConnectionType.DirectConnection)
        self.thread.start()

    def stop(self, timeout_ms: int = 30000) -> bool:
        """Cancel any answer, release the model, stop the thread; True if it ended in time."""
        self.worker.cancel()
        self.worker.cancel_load()
        self.thread.quit()
        ended = self.thread.wait(timeout_ms)
        return ended
