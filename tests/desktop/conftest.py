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


@pytest.fixture(autouse=True)
def _earlier_widgets_deleted(qapp):
    """Delete what earlier tests closed before this one starts. pytest-qt closes a test's
    widgets and calls deleteLater, but no event loop runs between tests, so they pile up half
    torn down; a change of the app's style sheet re-polishes every widget alive, and one of
    those crashed it (a segfault in QWidget::style() about one full run in three)."""
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    yield
