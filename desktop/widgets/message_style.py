"""What a message card looks like: its sizes, colours, thumbnails, and what was painted.

The delegate (``message_delegate``) lays out and paints with these; the view sets the colours
from the style sheet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage, QPixmap, QTextDocument

from desktop.qtmodels.transcript_model import TranscriptEntry

MARGIN_X = 16  # between the view's edges and a message card
GAP = 10  # between two cards
PADDING_X = 14  # inside a card
PADDING_Y = 10
SPACING = 6  # between the parts of a card
THUMBNAIL = 120  # the largest side of an image thumbnail
FOOTER_HEIGHT = 24  # the footer line, also where the action bar sits
RADIUS = 12


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


@dataclass
class RenderedMessage:
    """What the delegate paints for one row (for copying, tests and the action bar)."""

    document: QTextDocument
    text: str
    thumbnails: list[QPixmap]
    footer: str
    error: bool
    renders: int  # how often this row's text was rendered into a document


def scaled_thumbnail(image: QImage) -> QPixmap:
    return QPixmap.fromImage(image).scaled(
        THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def thumbnail_row_height(entry: TranscriptEntry) -> int:
    """The height of a message's row of thumbnails (its tallest, scaled like the pixmaps)."""
    return max(
        image.size().scaled(THUMBNAIL, THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio).height()
        for image in entry.thumbnails
    )
