"""An attached PDF in the composer: its name, its reading progress, a chip per page that goes as
an image, one for the pages that go as text, one for scanned pages without text, and its page
picker.

While the PDF is read the chip says how far ("Reading report.pdf — page 3 of 12") and its ×
cancels; once read, it shows each page sent as an image as a small thumbnail and the rest as
"pages 4-12 as text", except scans past the image slots (no text layer: only their numbers go),
shown as "pages 6-9 without text". Pages… opens ``PagePicker``: a page list ("1-3,7") checked
as it is typed (``models.documents.chat_documents.parse_pages``); accepting it reads the
document again with those pages. The chip draws and asks; the composer reads and decides.

Signals (DocumentChip):
    removed(object): the × was pressed (the chip; reading it is cancelled).
    pages_chosen(object, str): the chip, and the page list the person chose for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from models.documents.chat_documents import ChatDocument, page_list, parse_pages
from models.documents.pdf_reading import DocumentError

PAGE_THUMBNAIL = 44  # a page chip's longest side
TEXTLESS_TIP = "scanned pages: no text layer, and no image slot left"


def page_spec(numbers: Sequence[int]) -> str:
    """Page numbers as a page list the picker reads back: ``1, 2, 3, 7`` as ``1-3,7``."""
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(f"{a}-{b}" if b != a else f"{a}" for a, b in runs)


class PagePicker(QDialog):
    """Which pages of a document go in: a page list, refused until ``parse_pages`` takes it."""

    def __init__(self, document: ChatDocument, current: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.setWindowTitle(f"Pages of {document.name}")
        layout = QVBoxLayout(self)
        count = document.page_count
        label = QLabel(
            f"Pages of {document.name} to send (1-{count}), like 1-3,7:" if count > 1 else "Pages:"
        )
        layout.addWidget(label)
        self.pages = QLineEdit(current)
        self.pages.setAccessibleName("Pages")
        self.pages.setPlaceholderText(f"1-{count}")
        label.setBuddy(self.pages)
        layout.addWidget(self.pages)
        self.problem = QLabel("")
        self.problem.setObjectName("pagePickerProblem")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setText("Read these pages")
        self.ok_button.setAutoDefault(False)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.pages.textChanged.connect(self._on_pages_text_changed)
        self.pages.returnPressed.connect(self._on_pages_return_pressed)
        self._on_pages_text_changed(current)

    def chosen(self) -> str:
        return self.pages.text().strip()

    def _on_pages_text_changed(self, text: str) -> None:
        try:
            parse_pages(text, self.document.page_count, self.document.name)
        except DocumentError as exc:
            self.problem.setText(str(exc))
            self.ok_button.setEnabled(False)
        else:
            self.problem.setText("")
            self.ok_button.setEnabled(True)

    def _on_pages_return_pressed(self) -> None:
        if self.ok_button.isEnabled():
            self.accept()


class DocumentChip(QFrame):
    removed = Signal(object)
    pages_chosen = Signal(object, str)

    def __init__(self, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.name = name
        self.document: ChatDocument | None = None
        self.thumbnails: list[QImage] = []  # one per page that goes as an image
        self.ticket: int | None = None  # the read under way
        self.page_chips: list[QLabel] = []
        self.page_picker: PagePicker | None = None
        self.setObjectName("attachment")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 4, 4, 4)
        layout.setSpacing(6)
        about = QVBoxLayout()
        about.setSpacing(2)
        self.title = QLabel(name)
        self.title.setObjectName("documentTitle")
        about.addWidget(self.title)
        self.status = QLabel(f"Reading {name}…")
        self.status.setObjectName("documentStatus")
        about.addWidget(self.status)
        layout.addLayout(about)
        self.pages_row = QHBoxLayout()
        self.pages_row.setSpacing(4)
        layout.addLayout(self.pages_row)
        self.text_chip = QLabel("")
        self.text_chip.setObjectName("documentTextPages")
        self.text_chip.hide()
        layout.addWidget(self.text_chip)
        self.textless_chip = QLabel("")
        self.textless_chip.setObjectName("documentTextlessPages")
        self.textless_chip.setToolTip(TEXTLESS_TIP)
        self.textless_chip.hide()
        layout.addWidget(self.textless_chip)
        self.pages_button = QToolButton()
        self.pages_button.setObjectName("documentPages")
        self.pages_button.setText("Pages…")
        self.pages_button.setToolTip(f"Choose the pages of {name} to send")
        self.pages_button.setAccessibleName(f"Choose pages of {name}")
        self.pages_button.hide()  # until the PDF is read
        self.title.hide()  # the progress line names it meanwhile
        self.pages_button.clicked.connect(self._on_pages_button_clicked)
        layout.addWidget(self.pages_button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.remove_button = QToolButton()
        self.remove_button.setObjectName("removeAttachment")
        self.remove_button.setText("×")
        self.remove_button.clicked.connect(lambda: self.removed.emit(self))
        layout.addWidget(self.remove_button, 0, Qt.AlignmentFlag.AlignTop)
        self._name_remove_button()

    @property
    def reading(self) -> bool:
        return self.ticket is not None

    def start_reading(self, ticket: int) -> None:
        """A read (the first, or again with other pages) is under way: its progress shows."""
        self.ticket = ticket
        self.status.setText(f"Reading {self.name}…")
        self.status.show()
        self.title.hide()
        self.pages_button.hide()
        self._name_remove_button()

    def show_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` pages are read: the next one is being read."""
        self.status.setText(f"Reading {self.name} — page {min(done + 1, total)} of {total}")

    def stop_reading(self) -> None:
        """The read ended without a document (refused): the one before it, if any, shows again."""
        self.ticket = None
        if self.document is not None:
            self.show_document(self.document, self.thumbnails)

    def show_document(self, document: ChatDocument, thumbnails: Sequence[QImage]) -> None:
        """Show ``document`` as read: a chip per page that goes as an image, one for the text."""
        self.ticket = None
        self.document, self.thumbnails = document, list(thumbnails)
        pages = f"{document.page_count} page" + ("s" if document.page_count != 1 else "")
        self.title.setText(f"{document.name} · {pages}")
        self.setToolTip(document.summary())
        for chip in self.page_chips:
            self.pages_row.removeWidget(chip)
            chip.deleteLater()
        self.page_chips = []
        for number, thumbnail in zip(document.image_pages, self.thumbnails, strict=False):
            chip = QLabel()
            chip.setObjectName("documentPage")
            chip.setPixmap(
                QPixmap.fromImage(thumbnail).scaled(
                    QSize(PAGE_THUMBNAIL, PAGE_THUMBNAIL),
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
            chip.setToolTip(f"Page {number} goes as an image")
            chip.setAccessibleName(f"Page {number} of {document.name}, as an image")
            self.pages_row.addWidget(chip)
            self.page_chips.append(chip)
        textless = document.textless_pages
        as_text = [n for n in document.text_pages if n not in textless]
        self.text_chip.setToolTip("")
        if as_text:
            self.text_chip.setText(f"{page_list(as_text)} as text")
            if document.left_out:
                self.text_chip.setToolTip(
                    f"{page_list(document.left_out).capitalize()} are left out (too long)"
                )
            self.text_chip.show()
        elif document.left_out:
            self.text_chip.setText(f"{page_list(document.left_out)} left out")
            self.text_chip.show()
        else:
            self.text_chip.hide()
        self.textless_chip.setText(f"{page_list(textless)} without text" if textless else "")
        self.textless_chip.setVisible(bool(textless))
        self.status.hide()
        self.title.show()
        self.pages_button.show()
        self._name_remove_button()

    def chosen_pages(self) -> str:
        """The page list of what is attached now (``1-3,7``)."""
        if self.document is None:
            return ""
        return page_spec([*(page.number for page in self.document.pages), *self.document.left_out])

    def _name_remove_button(self) -> None:
        what = f"Stop reading {self.name}" if self.reading else f"Remove {self.name}"
        self.remove_button.setToolTip(what)
        self.remove_button.setAccessibleName(what)

    def _on_pages_button_clicked(self) -> None:
        if self.document is None or self.reading:
            return
        if self.page_picker is not None:
            self.page_picker.deleteLater()  # the one opened before (closed: it is modal)
        picker = PagePicker(self.document, self.chosen_pages(), self)
        picker.accepted.connect(self._on_page_picker_accepted)
        self.page_picker = picker
        picker.open()
        picker.pages.setFocus()
        picker.pages.selectAll()

    def _on_page_picker_accepted(self) -> None:
        picker = self.page_picker
        if picker is not None:
            self.pages_chosen.emit(self, picker.chosen())
