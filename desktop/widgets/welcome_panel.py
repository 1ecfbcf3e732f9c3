"""The first-run panel: shown while no model is on disk, it offers the best one for this Mac.

It recommends the largest catalog variant that fits this machine's memory, downloads it with
one click (after the license), and shows the download's progress; the rest of the window stays
usable meanwhile.

Signals:
    download_requested(object): the ModelListing to download.
    pause_requested(str): pause the download of this repo id.
    open_folder_requested(): "Open Model Folder…".
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from desktop.controllers.model_library import ModelLibrary, format_size


def describe_progress(progress) -> str:
    """A download's progress in words ('Starting…' before the first report)."""
    return "Starting…" if progress is None else progress.describe()


class WelcomePanel(QFrame):
    download_requested = Signal(object)
    pause_requested = Signal(str)
    open_folder_requested = Signal()

    def __init__(self, library: ModelLibrary, parent=None):
        super().__init__(parent)
        self.setObjectName("welcomePanel")
        self.library = library
        self.listing = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(28, 22, 28, 22)
        layout.setSpacing(10)
        title = QLabel("Welcome to Llama Desk")
        title.setObjectName("welcomeTitle")
        layout.addWidget(title)
        intro = QLabel(
            "Llama Desk answers questions about your images with Llama 4, entirely on this "
            "computer. No model is on disk yet."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.recommendation = QLabel()
        self.recommendation.setObjectName("welcomeRecommendation")
        self.recommendation.setWordWrap(True)
        self.recommendation.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.recommendation)
        row = QHBoxLayout()
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("welcomeDownload")
        self.download_button.clicked.connect(self._on_download_button_clicked)
        row.addWidget(self.download_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.hide()
        row.addWidget(self.progress, 1)
        self.open_button = QPushButton("Open Model Folder…")
        self.open_button.setObjectName("welcomeOpen")
        self.open_button.clicked.connect(self.open_folder_requested)
        row.addWidget(self.open_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.progress_label = QLabel()
        self.progress_label.setTextFormat(Qt.TextFormat.PlainText)
        self.progress_label.setObjectName("welcomeProgress")
        layout.addWidget(self.progress_label)
        library.changed.connect(self.refresh)
        library.download_progress.connect(self._on_library_download_progress)
        self.refresh()

    def refresh(self) -> None:
        self.listing = self.library.recommended()
        if self.listing is None:
            waiting = "Looking at this Mac…"
            self.recommendation.setText(self._nothing_fits_text() if self.library.loaded else waiting)
            self.recommendation.setToolTip("")
            self.download_button.hide()
            return
        badge = self.library.fit(self.listing)
        self.recommendation.setText(self._recommendation_text(self.listing))
        # The planner's numbers, for whoever wants them.
        self.recommendation.setToolTip(badge.detail if badge else "")
        self.download_button.show()
        repo = self.listing.entry.repo_id
        downloading = bool(repo and self.library.is_downloading(repo))
        self.download_button.setText(
            "Pause" if downloading else "Resume Download" if self.listing.status == "partial" else "Download"
        )
        self.progress.setVisible(downloading)
        if not downloading:
            self.progress_label.setText(self.library.errors.get(repo or "", ""))

    def _needs(self, listing) -> str:
        from models.memory.mac_sizes import needs_mac_words

        return needs_mac_words(self.library.plans.get(listing.key), self.library.context)

    def _recommendation_text(self, listing) -> str:
        """'Recommended: Llama 4 Scout … (4-bit) · 61.1 GB download · runs on Macs with 96 GB or
        more. It fits this Mac.'"""
        parts = [f"Recommended: {listing.entry.display_name}"]
        if listing.size_bytes:
            parts.append(f"{format_size(listing.size_bytes)} download")
        if needs := self._needs(listing):
            parts.append(needs)
        return " · ".join(parts) + ". It fits this Mac."

    def _nothing_fits_text(self) -> str:
        """What a Mac with too little memory is told: which Mac the smallest model needs."""
        catalog = [row for row in self.library.listings if row.entry.source == "catalog" and row.size_bytes]
        smallest = min(catalog, key=lambda row: row.size_bytes, default=None)
        gib = round(self.library.memory_bytes / 2**30)  # as Apple counts a Mac's memory
        head = f"No Llama 4 model fits this Mac's {gib} GB of memory." if gib else "No Llama 4 model fits."
        if smallest is not None and (needs := self._needs(smallest)):
            head += (
                f" The smallest, {smallest.entry.display_name}, a {format_size(smallest.size_bytes)} "
                f"download, {needs}."
            )
        return head + " You can still open a model folder you have, or pick one in Model ▸ Manage Models."

    def _on_download_button_clicked(self) -> None:
        if self.listing is None:
            return
        repo = self.listing.entry.repo_id
        if repo and self.library.is_downloading(repo):
            self.pause_requested.emit(repo)
        else:
            self.download_requested.emit(self.listing)

    def _on_library_download_progress(self, repo_id: str, progress) -> None:
        if self.listing is None or self.listing.entry.repo_id != repo_id:
            return
        self.progress.show()
        if progress.bytes_total:
            self.progress.setValue(int(1000 * progress.bytes_done / progress.bytes_total))
        self.progress_label.setText(describe_progress(progress))
