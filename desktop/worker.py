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
    finished(object): the last GenerationStep of an answer (finish_reason set).
"""

from __future__ import annotations

import gc
import threading
import time

from PySide6.QtCore import QObject, QThread, Signal, Slot

_COALESCE_S = 0.03


class InferenceWorker(QObject):
    load_started = Signal(str)
    load_progress = Signal(str)
    loaded = Signal(str)
    load_failed = Signal(str)
    unloaded = Signal()
    text_ready = Signal(str)
    finished = Signal(object)

    # Requests from the UI thread (queued into this object's thread).
    request_load = Signal(str)
    request_generate = Signal(object, object, bool)  # messages, settings, continue_final
    request_unload = Signal()

    def __init__(self, engine_factory=None):
        super().__init__()
        self._engine = None
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
    def _on_request_unload(self) -> None:
        self._release()

    @Slot(object, object, bool)
    def _on_request_generate(self, messages, settings, continue_final: bool = False) -> None:
        from models.engine import GenerationStep

        self._cancel.clear()
        if self._engine is None:
            self.finished.emit(GenerationStep("", None, 0, 0, 0, 0.0, 0.0, 0.0, 0.0,
                                              finish_reason="error", error="No model is loaded."))
            return
        pending: list[str] = []
        last_emit = time.monotonic()
        final = None
        for step in self._engine.generate(messages, settings, self._cancel, continue_final):
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
        self.thread.start()

    def stop(self, timeout_ms: int = 30000) -> bool:
        """Cancel any answer, release the model, stop the thread; True if it ended in time."""
        self.worker.cancel()
        self.worker.cancel_load()
        self.thread.quit()
        ended = self.thread.wait(timeout_ms)
        if ended:
            self.worker._release()  # the thread is gone, so nothing else touches the model
        return ended
