"""A live server on a tiny checkpoint, shared by the module's tests, and a factory for more
apps (another key, other limits) on the same engine owner; the same on a fake engine (no
model runs) for the tests of the HTTP layer."""

import pytest

from tests.support.fake_engine import FakeEngine


@pytest.fixture(scope="module")
def owner(checkpoints):
    from models.serving.engine_host import EngineHost

    owner = EngineHost(checkpoints["4bit"])
    owner.start(timeout=120)
    yield owner
    owner.close()


@pytest.fixture(scope="module")
def serve(owner):
    from models.serving.api_server import ServerThread, create_app

    started = []

    def start(**kwargs):
        app = create_app(owner, **kwargs)
        server = ServerThread(app, port=0)
        server.start()
        started.append(server)
        return app, server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def live(serve):
    """(app, server) with no API key."""
    return serve()


@pytest.fixture(scope="module")
def client(live):
    from openai import OpenAI

    return OpenAI(base_url=live[1].url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def fake_owner(checkpoints):
    from models.serving.engine_host import EngineHost

    owner = EngineHost(checkpoints["4bit"], loader=FakeEngine.load)
    owner.start(timeout=60)
    yield owner
    owner.close()


@pytest.fixture(scope="module")
def serve_fake(fake_owner):
    from models.serving.api_server import ServerThread, create_app

    started = []

    def start(app_kwargs=None, **server_kwargs):
        app = create_app(fake_owner, **(app_kwargs or {}))
        server = ServerThread(app, port=0, **server_kwargs)
        server.start()
        started.append(server)
        return app, server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def plain(serve_fake):
    return serve_fake()
