"""The "Serve API" menu switch: starts and stops the local API server and shows its address.

While it runs the action reads "Serve API (http://127.0.0.1:8642/v1)"; a failure to start
unchecks it and says why in the status bar, where the controller's notes (a question waiting
for an API request) go too.
"""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QStatusBar

from desktop.controllers.server_controller import ServerController

TITLE = "Serve API"
_SHOW_MS = 8000


class ServeApiAction(QAction):
    def __init__(self, controller: ServerController, status_bar: QStatusBar, parent=None):
        super().__init__(TITLE, parent)
        self.setCheckable(True)
        self.setMenuRole(QAction.MenuRole.NoRole)
        self.setToolTip("Serve the loaded model over a local OpenAI-compatible API")
        self._controller = controller
        self._bar = status_bar
        self.toggled.connect(self._on_toggled)
        controller.running.connect(self._on_running)
        controller.failed.connect(self._on_failed)
        controller.note.connect(self._on_note)

    def _on_toggled(self, checked: bool) -> None:
        if checked:
            self._controller.start()
        else:
            self._controller.stop()

    def _on_running(self, url: str) -> None:
        self.setText(f"{TITLE} ({url})" if url else TITLE)
        if url:
            self._bar.showMessage(f"Serving the loaded model at {url}", _SHOW_MS)
        if self.isChecked() != bool(url):
            self.blockSignals(True)
            self.setChecked(bool(url))
            self.blockSignals(False)

    def _on_failed(self, message: str) -> None:
        self.blockSignals(True)
        self.setChecked(False)
        self.blockSignals(False)
        self._bar.showMessage(message, _SHOW_MS)

    def _on_note(self, text: str) -> None:
        if text:
            self._bar.showMessage(text)
        else:
            self._bar.clearMessage()
