"""What a message's document does not draw itself: code block boxes (background, language,
Copy), the mark on a wrapped code line's continuation, and quote bars; and which of them lies
under a point.

The document (``markdown_view.untrusted_document``) leaves room for each: a header strip above a
code block's first line, a hanging indent on its wrapped lines, an indent before a quote. The
delegate paints these with the painter at the document's origin, so every position here is in
document coordinates. The work is a few rectangles per code block or quote, read from the
layout the document already has: nothing is laid out here.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPen, QTextDocument

from desktop.widgets.markdown_view import (
    CODE_HANG,
    CODE_HEADER,
    CODE_PAD_X,
    CODE_PAD_Y,
    QUOTE_INDENT,
    code_block_groups,
    quote_blocks,
)
from desktop.widgets.message_style import TranscriptColours

COPY_LABEL = "Copy"
WRAP_MARK = "↪"
QUOTE_BAR = 3


def code_boxes(document: QTextDocument) -> list[QRectF]:
    """Each code block's box (its header, lines and padding), in the order of its groups."""
    layout = document.documentLayout()
    margin = document.documentMargin()
    width = document.textWidth() - 2 * margin
    boxes = []
    for group in code_block_groups(document):
        top = layout.blockBoundingRect(document.findBlockByNumber(group.first)).top() - CODE_HEADER
        bottom = layout.blockBoundingRect(document.findBlockByNumber(group.last)).bottom() + CODE_PAD_Y
        boxes.append(QRectF(margin, top, width, bottom - top))
    return boxes


def copy_chip(box: QRectF, metrics: QFontMetrics) -> QRectF:
    """Where a code box's Copy label is: the right end of its header."""
    width = metrics.horizontalAdvance(COPY_LABEL) + 12
    return QRectF(box.right() - width - 4, box.top() + 3, width, CODE_HEADER - 6)


def copy_chip_at(document: QTextDocument, point: QPointF, metrics: QFontMetrics) -> int | None:
    """The code block whose Copy label is at ``point``, if any."""
    for index, box in enumerate(code_boxes(document)):
        if copy_chip(box, metrics).adjusted(-4, -3, 4, 3).contains(point):
            return index
    return None


def code_block_near(document: QTextDocument, point: QPointF) -> int | None:
    """The code block at ``point``, or else the one nearest to it vertically (None without any)."""
    boxes = code_boxes(document)
    if not boxes:
        return None

    def distance(box: QRectF) -> float:
        if box.top() <= point.y() <= box.bottom():
            return 0.0
        return min(abs(point.y() - box.top()), abs(point.y() - box.bottom()))

    return min(range(len(boxes)), key=lambda n: distance(boxes[n]))


def paint_decorations(
    painter: QPainter, document: QTextDocument, colours: TranscriptColours, label_font: QFont
) -> None:
    """Code boxes and quote bars under the text (call before drawing the document)."""
    groups = code_block_groups(document)
    quotes = quote_blocks(document)
    if not groups and not quotes:
        return
    painter.save()
    metrics = QFontMetrics(label_font)
    painter.setFont(label_font)
    layout = document.documentLayout()
    for group, box in zip(groups, code_boxes(document), strict=True):
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
        for number in range(group.first, group.last + 1):  # wrapped lines: a mark in the indent
            block = document.findBlockByNumber(number)
            text_layout = block.layout()
            if text_layout.lineCount() < 2:
                continue
            origin = layout.blockBoundingRect(block).topLeft()
            for n in range(1, text_layout.lineCount()):
                line = text_layout.lineAt(n)
                mark = QRectF(
                    origin.x() + line.x() - CODE_HANG, origin.y() + line.y(), CODE_HANG, line.height()
                )
                painter.drawText(mark, Qt.AlignmentFlag.AlignCenter, WRAP_MARK)
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
