"""What a request must look like before the server does any work for it: the browser rules.

A web page can make a browser send requests to 127.0.0.1; ``RequestGuard`` (an ASGI
middleware, outermost but for the error catch-all) refuses them:

- ``Host`` must name this server: 127.0.0.1, localhost or [::1], or the host it was told to
  listen on, with the listening port or none. Anything else (``Host: evil.example``, as DNS
  rebinding sends) is 403, and so is a request without one. A server bound to every address
  (0.0.0.0, ::) also takes IP literals and this machine's name (rebinding needs a domain
  name; such a server has a key).
- A request with an ``Origin`` header is 403 unless that origin is in ``allowed_origins``
  (exact ``scheme://host[:port]``, as ``serve --allow-origin`` gives it; no ``*``). Allowed
  origins get CORS headers and an answer to their preflight (``OPTIONS``); others get none.
- A ``POST`` body must be declared ``application/json`` (a charset parameter is fine):
  ``text/plain``, forms and multipart, the bodies a page can send without a preflight, are 415.

Every refusal is OpenAI's error JSON. No FastAPI here, only the ASGI interface.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"  # and whatever else an allowed origin's preflight asks
_HEADER_LIST = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")
PREFLIGHT_MAX_AGE_S = 600

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host``'s name (lowercased, IPv6 without brackets) and port; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        name, colon, port_text_or_empty = value.partition(":")
        if ":" in port_text_or_empty:
            return None
        port_text = port_text_or_empty if colon else None
    if not name:
        return None
    if port_text is None:
        return name, None
    if not port_text.isdigit() or len(port_text) > 5:
        return None
    return name, int(port_text)


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lowercased; raise ``ValueError`` for anything else (a path,
    ``*``, a scheme other than http or https)."""
    text = origin.strip().lower()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(
            f"{origin!r} is not an origin (use scheme://host[:port], e.g. http://localhost:5173)."
        )
    parts = split_host(rest) if rest and not any(c in rest for c in "/?#@* ") else None
    if parts is None:
        raise ValueError(
            f"{origin!r} is not an origin (use scheme://host[:port], e.g. http://localhost:5173)."
        )
    return text


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _error(status: int, message: str, code: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json.dumps({"error": error}).encode()


class RequestGuard:
    """ASGI middleware applying the module's rules before ``app`` sees a request."""

    def __init__(self, app, listen_host: str = "127.0.0.1", allowed_origins: Iterable[str] = ()):
        self.app = app
        host = listen_host.strip().lower().strip("[]")
        self.wildcard = host in WILDCARD_HOSTS
        names = set(LOOPBACK_NAMES) | {host}
        if self.wildcard:
            machine = socket.gethostname().lower()
            names |= {machine, f"{machine.split('.')[0]}.local"}
        self.names = frozenset(names - {""})
        self.origins = frozenset(normalize_origin(o) for o in allowed_origins)

    def host_allowed(self, value: str, port: int | None) -> bool:
        parts = split_host(value)
        if parts is None:
            return False
        name, given_port = parts
        if given_port is not None and given_port != port:
            return False
        return name in self.names or (self.wildcard and _is_ip(name))

    def origin_allowed(self, origin: str) -> bool:
        try:
            return normalize_origin(origin) in self.origins
        except ValueError:
            return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        server = scope.get("server") or (None, None)
        if not self.host_allowed(headers.get("host", ""), server[1]):
            message = "This server answers only requests addressed to it (the Host header names another)."
            await _respond(send, 403, _error(403, message, "forbidden_host"))
            return
        origin = headers.get("origin")
        cors: list[tuple[bytes, bytes]] = []
        if origin is not None:
            if not self.origin_allowed(origin):
                message = (
                    f"Requests from web pages are refused (Origin {origin[:100]!r}); "
                    "start the server with --allow-origin to allow one."
                )
                await _respond(send, 403, _error(403, message, "forbidden_origin"))
                return
            cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
            if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
                asked = headers.get("access-control-request-headers", "").strip()
                allowed = ALLOWED_HEADERS
                if len(asked) <= 2000 and _HEADER_LIST.fullmatch(asked):
                    allowed = f"{ALLOWED_HEADERS}, {asked}"
                preflight = [
                    (b"access-control-allow-methods", ALLOWED_METHODS.encode()),
                    (b"access-control-allow-headers", allowed.encode()),
                    (b"access-control-max-age", str(PREFLIGHT_MAX_AGE_S).encode()),
                ]
                await _respond(send, 204, b"", cors + preflight)
                return
        if scope["method"] == "POST" and not _declares_json(headers.get("content-type", "")):
            message = "The request body must be sent as Content-Type: application/json."
            await _respond(send, 415, _error(415, message, "unsupported_media_type"), cors)
            return
        if not cors:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lowercased name; a repeated Host or Origin counts as malformed."""
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in out and name in ("host", "origin"):
            out[name] = "\x00"  # two Hosts or two Origins: neither can be trusted
        else:
            out[name] = value
    return out


def _declares_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


async def _respond(send: Send, status: int, body: bytes, extra: Iterable[tuple[bytes, bytes]] = ()) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *extra]})
    await send({"type": "http.response.body", "body": body})
