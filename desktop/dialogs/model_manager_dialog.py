"""Manage Models: every variant with size, status and fit, and the actions on it.

Download (or resume), pause, cancel, delete, use, add a folder or a Hub repo, and sign in to
Hugging Face for gated repos (the token goes to the OS keychain). The dialog draws what the
``ModelLibrary`` says and asks it (or the window) to act.

Signals:
    use_requested(object): a ModelListing to load.
    download_requested(object): a ModelListing to download (the window checks the license).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from desktop.controllers.model_library import ModelLibrary, format_size
from desktop.widgets.model_menu import status_text

COLUMNS = ("Model", "Size", "Status", "Memory")


class ModelManagerDialog(QDialog):
    use_requested = Signal(object)
    download_requested = Signal(object)

    def __init__(self, library: ModelLibrary, parent=None):
        super().__init__(parent)
        self.library = library
        self.setWindowTitle("Manage Models")
        self.resize(820, 420)
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("modelTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self._on_use_clicked())
        layout.addWidget(self.table, 1)
        self.message = QLabel()
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setWordWrap(True)
        self.message.setObjectName("managerMessage")
        layout.addWidget(self.message)
        row = QHBoxLayout()
        self.buttons: dict[str, QPushButton] = {}
        for key, label, slot in (
            ("download", "Download", self._on_download_clicked),
            ("pause", "Pause", self._on_pause_clicked),
            ("cancel", "Cancel Download", self._on_cancel_clicked),
            ("delete", "Delete…", self._on_delete_clicked),
            ("use", "Use", self._on_use_clicked),
        ):
            button = QPushButton(label)
            button.clicked.connect(slot)
            row.addWidget(button)
            self.buttons[key] = button
        row.addStretch(1)
        for label, slot in (("Add…", self._on_add_clicked), ("Sign In…", self._on_sign_in_clicked)):
            button = QPushButton(label)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        library.changed.connect(self.refresh)
        library.download_progress.connect(self._on_library_download_progress)
        self.refresh()

    def selected(self):
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self._listing_at(rows[0].row())

    def _listing_at(self, row: int):
        item = self.table.item(row, 0)
        return self.library.listing(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    def refresh(self) -> None:
        selected = self.selected()
        listings = self.library.listings
        self.table.setRowCount(len(listings))
        for r, listing in enumerate(listings):
            badge = self.library.fit(listing)
            size = format_size(listing.size_bytes)
            values = (
                listing.entry.display_name,
                ("≈ " if listing.size_estimated and listing.size_bytes else "") + size,
                status_text(self.library, listing),
                badge.label if badge else "—",
            )
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, listing.key)
                    item.setToolTip(listing.key)
                if c == 3 and badge is not None:
                    item.setToolTip(badge.detail)
                if c == 2 and listing.message:
                    item.setToolTip(listing.message)
                self.table.setItem(r, c, item)
            if selected is not None and listing.key == selected.key:
                self.table.selectRow(r)
        self._update_buttons()

    def _on_library_download_progress(self, repo_id: str, _progress) -> None:
        for r in range(self.table.rowCount()):
            listing, status = self._listing_at(r), self.table.item(r, 2)
            if listing is not None and status is not None and listing.entry.repo_id == repo_id:
                status.setText(status_text(self.library, listing))

    def _update_buttons(self) -> None:
        listing = self.selected()
        repo = listing.entry.repo_id if listing else None
        downloading = bool(repo and self.library.is_downloading(repo))
        self.buttons["download"].setEnabled(
            bool(listing) and not downloading and listing.status in ("available", "partial", "gated")
        )
        self.buttons["download"].setText("Resume" if listing and listing.status == "partial" else "Download")
        self.buttons["pause"].setEnabled(downloading)
        self.buttons["cancel"].setEnabled(downloading or bool(listing and listing.status == "partial"))
        self.buttons["delete"].setEnabled(
            bool(repo) and not downloading and listing.status in ("downloaded", "partial")
        )
        self.buttons["use"].setEnabled(bool(listing) and listing.status in ("downloaded", "local"))
        error = self.library.errors.get(repo or "", "") if listing else ""
        self.message.setText(error or (listing.message if listing else ""))

    def _on_download_clicked(self) -> None:
        listing = self.selected()
        if listing is not None:
            self.download_requested.emit(listing)

    def _on_pause_clicked(self) -> None:
        listing = self.selected()
        if listing is not None and listing.entry.repo_id:
            self.library.pause_download(listing.entry.repo_id)

    def _on_cancel_clicked(self) -> None:
        listing = self.selected()
        if listing is not None and listing.entry.repo_id:
            self.library.cancel_download(listing.entry.repo_id)

    def _on_delete_clicked(self) -> None:
        listing = self.selected()
        if listing is None or not listing.entry.repo_id:
            return
        answer = QMessageBox.question(
            self,
            "Delete model",
            f"Delete {listing.entry.display_name} ({format_size(listing.bytes_on_disk)}) from this Mac? "
            "It can be downloaded again later.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.library.delete(listing.entry.repo_id)

    def _on_use_clicked(self) -> None:
        listing = self.selected()
        if listing is not None and listing.status in ("downloaded", "local"):
            self.use_requested.emit(listing)

    def _on_add_clicked(self) -> None:
        from models.hub.catalog import CatalogError, add_user_model

        choice, ok = QInputDialog.getItem(
            self, "Add a model", "Add:", ["A folder on this Mac…", "A Hugging Face repo id…"], 0, False
        )
        if not ok:
            return
        if choice.startswith("A folder"):
            spec = QFileDialog.getExistingDirectory(self, "Choose an MLX Llama 4 checkpoint folder")
        else:
            spec, ok = QInputDialog.getText(self, "Add a Hub repo", "Repo id (owner/name):")
            spec = spec.strip() if ok else ""
        if not spec:
            return
        try:
            add_user_model(spec)
        except (CatalogError, OSError) as exc:
            self.message.setText(str(exc))
            return
        self.library.refresh()

    def _on_sign_in_clicked(self) -> None:
        from models.hub.store import StoreError, set_token

        token, ok = QInputDialog.getText(
            self,
            "Sign in to Hugging Face",
            "Access token (from huggingface.co/settings/tokens; kept in the system keychain):",
            QLineEdit.EchoMode.Password,
        )
        if not ok or not token.strip():
            return
        try:
            set_token(token.strip())
        except StoreError as exc:
            self.message.setText(str(exc))
            return
        self.message.setText("Signed in. Gated models you have accepted on the Hub can be downloaded.")
