"""The store every conversation-storage test starts from, on a clock the test moves."""

from __future__ import annotations

import pytest

from models.chats.store import ConversationStore
from tests.support.stored_chats import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(tmp_path, clock):
    with ConversationStore(tmp_path / "data", clock=clock) as opened:
        yield opened
