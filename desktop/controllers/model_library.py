"""The models the app knows about, and their downloads, for the menus and dialogs.

``ModelLibrary`` keeps the last ``models.hub.catalog.list_models()`` result (read on the thread
pool, never on the UI thread) and runs downloads one at a time on its own QThread through
``models.hub.store.download_model``. Pausing keeps the bytes (the next start resumes); cancelling
also deletes the partial download. The view classes only draw what this object says; a
model's badge (here and across the window's cluster) is ``desktop.controllers.fit_badge``'s.

Signals:
    changed(): the listings (or a download's state) changed.
    download_progress(str, object): repo id and its latest ``models.hub.store.DownloadProgress``.
    download_finished(str, str): repo id and the snapshot folder it can be loaded from.
    download_stopped(object): a ``models.hub.download_end.DownloadEnd`` (paused, cancelled, failed).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal

from desktop.controllers.fit_badge import FitBadge, cluster_badge
from desktop.workers.background_task import run_in_background
from desktop.workers.download_worker import CancelEvent, DownloadWorker
from models.byte_sizes import format_bytes
from models.hub.download_end import DownloadEnd, DownloadEndKind
from models.inference.answer_defaults import CONTEXT_LENGTH
from models.memory.listing_fits import corrected_plan, plan_fits

if TYPE_CHECKING:
    from models.hub.downloader import DownloadProgress
    from models.memory.cluster_plan import ClusterPlan
    from models.memory.planner import FitReport, MemoryPlan


def total_memory_bytes() -> int:
    """Physical memory (unified memory on Apple silicon)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def format_size(n: int | float | None) -> str:
    """A size for the menus and dialogs; '—' when unknown (or nothing)."""
    return format_bytes(n or None, missing="—")


def _plan_for(listing, backend: str):
    """A listing's memory plan (unquantized KV), from its folder or its catalog config; or None."""
    from models.memory.model_plans import plan_for_model
    from models.memory.planner import PlanError

    entry = listing.entry
    try:
        return plan_for_model(listing.path, entry.repo_id, entry.display_name, backend)
    except (PlanError, OSError, ValueError, KeyError, TypeError):
        return None


def _survey(budget=None, fit_state=None):
    """Runs on the thread pool: listings, the budget to plan against, a plan per listing and,
    for ``fit_state`` (cluster, context, KV bits, corrections, generation), their fits."""
    from models.hub.catalog import list_models
    from models.memory.model_plans import planning_budget

    listings = list_models()
    budget = planning_budget(budget)
    plans = {}
    for listing in listings:
        plan = _plan_for(listing, budget.backend)
        if plan is not None:
            plans[listing.key] = plan
    cluster, context, kv_bits, corrections, generation = fit_state or (None, 32768, None, None, -1)
    paths = {listing.key: listing.path for listing in listings}
    fits = plan_fits(plans, paths, budget, cluster, context, kv_bits, corrections)
    return listings, budget, plans, fits, generation


