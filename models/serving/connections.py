"""Connections bounded in count and in the time they may sit idle or half-sent.

uvicorn's own ``limit_concurrency`` counts every open connection, half-sent ones too, and
answers the next *request* 503: a few hundred clients that connect and never finish their
headers would lock everyone else out. ``protocol_class`` instead gives uvicorn an h11 protocol
that

- closes a connection that has not sent a whole request's headers within ``header_timeout_s``
  of connecting, or of its previous answer (a client trickling headers byte by byte included;
  uvicorn's keep-alive timer restarts with every byte);
- at ``max_connections``, makes room for a new connection by closing the oldest one with no
  request in progress, else the oldest one still sending its body (on this machine a real
  body arrives in milliseconds), and when every one is being answered answers the new one 503.

Idle keep-alive connections close after ``keep_alive_s`` (uvicorn's ``timeout_keep_alive``).
A body that does not arrive in time is the app's to refuse (``Limits.body_timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 64
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0


_BUSY_BODY = json.dumps(
    {
        "error": {
            "message": "The server has too many requests in progress; try again shortly.",
            "type": "server_error",
            "param": None,
            "code": "too_many_connections",
        }
    }
).encode()
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n" % len(_BUSY_BODY)
) + _BUSY_BODY


_REFUSED_LINGER_S = 1.0  # a refused client's request is read and dropped, so the 503 is not reset


def protocol_class(limits: ConnectionLimits) -> type[H11Protocol]:
    """An ``H11Protocol`` applying ``limits``; pass it as uvicorn's ``http``."""

    class BoundedH11Protocol(H11Protocol):
        _since = 0.0
        _deadline: asyncio.TimerHandle | None = None
        _refused = False

        @property
        def idle(self) -> bool:
            """No request in progress: waiting for (the rest of) a request's headers."""
            return self.cycle is None or self.cycle.response_complete

        @property
        def sending_body(self) -> bool:
            """A request whose body is still coming, not answered yet."""
            cycle = self.cycle
            return cycle is not None and cycle.more_body and not cycle.response_started

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._since = self.loop.time()
            self._arm_deadline()
            open_ones = [c for c in self.connections if c is not self and not c.transport.is_closing()]
            if len(open_ones) < limits.max_connections:
                return
            ours = [c for c in open_ones if isinstance(c, BoundedH11Protocol)]
            victims = [c for c in ours if c.idle] or [c for c in ours if c.sending_body]
            if victims:
                min(victims, key=lambda c: c._since).transport.close()
            else:
                self._refused = True
                transport.write(_BUSY)
                self.loop.call_later(_REFUSED_LINGER_S, transport.close)

        def data_received(self, data: bytes) -> None:
            if not self._refused:
                super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_deadline()

        def _arm_deadline(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(limits.header_timeout_s, self._deadline_passed)

        def _deadline_passed(self) -> None:
            self._deadline = None
            if self.idle and not self.transport.is_closing():
                self.transport.close()

    return BoundedH11Protocol
