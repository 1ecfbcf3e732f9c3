"""Reads attached PDFs off the UI thread, page by page, and makes their pages' thumbnails.

A PDF file (or PDF bytes from a paste) is checked and read (``models.documents``) in a
``QThreadPool`` task: the pages chosen, the first ``image_pages`` of them rendered, the text of
the rest. Progress comes back after each page; ``cancel`` is seen between two pages (the task
ends without a result, and says so). Thumbnails of the rendered pages are made in the task
too, so the window never waits on disk, PDFium or Pillow.

Pages are rendered at the size the loaded model's tiler wants (``processor``, which the window
sets when a model loads; the default tiler's when none is): a read keeps the tiler it started
with, so a PDF read before a model change stays as it was read.

Each ``load_*`` call returns a ticket that its signals carry; ``cancel_all`` stops every read
(the window is closing: nothing waits for a long PDF at exit).

Signals:
    progress(int, int, int): a ticket, the pages read and the pages to read.
    loaded(int, object, list): a ticket, its ``ChatDocument`` and one thumbnail (QImage) per
        page that goes as an image.
    failed(int, str): a ticket, and the one-line reason the document was refused.
    cancelled(int): a ticket whose reading stopped when it was cancelled.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from desktop.workers.image_loader import thumbnail_qimage
from models.documents.chat_documents import DocumentCancelled, read_document
from models.documents.pdf_reading import DocumentError, check_pdf_bytes, read_document_file
from models.inference.images import MAX_IMAGES_PER_MESSAGE
from models.inference.preprocess import ProcessorConfig


class _Relay(QObject):
    progress = Signal(int, int, int)
    loaded = Signal(int, object, list)
    failed = Signal(int, str)
    cancelled = Signal(int)


class _ReadTask(QRunnable):
    def __init__(
        self,
        relay: _Relay,
        ticket: int,
        source: str | bytes,
        name: str,
        pages: str | Sequence[int] | None,
        image_pages: int,
        processor: ProcessorConfig | None,
        cancel: threading.Event,
    ):
        super().__init__()
        self._relay, self._ticket = relay, ticket
        self._source, self._name = source, name
        self._pages, self._image_pages, self._cancel = pages, image_pages, cancel
        self._processor = processor

    def run(self) -> None:
        relay, ticket = self._relay, self._ticket
        try:
            if isinstance(self._source, bytes):
                data = self._source
                check_pdf_bytes(data, self._name)
            else:
                data = read_document_file(self._source)
            document = read_document(
                data,
                self._name,
                pages=self._pages,
                image_pages=self._image_pages,
                processor=self._processor,
                progress=lambda done, total: relay.progress.emit(ticket, done, total),
                cancel=self._cancel,
            )
            relay.loaded.emit(ticket, document, [thumbnail_qimage(image) for image in document.images])
        except DocumentCancelled:
            relay.cancelled.emit(ticket)
        except DocumentError as exc:
            relay.failed.emit(ticket, str(exc))
        except Exception as exc:  # noqa: BLE001 - a hostile file may make the reader raise anything
            relay.failed.emit(ticket, f"{self._name} could not be read ({type(exc).__name__}).")


class DocumentLoader(QObject):
    progress = Signal(int, int, int)
    loaded = Signal(int, object, list)
    failed = Signal(int, str)
    cancelled = Signal(int)

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None):
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._relay = _Relay()
        self._relay.progress.connect(self.progress)
        self._relay.loaded.connect(self._on_relay_loaded)
        self._relay.failed.connect(self._on_relay_failed)
        self._relay.cancelled.connect(self._on_relay_cancelled)
        self._cancels: dict[int, threading.Event] = {}
        self._tickets = itertools.count(1)
        self.processor: ProcessorConfig | None = None  # the loaded model's tiler; None: the default

    @property
    def pending(self) -> int:
        """Reads started that have not ended (cancelled ones until they stop)."""
        return len(self._cancels)

    def load_file(
        self,
        path: str,
        pages: str | Sequence[int] | None = None,
        image_pages: int = MAX_IMAGES_PER_MESSAGE,
    ) -> int:
        """Read the PDF at ``path`` (the ``pages`` chosen, the first ``image_pages`` rendered);
        return the ticket its signals will carry."""
        return self._start(path, Path(path).name, pages, image_pages)

    def load_data(
        self,
        data: bytes,
        name: str,
        pages: str | Sequence[int] | None = None,
        image_pages: int = MAX_IMAGES_PER_MESSAGE,
    ) -> int:
        """Read PDF bytes (a paste, or a document read again with other pages)."""
        return self._start(bytes(data), name, pages, image_pages)

    def cancel(self, ticket: int) -> None:
        """Stop reading ``ticket`` at its next page (``cancelled`` says when it stopped)."""
        event = self._cancels.get(ticket)
        if event is not None:
            event.set()

    def cancel_all(self) -> None:
        """Stop every read at its next page (the window is closing)."""
        for event in self._cancels.values():
            event.set()

    def cancelling(self, ticket: int) -> bool:
        """Whether the read ``ticket`` was asked to stop and has not stopped yet."""
        event = self._cancels.get(ticket)
        return event is not None and event.is_set()

    def _start(self, source: str | bytes, name: str, pages, image_pages: int) -> int:
        ticket = next(self._tickets)
        cancel = self._cancels[ticket] = threading.Event()
        task = _ReadTask(
            self._relay, ticket, source, name, pages, max(0, image_pages), self.processor, cancel
        )
        self._pool.start(task)
        return ticket

    def _on_relay_loaded(self, ticket: int, document: object, thumbnails: list) -> None:
        cancel = self._cancels.pop(ticket, None)
        if cancel is not None and cancel.is_set():  # read to its end before it saw the cancel
            self.cancelled.emit(ticket)
        else:
            self.loaded.emit(ticket, document, thumbnails)

    def _on_relay_failed(self, ticket: int, message: str) -> None:
        cancel = self._cancels.pop(ticket, None)
        if cancel is not None and cancel.is_set():
            self.cancelled.emit(ticket)
        else:
            self.failed.emit(ticket, message)

    def _on_relay_cancelled(self, ticket: int) -> None:
        self._cancels.pop(ticket, None)
        self.cancelled.emit(ticket)
