"""A job's events between the engine thread and one response: bounded, never blocking the
engine, and a response that stops taking them cancels the job."""

import asyncio
import threading

import pytest

from models.serving.job_events import JobEvents, StreamStalled
from models.serving.jobs import EventKind, Job, JobEvent

STARTED = JobEvent(EventKind.STARTED)


def job() -> Job:
    return Job([], None, lambda _event: None)  # type: ignore[arg-type]


async def settle():
    for _ in range(3):
        await asyncio.sleep(0)  # let call_soon_threadsafe callbacks run


def test_events_come_in_order_from_another_thread():
    async def main():
        events = JobEvents(asyncio.get_running_loop(), capacity=100, stall_s=30)
        sent = [JobEvent(EventKind.STEP, message=str(i)) for i in range(10)]

        def engine():
            for event in sent:
                events.deliver(event)

        threading.Thread(target=engine).start()
        return [await asyncio.wait_for(events.get(), 10) for _ in sent]

    got = asyncio.run(main())
    assert [e.message for e in got] == [str(i) for i in range(10)]


def test_a_response_that_falls_behind_cancels_the_job_without_blocking_the_engine():
    async def main():
        events = JobEvents(asyncio.get_running_loop(), capacity=3, stall_s=30)
        events.job = running = job()
        done = threading.Event()

        def engine():  # delivers far more than the buffer holds, and is never held up
            for _ in range(1000):
                events.deliver(STARTED)
            done.set()

        threading.Thread(target=engine).start()
        assert await asyncio.get_running_loop().run_in_executor(None, done.wait, 10)
        await settle()
        with pytest.raises(StreamStalled):
            await events.get()
        return running

    assert asyncio.run(main()).cancel_event.is_set()


def test_an_event_left_untaken_past_the_stall_time_cancels_the_job():
    now = [0.0]

    async def main():
        events = JobEvents(asyncio.get_running_loop(), capacity=100, stall_s=5, clock=lambda: now[0])
        events.job = running = job()
        events.deliver(STARTED)
        events.deliver(STARTED)
        await settle()
        assert await events.get() is STARTED  # taken at once: the next one is a second old
        now[0] = 4.0
        events.deliver(STARTED)
        await settle()
        assert not events.stalled
        now[0] = 6.0  # the oldest waiting event arrived at 0.0, six seconds ago
        events.deliver(STARTED)
        await settle()
        assert events.stalled and running.cancel_event.is_set()
        with pytest.raises(StreamStalled):
            await events.get()

    asyncio.run(main())


def test_a_waiting_response_is_never_stalled_by_a_slow_engine():
    now = [0.0]

    async def main():
        events = JobEvents(asyncio.get_running_loop(), capacity=2, stall_s=1, clock=lambda: now[0])
        events.job = running = job()
        getter = asyncio.ensure_future(events.get())
        await settle()
        now[0] = 100.0  # a long prefill: nothing waited to be taken meanwhile
        events.deliver(STARTED)
        assert await asyncio.wait_for(getter, 10) is STARTED
        return running

    assert not asyncio.run(main()).cancel_event.is_set()


def test_without_bounds_nothing_stalls():
    async def main():
        events = JobEvents(asyncio.get_running_loop())
        for _ in range(10_000):
            events.deliver(STARTED)
        await settle()
        return [await events.get() for _ in range(10_000)]

    assert len(asyncio.run(main())) == 10_000
