"""The window's "Serve API" switch: the OpenAI-compatible server on the window's own engine.

No second copy of the model: the server submits to the window's engine host
(``InferenceWorker.host``, ``models.serving.engine_host``), which answers API requests and the
window's questions together in one batch. A question typed in the window never waits behind
API requests (it is admitted at once, at the window's priority), and each conversation keeps
its own KV cache, so neither side evicts the other's. Stop in the window, with no answer of its
own running, ends the API requests (``InferenceWorker.cancel``), and ``job_running`` says when
one runs, so the window can offer Stop. A model split across a cluster of Macs answers one
request at a time (``ONE_AT_A_TIME`` says so when the server starts). Requests are held to
Settings ▸ Context length (``set_context_length``, also while serving); the server takes no web
page's requests (``allowed_origins`` is empty unless set).

Signals (ServerController):
    running(str): the server listens at this base URL ("" once stopped).
    failed(str): it could not start; a message fit to show.
    note(str): a line for the status bar: what the engine is doing ("" clears it).
    job_running(bool): API requests started (True) or all ended (False).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from models.inference.answer_defaults import CONTEXT_LENGTH
from models.serving.binding import DEFAULT_HOST, DEFAULT_PORT, check_bind

if TYPE_CHECKING:
    from models.serving.api_server import ServerThread
from models.serving.openai_api import Limits

ONE_AT_A_TIME = "Across a cluster of Macs, the API answers one request at a time."


class ServerController(QObject):
    """Starts and stops the local API server on the window's worker; see the module docstring."""

    running = Signal(str)
    failed = Signal(str)
    note = Signal(str)
    job_running = Signal(bool)

    def __init__(self, worker, parent: QObject | None = None):
        super().__init__(parent)
        self._worker = worker
        self.runner = worker.host  # the engine host: model_name, submit
        self.job_is_running = False
        self._server: ServerThread | None = None
        self.app = None
        self.host, self.port, self.api_key = DEFAULT_HOST, DEFAULT_PORT, None  # what start() uses
        self.allowed_origins: tuple[str, ...] = ()
        self._limits = Limits(context_length=CONTEXT_LENGTH)
        worker.activity.connect(self._on_worker_activity)  # queued: emitted on the host's thread

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
        self._server = server
        self.running.emit(server.url)
        engine = self.runner.engine
        if engine is not None and not getattr(engine, "batched", True) and self.runner.parallel > 1:
            self.note.emit(ONE_AT_A_TIME)  # a pipeline across a cluster does not batch
        return True

    def stop(self) -> None:
        """Stop listening and cancel the server's jobs (the window's answers are untouched)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stop()
        self.runner.cancel_requests()
        self.running.emit("")

    @Slot(str)
    def _on_worker_activity(self, words: str) -> None:
        running = self.runner.requests_running()
        if running != self.job_is_running:
            self.job_is_running = running
            self.job_running.emit(running)
        if self._server is not None:
            self.note.emit(words)
