"""The window's "Serve API" switch: the OpenAI-compatible server on the window's own engine.

No second copy of the model: ``WorkerJobRunner`` lives on the inference worker's QThread and
answers the server's jobs there, through ``models.serving.engine_owner.run_job`` on
``worker.engine``. The worker's queued answers and the server's jobs share that thread's
event queue, so they run one at a time, in the order they came: a question typed in the
window while a request runs waits its turn, and ``ServerController`` says so (``note``).
The KV cache is the engine's, so each side keeps its prefix reuse while the other is idle.
Stop in the window ends the server's job running on the engine too (``InferenceWorker.cancel``
reaches it), and ``job_running`` says when one runs, so the window can offer Stop.
Requests are held to Settings ▸ Context length (``set_context_length``, also while serving);
the server takes no web page's requests (``allowed_origins`` is empty unless set).

Signals (ServerController):
    running(str): the server listens at this base URL ("" once stopped).
    failed(str): it could not start; a message fit to show.
    note(str): a line for the status bar ("" clears it).
    job_running(bool): a server job started (True) or ended (False) on the worker.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from models.inference.answer_defaults import CONTEXT_LENGTH
from models.inference.engine import GenerationSettings
from models.inference.prompt import ChatMessage
from models.serving.binding import DEFAULT_HOST, DEFAULT_PORT, check_bind

if TYPE_CHECKING:
    from models.serving.api_server import ServerThread
from models.serving.engine_owner import Job, JobEvent, run_job
from models.serving.openai_api import Limits

WAITING_NOTE = "Your question waits for an API request to finish."


class WorkerJobRunner(QObject):
    """Runs server jobs on the inference worker's thread, between the window's answers.

    Signals:
        busy_changed(bool): a server job started (True) or ended (False), from the worker thread.
    """

    busy_changed = Signal(bool)
    _request_run = Signal(object)

    def __init__(self, worker):
        super().__init__()
        self._worker = worker
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting = 0
        self._running: Job | None = None
        self._closed = False
        self.moveToThread(worker.thread())
        self._request_run.connect(self._on_request_run)

    @property
    def model_name(self) -> str:
        engine = self._worker.engine
        return engine.name if engine is not None else ""

    def submit(
        self, messages: list[ChatMessage], settings: GenerationSettings, deliver: Callable[[JobEvent], None]
    ) -> Job:
        job = Job(list(messages), settings, deliver, number=next(self._numbers))
        with self._lock:
            self._waiting += 1
            if self._closed:
                job.cancel()
        self._request_run.emit(job)  # queued onto the worker's thread, behind its own answers
        return job

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running is not None or self._waiting > 0

    def open(self) -> None:
        """Take jobs again after ``close``."""
        with self._lock:
            self._closed = False

    def close(self) -> None:
        """Cancel the running job and every queued one (they end at once, cancelled)."""
        with self._lock:
            self._closed = True
            running = self._running
        if running is not None:
            running.cancel()

    @Slot(object)
    def _on_request_run(self, job: Job) -> None:
        with self._lock:
            self._waiting -= 1
            self._running = job
            if self._closed:
                job.cancel()
        self._worker.running(job.cancel_event)  # the window's Stop reaches this job
        self.busy_changed.emit(True)
        try:
            run_job(self._worker.engine, job)
        finally:
            with self._lock:
                self._running = None
            job.done.set()
            self.busy_changed.emit(False)


class ServerController(QObject):
    """Starts and stops the local API server on the window's worker; see the module docstring."""

    running = Signal(str)
    failed = Signal(str)
    note = Signal(str)
    job_running = Signal(bool)

    def __init__(self, worker, parent: QObject | None = None):
        super().__init__(parent)
        self._worker = worker
        self.runner = WorkerJobRunner(worker)
        self.runner.busy_changed.connect(self._on_runner_busy)  # queued: emitted on the worker
        self.job_is_running = False
        self._server: ServerThread | None = None
        self.app = None
        self._window_waiting = False
        self.host, self.port, self.api_key = DEFAULT_HOST, DEFAULT_PORT, None  # what start() uses
        self.allowed_origins: tuple[str, ...] = ()
        self._limits = Limits(context_length=CONTEXT_LENGTH)
        worker.request_generate.connect(self._on_window_question)
        worker.answer_event.connect(self._on_window_answering)
        worker.finished.connect(self._on_window_answering)

    @property
    def url(self) -> str:
        return self._server.url if self._server is not None else ""

    def set_context_length(self, tokens: int) -> None:
        """Hold requests to ``tokens`` (prompt and answer), from the next one on."""
        self._limits = replace(self._limits, context_length=tokens)
        if self.app is not None:
            self.app.state.limits = self._limits

    def start(self, host: str | None = None, port: int | None = None, api_key: str | None = None) -> bool:
        """Listen on ``host:port`` (default: the ``host``/``port``/``api_key`` attributes); emit
        ``running`` (True) or ``failed`` (False)."""
        host = host or self.host
        port = self.port if port is None else port
        api_key = api_key or self.api_key
        from models.serving.api_server import ServerThread, create_app

        if self._server is not None:
            return True
        try:
            check_bind(host, api_key)
            self.app = create_app(
                self.runner,
                api_key=api_key,
                limits=self._limits,
                listen_host=host,
                allowed_origins=self.allowed_origins,
            )
            server = ServerThread(self.app, host, port)
            server.start()
        except (ValueError, RuntimeError) as exc:
            self.failed.emit(f"The API server did not start: {exc}")
            return False
        self.runner.open()
        self._server = server
        self.running.emit(server.url)
        return True

    def stop(self) -> None:
        """Stop listening and cancel the server's jobs (the window's answers are untouched)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self.runner.close()
        server.stop()
        self.running.emit("")

    @Slot(bool)
    def _on_runner_busy(self, busy: bool) -> None:
        self.job_is_running = busy
        self.job_running.emit(busy)

    @Slot(object)
    def _on_window_question(self, _job) -> None:
        if self.runner.busy:
            self._window_waiting = True
            self.note.emit(WAITING_NOTE)

    def _on_window_answering(self, *_args) -> None:
        if self._window_waiting:
            self._window_waiting = False
            self.note.emit("")
