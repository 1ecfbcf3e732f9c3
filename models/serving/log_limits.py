"""Logs that a flood of bad requests cannot fill: at most a few lines of a kind per interval.

``RateLimit`` is a ``logging.Filter``: of the records with the same logger and message
template (``record.msg``, before its arguments), it lets ``burst`` through per ``interval_s``;
the next one says that further lines are suppressed, and the first one let through in a later
interval says how many were. ``install`` puts one on the loggers the server writes to (uvicorn's,
asyncio's, the serving modules'), once; a filter on a logger sees only that logger's own records.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "asyncio",
    "models.serving.api_server",
    "models.serving.jobs",
)
_MAX_KINDS = 1024  # distinct message templates tracked; beyond that the oldest are forgotten


class RateLimit(logging.Filter):
    """Let through at most ``burst`` records of a kind per ``interval_s``; see the module docstring."""

    DEFAULT_BURST = 10
    DEFAULT_INTERVAL_S = 60.0

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__()
        self.burst = burst
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], list[float]] = {}  # start, seen, dropped

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200])
        now = self._clock()
        with self._lock:
            state = self._kinds.get(key)
            if state is None or now - state[0] >= self.interval_s:
                if state is None and len(self._kinds) >= _MAX_KINDS:
                    self._kinds.pop(next(iter(self._kinds)))
                dropped = int(state[2]) if state is not None else 0
                self._kinds[key] = [now, 1, 0]
                if dropped:
                    _amend(record, f" (… suppressed {dropped} similar lines)")
                return True
            state[1] += 1
            if state[1] <= self.burst:
                return True
            if state[1] == self.burst + 1:
                _amend(record, f" (… further similar lines suppressed for {self.interval_s:g} s)")
                return True
            state[2] += 1
            return False


def _amend(record: logging.LogRecord, note: str) -> None:
    record.msg = f"{record.getMessage()}{note}"
    record.args = None


def install(burst: int = RateLimit.DEFAULT_BURST, interval_s: float = RateLimit.DEFAULT_INTERVAL_S) -> None:
    """Put a ``RateLimit`` on each of ``SERVER_LOGGERS`` that has none yet."""
    for name in SERVER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimit) for f in logger.filters):
            logger.addFilter(RateLimit(burst, interval_s))
