"""Connections and logs against floods: half-sent requests, bodies that never end, clients
that leave mid-body, every slot busy, and invalid requests by the dozen (on a fake engine)."""

import json
import logging
import socket
import threading

import pytest

from tests.models.serving.test_http_guard import QUESTION, post

HALF_HEADERS = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le"
HALF_BODY = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"messages": ['
)


def half_open(server, count: int, sent: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(sent)
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket) -> bool:
    try:
        sock.recv(1024)  # EOF, or a 503 before the close: either way the server answered
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("sent", [HALF_HEADERS, HALF_BODY], ids=["headers", "body"])
def test_half_sent_requests_are_bounded_and_do_not_block_a_request(serve_fake, sent):
    from models.serving.connections import ConnectionLimits
    from models.serving.openai_api import Limits

    limits = ConnectionLimits(max_connections=8, header_timeout_s=0.5)
    _, server = serve_fake({"limits": Limits(body_timeout_s=0.5)}, connection_limits=limits)
    sockets = half_open(server, 20, sent)
    try:
        response = post(server)
        assert response.status_code == 200, response.text
        assert len(server.server.server_state.connections) <= 8
        # Every half-sent request is closed by the server (evicted, or after its timeout).
        assert all(closed_by_server(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_a_request_whose_body_never_ends_is_408(serve_fake):
    from models.serving.openai_api import Limits

    _, server = serve_fake({"limits": Limits(body_timeout_s=0.5)})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        reply = b"".join(iter(lambda: sock.recv(4096), b""))  # the server closes after it
    assert reply.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in reply


def test_a_flood_of_bad_requests_writes_a_bounded_log(serve_fake):
    from models.serving.log_limits import RateLimit

    _, server = serve_fake()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        for _ in range(60):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                sock.recv(4096)
    finally:
        logger.removeHandler(handler)
    invalid = [r for r in records if "Invalid HTTP request" in r.getMessage()]
    assert 1 <= len(invalid) <= RateLimit.DEFAULT_BURST + 1
    assert "suppressed" in invalid[-1].getMessage()


def test_the_rate_limit_lets_a_kind_through_again_in_the_next_interval():
    from models.serving.log_limits import RateLimit

    now = [0.0]
    limit = RateLimit(burst=3, interval_s=10, clock=lambda: now[0])

    def record(msg, *args):
        return logging.LogRecord("x", logging.WARNING, __file__, 1, msg, args, None)

    passed = [r for r in (record("drop %s", i) for i in range(100)) if limit.filter(r)]
    assert len(passed) == 4 and "suppressed" in passed[-1].getMessage()
    assert limit.filter(record("another kind"))
    now[0] = 11.0
    again = record("drop %s", 7)
    assert limit.filter(again) and "96 similar" in again.getMessage()


def wait_until(condition, timeout_s: float = 30.0) -> bool:
    """Poll ``condition`` until it holds; the timeout only guards against a hang."""
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not condition():
            if done.wait(0.02):
                return condition()
        return True
    finally:
        deadline.cancel()


def test_clients_that_leave_mid_body_write_no_tracebacks(serve_fake):
    _, server = serve_fake()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        state = server.server.server_state
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(20)]
        for sock in sockets:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"messages": ['
            )
        assert wait_until(lambda: len(state.tasks) == 20)  # every request is reading its body
        for sock in sockets:
            sock.close()
        assert wait_until(lambda: not state.connections and not state.tasks)
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == []


class _SilentRunner:
    """Takes jobs and never answers them: every request stays in progress until its client goes."""

    model_name = "silent"

    def __init__(self):
        self.jobs = []

    def submit(self, messages, settings, deliver):
        from models.serving.jobs import Job

        job = Job(list(messages), settings, deliver)
        self.jobs.append(job)
        return job


def test_when_every_connection_is_being_answered_a_new_one_is_503():
    from models.serving.api_server import ServerThread, create_app
    from models.serving.connections import ConnectionLimits

    runner = _SilentRunner()
    server = ServerThread(create_app(runner), port=0, connection_limits=ConnectionLimits(max_connections=2))
    server.start()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(json.dumps(QUESTION)), json.dumps(QUESTION).encode())
    )
    busy = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(2)]
    try:
        for sock in busy:
            sock.sendall(request)
        assert wait_until(lambda: len(runner.jobs) == 2)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as third:
            third.sendall(request)
            reply = b"".join(iter(lambda: third.recv(4096), b""))
        assert reply.startswith(b"HTTP/1.1 503") and b"too_many_connections" in reply
    finally:
        for sock in busy:
            sock.close()
        assert wait_until(lambda: all(job.cancel_event.is_set() for job in runner.jobs))
        server.stop()
