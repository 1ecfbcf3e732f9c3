"""``llama-desk serve``: the loaded model behind a local OpenAI-compatible HTTP API.

Loads the model on the engine's owner thread (``models.serving.jobs``), then serves
``/v1/models`` and ``/v1/chat/completions`` with uvicorn until Ctrl-C or SIGTERM. Bound to
127.0.0.1 unless ``--host`` says otherwise, and a host that is not loopback needs an API key
(``--api-key`` or ``LLAMA_DESK_API_KEY``). Requests from web pages are refused unless their
origin is given with ``--allow-origin`` (exact ``scheme://host[:port]``, repeatable; no ``*``).
Without ``--model`` it serves the model the window opened last, and without
``--context-length`` it holds requests to the context length of the window's Settings (the
app's default, 32,768, when never set); both are read from the window's settings file with
QtCore only (no window opens). Prints one line with the address once it listens; bad input
ends with one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from desktop.cli.command_error import CommandError
from desktop.cli.window_settings import last_model, settings_context_length, settings_parallel
from models.inference.answer_defaults import MAX_TOKENS

API_KEY_ENV = "LLAMA_DESK_API_KEY"


def add_parser(sub) -> None:
    from models.serving.binding import DEFAULT_HOST, DEFAULT_PORT
    from models.serving.engine_host import DEFAULT_QUEUE_LIMIT

    parser = sub.add_parser("serve", help="serve the model over a local OpenAI-compatible API")
    parser.add_argument("--model", help="checkpoint folder or downloaded repo id (default: the last opened)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one")
    parser.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (or set {API_KEY_ENV})")
    parser.add_argument(
        "--max-request-mb", type=float, default=64.0, help="largest request body (default 64)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=MAX_TOKENS, help="answer length when a request gives none"
    )
    parser.add_argument(
        "--context-length",
        type=int,
        help="prompt and answer together, in tokens (default: the window's Settings, else 32,768)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        help="answer up to N requests at once (default: the window's Settings, else 4)",
    )
    parser.add_argument(
        "--queue-limit",
        type=int,
        default=DEFAULT_QUEUE_LIMIT,
        help=f"requests that may wait beyond those; more get 429 (default {DEFAULT_QUEUE_LIMIT})",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let web pages from ORIGIN (scheme://host[:port]) call the API; repeatable",
    )
    parser.set_defaults(run=run)


def _origins(args: argparse.Namespace) -> tuple[str, ...]:
    from models.serving.request_guard import normalize_origin

    try:
        return tuple(normalize_origin(origin) for origin in args.allow_origin)
    except ValueError as exc:
        raise CommandError(f"--allow-origin: {exc}", 2) from None


def _limits(args: argparse.Namespace):
    from models.chats.conversation_records import MAX_CONTEXT_LENGTH
    from models.serving.openai_api import Limits

    if not 0 < args.max_request_mb <= 4096:
        raise CommandError("--max-request-mb must be in (0, 4096].", 2)
    if args.max_tokens < 1:
        raise CommandError("--max-tokens must be at least 1.", 2)
    if args.context_length is not None and not 2 <= args.context_length <= MAX_CONTEXT_LENGTH:
        raise CommandError(f"--context-length must be in 2-{MAX_CONTEXT_LENGTH:,}.", 2)
    context_length = args.context_length
    if context_length is None:
        context_length = settings_context_length()
    return Limits(
        max_body_bytes=int(args.max_request_mb * 1024 * 1024),
        default_max_tokens=args.max_tokens,
        context_length=context_length,
    )


def run(args: argparse.Namespace) -> int:
    from models.hub.store import ModelNotFound, resolve_model
    from models.inference.answer_defaults import MAX_PARALLEL
    from models.serving.api_server import ServerThread, create_app
    from models.serving.binding import check_bind
    from models.serving.engine_host import EngineHost

    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        check_bind(args.host, api_key)
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    if not 0 <= args.port <= 65535:
        raise CommandError("--port must be in 0-65535.", 2)
    limits = _limits(args)
    origins = _origins(args)
    parallel = args.parallel if args.parallel is not None else settings_parallel()
    if not 1 <= parallel <= MAX_PARALLEL:
        raise CommandError(f"--parallel must be in 1-{MAX_PARALLEL}.", 2)
    if not 0 <= args.queue_limit <= 10_000:
        raise CommandError("--queue-limit must be in 0-10,000.", 2)
    spec = args.model or last_model()
    try:
        path = resolve_model(spec)
    except ModelNotFound as exc:
        raise CommandError(str(exc)) from None
    from models.hub.model_names import model_name

    print(f"Loading {model_name(path)}…", file=sys.stderr, flush=True)
    owner = EngineHost(path, parallel=parallel, queue_limit=args.queue_limit)
    try:
        owner.start()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
    app = create_app(owner, api_key=api_key, limits=limits, listen_host=args.host, allowed_origins=origins)
    server = ServerThread(app, args.host, args.port)
    try:
        server.start()
    except RuntimeError as exc:
        owner.close()
        raise CommandError(f"{exc} Is another server using the port?") from None

    def stop(_signum, _frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    at_once = f"{parallel} requests at once" if parallel > 1 else "one request at a time"
    print(f"Serving {owner.model_name} at {server.url}, {at_once} (Ctrl-C stops)", flush=True)
    try:
        while server.alive:
            server.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        owner.close()
    print("Stopped.", file=sys.stderr)
    return 0
