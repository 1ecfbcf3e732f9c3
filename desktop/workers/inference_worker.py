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
    answer_event(object): each event of the running answer, as ``answer_run.run_answer`` yields
        it (``RowsStored``, ``TextGenerated`` at most every ~30 ms, ``StorageFailed``, and
        ``AnswerEnded`` last, always).
    finished(object): the last GenerationStep of an answer (finish_reason set), after its
        ``AnswerEnded``.

Answers run as ``models.chats.answer_run.run_answer`` on this thread, which also stores them
(the question before generation starts, the partial answer every 2 s, the rest when it ends),
so the UI thread never waits on the database and a crash loses at most 2 s; this object only
turns its events into signals.

Each stored conversation's KV cache is kept on disk (``ConversationCaches``): saved in the
background when an answer ends, loaded before the conversation's next answer, or earlier on
``request_open_conversation`` (conversation id, GenerationSettings) when the window opens it.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from models.chats.answer_run import AnswerEnded, AnswerJob, EndReason, error_step, run_answer
from models.hub.model_names import model_name

if TYPE_CHECKING:
    from models.inference.conversation_caches import ConversationCaches

__all__ = ["AnswerJob", "InferenceWorker", "WorkerThread"]


class _LoadCancelled(Exception):
    """Raised from the load's progress callback when the person cancelled the load."""


class InferenceWorker(QObject):
    load_started = Signal(str)
    load_progress = Signal(str)
    loaded = Signal(str, str)
    load_failed = Signal(str)
    unloaded = Signal()
    answer_event = Signal(object)
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
        self._engine_factory = engine_factory
        self._cancel = threading.Event()  # the running answer's (AnswerJob.cancel)
        self._cancel_load = threading.Event()  # the running load's
        self.request_load.connect(self._on_request_load)
        self.request_generate.connect(self._on_request_generate)
        self.request_unload.connect(self._on_request_unload)
        self.request_open_conversation.connect(self._on_request_open_conversation)
        self._kv_caches: ConversationCaches | None = None  # KV caches saved per conversation

    @property
    def engine(self):
        return self._engine

    def cancel(self) -> None:
        """Stop the running answer within one token (thread-safe), whoever asked for it: the
        window, or an API request run on this thread (``running``). A queued answer is stopped
        through its own ``AnswerJob.cancel``."""
        self._cancel.set()

    def running(self, cancel: threading.Event) -> None:
        """On this thread: a job that is not the window's (an API request) starts, and
        ``cancel`` stops it; ``cancel()`` sets it from now on."""
        self._cancel = cancel

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
        name = model_name(path)
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
        if engine is None:  # a factory that returned nothing: nothing loaded
            self.load_failed.emit(f"Could not load {name}.")
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

    def _conversation_store(self):
        from models.chats.store import ConversationStore

        if self._store is not None and self._store.db.replaced_on_disk():  # a damaged file moved aside
            self._store.close()
            self._store = None
        if self._store is None:
            self._store = ConversationStore(self._data_folder)
        return self._store

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

    @Slot(object)
    def _on_request_generate(self, job: AnswerJob) -> None:
        """Answer one job (``models.chats.answer_run``). Always ends with ``finished``."""
        self._cancel = job.cancel
        ended = None
        try:
            if self._engine is not None and job.conversation_id is not None:
                self._conversation_caches().open(self._engine, job.conversation_id, job.settings)
            for event in run_answer(self._engine, job, self._conversation_store):
                if isinstance(event, AnswerEnded):
                    ended = event
                self._emit(event)
        except Exception as exc:  # noqa: BLE001 - the window must never wait forever
            self._emit(AnswerEnded(EndReason.FAILED, error_step(f"The answer failed: {exc}")))
            return
        if ended is not None and self._engine is not None and job.conversation_id is not None:
            # Written on the keeper's thread, not this one.
            self._conversation_caches().keep(self._engine, job.conversation_id, ended.final)

    def _emit(self, event) -> None:
        self.answer_event.emit(event)
        if isinstance(event, AnswerEnded):
            self.finished.emit(event.final)


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
