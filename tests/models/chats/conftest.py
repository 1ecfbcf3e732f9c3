"""Fixtures for the conversation tests: the store each starts from, on a clock the test moves,
and a tiny decoded image."""

from __future__ import annotations

import pytest

from models.chats.store import ConversationStore
from tests.conftest import image_bytes
from tests.support.stored_chats import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    with ConversationStore(tmp_path / "data", clock=clock) as opened:
        yield opened


@pytest.fixture
def tiny_image():
    from models.inference.images import load_image_bytes

    return load_image_bytes(image_bytes(8, 8), "tiny.png")
