"""How a download's end becomes one line: typed ends, not message strings; each line under its
source (the Hub, the download, the load, the memory fit), withdrawn once it no longer holds."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QObject, QSettings, Signal

from desktop import notices
from desktop.controllers.model_controller import ModelController
from models.hub.download_end import DownloadEnd, DownloadEndKind
from models.hub.downloader import DownloadProgress


@pytest.mark.parametrize(
    ("message", "kind", "line"),
    [
        ("Paused.", DownloadEndKind.PAUSED, "Scout: download paused; resume it from the Model menu."),
        ("Cancelled.", DownloadEndKind.CANCELLED, "Scout: download cancelled."),
        ("The disk is full.", DownloadEndKind.FAILED, "Scout: The disk is full."),
    ],
)
def test_each_kind_of_end_has_its_line_and_menu_status(message, kind, line):
    reason = message if kind is DownloadEndKind.FAILED else None
    end = DownloadEnd("org/scout", kind, reason=reason)
    assert end.status == message
    assert end.describe("Scout") == line


def test_a_finished_download_carries_its_folder():
    end = DownloadEnd("org/scout", DownloadEndKind.FINISHED, path="/models/scout")
    assert end.describe("Scout") == "Scout is downloaded and ready."


class _Worker(QObject):
    load_started = Signal(str)
    load_progress = Signal(str)
    loaded = Signal(str, str)
    load_failed = Signal(str)
    request_load = Signal(str, object)


class _Library(QObject):
    download_progress = Signal(str, object)
    download_finished = Signal(str, str)
    download_stopped = Signal(object)
    cluster = None  # this Mac alone (ModelLibrary.cluster)

    def listing(self, _key):
        return None

    def remember_folder(self, _path):
        pass


@pytest.fixture
def controller(qtbot, tmp_path):
    worker, library = _Worker(), _Library()
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    controller = ModelController(worker, library, settings, confirm=lambda *_: False, when_idle=lambda a: a())
    return controller, worker, library, settings


def test_library_endings_become_notices_and_clear_the_status(controller, qtbot):
    controller, _worker, library, _settings = controller
    shown, statuses = [], []
    controller.notice.connect(lambda text, source: shown.append((text, source)))
    controller.download_status.connect(statuses.append)
    library.download_stopped.emit(DownloadEnd("org/scout", DownloadEndKind.PAUSED))
    library.download_stopped.emit(DownloadEnd("org/scout", DownloadEndKind.CANCELLED))
    assert shown == [
        ("org/scout: download paused; resume it from the Model menu.", notices.download("org/scout")),
        ("org/scout: download cancelled.", notices.download("org/scout")),
    ]
    assert statuses == ["", ""]


def _progress(repo_id: str) -> DownloadProgress:
    return DownloadProgress(repo_id, "model.safetensors", 10, 100, 10, 100, 1.0, None)


def test_an_unreachable_hub_is_one_notice_gone_once_a_download_moves(controller):
    controller, _worker, library, _settings = controller
    shown, withdrawn = [], []
    controller.notice.connect(lambda text, source: shown.append(source))
    controller.notice_outdated.connect(withdrawn.append)
    offline = "Cannot reach the Hub at http://hub: no network connection or the server is down."
    for repo in ("org/scout", "org/maverick"):
        library.download_stopped.emit(
            DownloadEnd(repo, DownloadEndKind.FAILED, reason=offline, hub_unreachable=True)
        )
    assert shown == [notices.HUB, notices.HUB]  # one problem, whichever download met it
    withdrawn.clear()
    library.download_progress.emit("org/scout", _progress("org/scout"))  # the Hub answers again
    assert set(withdrawn) == {notices.HUB, notices.download("org/scout")}


def test_a_download_failure_goes_when_it_resumes_or_finishes(controller):
    controller, _worker, library, _settings = controller
    shown, withdrawn = [], []
    controller.notice.connect(lambda text, source: shown.append((text, source)))
    controller.notice_outdated.connect(withdrawn.append)
    library.download_stopped.emit(
        DownloadEnd("org/scout", DownloadEndKind.FAILED, reason="The disk is full.")
    )
    assert shown == [("org/scout: The disk is full.", notices.download("org/scout"))]
    library.download_progress.emit("org/maverick", _progress("org/maverick"))  # another download
    assert notices.download("org/scout") not in withdrawn
    library.download_progress.emit("org/scout", _progress("org/scout"))
    assert notices.download("org/scout") in withdrawn
    controller.name = "tiny"  # a model is loaded: the finished one is not loaded by itself
    library.download_finished.emit("org/scout", "/models/scout")  # replaces it, and the Hub's
    assert shown[-1] == ("org/scout is downloaded and ready.", notices.download("org/scout"))
    assert withdrawn[-1] == notices.HUB


def test_a_load_failure_goes_when_a_model_loads(controller):
    controller, worker, _library, _settings = controller
    shown, withdrawn = [], []
    controller.notice.connect(lambda text, source: shown.append((text, source)))
    controller.notice_outdated.connect(withdrawn.append)
    worker.load_failed.emit("img has no config.json; it is not a model folder.")
    assert shown == [("img has no config.json; it is not a model folder.", notices.LOAD)]
    worker.load_started.emit("tiny")
    worker.loaded.emit("tiny", "/models/tiny")
    # Loaded and ready: no load failure, fit warning or unreachable Hub holds any more.
    assert {notices.LOAD, notices.FIT, notices.HUB} <= set(withdrawn)


def test_a_new_load_supersedes_the_one_still_waiting(controller):
    controller, worker, _library, settings = controller
    requests = []
    worker.request_load.connect(lambda path, cancel: requests.append((path, cancel)))
    controller.load("/a")
    controller.load("/b")
    (first_path, first), (second_path, second) = requests
    assert (first_path, second_path) == ("/a", "/b")
    assert first.is_set() and not second.is_set()
    assert isinstance(second, threading.Event)
    controller.cancel_load()
    assert second.is_set()


def test_loading_states_follow_the_worker(controller):
    controller, worker, _library, settings = controller
    ready = []
    controller.ready.connect(lambda name, path: ready.append((name, path)))
    worker.load_started.emit("tiny")
    assert controller.loading and controller.name is None
    worker.loaded.emit("tiny", "/models/tiny")
    assert not controller.loading and (controller.name, controller.path) == ("tiny", "/models/tiny")
    assert ready == [("tiny", "/models/tiny")] and settings.value("last_model") == "/models/tiny"
    worker.load_failed.emit("Loading was cancelled.")
    assert controller.name is None and controller.path is None


def test_a_plan_that_ends_after_shut_down_loads_nothing(controller, tmp_path):
    from PySide6.QtCore import QCoreApplication, QThreadPool

    controller, worker, library, _settings = controller
    library.budget_override = library.peak_corrections = library.cluster = None
    library.context, library.kv_bits = 4096, None
    requests = []
    worker.request_load.connect(lambda path, cancel: requests.append(path))
    controller.load_checked(tmp_path / "not-a-checkpoint")  # the planner fails: left to the loader
    controller.shut_down()
    QThreadPool.globalInstance().waitForDone()
    QCoreApplication.processEvents()
    assert requests == []
