"""What a message card looks like: its sizes, colours, thumbnails, and what was painted.

The delegate (``message_delegate``) lays out and paints with these; the view sets the colours
from the style sheet. Cards sit in a centred reading column (``column``) at most
``MAX_TEXT_WIDTH`` of text wide; a question's bubble is as wide as its text needs, right-aligned,
and at most ``USER_SHARE`` of the column. Thumbnails flow onto as many rows as the card needs
(``thumbnail_rects``), so five images never overflow a narrow card. A question's PDFs come
first, each a caption (its name and which pages went how) over its pages' smaller thumbnails
(``document_places``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPixmap, QTextDocument

from desktop.qtmodels.transcript_model import TranscriptEntry

MARGIN_X = 16  # between the view's edges and a message card, at the least
GAP = 10  # between two cards
PADDING_X = 14  # inside a card
PADDING_Y = 10
SPACING = 6  # between the parts of a card
THUMBNAIL = 120  # the largest side of an image thumbnail
THUMBNAIL_GAP = 8
PAGE_THUMBNAIL = 84  # the largest side of a PDF page's thumbnail
BADGE = "PDF"  # the tag before a document's caption
FOOTER_HEIGHT = 24  # an answer's footer line, also where its action bar sits
RADIUS = 12
MAX_TEXT_WIDTH = 760  # the reading column's text on a wide window
USER_SHARE = 0.8  # a question's bubble is at most this share of the column
USER_MIN_WIDTH = 170  # room for "You" and the question's action bar on its top line


@dataclass
class TranscriptColours:
    """The colours the delegate paints with (the view takes them from the style sheet)."""

    user_bubble: QColor = field(default_factory=lambda: QColor("#e4ecfb"))
    assistant_bubble: QColor = field(default_factory=lambda: QColor("#ffffff"))
    bubble_border: QColor = field(default_factory=lambda: QColor("#e3e3e0"))
    current_border: QColor = field(default_factory=lambda: QColor("#9db4ea"))
    text: QColor = field(default_factory=lambda: QColor("#1d1d1b"))
    author: QColor = field(default_factory=lambda: QColor("#5b5b58"))
    footer: QColor = field(default_factory=lambda: QColor("#8a8a86"))
    error: QColor = field(default_factory=lambda: QColor("#b3261e"))
    code_background: QColor = field(default_factory=lambda: QColor(127, 127, 127, 40))
    scroll_handle: QColor = field(default_factory=lambda: QColor("#74757c"))  # a code block's
    focus: QColor = field(default_factory=lambda: QColor("#2a56c0"))  # a code block's focus ring


@dataclass
class RenderedMessage:
    """What the delegate paints for one row (for copying, tests and the action bar)."""

    document: QTextDocument
    text: str
    thumbnails: list[QPixmap]
    footer: str
    error: bool
    renders: int  # how often this row's text was rendered into a document
    documents: list[str] = field(default_factory=list)  # each PDF's caption
    page_thumbnails: list[QPixmap] = field(default_factory=list)  # their pages sent as images


def column(row: QRect) -> QRect:
    """The reading column inside a row: centred, at most ``MAX_TEXT_WIDTH`` of text wide."""
    width = max(1, min(row.width() - 2 * MARGIN_X, MAX_TEXT_WIDTH + 2 * PADDING_X))
    return QRect(row.left() + (row.width() - width) // 2, row.top(), width, row.height())


def scaled_thumbnail(image: QImage) -> QPixmap:
    return QPixmap.fromImage(image).scaled(
        THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def scaled_page_thumbnail(image: QImage) -> QPixmap:
    return QPixmap.fromImage(image).scaled(
        PAGE_THUMBNAIL,
        PAGE_THUMBNAIL,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )


@dataclass
class DocumentPlace:
    """Where one PDF of a question is drawn, from the card's content origin below the author:
    its caption line and its pages' thumbnails."""

    caption: QRect
    pages: list[QRect]


def document_places(
    entry: TranscriptEntry, width: int, caption_height: int
) -> tuple[list[DocumentPlace], int]:
    """Each of the entry's PDFs placed down the card, and the height they take (0 without)."""
    sizes = [
        image.size().scaled(PAGE_THUMBNAIL, PAGE_THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio)
        for image in entry.document_thumbnails
    ]
    places: list[DocumentPlace] = []
    y = 0
    for document in entry.documents:
        caption = QRect(0, y, width, caption_height)
        y += caption_height + SPACING // 2
        mine, sizes = sizes[: len(document.images)], sizes[len(document.images) :]
        pages = [rect.translated(0, y) for rect in thumbnail_rects(mine, width)]
        if pages:
            y = thumbnails_extent(pages).height() + SPACING  # the extent is measured from 0
        places.append(DocumentPlace(caption, pages))
    return places, y


def thumbnail_sizes(entry: TranscriptEntry) -> list[QSize]:
    """Each thumbnail's size as painted (scaled like the pixmaps)."""
    return [
        image.size().scaled(THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio)
        for image in entry.thumbnails
    ]


def thumbnail_rects(sizes: list[QSize], width: int) -> list[QRect]:
    """Where each thumbnail goes, from (0, 0), flowing onto a new row where ``width`` ends."""
    rects: list[QRect] = []
    x = y = row_height = 0
    for size in sizes:
        if x > 0 and x + size.width() > width:
            x, y, row_height = 0, y + row_height + THUMBNAIL_GAP, 0
        rects.append(QRect(x, y, size.width(), size.height()))
        x += size.width() + THUMBNAIL_GAP
        row_height = max(row_height, size.height())
    return rects


def thumbnails_extent(rects: list[QRect]) -> QSize:
    """The width and height the thumbnails take."""
    if not rects:
        return QSize(0, 0)
    return QSize(max(r.right() + 1 for r in rects), max(r.bottom() + 1 for r in rects))
