"""Which model is loaded or loading, and what happens when one is chosen or a download ends.

Loads go to the MLX worker (``desktop.workers.inference_worker``), superseding any load still
waiting; a folder is planned against the memory budget first (off the UI thread) and, when it
won't fit, loaded only if ``confirm(name, detail)`` says so. Loads wait for the answer in
progress through ``when_idle(action)``. Downloads are the library's; their endings arrive here
as a ``DownloadEnd`` and become one line for the person.

Each line names its source (``desktop.notices``): a download's own, or the Hub's when it could not
be reached; a load failure; a model that won't fit. Each is withdrawn (``notice_outdated``) once
it no longer holds: a download that moves again ends its own and the Hub's, a load that starts
ends the load failure and the fit warning, a model loaded and ready ends those and the Hub's.

Signals:
    load_started(str): the worker began loading (the model's folder name).
    load_stage(str): a loading stage, for the status bar.
    ready(str, str): a model is loaded (name, folder).
    load_failed(str): a load failed or was cancelled (a one-line reason; also a notice).
    notice(str, str): a one-line message for the person, and its source.
    notice_outdated(str): the notice of this source no longer holds.
    download_status(str): the download line for the status bar ("" when none runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from desktop import notices
from desktop.controllers.model_library import ModelLibrary
from desktop.workers.background_task import run_in_background
from desktop.workers.inference_worker import InferenceWorker
from models.hub.download_end import DownloadEnd, DownloadEndKind
from models.hub.model_names import model_name


class ModelController(QObject):
    load_started = Signal(str)
    load_stage = Signal(str)
    ready = Signal(str, str)
    load_failed = Signal(str)
    notice = Signal(str, str)
    notice_outdated = Signal(str)
    download_status = Signal(str)

    def __init__(
        self,
        worker: InferenceWorker,
        library: ModelLibrary,
        settings: QSettings,
        *,
        confirm: Callable[[str, str], bool],
        when_idle: Callable[[Callable[[], object]], object],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.worker, self.library, self.settings = worker, library, settings
        self._confirm, self._when_idle = confirm, when_idle
        self.name: str | None = None
        self.path: str | None = None
        self.loading = False
        self._shut_down = False
        self._load_cancel = threading.Event()
        worker.load_started.connect(self._on_worker_load_started)
        worker.load_progress.connect(self.load_stage)
        worker.loaded.connect(self._on_worker_loaded)
        worker.load_failed.connect(self._on_worker_load_failed)
        library.download_progress.connect(self._on_library_download_progress)
        library.download_finished.connect(self._on_library_download_finished)
        library.download_stopped.connect(self._download_ended)

    # Loading -----------------------------------------------------------------------------------
    def load(self, path: str | Path) -> None:
        """Ask the worker to load ``path`` now; a load still waiting or running is superseded."""
        self._load_cancel.set()
        self._load_cancel = threading.Event()
        self.worker.request_load.emit(str(path), self._load_cancel)

    def cancel_load(self) -> None:
        self._load_cancel.set()

    def shut_down(self) -> None:
        """The window is closing: cancel the load, and start none (a plan still running is dropped)."""
        self._shut_down = True
        self._load_cancel.set()

    def load_checked(self, path: str | Path, ask: bool = True) -> None:
        """Plan ``path`` off the UI thread, then load it if it fits; if it won't, ask first (or,
        with ``ask`` False, only say so)."""
        from models.memory.model_plans import plan_folder, planning_budget

        override, corrections = self.library.budget_override, self.library.peak_corrections
        context, kv_bits = self.library.context, self.library.kv_bits
        cluster = self.library.cluster  # a model that fits across the window's cluster just loads
        name = model_name(path)

        def work():
            from models.memory.cluster_plan import fit_across, host_budgets

            budget = planning_budget(override)
            plan = plan_folder(path, budget.backend, kv_bits, corrections)
            report = plan.fit(context, budget.budget_bytes)
            if cluster is None or report.verdict != "wont_fit":
                return report, False
            budgets = host_budgets([h.memory_gb for h in cluster.hosts], budget.budget_bytes)
            across = fit_across(plan, budgets, context)
            return report, across is not None and across.fits

        def done(result) -> None:
            report, fits_cluster = result
            if self._shut_down:
                return
            if fits_cluster or report.verdict != "wont_fit" or (ask and self._confirm(name, report.summary)):
                self._when_idle(lambda: self.load(path))
            else:
                self.notice.emit(
                    f"{name} won't fit: {report.summary} Choose it in the Model menu to load it anyway.",
                    notices.FIT,
                )

        # A folder the planner cannot read is left to the loader, which says what is wrong.
        def failed(_message: str) -> None:
            if not self._shut_down:
                self._when_idle(lambda: self.load(path))

        run_in_background(work, done, failed, owner=self)

    def use(self, listing) -> None:
        """Switch to a downloaded variant: the answer in progress stops, the current model is
        unloaded completely, then the new one loads; the conversation stays."""
        if listing.path is None:
            return
        if self.name is not None and self.path == str(listing.path):
            return
        badge = self.library.fit(listing)
        if (
            badge is not None
            and badge.verdict == "wont_fit"
            and not self._confirm(listing.entry.display_name, badge.detail)
        ):
            return
        self._when_idle(lambda: self.load(listing.path))

    def _on_worker_load_started(self, name: str) -> None:
        self.loading = True
        self.name = None
        self._withdraw(notices.LOAD, notices.FIT)  # about an earlier choice
        self.load_started.emit(name)

    def _on_worker_loaded(self, name: str, path: str) -> None:
        self.loading = False
        self.name, self.path = name, path
        self.settings.setValue("last_model", path)
        self.library.remember_folder(path)  # a folder opened directly is listed in the Model menu
        # A model is loaded and ready: nothing said about loading holds, nor that the Hub could
        # not be reached (the person has a model; a download that still matters says so again).
        self._withdraw(notices.LOAD, notices.FIT, notices.HUB)
        self.ready.emit(name, path)

    def _on_worker_load_failed(self, message: str) -> None:
        self.loading = False
        self.name = self.path = None
        self.notice.emit(message, notices.LOAD)
        self.load_failed.emit(message)

    def _withdraw(self, *sources: str) -> None:
        for source in sources:
            self.notice_outdated.emit(source)

    # Downloads ---------------------------------------------------------------------------------
    def _listing_name(self, repo_id: str) -> str:
        listing = self.library.listing(repo_id)
        return listing.entry.display_name if listing else repo_id

    def _on_library_download_progress(self, repo_id: str, progress) -> None:
        self._withdraw(notices.HUB, notices.download(repo_id))  # it moves: the Hub answers
        percent = 100 * progress.bytes_done / progress.bytes_total if progress.bytes_total else 0
        self.download_status.emit(
            f"Downloading {self._listing_name(repo_id)}: {percent:.0f} % · {progress.describe()}"
        )

    def _on_library_download_finished(self, repo_id: str, path: str) -> None:
        self._download_ended(DownloadEnd(repo_id, DownloadEndKind.FINISHED, path=path))

    def _download_ended(self, end: DownloadEnd) -> None:
        self.download_status.emit("")
        source = notices.download(end.repo_id)
        if end.hub_unreachable:  # one notice for the Hub, whichever download met it
            self._withdraw(source)
            source = notices.HUB
        elif end.kind is DownloadEndKind.FINISHED:
            self._withdraw(notices.HUB)
        self.notice.emit(end.describe(self._listing_name(end.repo_id)), source)
        if end.kind is DownloadEndKind.FINISHED and end.path and self.name is None and not self.loading:
            self.load_checked(end.path, ask=False)
