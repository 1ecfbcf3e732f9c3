"""The "Serve API" menu switch: starts and stops the local API server and shows its address.

While it runs the action reads "Serve API (http://127.0.0.1:8642/v1)" and the status bar says
where; a failure to start unchecks it and says why in a notice (``desktop.notices.SERVER``),
withdrawn once the server starts. The controller's notes (a question waiting for an API request)
go to the status bar.
"""

from __future__ import annotations

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QStatusBar

from desktop import notices
from desktop.controllers.server_controller import ServerController
from desktop.widgets.notice_bar import NoticeBar

TITLE = "Serve API"
_SHOW_MS = 8000


class ServeApiAction(QAction):
    def __init__(
        self, controller: ServerController, status_bar: QStatusBar, notice_bar: NoticeBar, parent=None
    ):
        super().__init__(TITLE, parent)
        self.setCheckable(True)
        self.setMenuRole(QAction.MenuRole.NoRole)
        self.setToolTip("Serve the loaded model over a local OpenAI-compatible API")
        self._controller = controller
        self._bar = status_bar
        self._notices = notice_bar
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
            self._notices.withdraw(notices.SERVER)
            self._bar.showMessage(f"Serving the loaded model at {url}", _SHOW_MS)
        if self.isChecked() != bool(url):
            self.blockSignals(True)
            self.setChecked(bool(url))
            self.blockSignals(False)

    def _on_failed(self, message: str) -> None:
        self.blockSignals(True)
        self.setChecked(False)
        self.blockSignals(False)
        self._notices.show_message(message, notices.SERVER)

    def _on_note(self, text: str) -> None:
        if text:
            self._bar.showMessage(text)
        else:
            self._bar.clearMessage()
