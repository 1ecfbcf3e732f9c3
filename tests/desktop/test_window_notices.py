"""The window's notices (issue 19): one per problem, notices of different problems stacked, each
one gone when its problem is (a folder model that loads ends "Cannot reach the Hub", a load that
succeeds ends the load failure, a server that starts ends its failure), and each one's × reached
from the keyboard. Models load through the fake engine; the download meets a stopped fake Hub."""

from __future__ import annotations

import socket

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAccessible
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from desktop import notices
from tests.support.hub_server import running_hub
from tests.support.window_helpers import make_window, wait_listed

TIMEOUT = 60_000
SCOUT_4BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit"


@pytest.fixture
def window(qtbot, tmp_path, fake_engines):
    made = make_window(qtbot, tmp_path, engine_factory=fake_engines)
    yield made
    made.close()


@pytest.fixture
def hub(checkpoints, tmp_path, monkeypatch):
    with running_hub(monkeypatch, tmp_path / "hf", {SCOUT_4BIT: checkpoints["4bit"]}) as server:
        yield server


def refuse_a_file(qtbot, window, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with qtbot.waitSignal(window.composer.notice, timeout=TIMEOUT):
        window.composer.add_files([str(text)])


def test_the_hub_notice_goes_when_a_folder_model_loads(window, qtbot, hub, monkeypatch, checkpoints):
    monkeypatch.setattr("desktop.main_window.ensure_license_accepted", lambda parent: True)
    wait_listed(qtbot, window.library, lambda: window.library.listing(SCOUT_4BIT) is not None)
    hub.stop()  # offline
    with qtbot.waitSignal(window.library.download_stopped, timeout=TIMEOUT):
        window.download_model(window.library.listing(SCOUT_4BIT))
    assert "Cannot reach the Hub" in window.notice.text()
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])  # File ▸ Open Model Folder…: it loads and works
    assert "Cannot reach the Hub" not in window.notice.text()


def test_a_load_failure_and_a_refused_image_are_both_shown_and_each_goes_its_way(
    window, qtbot, tmp_path, checkpoints, png_file
):
    folder = tmp_path / "img"
    folder.mkdir()
    window.load_model(folder)
    qtbot.waitUntil(lambda: "config.json" in window.notice.text(), timeout=TIMEOUT)
    refuse_a_file(qtbot, window, tmp_path)
    texts = window.notice.texts()
    assert len(texts) == 2 and "config.json" in texts[0] and texts[1].startswith("notes.txt is not an image")
    with qtbot.waitSignal(window.model_ready, timeout=TIMEOUT):
        window.load_model(checkpoints["4bit"])
    assert window.notice.texts() == [texts[1]]  # the load succeeded; the refusal still holds
    window.composer.add_files([str(png_file())])  # the attachments changed
    qtbot.waitUntil(lambda: len(window.composer.images()) == 1, timeout=TIMEOUT)
    assert window.notice.texts() == [] and not window.notice.isVisible()


def test_a_server_failure_goes_when_the_server_starts(window, qtbot, tmp_path):
    refuse_a_file(qtbot, window, tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        window.server_controller.port = taken.getsockname()[1]
        window.serve_api_action.trigger()
    assert not window.serve_api_action.isChecked()
    assert any("did not start" in text for text in window.notice.texts())
    assert len(window.notice.texts()) == 2  # the refused image is still said
    window.server_controller.port = 0  # any free port
    window.serve_api_action.trigger()
    assert window.serve_api_action.isChecked()
    assert not any("did not start" in text for text in window.notice.texts())
    assert len(window.notice.texts()) == 1
    window.serve_api_action.trigger()


def test_tab_reaches_each_notices_close_button_by_name(window, qtbot, tmp_path):
    window.activateWindow()
    qtbot.waitActive(window)
    window.notice.show_message("Deleted “Kept”.", notices.DELETED, "Undo", lambda: None)
    refuse_a_file(qtbot, window, tmp_path)
    rows = [window.notice.row(notices.DELETED), window.notice.row(notices.COMPOSER)]
    wanted = [rows[0].action_button, rows[0].close_button, rows[1].close_button]
    start = window.composer.edit
    start.setFocus(Qt.FocusReason.TabFocusReason)
    seen = []
    for _ in range(60):
        QTest.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        if QApplication.focusWidget() is start:
            break
        seen.append(QApplication.focusWidget())
    assert all(widget in seen for widget in wanted), [w.objectName() for w in seen]
    assert [seen.index(widget) for widget in wanted] == sorted(seen.index(widget) for widget in wanted)
    assert seen.index(wanted[-1]) == len(seen) - 1  # the notices come just before the composer
    names = [
        QAccessible.queryAccessibleInterface(row.close_button).text(QAccessible.Text.Name) for row in rows
    ]
    assert names == ["Dismiss “Deleted “Kept”.”", "Dismiss “notes.txt is not an image Llama Desk can read.”"]
    # Space on a focused × dismisses that notice only; focus stays with the notices.
    rows[0].close_button.setFocus(Qt.FocusReason.TabFocusReason)
    QTest.keyClick(rows[0].close_button, Qt.Key.Key_Space)
    assert window.notice.sources() == [notices.COMPOSER]
    assert QApplication.focusWidget() is window.notice.row(notices.COMPOSER).close_button
