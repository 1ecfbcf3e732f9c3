"""App start-up: the QApplication, the style sheet, and the main window on screen.

MLX is not imported before the window is shown; then a background thread imports it and the
rest of what a model load needs (``models.inference.loading_imports``), so the window appears
at once and its first model load neither waits for those imports nor stalls on them.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from pathlib import Path

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _library_from_environment():
    """``LLAMA_DESK_MEMORY_BUDGET_GB=N`` plans every model against N GB instead of this machine's
    budget (what would fit another Mac); without it, None: the window detects the budget."""
    import os

    value = os.environ.get("LLAMA_DESK_MEMORY_BUDGET_GB")
    if not value:
        return None
    from desktop.controllers.model_library import ModelLibrary
    from models.memory.budget import MemoryBudget

    try:
        budget_bytes = int(float(value) * 1e9)
    except ValueError:
        return None
    library = ModelLibrary(
        budget=MemoryBudget(budget_bytes, budget_bytes, 0, "metal", "LLAMA_DESK_MEMORY_BUDGET_GB")
    )
    library.refresh()
    return library


def _window_cluster(hosts_file: str | None, ranks: int | None = None):
    """The ``HostFile`` of ``--hosts HOSTS.json`` (or ``--ranks N``: N ranks on this machine),
    or None for this machine alone; a bad file raises ``HostFileError``, one line."""
    if hosts_file is None and ranks is None:
        return None
    from models.distributed.load import cluster_hosts

    return cluster_hosts(ranks=ranks, hosts_file=hosts_file)


def _factory_for(hosts):
    """Models load across ``hosts`` (``models.distributed.load``); None: on this machine."""
    if hosts is None:
        return None
    from models.distributed.load import load_engine

    return lambda path, progress=None: load_engine(path, hosts, progress)


def _library_for(hosts):
    """The window's model library: planned against the environment's budget (if set) and, with
    a cluster, across its hosts too (the Model menu's 'fits on 2 Macs'); None: the window's own."""
    library = _library_from_environment()
    if hosts is None:
        return library
    if library is None:
        from desktop.controllers.model_library import ModelLibrary

        library = ModelLibrary()
        library.refresh()
    library.set_cluster(hosts)
    return library


def freeze_startup_objects() -> None:
    """Move everything alive at start-up (Qt's wrappers, imported modules, the window) out of
    the garbage collector's reach: they live as long as the app. A full collection, which holds
    the GIL for its whole run, then only walks what was created since: measured with a
    200-message conversation open, the one during a model load (on the worker thread, stalling
    the UI thread) went from about 150 ms of CPU to about 5 ms. Models load later, so they stay
    collectable and are freed when unloaded."""
    gc.freeze()


def _import_loading_stack(done: threading.Event) -> None:
    from models.inference.loading_imports import import_loading_stack

    try:
        import_loading_stack()
    except Exception:  # noqa: BLE001 - a model load imports again and reports the failure
        logging.getLogger(__name__).debug("Importing the model-loading libraries failed", exc_info=True)
    finally:
        done.set()


def show_window(window) -> threading.Event:
    """Show the main window, freeze the start-up objects, and start importing the libraries a
    model load needs (seconds of work) on a background thread, so the first load does not wait
    for them; returns an event set once that is done."""
    window.show()
    freeze_startup_objects()
    done = threading.Event()
    threading.Thread(
        target=_import_loading_stack, args=(done,), name="import-loading-stack", daemon=True
    ).start()
    return done


def run_app(
    model: str | None = None,
    argv: list[str] | None = None,
    hosts: str | None = None,
    ranks: int | None = None,
) -> int:
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from desktop import notices
    from desktop.main_window import MainWindow
    from models.app_folders import APP_NAME
    from models.distributed.hosts import HostFileError
    from models.hub.store import ModelNotFound, resolve_model

    try:
        cluster = _window_cluster(hosts, ranks)
    except HostFileError as exc:
        print(f"llama-desk: {exc}", file=sys.stderr)
        return 2

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(argv or sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    icon = ASSETS / "icon.png"
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    window = MainWindow(library=_library_for(cluster), engine_factory=_factory_for(cluster))
    show_window(window)
    target = model or window.settings.value("last_model", None, type=str)
    if target:
        try:
            window.load_model(resolve_model(str(target)))
        except ModelNotFound as exc:
            window.notice.show_message(str(exc), notices.LOAD)
    return app.exec()
