"""The HTTP side of the local server: a FastAPI app on a ``JobRunner``, served by uvicorn.

The runner is an ``EngineHost`` (``llama-desk serve``'s, or the window's own), which answers
several requests at once; past its queue's limit a request gets 429 with ``Retry-After``.

``create_app`` builds ``GET /v1/models`` (with the ``context_length`` requests are held to) and
``POST /v1/chat/completions`` (plain JSON, or server-sent events in OpenAI's chunk format with
a ``usage`` chunk at the end). A request is checked on a worker thread (``parse_chat_request``:
its images' headers read, its PDFs' pages rendered at the loaded model's tiler size).
With tools, the answer is read for calls (``tool_calls.CallReader``): ``message.tool_calls``
and ``finish_reason: "tool_calls"``, or, streamed, text that could begin a call held back and
the calls sent as OpenAI's ``delta.tool_calls`` chunks; a request's ``OutputConstraint`` goes to
the runner with its job. Every error, unknown routes and unexpected failures included, has
OpenAI's shape (a 500 never carries a traceback). Before anything else,
``request_guard.RequestGuard`` refuses foreign ``Host``s, unlisted ``Origin``s and bodies not
declared JSON. With an API key, requests without ``Authorization: Bearer KEY`` get 401.
Bodies over ``Limits.max_body_bytes`` get 413 before they are read in full, bodies slower than
``Limits.body_timeout_s`` 408, and ``json_body.decode_json`` bounds depth, integers and floats.
Requests wait their turn on the owner thread; a client that disconnects (mid-stream or while
waiting) cancels its job, and so does a stream's client that stops reading (``JobEvents``: the
engine never waits on a client). ``app.state.jobs`` keeps the last jobs (their numbers and
final steps: a job drops its messages and images when it ends). ``ServerThread`` runs uvicorn
on a background thread (the CLI, the window, the tests), with ``connections.ConnectionLimits``
and rate-limited logs.

Long because the two routes share the streamed and the plain answer, tool calls and errors in
OpenAI's shape; request checks, HTTP guards and connection limits are in modules of their own.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from models.inference.generation_types import GenerationStep
from models.inference.prompt import ToolCall
from models.serving import log_limits
from models.serving.binding import DEFAULT_HOST, DEFAULT_PORT
from models.serving.connections import ConnectionLimits, protocol_class
from models.serving.job_events import JobEvents, StreamStalled
from models.serving.jobs import EventKind, JobEvent, JobRunner, QueueFull
from models.serving.json_body import decode_json
from models.serving.openai_api import (
    AnswerMemory,
    ApiError,
    ChatRequest,
    CompletionIds,
    ErrorType,
    Limits,
    StopStrings,
    chunk,
    completion,
    finish_reason,
    models_list,
    parse_chat_request,
    tool_call_deltas,
    usage_chunk,
)
from models.serving.request_guard import RequestGuard
from models.serving.tool_calls import CallReader

_DISCONNECT_POLL_S = 0.2
# Each connection's kernel send buffer (set on the listening socket, which connections inherit),
# so that a client that stops reading holds back its stream after tens of KB, not megabytes
# of autotuned buffer: then ``JobEvents`` sees it and cancels the job.
_SEND_BUFFER_BYTES = 32 * 1024
_UNREAD_BODY = (408, 413)  # answered before the body was read in full: the connection closes


class _Answer:
    """Turns one job's events into text, stop-string cuts, tool calls and the final step."""

    def __init__(self, request: ChatRequest):
        self.stops = StopStrings(request.stop)
        self.reader = CallReader(request.call_names, request.parallel)
        self.parts: list[str] = []
        self.calls: tuple[ToolCall, ...] = ()
        self.final: GenerationStep | None = None

    def take(self, event: JobEvent) -> str:
        """The text to send for ``event``; raises ``ApiError`` for a rejected or failed job.
        Text that could begin a tool call is held back; at the end, ``calls`` are set."""
        if event.kind is EventKind.REJECTED:
            code = event.code or "context_length_exceeded"
            raise ApiError(400, event.message, param=event.param, code=code)
        if event.kind is EventKind.FAILED:
            raise ApiError(500, event.message, ErrorType.SERVER)
        step = event.step
        if step is None:
            return ""
        if step.finish_reason == "error":
            raise ApiError(500, step.error or "Generation failed.", ErrorType.SERVER)
        text = self.stops.feed(step.text)
        if step.finish_reason is not None:
            text += self.stops.flush()
        text = self.reader.feed(text)
        if step.finish_reason is not None:
            self.final = step
            self.calls, rest = self.reader.finish()
            text += rest
        self.parts.append(text)
        return text

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def reason(self) -> str:
        assert self.final is not None
        return finish_reason(self.final, self.stops.hit, bool(self.calls))