class ModelLibrary(QObject):
    changed = Signal()
    download_progress = Signal(str, object)
    download_finished = Signal(str, str)
    download_stopped = Signal(object)  # DownloadEnd

    def __init__(self, parent=None, memory_bytes: int | None = None, budget=None):
        """``budget``: a ``MemoryBudget`` to plan against instead of this machine's (tests, and
        a person asking what would fit another Mac)."""
        super().__init__(parent)
        self.budget_override = budget
        self._survey_generation = 0
        self.listings: list = []
        self.loaded = False
        self.memory_bytes = memory_bytes if memory_bytes is not None else total_memory_bytes()
        self.progress: dict[str, DownloadProgress | None] = {}  # repo id -> last report (None: queued)
        self.errors: dict[str, str] = {}
        self._cancels: dict[str, CancelEvent] = {}
        self.budget = None  # models.memory.budget.MemoryBudget, once surveyed
        self.plans: dict[str, MemoryPlan] = {}  # listing key -> plan (unquantized KV)
        self.reports: dict[str, FitReport] = {}  # listing key -> fit at context/kv_bits
        self.peak_corrections = None  # models.memory.measured_peaks.PeakCorrections, once read
        self.context = CONTEXT_LENGTH
        self.kv_bits: int | None = None
        self.cluster = None  # models.distributed.hosts.HostFile: the window runs across it
        self.cluster_plans: dict[str, ClusterPlan] = {}  # listing key -> plan across the cluster
        self._fits_generation = 0  # bumped whenever the fits are planned again
        self._thread = QThread()
        self._thread.setObjectName("downloads")
        self._worker = DownloadWorker()
        self._worker.moveToThread(self._thread)
        self._worker.progress.connect(self._on_worker_progress)
        self._worker.finished.connect(self._on_worker_finished)
        self._worker.failed.connect(self._on_worker_failed)
        self._thread.start()

    # Listing -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the catalog, the cache, this machine's memory budget and each model's memory
        plan (config and safetensors headers only) on the thread pool; ``changed`` follows."""
        self._survey_generation += 1
        generation = self._survey_generation

        def listed(result) -> None:
            if generation == self._survey_generation:  # an older, slower survey is stale
                self._on_listed(result)

        def failed(message: str) -> None:
            if generation == self._survey_generation:
                self._on_list_failed(message)

        state = (self.cluster, self.context, self.kv_bits, self.peak_corrections, self._fits_generation)
        run_in_background(partial(_survey, self.budget_override, state), listed, failed, owner=self)
        from models.memory.measured_peaks import load_corrections

        run_in_background(load_corrections, self.set_peak_corrections, lambda _message: None, owner=self)

    def set_peak_corrections(self, corrections) -> None:
        """What measured peaks taught (``models.memory.measured_peaks``); the badges are planned
        again on the thread pool (tens of ms), a result made stale meanwhile is dropped."""
        self.peak_corrections = corrections
        self._plan_fits_in_background()

    def _plan_fits_in_background(self) -> None:
        """Plan every listing's fit on the thread pool; ``changed`` follows unless made stale."""
        self._fits_generation += 1
        generation, compute = self._fits_generation, self._fits_function()

        def done(fits) -> None:
            if generation == self._fits_generation:
                self.reports, self.cluster_plans = fits
                self.changed.emit()

        run_in_background(compute, done, lambda _message: None, owner=self)

    def _on_listed(self, result) -> None:
        listings, budget, plans, fits, fits_generation = result
        self.listings = list(listings)
        self.budget = budget
        self.plans = plans
        self.loaded = True
        if fits_generation == self._fits_generation:  # planned by the survey, for today's state
            self.reports, self.cluster_plans = fits
        else:  # the state changed meanwhile (new peak corrections): planned again, off this thread
            self.reports, self.cluster_plans = fits
            self._plan_fits_in_background()
        self.changed.emit()

    def adopt_budget(self, budget) -> None:
        """Use ``budget`` (a ``MemoryBudget`` measured elsewhere) until a survey finds one."""
        if self.budget is None:
            self.budget = budget

    def set_fit_parameters(self, context: int, kv_bits: int | None) -> None:
        """The context length and KV precision the badges are computed for (arithmetic only)."""
        from models.memory.planner import kv_cache_bits

        kv_bits = kv_cache_bits(kv_bits)
        if (context, kv_bits) != (self.context, self.kv_bits):
            self.context, self.kv_bits = context, kv_bits
            self._recompute_fits()
            self.changed.emit()

    def plan(self, key: str):
        """The memory plan of a listing at the current KV precision, or None."""
        listing = self.listing(key)
        return corrected_plan(
            self.plans.get(key), self.kv_bits, self.peak_corrections, listing.path if listing else None
        )

    def set_cluster(self, hosts) -> None:
        """Also plan every listing across ``hosts`` (a ``HostFile``), each host with its
        ``memory_gb`` or else this machine's budget (``desktop.controllers.fit_badge``)."""
        self.cluster = hosts
        self._recompute_fits()
        self.changed.emit()

    def _recompute_fits(self) -> None:
        self._fits_generation += 1  # a pending background result is stale now
        self.reports, self.cluster_plans = self._fits_function()()

    def _fits_function(self):
        """A function of the current state (copied now) that plans every listing's fit."""
        plans = dict(self.plans)
        paths = {key: getattr(self.listing(key), "path", None) for key in plans}
        state = (self.budget, self.cluster, self.context, self.kv_bits, self.peak_corrections)
        return partial(plan_fits, plans, paths, *state)

    def _on_list_failed(self, message: str) -> None:
        self.loaded = True
        self.errors["__list__"] = message
        self.changed.emit()

    def remember_folder(self, path: str | Path) -> None:
        """List a model opened from a folder (``--model PATH``, File ▸ Open Model Folder…).

        Off the UI thread: unless a listing already loads from this folder (a download, or an
        earlier addition), it becomes one of the person's added models; then the listing is
        refreshed. Failing to remember it changes nothing: the model is already open.
        """
        folder = os.path.abspath(path)

        def work() -> bool:
            from models.hub.catalog import add_user_model, list_models

            if any(row.path is not None and os.path.abspath(row.path) == folder for row in list_models()):
                return False
            add_user_model(folder)
            return True

        def added(was_added: bool) -> None:
            if was_added:
                self.refresh()

        run_in_background(work, added, lambda _message: None, owner=self)

    def listing_for_folder(self, path: str | Path | None):
        """The listing that loads from ``path`` (compared as absolute paths), or None."""
        if path is None:
            return None
        folder = os.path.abspath(path)
        listed = (row for row in self.listings if row.path is not None)
        return next((row for row in listed if os.path.abspath(row.path) == folder), None)

    def listing(self, key: str):
        return next((row for row in self.listings if row.key == key), None)

    def runnable(self) -> list:
        """Listings that can be loaded now (downloaded, or a valid local folder)."""
        return [
            row for row in self.listings if row.path is not None and row.status in ("downloaded", "local")
        ]

    def fit(self, listing) -> FitBadge | None:
        """The memory planner's verdict for this listing at the current context length."""
        report = self.reports.get(listing.key)
        cluster = self.cluster_plans.get(listing.key)
        if report is not None and cluster is not None and report.verdict == "wont_fit":
            return cluster_badge(report, cluster, self.cluster)
        if report is not None:
            return FitBadge(report.verdict, report.summary, report)
        # No plan (an unknown repo): its weights against the budget, by the planner's rule.
        from models.memory.model_plans import weights_verdict

        size = listing.size_bytes
        budget = self.budget.budget_bytes if self.budget is not None else self.memory_bytes
        if not size or not budget:
            return None
        detail = f"{format_size(size)} of weights in a {format_size(budget)} budget"
        return FitBadge(weights_verdict(size, budget), detail)

    def recommended(self):
        """The largest catalog model whose badge says it fits (what the welcome screen offers)."""
        candidates = [
            row
            for row in self.listings
            if row.entry.source == "catalog"
            and row.status in ("available", "partial", "downloaded")
            and (badge := self.fit(row)) is not None
            and badge.verdict == "fits"
        ]
        return max(candidates, key=lambda row: row.size_bytes or 0, default=None)

    # Downloads ---------------------------------------------------------------------------------
    def is_downloading(self, repo_id: str) -> bool:
        return repo_id in self._cancels

    def start_download(self, repo_id: str) -> None:
        if repo_id in self._cancels:
            return
        self.errors.pop(repo_id, None)
        cancel = CancelEvent()
        self._cancels[repo_id] = cancel
        self.progress[repo_id] = None
        self._worker.request.emit(repo_id, cancel)
        self.changed.emit()

    def pause_download(self, repo_id: str) -> None:
        """Stop the download and keep its bytes (starting again resumes it)."""
        cancel = self._cancels.get(repo_id)
        if cancel is not None:
            cancel.set()

    def cancel_download(self, repo_id: str) -> None:
        """Stop the download and delete what it fetched."""
        cancel = self._cancels.get(repo_id)
        if cancel is not None:
            cancel.discard = True
            cancel.set()
        else:
            self.delete(repo_id)

    def delete(self, repo_id: str) -> None:
        """Delete a downloaded (or partly downloaded) model from the shared cache."""
        from models.hub import store

        def done(_freed) -> None:
            self.refresh()

        def failed(message: str) -> None:
            self.errors[repo_id] = message
            self.refresh()

        run_in_background(lambda: store.delete_model(repo_id), done, failed, owner=self)

    def _on_worker_progress(self, repo_id: str, progress) -> None:
        if repo_id in self._cancels:
            self.progress[repo_id] = progress
            self.download_progress.emit(repo_id, progress)

    def _on_worker_finished(self, repo_id: str, path: str) -> None:
        self._cancels.pop(repo_id, None)
        self.progress.pop(repo_id, None)
        self.download_finished.emit(repo_id, path)
        self.refresh()

    def _on_worker_failed(self, end: DownloadEnd) -> None:
        repo_id = end.repo_id
        cancel = self._cancels.pop(repo_id, None)
        self.progress.pop(repo_id, None)
        if cancel is not None and cancel.discard:
            self.delete(repo_id)
            end = DownloadEnd(repo_id, DownloadEndKind.CANCELLED)
        else:
            self.errors[repo_id] = end.status
        self.download_stopped.emit(end)
        self.refresh()

    def shutdown(self, timeout_ms: int = 15000) -> None:
        """Pause every download (bytes kept for next time) and stop the download thread."""
        for cancel in self._cancels.values():
            cancel.set()
        self._thread.quit()
        self._thread.wait(timeout_ms)
