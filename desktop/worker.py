"""The one QObject that owns MLX: it loads, runs and unloads the engine on its own QThread.

Everything MLX happens in this object's thread; the window talks to it through queued
signals (``request_load``, ``request_generate``, ``request_unload``) and cancels through
``cancel()``, which only sets a ``threading.Event`` and so is safe to call from the UI thread
while the worker's event loop is busy generating.

Signals:
    load_started(str): a model began loading (its display name).
    load_progress(str): a loading stage, for the status bar.
    loaded(str): the model is ready (its display name).
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
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

_COALESCE_S = 0.03


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


class InferenceWorker(QObject):
    load_started = Signal(str)
    load_progress = Signal(str)
    loaded = Signal(str)
    load_failed = Signal(str)
    unloaded = Signal()
    text_ready = Signal(str)
    recorded = Signal(object)
    storage_failed = Signal(str)
    finished = Signal(object)

    # Requests from the UI thread (queued into this object's thread).
    request_load = Signal(str)
    request_generate = Signal(object)  # an AnswerJob
    request_unload = Signal()

    def __init__(self, engine_factory=None, data_folder: str | Path | None = None):
        super().__init__()
        self._engine = None
        self._data_folder = data_folder
        self._store = None  # this thread's own ConversationStore connection
        self._engine_factory = engine_factory
        self._cancel = threading.Event()
        self._cancel_load = threading.Event()
        self.request_load.connect(self._on_request_load)
        self.request_generate.connect(self._on_request_generate)
        self.request_unload.connect(self._on_request_unload)

    @property
    def engine(self):
        return self._engine

    def cancel(self) -> None:
        """Stop the running answer within one token (thread-safe)."""
        self._cancel.set()

    def cancel_load(self) -> None:
        """Abandon a model load in progress (thread-safe); the half-loaded model is released."""
        self._cancel_load.set()

    def _release(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
            gc.collect()
            self.unloaded.emit()

    @Slot(str)
    def _on_request_load(self, path: str) -> None:
        from models.checkpoint import CheckpointError
        from models.engine import Engine, ModelLoadError

        self._cancel_load.clear()
        self._release()  # never two models resident
        from pathlib import Path

        self.load_started.emit(Path(path).name)
        factory = self._engine_factory or Engine.load
        try:
            engine = factory(path, progress=self.load_progress.emit)
        except (CheckpointError, ModelLoadError) as exc:
            self.load_failed.emit(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the app goes on
            self.load_failed.emit(f"Could not load {Path(path).name}: {exc}")
            return
        if self._cancel_load.is_set():
            engine.close()
            gc.collect()
            self.load_failed.emit("Loading was cancelled.")
            return
        self._engine = engine
        self.loaded.emit(engine.name)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._release()
        if self._store is not None:
            self._store.close()
            self._store = None

    @Slot()
    def _on_request_unload(self) -> None:
        self._release()

    def _conversation_store(self):
        from models.conversations import ConversationStore

        if self._store is None:
            self._store = ConversationStore(self._data_folder)
        return self._store

    def _begin_recording(self, job: AnswerJob):
        """Store the question / open the answer row; None (and a signal) if storage fails."""
        from models.answer_recorder import AnswerRecorder
        from models.conversations import StoreError

        if job.conversation_id is None:
            return None
        try:
            store = self._conversation_store()
            recorder = AnswerRecorder(store, model=self._engine.name if self._engine else None)
            with store.transaction():
                if job.truncate_from is not None:
                    store.truncate_after(job.truncate_from, inclusive=True)
                if job.resume_message_id is not None:
                    recorder.resume(job.resume_message_id)
                elif job.question is not None:
                    recorder.begin(job.conversation_id, job.question[0], job.question[1])
                else:
                    recorder.begin_answer(job.conversation_id)
        except (StoreError, OSError) as exc:
            self.storage_failed.emit(f"This answer is not being saved: {exc}")
            return None
        question = recorder.question.id if recorder.question is not None else None
        self.recorded.emit((question, recorder.answer_id))
        return recorder

    def _record(self, recorder, step) -> object:
        from models.conversations import StoreError

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
        from models.engine import GenerationStep

        self._cancel.clear()
        if self._engine is None:
            self.finished.emit(GenerationStep("", None, 0, 0, 0, 0.0, 0.0, 0.0, 0.0,
                                              finish_reason="error", error="No model is loaded."))
            return
        recorder = self._begin_recording(job)
        pending: list[str] = []
        last_emit = time.monotonic()
        final = None
        steps = self._engine.generate(job.messages, job.settings, self._cancel, job.continue_final)
        for step in steps:
            recorder = self._record(recorder, step)
            if step.text:
                pending.append(step.text)
            if step.finish_reason:
                final = step
                break
            now = time.monotonic()
            if pending and now - last_emit >= _COALESCE_S:
                self.text_ready.emit("".join(pending))
                pending.clear()
                last_emit = now
        if pending:
            self.text_ready.emit("".join(pending))
        self.finished.emit(final)


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
