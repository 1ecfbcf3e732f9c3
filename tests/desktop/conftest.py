"""Fixtures of the window tests: a factory of fake engines for the tests where the model itself
is not the subject (``tests.support.fake_engine``)."""

from __future__ import annotations

import pytest

from tests.support.fake_engine import FakeEngineFactory


@pytest.fixture
def fake_engines() -> FakeEngineFactory:
    """Pass as a window's ``engine_factory``; ``fake_engines.last`` is the engine it loaded, and
    ``fake_engines.script`` (a ``FakeScript``) sets how the next one behaves."""
    return FakeEngineFactory()
