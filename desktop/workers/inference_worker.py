"""The window's relay to the engine host: loads, answers and unloads, off the UI thread.

The engine host (``models.serving.engine_host.EngineHost``, Qt-free) owns MLX, the model, every
conversation's KV cache and the batch scheduler; the window's API server submits to the same
host (``desktop.controllers.server_controller``), so the window's questions and API requests
are answered at once, in one batch. This object lives on its own QThread, which waits on the
host so the UI thread never does: the window talks to it through queued signals
(``request_load``, ``request_generate``, ``request_unload``, ``request_open_conversation``) and
cancels through ``cancel()``, which only sets a ``threading.Event``.

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
    activity(str): what the engine is doing, for the status bar ("Answering 3 requests"; ""
        when idle), from the host's thread.

Answers run as ``models.chats.answer_run.run_answer`` on this thread, which also stores them
(the question before generation starts, the partial answer every 2 s, the rest when it ends),
so the UI thread never waits on the database; the tokens come from the host
(``EngineHost.generate``, the window's priority: never behind API requests). Each stored
conversation's KV cache is the host's: kept in memory, saved in the background when an answer
ends, restored before the conversation's next answer, or earlier on
``request_open_conversation`` (conversation id, GenerationSettings) when the window opens it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from models.chats.answer_run import AnswerEnded, AnswerJob, EndReason, RowsStored, error_step, run_answer
from models.hub.model_names import model_name
from models.serving.engine_host import WINDOW_PRIORITY, EngineHost

__all__ = ["AnswerJob", "InferenceWorker", "WorkerThread"]


class _LoadCancelled(Exception):
    """Raised from the load's progress callback when the person cancelled the load."""


class _HostedEngine:
    """What ``run_answer`` drives (``prepare``, ``generate``), answered by the host in one
    conversation, at the window's priority."""

    def __init__(self, host: EngineHost, conversation_id):
        self._host = host
        self.conversation = conversation_id  # set from RowsStored when the answer creates it

    @property
    def name(self) -> str:
        return self._host.engine.name

    def prepare(self, messages, settings, continue_final=False):
        return self._host.engine.prepare(messages, settings, continue_final)

    def generate(self, messages, settings, cancel=None, continue_final=False, prepared=None):
        return self._host.generate(
            messages,
            settings,
            cancel,
            continue_final,
            prepared,
            conversation=self.conversation,
            priority=WINDOW_PRIORITY,
        )


class InferenceWorker(QObject):
    load_started = Signal(str)
    load_progress = Signal(str)
    loaded = Signal(str, str)
    load_failed = Signal(str)
    unloaded = Signal()
    answer_event = Signal(object)
    finished = Signal(object)
    activity = Signal(str)

    # Requests from the UI thread (queued into this object's thread).
    request_load = Signal(str, object)  # folder, a threading.Event that cancels this load
    request_generate = Signal(object)  # an AnswerJob
    request_unload = Signal()
    request_open_conversation = Signal(object, object)  # conversation id, GenerationSettings

    def __init__(
        self, engine_factory=None, data_folder: str | Path | None = None, parallel: int | None = None
    ):
        super().__init__()
        from models.inference.engine import Engine
        from models.inference.prompt_cache_keeper import FOLDER_NAME, PromptCacheKeeper
        from models.serving.engine_host import DEFAULT_PARALLEL

        self._data_folder = data_folder
        self._store = None  # this thread's own ConversationStore connection
        folder = Path(data_folder) / FOLDER_NAME if data_folder is not None else None
        self.host = EngineHost(
            loader=engine_factory or Engine.load,
            parallel=parallel or DEFAULT_PARALLEL,
            keeper=PromptCacheKeeper(folder),
        )
        self.host.on_activity = self._on_host_activity
        self._cancel = threading.Event()  # the running answer's (AnswerJob.cancel)
        self._answering = False
        self._cancel_load = threading.Event()  # the running load's
        self.request_load.connect(self._on_request_load)
        self.request_generate.connect(self._on_request_generate)
        self.request_unload.connect(self._on_request_unload)
        self.request_open_conversation.connect(self._on_request_open_conversation)

    @property
    def engine(self):
        return self.host.engine

    def cancel(self) -> None:
        """Stop the running answer within one token (thread-safe); with no answer of the
        window's running, stop the API requests the engine answers (a runaway client)."""
        if self._answering:
            self._cancel.set()
        else:
            self.host.cancel_requests()

    def cancel_load(self) -> None:
        """Abandon the model load in progress (thread-safe); the half-loaded model is released."""
        self._cancel_load.set()

    def _on_host_activity(self) -> None:  # on the host's thread: a queued signal crosses over
        self.activity.emit(self.host.activity())

    def _release(self) -> None:
        if self.host.engine is not None:
            self.host.unload().result()
            self.unloaded.emit()

    @Slot(str, object)
    def _on_request_load(self, path: str, cancel: threading.Event) -> None:
        from models.inference.checkpoint import CheckpointError
        from models.inference.engine import ModelLoadError

        self._cancel_load = cancel
        self._release()  # never two models resident
        name = model_name(path)
        if cancel.is_set():
            self.load_failed.emit("Loading was cancelled.")
            return

        self.load_started.emit(name)

        def progress(stage: str) -> None:
            if cancel.is_set():
                raise _LoadCancelled
            self.load_progress.emit(stage)

        failure = None
        engine = None
        try:
            engine = self.host.load(path, progress).result()
        except _LoadCancelled:
            failure = "Loading was cancelled."
        except (CheckpointError, ModelLoadError) as exc:
            failure = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure is reported, the app goes on
            failure = f"Could not load {name}: {' '.join(str(exc).split()) or type(exc).__name__}"
        if failure is not None:
            self.load_failed.emit(failure)
            return
        if engine is None:  # a factory that returned nothing: nothing loaded
            self.load_failed.emit(f"Could not load {name}.")
            return
        if cancel.is_set():
            self.host.unload().result()
            self.load_failed.emit("Loading was cancelled.")
            return
        self.loaded.emit(engine.name, str(engine.checkpoint.path))

    @Slot()
    def _on_thread_finished(self) -> None:
        self.host.close()
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

    @Slot(object, object)
    def _on_request_open_conversation(self, conversation_id, settings) -> None:
        """Load the conversation's saved KV cache now, so its next question prefills only itself."""
        if self.host.engine is not None and conversation_id is not None:
            self.host.open_conversation(conversation_id, settings)

    @Slot(object)
    def _on_request_generate(self, job: AnswerJob) -> None:
        """Answer one job (``models.chats.answer_run``). Always ends with ``finished``."""
        self._cancel = job.cancel
        self._answering = True
        engine = _HostedEngine(self.host, job.conversation_id) if self.host.engine is not None else None
        try:
            for event in run_answer(engine, job, self._conversation_store):
                if isinstance(event, RowsStored) and engine is not None:
                    engine.conversation = event.conversation_id
                self._emit(event)
        except Exception as exc:  # noqa: BLE001 - the window must never wait forever
            self._emit(AnswerEnded(EndReason.FAILED, error_step(f"The answer failed: {exc}")))
        finally:
            self._answering = False

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
