"""One job's events on their way from the engine thread to its HTTP response, bounded.

``JobEvents.deliver`` is the job's ``deliver``: it only schedules the event onto the server's
event loop, so the engine thread never waits on a client. At most ``capacity`` events wait to
be taken; a response that falls that far behind, or leaves its oldest event untaken for
``stall_s`` seconds (a client that does not read: the HTTP writer is held by the socket), has
stalled: the job is cancelled, so the engine goes to the next client within a token, later
events are dropped and ``get`` raises ``StreamStalled``. Without bounds (``None``: a plain JSON
answer, which the server itself reads as it comes) nothing stalls.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from models.serving.jobs import Job, JobEvent


class StreamStalled(Exception):
    """The response stopped taking its job's events; the job was cancelled."""


class JobEvents:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int | None = None,
        stall_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.job: Job | None = None  # set right after submit, before any event is taken in
        self.stalled = False
        self._loop = loop
        self._capacity = None if capacity is None else max(1, capacity)
        self._stall_s = stall_s
        self._clock = clock
        self._items: deque[tuple[float, JobEvent]] = deque()
        self._ready = asyncio.Event()

    def deliver(self, event: JobEvent) -> None:
        """Hand over ``event`` from any thread; never blocks."""
        self._loop.call_soon_threadsafe(self._arrive, event)

    def _arrive(self, event: JobEvent) -> None:
        if self.stalled:
            return
        now = self._clock()
        full = self._capacity is not None and len(self._items) >= self._capacity
        late = self._stall_s is not None and bool(self._items) and now - self._items[0][0] > self._stall_s
        if full or late:
            self._stall()
            return
        self._items.append((now, event))
        self._ready.set()

    def _stall(self) -> None:
        self.stalled = True
        self._items.clear()
        if self.job is not None:
            self.job.cancel()
        self._ready.set()

    async def get(self) -> JobEvent:
        """The next event; raises ``StreamStalled`` once the response has stalled."""
        while not self._items and not self.stalled:
            self._ready.clear()
            await self._ready.wait()
        if self.stalled:
            raise StreamStalled
        return self._items.popleft()[1]
