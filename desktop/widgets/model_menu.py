"""The Model menu: every known variant with its status, size and fit, a check on the active one.

Built from ``ModelLibrary``'s last listing each time it opens (no disk or network on the UI
thread). Choosing a downloaded variant asks to switch to it; choosing one that is not on disk
asks to download it. A model opened from a folder is listed too (the window has the library
remember it) and checked like any other.

Signals:
    use_requested(object): a ModelListing to load.
    download_requested(object): a ModelListing to download.
    manage_requested(): "Manage Models…".
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from desktop.controllers.model_library import ModelLibrary, format_size

# One word (or two) per state, the same in the menu and Manage Models: what the model is, not
# what a click would do.
STATUS_TEXT = {
    "downloaded": "downloaded",
    "local": "folder",
    "partial": "paused",
    "available": "not downloaded",
    "gated": "needs sign-in",
    "unavailable": "unavailable",
    "offline": "offline",
    "invalid": "not usable",
}


def status_text(library: ModelLibrary, listing) -> str:
    repo = listing.entry.repo_id
    if repo and library.is_downloading(repo):
        progress = library.progress.get(repo)
        if progress is None or not progress.bytes_total:
            return "downloading…"
        return f"downloading {100 * progress.bytes_done / progress.bytes_total:.0f} %"
    return STATUS_TEXT.get(listing.status, listing.status)


def describe(library: ModelLibrary, listing) -> str:
    """One line: name · size · status · fit."""
    size = format_size(listing.size_bytes)
    if listing.size_estimated and listing.size_bytes:
        size = "≈ " + size
    parts = [listing.entry.display_name, size, status_text(library, listing)]
    badge = library.fit(listing)
    if badge is not None:
        parts.append(badge.label)
    return "  ·  ".join(parts)


class ModelMenu(QMenu):
    use_requested = Signal(object)
    download_requested = Signal(object)
    manage_requested = Signal()

    def __init__(self, library: ModelLibrary, parent=None):
        super().__init__("&Model", parent)
        self.library = library
        self.active_path: str | None = None
        self.aboutToShow.connect(self.rebuild)
        self.rebuild()

    def rebuild(self) -> None:
        self.clear()
        if not self.library.loaded:
            waiting = self.addAction("Looking for models…")
            waiting.setEnabled(False)
        active = self.library.listing_for_folder(self.active_path)
        for listing in self.library.listings:
            action = QAction(describe(self.library, listing), self)
            action.setCheckable(True)
            action.setChecked(listing is active)
            badge = self.library.fit(listing)
            tips = [t for t in (listing.message, badge.detail if badge else "") if t]
            action.setToolTip("\n".join(tips) or listing.key)
            repo = listing.entry.repo_id
            if listing.status in ("downloaded", "local"):
                action.triggered.connect(lambda _=False, row=listing: self.use_requested.emit(row))
            elif listing.status in ("available", "partial") and not (
                repo and self.library.is_downloading(repo)
            ):
                action.triggered.connect(lambda _=False, row=listing: self.download_requested.emit(row))
            else:
                action.setEnabled(listing.status == "gated")
                action.triggered.connect(lambda _=False: self.manage_requested.emit())
            self.addAction(action)
        self.setToolTipsVisible(True)
        self.addSeparator()
        manage = self.addAction("Manage Models…")
        manage.triggered.connect(self.manage_requested)
        for item in self.actions():
            item.setMenuRole(QAction.MenuRole.NoRole)  # macOS must not move any to the app menu
