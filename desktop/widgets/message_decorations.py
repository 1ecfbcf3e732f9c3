"""What a message's document does not draw itself, and how its code is drawn: code block boxes
(background, language, Copy, a sideways scroll bar), quote bars; which of them lies under a
point; and the document drawn with each code block clipped to its box and scrolled sideways.

The document (``markdown_view.untrusted_document``) leaves room for each: a header strip above a
code block's first line, a footer strip below its last (the scroll bar's), an indent before a
quote. A code line never wraps, so a block can be wider than its box: how much wider is its
overflow (``code_overflows``), and its offset (0 to the overflow, kept by the delegate) says how
far it is scrolled. The delegate paints with the painter at the document's origin, so every
position here is in document coordinates. The work is a few rectangles per code block or quote,
read from the layout the document already has: nothing is laid out here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QFont,
    QFontMetrics,
    QPainter,
    QPalette,
    QPen,
    QRegion,
    QTextDocument,
)

from desktop.widgets.markdown_view import (
    CODE_FOOTER,
    CODE_HEADER,
    CODE_PAD_X,
    QUOTE_INDENT,
    CodeGroup,
    code_block_groups,
    quote_blocks,
)
from desktop.widgets.message_style import TranscriptColours

COPY_LABEL = "Copy"
QUOTE_BAR = 3
SCROLL_BAR = 6  # a code block's sideways scroll bar: its thickness
SCROLL_BAR_INSET = 4  # between the bar and the bottom of the box
MIN_THUMB = 24  # the bar's handle is never narrower


@dataclass(frozen=True)
class ShownCode:
    """A code block to paint: its group, its box, how far it is scrolled and can be."""

    group: CodeGroup
    box: QRectF
    offset: float
    overflow: float


def code_boxes(document: QTextDocument) -> list[QRectF]:
    """Each code block's box (its header, lines and footer), in the order of its groups."""
    layout = document.documentLayout()
    margin = document.documentMargin()
    width = document.textWidth() - 2 * margin
    boxes = []
    for group in code_block_groups(document):
        top = layout.blockBoundingRect(document.findBlockByNumber(group.first)).top() - CODE_HEADER
        bottom = layout.blockBoundingRect(document.findBlockByNumber(group.last)).bottom() + CODE_FOOTER
        boxes.append(QRectF(margin, top, width, bottom - top))
    return boxes


def code_overflow(document: QTextDocument, group: CodeGroup, box: QRectF) -> float:
    """How far a code block scrolls sideways: how much its widest line, and the padding after
    it, reach past its box (0: it fits, and it shows no scroll bar). One look per code line."""
    widest = 0.0
    block = document.findBlockByNumber(group.first)
    for _ in range(group.last - group.first + 1):
        layout = block.layout()  # one line: code never wraps
        widest = max(widest, layout.position().x() + layout.boundingRect().right())
        block = block.next()
    overflow = widest + CODE_PAD_X - box.right()
    return overflow if overflow >= 1 else 0.0  # less than a pixel: it fits


def code_lines(box: QRectF) -> QRectF:
    """The part of a box its code is drawn in (inside its border, below its header)."""
    return box.adjusted(1, CODE_HEADER, -1, -1)


def copy_chip(box: QRectF, metrics: QFontMetrics) -> QRectF:
    """Where a code box's Copy label is: the right end of its header."""
    width = metrics.horizontalAdvance(COPY_LABEL) + 12
    return QRectF(box.right() - width - 4, box.top() + 3, width, CODE_HEADER - 6)


def copy_chip_at(boxes: Sequence[QRectF], point: QPointF, metrics: QFontMetrics) -> int | None:
    """The code block whose Copy label is at ``point``, if any."""
    for index, box in enumerate(boxes):
        if copy_chip(box, metrics).adjusted(-4, -3, 4, 3).contains(point):
            return index
    return None


def scroll_track(box: QRectF) -> QRectF:
    """Where a code box's sideways scroll bar runs: along its footer."""
    return QRectF(
        box.left() + CODE_PAD_X,
        box.bottom() - SCROLL_BAR_INSET - SCROLL_BAR,
        box.width() - 2 * CODE_PAD_X,
        SCROLL_BAR,
    )


def scroll_thumb(box: QRectF, overflow: float, offset: float) -> QRectF:
    """The scroll bar's handle: as much of the track as the box shows of its code, placed as far
    along as the code is scrolled."""
    track = scroll_track(box)
    width = min(track.width(), max(MIN_THUMB, track.width() * box.width() / (box.width() + overflow)))
    along = offset / overflow if overflow > 0 else 0.0
    return QRectF(track.left() + (track.width() - width) * along, track.top(), width, track.height())


def offset_for_thumb(box: QRectF, overflow: float, thumb_left: float) -> float:
    """The offset that puts the handle's left edge at ``thumb_left`` (clamped to the track)."""
    track = scroll_track(box)
    room = track.width() - scroll_thumb(box, overflow, 0).width()
    if room <= 0:
        return 0.0
    return min(overflow, max(0.0, (thumb_left - track.left()) / room * overflow))


