"""The downloads' own QThread worker: one Hub download at a time, ending in a typed
``DownloadEnd`` (paused, cancelled, failed) or the snapshot folder (``ModelLibrary`` owns it)."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal, Slot

from models.hub.download_end import DownloadEnd, DownloadEndKind


class DownloadWorker(QObject):
    """Runs ``models.hub.store.download_model`` for each ``request`` (repo id, cancel event) on
    the thread it was moved to; reports ``progress``, ``finished`` or ``failed``."""

    progress = Signal(str, object)
    finished = Signal(str, str)
    failed = Signal(object)  # DownloadEnd: paused, cancelled or failed
    request = Signal(str, object)  # repo id, cancel event

    def __init__(self):
        super().__init__()
        self.request.connect(self._on_request)

    @Slot(str, object)
    def _on_request(self, repo_id: str, cancel: threading.Event) -> None:
        from models.hub import store

        Kind = DownloadEndKind
        if cancel.is_set():
            self.failed.emit(DownloadEnd(repo_id, Kind.PAUSED))
            return
        try:
            path = store.download_model(
                repo_id, cancel=cancel, progress=lambda p: self.progress.emit(repo_id, p)
            )
        except store.DownloadCancelled:
            discard = getattr(cancel, "discard", False)  # set by cancel_download, not pause
            self.failed.emit(DownloadEnd(repo_id, Kind.CANCELLED if discard else Kind.PAUSED))
            return
        except store.NetworkError as exc:
            self.failed.emit(DownloadEnd(repo_id, Kind.FAILED, reason=str(exc), hub_unreachable=True))
            return
        except store.StoreError as exc:
            self.failed.emit(DownloadEnd(repo_id, Kind.FAILED, reason=str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the app goes on; the message says what happened
            self.failed.emit(DownloadEnd(repo_id, Kind.FAILED, reason=f"The download failed: {exc}"))
            return
        self.finished.emit(repo_id, str(path))


class CancelEvent(threading.Event):
    discard = False  # set for Cancel (delete the partial bytes), not for Pause
