"""Helpers shared by the window tests: a window on private settings and data (answering through
a given engine factory, such as ``tests.support.fake_engine.FakeEngineFactory``), and waiting
for the model library's listing."""

from __future__ import annotations

from PySide6.QtCore import QSettings

from desktop.main_window import MainWindow
from models.inference.engine import GenerationSettings


def make_window(
    qtbot, tmp_path, library=None, data=None, max_tokens: int = 6, engine_factory=None
) -> MainWindow:
    """A shown MainWindow with its own settings file and data folder, answering greedily (with
    the real engine unless ``engine_factory`` is given)."""
    window = MainWindow(
        engine_factory=engine_factory,
        settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
        data_folder=data or tmp_path / "data",
        library=library,
    )
    qtbot.addWidget(window)
    window.show()
    window.generation_settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0)
    return window


def wait_listed(qtbot, library, predicate) -> None:
    """Refresh the library's listing unless ``predicate`` already holds, and wait until it does."""
    if not (library.loaded and predicate()):
        library.refresh()
        qtbot.waitUntil(lambda: library.loaded and predicate(), timeout=10_000)
