"""Dropping a device file or a FIFO named like an image (issue 9, item 2): a notice, draft kept."""

import pytest
from PySide6.QtCore import QMimeData, QSettings, QUrl

from desktop.main_window import MainWindow
from tests.desktop.test_window import drop, wait_images
from tests.support.hostile_files import device_or_fifo, memory_cap, needs_posix_devices, release_fifo

pytestmark = needs_posix_devices


@pytest.fixture
def window(qtbot, tmp_path):
    win = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_dropped_device_or_fifo_is_a_notice_and_the_draft_stays(window, qtbot, tmp_path, png_file, kind):
    qtbot.keyClicks(window.composer.edit, "my question")
    window.composer.add_files([str(png_file())])
    wait_images(qtbot, window, 1)
    hostile = device_or_fifo(kind, tmp_path, "holiday.png")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(hostile))])
    try:
        with memory_cap(), qtbot.waitSignal(window.composer.notice, timeout=20_000) as blocker:
            drop(window, mime)
    finally:
        if kind == "fifo":
            release_fifo(tmp_path / "holiday.png.fifo")  # old code blocked here; let it end
    what = "a character device" if kind == "dev-zero" else "a named pipe (FIFO)"
    assert blocker.args[0] == f"holiday.png is {what}, not a regular file."
    assert window.notice.isVisible() and "not a regular file" in window.notice.text()
    assert window.composer.text() == "my question"
    wait_images(qtbot, window, 1)