def create_app(
    owner: JobRunner,
    model_id: str | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    listen_host: str = DEFAULT_HOST,
    allowed_origins: Iterable[str] = (),
):
    """The app; ``app.state.limits`` may be replaced while it serves (the next request uses it).
    ``listen_host`` and ``allowed_origins`` are ``RequestGuard``'s."""
    app = FastAPI(title="Llama Desk", docs_url=None, redoc_url=None, openapi_url=None)
    memory = AnswerMemory()
    app.state.owner = owner
    app.state.memory = memory
    app.state.limits = limits or Limits()
    app.state.jobs = []  # the most recent jobs, for tests and the window's note
    app.add_middleware(RequestGuard, listen_host=listen_host, allowed_origins=tuple(allowed_origins))

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        headers = dict(exc.headers)
        if exc.status in _UNREAD_BODY:
            headers["Connection"] = "close"
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers or None)

    @app.exception_handler(ClientDisconnect)
    async def _gone(_request, _exc: ClientDisconnect):
        # The client left before its body was in: nobody to answer, nothing worth a traceback.
        return Response(status_code=400, headers={"Connection": "close"})

    @app.exception_handler(Exception)
    async def _unexpected(_request, _exc: Exception):
        # The traceback goes to the (rate-limited) log, never to the client.
        error = ApiError(500, "The server failed on this request.", ErrorType.SERVER)
        return JSONResponse(error.body(), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, exc: StarletteHTTPException):
        kind = ErrorType.NOT_FOUND if exc.status_code == 404 else ErrorType.INVALID_REQUEST
        error = ApiError(exc.status_code, str(exc.detail), kind)
        return JSONResponse(error.body(), status_code=exc.status_code)

    def authorize(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise ApiError(
                401, "Incorrect API key provided.", ErrorType.AUTHENTICATION, code="invalid_api_key"
            )

    async def read_body(request: Request, limits: Limits) -> object:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise _too_large(limits)
        received = bytearray()

        async def receive_all() -> None:
            async for piece in request.stream():
                received.extend(piece)
                if len(received) > limits.max_body_bytes:
                    raise _too_large(limits)

        try:
            await asyncio.wait_for(receive_all(), limits.body_timeout_s)
        except TimeoutError:
            raise ApiError(
                408, f"The body did not arrive within {limits.body_timeout_s:g} s.", code="request_timeout"
            ) from None
        return await run_in_threadpool(decode_json, received)

    @app.get("/v1/models")
    async def list_models(request: Request):
        authorize(request)
        return models_list(model_id or owner.model_name, request.app.state.limits.context_length)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        authorize(request)
        limits = request.app.state.limits
        body = await read_body(request, limits)
        # Off the event loop: images' headers are read and PDFs' pages rendered here.
        chat = await run_in_threadpool(parse_chat_request, body, limits, memory, _processor(owner))
        loop = asyncio.get_running_loop()
        if chat.stream:  # a stream's client that stops reading must not keep the engine
            events = JobEvents(loop, limits.stream_buffer_chunks, limits.stream_stall_s)
        else:
            events = JobEvents(loop)
        try:
            # Only a constrained answer passes a constraint (a runner without one takes none).
            # So does a request with PDFs ``fit_pages``: page images that do not fit go as text.
            extra: dict[str, Any] = {"constraint": chat.constraint} if chat.constraint is not None else {}
            if any(message.documents for message in chat.messages):
                extra["fit_pages"] = True
            job = events.job = owner.submit(list(chat.messages), chat.settings, events.deliver, **extra)
        except QueueFull as exc:
            raise ApiError(
                429,
                str(exc),
                ErrorType.RATE_LIMIT,
                code="rate_limit_exceeded",
                headers={"Retry-After": str(exc.retry_after_s)},
            ) from None
        app.state.jobs = [*app.state.jobs[-15:], job]
        ids = CompletionIds.new(model_id or owner.model_name)
        if chat.stream:
            # Wait for the job to start, so a rejected prompt is still a plain 400, not an event.
            first = await _next_event(request, job, events)
            if first is None:
                return None
            answer = _Answer(chat)
            answer.take(first)
            return StreamingResponse(
                _stream(job, events, answer, ids, memory),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _whole(request, job, events, chat, ids, memory)

    return app


def _processor(owner: JobRunner):
    """The loaded model's tiler (PDF pages are rendered at its size), or None (Llama 4's)."""
    checkpoint = getattr(getattr(owner, "engine", None), "checkpoint", None)
    return getattr(checkpoint, "processor", None)


def _too_large(limits: Limits) -> ApiError:
    mb = limits.max_body_bytes / (1024 * 1024)
    return ApiError(413, f"The request is larger than the {mb:g} MB limit.", code="request_too_large")


def _stalled() -> ApiError:
    return ApiError(
        408,
        "The answer was cancelled: the client stopped reading the stream.",
        code="stream_stalled",
    )


def _remember(memory: AnswerMemory, answer: _Answer) -> None:
    if answer.final is not None and not answer.stops.hit and not answer.calls:
        memory.remember(answer.text, answer.final.token_ids)


async def _next_event(request, job, events) -> JobEvent | None:
    """The job's next event, or None (the job cancelled) if the client went away first."""
    while True:
        try:
            return await asyncio.wait_for(events.get(), _DISCONNECT_POLL_S)
        except StreamStalled:
            raise _stalled() from None
        except TimeoutError:
            if await request.is_disconnected():
                job.cancel()
                return None


async def _whole(request, job, events, chat, ids, memory):
    answer = _Answer(chat)
    try:
        while answer.final is None:
            event = await _next_event(request, job, events)
            if event is None:
                return None
            answer.take(event)
            if answer.stops.hit:
                job.cancel()
    finally:
        if answer.final is None:
            job.cancel()
    _remember(memory, answer)
    return completion(ids, answer.text, answer.reason, answer.final, answer.calls)


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _stream(job, events, answer: _Answer, ids, memory):
    """The answer as server-sent events; cancels the job when the client goes away."""
    try:
        # An answer that may be calls has no content until it is known to be text (OpenAI's way).
        yield _sse(chunk(ids, {"role": "assistant", "content": None if answer.reader.names else ""}))
        while answer.final is None:
            try:
                text = answer.take(await events.get())
            except StreamStalled:
                yield _sse(_stalled().body())
                return
            except ApiError as exc:
                yield _sse(exc.body())
                return
            if text:
                yield _sse(chunk(ids, {"content": text}))
            if answer.stops.hit and answer.final is None:
                job.cancel()
        for delta in tool_call_deltas(answer.calls):
            yield _sse(chunk(ids, delta))
        yield _sse(chunk(ids, {}, answer.reason))
        yield _sse(usage_chunk(ids, answer.final))
        yield "data: [DONE]\n\n"
        _remember(memory, answer)
    finally:
        if answer.final is None:
            job.cancel()


class ServerThread:
    """uvicorn serving ``app`` on a background thread; ``start`` returns once it listens."""

    def __init__(
        self,
        app,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        connection_limits: ConnectionLimits | None = None,
    ):
        import uvicorn

        limits = connection_limits or ConnectionLimits()
        log_limits.install()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=protocol_class(limits),
            timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]  # a float works
            log_config=None,  # no dictConfig of the process's logging; warnings reach stderr
            log_level="warning",
            lifespan="off",
            proxy_headers=False,  # nothing stands in front of it; X-Forwarded-* is a client's claim
        )
        self.server = uvicorn.Server(config)
        self.host = host
        self._thread = threading.Thread(target=self._run, name="llama-desk-http", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except SystemExit:  # uvicorn's way of saying it could not listen; ``start`` reports it
            pass

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                return sock.getsockname()[1]
        return self.server.config.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> None:
        """Listen, or raise ``RuntimeError`` (the port is taken, the host is not this machine's)."""
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.02)
        if not self.server.started:
            self.stop(1.0)
            raise RuntimeError(f"Could not listen on {self.host}:{self.server.config.port}.")
        for server in getattr(self.server, "servers", None) or []:
            for sock in server.sockets:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER_BYTES)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> None:
        self._thread.join(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
