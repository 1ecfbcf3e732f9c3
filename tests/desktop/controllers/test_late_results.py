"""Thread-pool work that ends after the window was closed and deleted is dropped, not delivered
into deleted widgets (pytest-qt fails a test on any exception raised in a slot)."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QCoreApplication, QSettings, QThreadPool

from desktop.main_window import MainWindow


def test_a_plan_finishing_after_the_window_is_gone_is_dropped(qtbot, tmp_path):
    window = MainWindow(
        settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat), data_folder=tmp_path / "data"
    )
    window.show()
    requested = []
    window.worker.request_load.connect(lambda path, _cancel: requested.append(path))
    window.load_checked(tmp_path / "not-a-checkpoint")  # planned on the pool, then handed to the loader
    window.turn_memory.model_loaded(str(tmp_path / "not-a-checkpoint"))
    window.close()
    shiboken6.delete(window)
    QThreadPool.globalInstance().waitForDone()
    QCoreApplication.processEvents()
    assert requested == []
