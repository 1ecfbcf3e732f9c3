"""Where a question is written: the text box, the attached images and PDFs, Attach and Send/Stop.

Images arrive by drag-and-drop (files, or image data from another app), paste and the file
picker; each is decoded off the UI thread and shown as a removable thumbnail, in the order
chosen (``desktop.widgets.pick_queue``). A PDF arrives the same ways (a file named .pdf, or PDF
data) and is read off the UI thread page by page (``desktop.workers.document_loader``), its
progress and then its pages shown on its chip (``desktop.widgets.document_chip``), whose ×
cancels the read or removes it; Pages… reads it again with other pages. Its pages go as images
in the slots the question's own images leave of the five a message carries, the rest as text.
The slots go to the PDFs in the order they were attached, whenever each read ends: a PDF being
read holds the slots it asked for until it is read, and an image added later takes a page's
slot from the last PDF attached (that page then goes as text). Each PDF is read with as many
pages rendered as it could get, so a slot given back (an image or a PDF removed) goes to the
next PDF without reading it again. Closing the window stops the reads (``shut_down``).

Enter sends, Shift+Enter starts a new line, Esc stops an answer (the window's, or an API
request's that the window's engine is answering) or, when none of the window's own runs,
cancels an edit in progress. Tab and Shift+Tab move focus on (Ctrl+Tab types a tab); in the
focus chain the text box is followed by Attach, each PDF's Pages… and remove buttons, each
attached image's remove button, then Send/Stop. The text box grows with its text up to a third of the
window's height (then it scrolls) and shrinks back when the draft is sent.

Over 400 lines because a draft's images and PDFs share the five image slots of a message and
are kept in step here (a PDF's pages go as text when an image takes their slot); the text box,
the chips and where attachments come from are modules of their own.

Signals:
    send_requested(): the person asked to send the draft.
    stop_requested(): the person asked to stop the answer (Esc or Stop).
    cancel_requested(): Esc while no answer of the window's runs (the chat column cancels an edit
        in progress, else stops whatever job the engine runs).
    attach_requested(): the Attach button was pressed (the window opens the file picker).
    notice(str): a one-line message to show (images or PDFs refused, too many images).
    notice_outdated(): the attachments changed, so the last ``notice`` no longer holds.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QMimeData, QObject, Qt, Signal
from PySide6.QtGui import QImage, QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.widgets.attachment_chip import AttachmentChip
from desktop.widgets.attachment_sources import file_pick, images_in_mime, is_pdf_name
from desktop.widgets.document_chip import DocumentChip
from desktop.widgets.pick_queue import Pick, PickQueue
from desktop.widgets.prompt_edit import PromptEdit
from desktop.workers.document_loader import DocumentLoader
from desktop.workers.image_loader import ImageLoader, thumbnail_qimage
from models.documents import pdf_reading
from models.documents.chat_documents import ChatDocument, page_list
from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage

MIN_EDIT_HEIGHT = 72  # the text box's height with a line or two
WINDOW_SHARE = 3  # it grows to at most a third of the window's height


class Composer(QFrame):
    send_requested = Signal()
    stop_requested = Signal()
    cancel_requested = Signal()
    attach_requested = Signal()
    notice = Signal(str)
    notice_outdated = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("composer")
        self._generating = False
        self._chips: list[AttachmentChip] = []
        self._document_chips: list[DocumentChip] = []  # in the order attached
        # Each read PDF as read (all its rendered pages, their thumbnails): the chip shows the
        # first of them that the slots allow. A read under way holds the slots it asked for.
        self._as_read: dict[DocumentChip, tuple[ChatDocument, list[QImage]]] = {}
        self._reserved: dict[DocumentChip, int] = {}
        self._thumbnails: dict[str, QImage] = {}
        self.loader = ImageLoader(self)
        self.picks = PickQueue(self.loader, self.images, self)
        self.picks.accepted.connect(self._add_chip)
        self.picks.refused.connect(self.notice)
        self.document_loader = DocumentLoader(self)
        self.document_loader.progress.connect(self._on_document_loader_progress)
        self.document_loader.loaded.connect(self._on_document_loader_loaded)
        self.document_loader.failed.connect(self._on_document_loader_failed)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 8, 12, 12)
        outer.setSpacing(6)
        self.strip = QWidget()
        self.strip_layout = QHBoxLayout(self.strip)
        self.strip_layout.setContentsMargins(0, 0, 0, 0)
        self.strip_layout.addStretch(1)
        self.strip.setVisible(False)
        outer.addWidget(self.strip)

        row = QHBoxLayout()
        self.attach_button = QToolButton()
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setText("+")  # ASCII: every font has it (U+FF0B is missing in some)
        self.attach_button.setToolTip("Attach images or PDFs (or drop or paste them)")
        self.attach_button.setAccessibleName("Attach images or PDFs")
        self.attach_button.clicked.connect(self.attach_requested)
        row.addWidget(self.attach_button, 0, Qt.AlignmentFlag.AlignBottom)
        self.edit = PromptEdit()
        self.edit.setObjectName("promptEdit")
        self.edit.setPlaceholderText(
            "Ask about an image or a PDF… (Enter to send, Shift+Enter for a new line)"
        )
        self.edit.setFixedHeight(MIN_EDIT_HEIGHT)
        self.edit.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self._watched: QWidget | None = None  # the window whose height bounds the text box
        self.edit.submit.connect(self._on_edit_submit)
        self.edit.escape.connect(self._on_edit_escape)
        self.edit.images_offered.connect(self.add_from_mime)
        self.edit.textChanged.connect(self._update_button)
        row.addWidget(self.edit, 1)
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.clicked.connect(self._on_send_button_clicked)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        outer.addLayout(row)
        QWidget.setTabOrder(self.edit, self.attach_button)  # the text first, though Attach is left
        QWidget.setTabOrder(self.attach_button, self.send_button)
        self._update_button()

    # Height ------------------------------------------------------------------------------------
    def _fit_height(self, *_args: object) -> None:
        """As tall as the text (its lines: the plain-text layout counts them), at least
        ``MIN_EDIT_HEIGHT``, at most a third of the window; beyond that the text scrolls."""
        edit = self.edit
        document = edit.document()
        lines = document.documentLayout().documentSize().height()
        first = document.firstBlock()
        laid_out = first.layout().lineCount() if first.layout() is not None else 0
        line_height = (
            edit.blockBoundingRect(first).height() / laid_out
            if laid_out
            else edit.fontMetrics().lineSpacing() + 1
        )
        chrome = edit.height() - edit.viewport().height() + 2 * document.documentMargin()
        wanted = int(lines * line_height + chrome + 1)
        window = self.window()
        most = window.height() // WINDOW_SHARE if window is not self else 4 * MIN_EDIT_HEIGHT
        height = max(MIN_EDIT_HEIGHT, min(wanted, most))
        if height != edit.height():
            edit.setFixedHeight(height)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        window = self.window()
        if window is not self and window is not self._watched:
            if self._watched is not None:
                self._watched.removeEventFilter(self)
            self._watched = window
            window.installEventFilter(self)
        self._fit_height()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if watched is self._watched and event.type() == QEvent.Type.Resize:
            self._fit_height()
        return super().eventFilter(watched, event)

    # Draft -------------------------------------------------------------------------------------
    def text(self) -> str:
        return self.edit.toPlainText()

    def images(self) -> list[ChatImage]:
        return [chip.image for chip in self._chips]

    def thumbnails(self) -> list[QImage]:
        return [self._thumbnails[chip.image.sha256] for chip in self._chips]

    def documents(self) -> list[ChatDocument]:
        """The attached PDFs that are read (one being read again is left out until it is)."""
        return [c.document for c in self._document_chips if c.document is not None and not c.reading]

    def document_thumbnails(self) -> list[QImage]:
        """One thumbnail per page that goes as an image, of ``documents()`` in order."""
        return [
            t for c in self._document_chips if c.document is not None and not c.reading for t in c.thumbnails
        ]

    def document_chips(self) -> list[DocumentChip]:
        return list(self._document_chips)

    def reading_images(self) -> int:
        """How many attached images are still being read (sending waits for them)."""
        return self.picks.pending

    def reading_documents(self) -> int:
        """How many attached PDFs are still being read (sending waits for them)."""
        return sum(chip.reading for chip in self._document_chips)

    def has_draft(self) -> bool:
        return bool(self.text().strip() or self._chips or self._document_chips)

    def clear_draft(self) -> None:
        self.edit.clear()
        self.picks.clear()
        for chip in list(self._chips):
            self._remove_chip(chip)
        for document_chip in list(self._document_chips):
            self._remove_document_chip(document_chip)

    def restore_draft(
        self,
        text: str,
        images: list[ChatImage],
        thumbnails: list[QImage],
        documents: list[ChatDocument] | tuple[ChatDocument, ...] = (),
        document_thumbnails: list[QImage] | tuple[QImage, ...] = (),
    ) -> None:
        """Put a draft back (after a failed send, or to edit a question) without losing what is
        typed or attached now."""
        current = self.text()
        if not current.strip():
            self.edit.setPlainText(text)
        elif text.strip() and text not in current:
            self.edit.setPlainText(f"{current}\n{text}")
        attached = {chip.image.sha256 for chip in self._chips}
        for image, thumbnail in zip(images, thumbnails, strict=False):
            if image.sha256 in attached:
                continue
            if len(self._chips) >= MAX_IMAGES_PER_MESSAGE:
                self._too_many()
                break
            self._add_chip(image, thumbnail)
        page_thumbnails = list(document_thumbnails)
        held = {chip.document.sha256 for chip in self._document_chips if chip.document is not None}
        for document in documents:
            pages, page_thumbnails = (
                page_thumbnails[: len(document.images)],
                page_thumbnails[len(document.images) :],
            )
            if document.sha256 in held:
                continue
            if len(pages) < len(document.images):
                pages = [thumbnail_qimage(image) for image in document.images]
            chip = self._new_document_chip(document.name)
            chip.show_document(document, pages)
            self._as_read[chip] = (document, list(pages))
        self._fit_page_images()
        self._update_button()

    # Images ------------------------------------------------------------------------------------
    def _too_many(self) -> None:
        self.notice.emit(
            f"A message can carry at most {MAX_IMAGES_PER_MESSAGE} images; remove one to add another."
        )

    def add_files(self, paths: list[str]) -> None:
        """Attach image and PDF files, in this order (after any still being read)."""
        self.picks.add([file_pick(path) for path in paths if not is_pdf_name(path)])
        for path in paths:
            if is_pdf_name(path):
                self._read_document(path=path)

    def add_image_data(self, data: bytes, name: str = "pasted image") -> None:
        self.picks.add([Pick(name, data=bytes(data))])

    def add_from_mime(self, mime: QMimeData) -> bool:
        """Attach the images and PDFs a drop/paste carries, in its order; False if it carries none."""
        paths, datas = images_in_mime(mime)
        picks = [file_pick(path, check_suffix=True) for path in paths if not is_pdf_name(path)]
        picks += [Pick(name, data=data) for data, name in datas if not pdf_reading.looks_like_pdf(data)]
        self.picks.add(picks)
        for path in paths:
            if is_pdf_name(path):
                self._read_document(path=path)
        for data, name in datas:
            if pdf_reading.looks_like_pdf(data):
                self._read_document(data=data, name=name)
        return bool(paths or datas)

    def _add_chip(self, image: ChatImage, thumbnail: QImage) -> None:
        chip = AttachmentChip(image, thumbnail)
        chip.removed.connect(self._remove_chip)
        self._thumbnails[image.sha256] = thumbnail
        self._chips.append(chip)
        self.strip_layout.insertWidget(len(self._document_chips) + len(self._chips) - 1, chip)
        before = self._chips[-2].remove_button if len(self._chips) > 1 else self._last_document_button()
        QWidget.setTabOrder(before, chip.remove_button)  # after Attach, in the chips' order
        self.strip.setVisible(True)
        self.notice_outdated.emit()  # before the fit: what it says about the pages holds
        self._fit_page_images()
        self._update_button()

    def _remove_chip(self, chip: AttachmentChip) -> None:
        if chip in self._chips:
            self._chips.remove(chip)
            self.strip_layout.removeWidget(chip)
            chip.deleteLater()
            self.notice_outdated.emit()
        self._after_removal()

    def _after_removal(self) -> None:
        self.strip.setVisible(bool(self._chips or self._document_chips))
        self._fit_page_images()  # a slot given back goes to the first PDF that can use it
        self._update_button()

    def shut_down(self) -> None:
        """The window is closing: stop the PDFs being read (at their next page)."""
        self.document_loader.cancel_all()

    # PDFs --------------------------------------------------------------------------------------
    def _last_document_button(self) -> QWidget:
        return self._document_chips[-1].remove_button if self._document_chips else self.attach_button

    def _new_document_chip(self, name: str) -> DocumentChip:
        chip = DocumentChip(name)
        chip.removed.connect(self._remove_document_chip)
        chip.pages_chosen.connect(self._on_document_chip_pages_chosen)
        before = self._last_document_button()
        self._document_chips.append(chip)
        self.strip_layout.insertWidget(len(self._document_chips) - 1, chip)  # before the images
        QWidget.setTabOrder(before, chip.pages_button)
        QWidget.setTabOrder(chip.pages_button, chip.remove_button)
        if self._chips:
            QWidget.setTabOrder(chip.remove_button, self._chips[0].remove_button)
        self.strip.setVisible(True)
        self._update_button()
        return chip

    def _page_slots(self, chip: DocumentChip) -> int:
        """How many pages of ``chip`` to render: the most it could get, what the question's
        images and the PDFs attached before it leave (one still being read takes none yet: it
        may be short). The slots it gets are decided as the reads end (``_fit_page_images``)."""
        taken = len(self._chips)
        for other in self._document_chips[: self._document_chips.index(chip)]:
            if not other.reading and other.document is not None:
                taken += len(other.document.image_pages)
        return max(0, MAX_IMAGES_PER_MESSAGE - taken)

    def _start_reading(self, chip: DocumentChip, ticket: int, slots: int) -> None:
        chip.start_reading(ticket)
        self._reserved[chip] = slots
        self.notice_outdated.emit()
        self._fit_page_images()  # its slots are held: a later PDF's pages may go as text now
        self._update_button()

    def _read_document(self, path: str | None = None, data: bytes | None = None, name: str = "") -> None:
        from pathlib import Path

        chip = self._new_document_chip(Path(path).name if path is not None else name)
        slots = self._page_slots(chip)
        if path is not None:
            ticket = self.document_loader.load_file(path, image_pages=slots)
        else:
            ticket = self.document_loader.load_data(data or b"", name, image_pages=slots)
        self._start_reading(chip, ticket, slots)

    def _document_chip(self, ticket: int) -> DocumentChip | None:
        return next((chip for chip in self._document_chips if chip.ticket == ticket), None)

    def _on_document_chip_pages_chosen(self, chip: DocumentChip, pages: str) -> None:
        document = chip.document
        if document is None or chip.reading or chip not in self._document_chips:
            return
        slots = self._page_slots(chip)
        ticket = self.document_loader.load_data(
            document.data, document.name, pages=pages or None, image_pages=slots
        )
        self._start_reading(chip, ticket, slots)

    def _on_document_loader_progress(self, ticket: int, done: int, total: int) -> None:
        chip = self._document_chip(ticket)
        if chip is not None:
            chip.show_progress(done, total)

    def _on_document_loader_loaded(self, ticket: int, document: ChatDocument, thumbnails: list) -> None:
        chip = self._document_chip(ticket)
        if chip is None:  # removed meanwhile
            return
        if any(
            c is not chip and c.document and c.document.sha256 == document.sha256
            for c in self._document_chips
        ):
            self._remove_document_chip(chip)
            self.notice.emit(f"{document.name} is already attached.")
            return
        self._reserved.pop(chip, None)
        self._as_read[chip] = (document, list(thumbnails))
        chip.show_document(document, thumbnails)
        self.notice_outdated.emit()  # before the fit: what it says about the pages holds
        self._fit_page_images()
        self._update_button()

    def _on_document_loader_failed(self, ticket: int, message: str) -> None:
        chip = self._document_chip(ticket)
        if chip is None:
            return
        if chip.document is None:
            self._remove_document_chip(chip)
        else:  # read again with other pages: what was attached stays
            self._reserved.pop(chip, None)
            chip.stop_reading()
            self._fit_page_images()
            self._update_button()
        self.notice.emit(message)

    def _remove_document_chip(self, chip: DocumentChip) -> None:
        if chip in self._document_chips:
            if chip.ticket is not None:
                self.document_loader.cancel(chip.ticket)
            self._document_chips.remove(chip)
            self._as_read.pop(chip, None)
            self._reserved.pop(chip, None)
            self.strip_layout.removeWidget(chip)
            chip.deleteLater()
            self.notice_outdated.emit()
        self._after_removal()

    def _fit_page_images(self) -> None:
        """Share the slots the question's images leave among the PDFs in the order attached: a
        read one gets as many of its rendered pages as are left, one being read holds what it
        asked for. A PDF that loses page images is named in a notice (they go as text)."""
        left = MAX_IMAGES_PER_MESSAGE - len(self._chips)
        for chip in self._document_chips:
            if chip.reading:
                left -= min(left, self._reserved.get(chip, 0))
                continue
            read = self._as_read.get(chip)
            shown = chip.document
            if read is None or shown is None:
                continue
            document, thumbnails = read
            kept = min(len(document.image_pages), left)
            left -= kept
            if kept == len(shown.image_pages):
                continue
            chip.show_document(document.with_image_pages(kept), thumbnails[:kept])
            if kept < len(shown.image_pages):
                self.notice.emit(self._demoted_line(document, shown.image_pages[kept:]))

    @staticmethod
    def _demoted_line(document: ChatDocument, demoted: tuple[int, ...]) -> str:
        """``document``'s ``demoted`` pages go as text now; scans among them go without text."""
        textless = [page.number for page in document.pages if page.number in demoted and not page.text]
        with_text = [n for n in demoted if n not in textless]
        first = with_text or textless
        said = f"{page_list(first)} now go{'es' if len(first) == 1 else ''} "
        said += "as text" if with_text else "without text, only named"
        if with_text and textless:
            said += f", {page_list(textless)} without text"
        return f"{document.name}: {said} (a message carries at most {MAX_IMAGES_PER_MESSAGE} images)."

    # Send / stop -------------------------------------------------------------------------------
    def set_generating(self, generating: bool) -> None:
        self._generating = generating
        self._update_button()

    def _update_button(self) -> None:
        if self._generating:
            self.send_button.setText("Stop")
            self.send_button.setToolTip("Stop the answer (Esc)")
            self.send_button.setAccessibleName("Stop")
            self.send_button.setEnabled(True)
        else:
            self.send_button.setText("Send")
            self.send_button.setToolTip("Send (Enter)")
            self.send_button.setAccessibleName("Send")
            self.send_button.setEnabled(self.has_draft())

    def _on_send_button_clicked(self) -> None:
        if self._generating:
            self.stop_requested.emit()
        else:
            self.send_requested.emit()

    def _on_edit_submit(self) -> None:
        if not self._generating and self.has_draft():
            self.send_requested.emit()

    def _on_edit_escape(self) -> None:
        if self._generating:
            self.stop_requested.emit()
        else:
            self.cancel_requested.emit()