def scroll_bar_at(boxes: Sequence[QRectF], point: QPointF) -> int | None:
    """The code block whose scroll bar's place (its footer strip, along the track) is at
    ``point`` (a block that fits its box shows no bar there)."""
    for index, box in enumerate(boxes):
        track = scroll_track(box)
        strip = QRectF(track.left() - 4, box.bottom() - CODE_FOOTER, track.width() + 8, CODE_FOOTER)
        if strip.contains(point):
            return index
    return None


def code_block_at(boxes: Sequence[QRectF], point: QPointF) -> int | None:
    """The code block whose box holds ``point``, if any."""
    return next((index for index, box in enumerate(boxes) if box.contains(point)), None)


def code_block_near(boxes: Sequence[QRectF], point: QPointF) -> int | None:
    """The code block at ``point``, or else the one nearest to it vertically (None without any)."""
    if not boxes:
        return None

    def distance(box: QRectF) -> float:
        if box.top() <= point.y() <= box.bottom():
            return 0.0
        return min(abs(point.y() - box.top()), abs(point.y() - box.bottom()))

    return min(range(len(boxes)), key=lambda n: distance(boxes[n]))


def paint_decorations(
    painter: QPainter,
    document: QTextDocument,
    colours: TranscriptColours,
    label_font: QFont,
    code: Sequence[ShownCode],
) -> None:
    """The boxes of the code blocks ``code`` (those in sight) and the quote bars, under the text
    (call before ``draw_document``); a block that overflows its box gets a scroll bar."""
    quotes = quote_blocks(document)
    if not code and not quotes:
        return
    painter.save()
    metrics = QFontMetrics(label_font)
    painter.setFont(label_font)
    for shown in code:
        group, box, offset, overflow = shown.group, shown.box, shown.offset, shown.overflow
        painter.setPen(QPen(colours.bubble_border, 1))
        painter.setBrush(colours.code_background)
        painter.drawRoundedRect(box.adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
        painter.setPen(colours.footer)
        header = QRectF(box.left() + CODE_PAD_X, box.top(), box.width() - 2 * CODE_PAD_X, CODE_HEADER)
        if group.language:
            painter.drawText(
                header, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, group.language
            )
        chip = copy_chip(box, metrics)
        painter.setPen(QPen(colours.bubble_border, 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(chip, 4, 4)
        painter.setPen(colours.footer)
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, COPY_LABEL)
        if overflow > 0:
            radius = SCROLL_BAR / 2
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(colours.bubble_border)
            painter.drawRoundedRect(scroll_track(box), radius, radius)
            painter.setBrush(colours.scroll_handle)
            painter.drawRoundedRect(scroll_thumb(box, overflow, offset), radius, radius)
    layout = document.documentLayout()
    quoted = {number: level for number, level in quotes}
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(colours.footer)
    for number, level in quotes:
        rect = layout.blockBoundingRect(document.findBlockByNumber(number))
        bottom = rect.bottom()
        if number + 1 in quoted:  # the bar runs on through the space to the next quoted block
            bottom = layout.blockBoundingRect(document.findBlockByNumber(number + 1)).top()
        for n in range(level):
            x = document.documentMargin() + n * QUOTE_INDENT + 2
            painter.drawRoundedRect(QRectF(x, rect.top(), QUOTE_BAR, bottom - rect.top()), 1.5, 1.5)
    painter.restore()


def draw_document(
    painter: QPainter, document: QTextDocument, text: QColor, visible: QRectF, code: Sequence[ShownCode]
) -> None:
    """Draw the part ``visible`` of ``document``'s text: everything but its code as laid out,
    and each code block in sight (``code``) clipped to its box, moved left by its offset. The
    layout skips the blocks outside each clip, so a pass costs the lines it draws."""
    layout = document.documentLayout()
    context = QAbstractTextDocumentLayout.PaintContext()
    context.palette.setColor(QPalette.ColorRole.Text, text)
    visible = visible.intersected(QRectF(0, 0, document.textWidth(), document.size().height()))
    context.clip = visible
    if not code:
        layout.draw(painter, context)
        return
    outside = QRegion(visible.toAlignedRect())
    for shown in code:  # the code's whole band: its lines run on past the box both ways
        band = QRectF(visible.left(), shown.box.top(), visible.width(), shown.box.height())
        outside -= QRegion(band.toAlignedRect())
    painter.save()
    painter.setClipRegion(outside, Qt.ClipOperation.IntersectClip)
    layout.draw(painter, context)
    painter.restore()
    for shown in code:
        lines = code_lines(shown.box).intersected(visible)
        painter.save()
        painter.setClipRect(lines, Qt.ClipOperation.IntersectClip)
        painter.translate(-shown.offset, 0)
        context.clip = lines.translated(shown.offset, 0)
        layout.draw(painter, context)
        painter.restore()
