"""Paints one transcript message per row of a ``QListView``: who spoke, images, text, footer.

No widget is built per message. Each row's text is rendered once per content revision into a
``QTextDocument`` (``markdown_view.untrusted_document``: HTML stays text, links are inert,
nothing is loaded) and laid out once per width; painting and size hints read that cache.

Rows are laid out lazily: a row that has no layout at the view's width yet gets an estimated
height from its text length, is laid out exactly when it is first painted, and the rest are
refined from the end of the conversation backwards a few milliseconds at a time while the
event loop is idle. So opening a 1,000-message conversation lays out what is on screen, and
streaming into the last row never touches the others.

Cards sit in a centred reading column (``message_style.column``); a question's bubble is as wide
as its text (measured once per layout), right-aligned, with its actions on its top line. What
the document does not draw (code boxes with Copy, wrap marks, quote bars) is painted from
rectangles its layout already has (``message_decorations``). ``hit`` says what is under a point
(a thumbnail, a code block's Copy) for the view's clicks.

The file is over 400 lines because the row cache, the lazy sizing, painting and hit testing all
read one per-row layout and must stay in step with it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import cast

from PySide6.QtCore import (
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QTimer,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QFont,
    QFontMetrics,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.widgets.markdown_view import SelectableMessage, document_height, untrusted_document
from desktop.widgets.message_decorations import code_block_near, copy_chip_at, paint_decorations
from desktop.widgets.message_style import (
    FOOTER_HEIGHT,
    GAP,
    PADDING_X,
    PADDING_Y,
    RADIUS,
    SPACING,
    USER_MIN_WIDTH,
    USER_SHARE,
    RenderedMessage,
    TranscriptColours,
    column,
    scaled_thumbnail,
    thumbnail_rects,
    thumbnail_sizes,
    thumbnails_extent,
)

REFINE_BUDGET_S = 0.004  # layout work per idle slice
FREED_PER_SLICE = 50  # dropped documents freed per idle slice
REFINE_RELAYOUT_S = 0.25  # while refining, rows are placed again at most this often


@dataclass
class _RowCache:
    revision: int
    rendered: RenderedMessage
    width: int = -1  # the row width the document was last laid out at
    height: int = 0  # the row's height at that width
    bubble: int = 0  # a question's card width at that width (an answer's spans the column)
    thumbnails: list[QRect] = field(default_factory=list)  # from the text's left, below the author


class MessageDelegate(QStyledItemDelegate):
    """Draws ``TranscriptModel`` rows as message cards, from a per-row layout cache."""

    def __init__(self, view: QListView):
        super().__init__(view)
        self._view = view
        self.colours = TranscriptColours()
        base = QFont(view.font())
        self.body_font = QFont(base)
        self.body_font.setPixelSize(14)
        self.author_font = QFont(base)
        self.author_font.setPixelSize(12)
        self.author_font.setWeight(QFont.Weight.DemiBold)
        self.footer_font = QFont(base)
        self.footer_font.setPixelSize(11)
        self._body_metrics = QFontMetrics(self.body_font)
        self._author_height = QFontMetrics(self.author_font).height()
        self._rows: dict[int, _RowCache] = {}
        self._renders: dict[int, int] = {}
        self._estimated: set[int] = set()  # rows whose size hint is a guess
        self._sizes: dict[int, QSize] = {}  # row: its size hint at ``width`` (exact or estimated)
        self.width = 1  # what rows are laid out at; the view sets it when it is resized
        self.first_row = 0  # the view hides the rows before it: they need no size hint
        self._refine = QTimer(self)
        self._refine.setSingleShot(True)
        self._refine.setInterval(0)
        self._refine.timeout.connect(self._on_refine_timeout)
        self._discarded: list[_RowCache] = []  # dropped documents, freed while idle
        self._free = QTimer(self)
        self._free.setSingleShot(True)
        self._free.setInterval(0)
        self._free.timeout.connect(self._on_free_timeout)
        self._refined_since: float | None = None  # when refining started changing heights

    # Cache ------------------------------------------------------------------------------------
    def forget(self, first: int = 0) -> None:
        """Drop what is cached for rows ``first`` and later (they were removed or replaced).

        Freeing a thousand documents at once would stall the window, so they are freed a few at
        a time while it is idle."""
        self._discarded.extend(cache for row, cache in self._rows.items() if row >= first)
        for cache in (self._rows, self._renders, self._sizes):
            for row in [r for r in cache if r >= first]:
                del cache[row]
        self._estimated = {r for r in self._estimated if r < first}
        if self._discarded and not self._free.isActive():
            self._free.start()

    def _on_free_timeout(self) -> None:
        del self._discarded[-FREED_PER_SLICE:]
        if self._discarded:
            self._free.start()

    def restyle(self) -> None:
        """Colours changed: render every row again when it is next needed."""
        self._rows.clear()
        self._view.viewport().update()

    def _entry(self, row: int) -> TranscriptEntry:
        return self._transcript().entry(row)

    def _transcript(self) -> TranscriptModel:
        return cast(TranscriptModel, self._view.model())  # the view is only ever given one

    def _content(self, row: int) -> _RowCache:
        """The row's document for its current revision, rendered if the text changed."""
        entry = self._entry(row)
        cached = self._rows.get(row)
        if cached is not None and cached.revision == entry.revision:
            return cached
        self._renders[row] = self._renders.get(row, 0) + 1
        document = untrusted_document(
            entry.text,
            markdown=entry.role == "assistant",
            quote_colour=self.colours.author,
            font=self.body_font,
        )  # no Qt parent: a document is freed when no cache or caller holds it any more
        thumbnails = (
            cached.rendered.thumbnails
            if cached is not None and cached.rendered.thumbnails
            else [scaled_thumbnail(image) for image in entry.thumbnails]
        )
        rendered = RenderedMessage(
            document,
            entry.text,
            thumbnails,
            entry.footer(),
            entry.finish_reason == "error",
            self._renders[row],
        )
        fresh = _RowCache(entry.revision, rendered)
        self._rows[row] = fresh
        return fresh

    def set_row_width(self, width: int) -> bool:
        """Lay rows out at ``width`` from now on; return whether it changed."""
        width = max(1, width)
        if width == self.width:
            return False
        self.width = width
        self._sizes.clear()
        return True

    def _text_width(self, width: int, user: bool) -> int:
        """The text's width in a row ``width`` wide (a question's: at its widest)."""
        card = column(QRect(0, 0, width, 1)).width()
        if user:
            card = int(card * USER_SHARE)
        return max(40, card - 2 * PADDING_X)

    def _chrome_height(self, entry: TranscriptEntry, thumbnails: int = -1) -> int:
        """Everything in a row except the text (``thumbnails``: their height, -1: one row's)."""
        height = GAP + 2 * PADDING_Y + self._author_height + SPACING
        if entry.role != "user":
            height += FOOTER_HEIGHT  # a question's actions sit on its top line: no footer
        if entry.thumbnails:
            if thumbnails < 0:
                thumbnails = thumbnails_extent(thumbnail_rects(thumbnail_sizes(entry)[:1], 1)).height()
            height += thumbnails + SPACING
        return height

    def _laid_out(self, row: int, width: int) -> _RowCache:
        """The row rendered and laid out at ``width`` (the exact, possibly slow, path)."""
        cache = self._content(row)
        if cache.width != width:
            entry = self._entry(row)
            user = entry.role == "user"
            document = cache.rendered.document
            text_width = self._text_width(width, user)
            document.setTextWidth(text_width)
            cache.thumbnails = thumbnail_rects(thumbnail_sizes(entry), text_width)
            extent = thumbnails_extent(cache.thumbnails)
            text_height = math.ceil(document_height(document))
            if user:  # as wide as its text (right-aligned in the column)
                content = max(
                    math.ceil(document.idealWidth()) + 2, extent.width(), USER_MIN_WIDTH - 2 * PADDING_X
                )
                cache.bubble = min(text_width, content) + 2 * PADDING_X
            cache.width = width
            cache.height = self._chrome_height(entry, extent.height()) + text_height
        if width == self.width:
            self._sizes[row] = QSize(width, cache.height)
        self._estimated.discard(row)
        return cache

    def rendered(self, row: int) -> RenderedMessage:
        """Row ``row`` as painted at the view's current width (laid out now if needed)."""
        cache = self._laid_out(row, self.width)
        entry = self._entry(row)
        cache.rendered.footer = entry.footer()
        cache.rendered.error = entry.finish_reason == "error"
        return cache.rendered

    def relayout_row(self, row: int) -> bool:
        """Lay out a changed row now; return whether its height changed."""
        width = self.width
        before = self._rows.get(row)
        old_height = before.height if before is not None and before.width == width else None
        return self._laid_out(row, width).height != old_height

    # Qt delegate interface ----------------------------------------------------------------------
    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        row = index.row()
        size = self._sizes.get(row)  # exact, estimated, or the last height of a streaming row
        if size is None:
            self._size_all(self.width)  # a relayout asks for every row: answer them in one pass
            size = self._sizes.get(row)
            if size is None:  # a hidden row (Qt asks row 0's size for its scroll step): a guess
                size = self._estimate(self._entry(row), self.width)
        return size

    def _estimate(self, entry: TranscriptEntry, width: int) -> QSize:
        """A row's size from its text's length, without laying it out."""
        text_width = self._text_width(width, entry.role == "user")
        per_line = max(1, text_width // max(1, self._body_metrics.averageCharWidth()))
        lines = entry.text.count("\n") + 1 + len(entry.text) // per_line
        return QSize(width, self._chrome_height(entry) + lines * self._body_metrics.lineSpacing() + 4)

    def _size_all(self, width: int) -> None:
        """Give every shown row without a size hint one: its laid-out height, or else an estimate."""
        model = self._transcript()
        estimated = False
        for row in range(self.first_row, model.rowCount()):
            if row in self._sizes:
                continue
            cache = self._rows.get(row)
            if cache is not None and cache.width == width:
                self._sizes[row] = QSize(width, cache.height)
                continue
            self._sizes[row] = self._estimate(model.entry(row), width)
            self._estimated.add(row)
            estimated = True
        if estimated and not self._refine.isActive():
            self._refine.start()

    def _card(self, row_rect: QRect, cache: _RowCache) -> QRect:
        """The card of a row placed at ``row_rect``: the reading column of the row (its height may
        still be an estimate), a question's bubble at its right."""
        lane = column(row_rect).adjusted(0, GAP // 2, 0, -(GAP - GAP // 2))
        if cache.bubble:
            lane.setLeft(lane.right() + 1 - cache.bubble)
        return lane

    def _text_origin(self, card: QRect, cache: _RowCache) -> QPoint:
        top = card.top() + PADDING_Y + self._author_height + SPACING
        if cache.thumbnails:
            top += thumbnails_extent(cache.thumbnails).height() + SPACING
        return QPoint(card.left() + PADDING_X, top)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        row = index.row()
        rect = QRect(option.rect)
        cache = self._laid_out(row, self.width)
        if cache.height != rect.height():
            self._view.scheduleDelayedItemsLayout()  # the estimate was off: place rows again
        entry: TranscriptEntry = index.data(TranscriptModel.EntryRole)
        colours = self.colours
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        card_rect = self._card(rect, cache)
        card = QRectF(card_rect)
        user = entry.role == "user"
        current = bool(option.state & QStyle.StateFlag.State_HasFocus) or bool(
            option.state & QStyle.StateFlag.State_Selected
        )
        border = (
            colours.current_border
            if current
            else (colours.bubble_border if not user else Qt.GlobalColor.transparent)
        )
        painter.setPen(QPen(border, 1))
        painter.setBrush(colours.user_bubble if user else colours.assistant_bubble)
        painter.drawRoundedRect(card.adjusted(0.5, 0.5, -0.5, -0.5), RADIUS, RADIUS)

        x = card_rect.left() + PADDING_X
        y = card_rect.top() + PADDING_Y
        inner_width = card_rect.width() - 2 * PADDING_X
        painter.setFont(self.author_font)
        painter.setPen(colours.author)
        painter.drawText(
            QRect(x, y, inner_width, self._author_height),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            "You" if user else "Llama",
        )
        y += self._author_height + SPACING
        for pixmap, place in zip(cache.rendered.thumbnails, cache.thumbnails, strict=False):
            target = place.translated(x, y)
            painter.drawPixmap(target.topLeft(), pixmap)
            painter.setPen(QPen(colours.bubble_border, 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(target), 6, 6)

        document = cache.rendered.document
        origin = self._text_origin(card_rect, cache)
        painter.save()
        painter.translate(origin)
        paint_decorations(painter, document, colours, self.footer_font)
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(QPalette.ColorRole.Text, colours.text)
        context.clip = QRectF(0, 0, document.textWidth(), document.size().height())
        document.documentLayout().draw(painter, context)
        painter.restore()

        footer = entry.footer()
        if footer:
            painter.setFont(self.footer_font)
            painter.setPen(colours.error if entry.finish_reason == "error" else colours.footer)
            footer_rect = QRect(x, card_rect.bottom() - PADDING_Y - FOOTER_HEIGHT, inner_width, FOOTER_HEIGHT)
            elided = QFontMetrics(self.footer_font).elidedText(
                footer, Qt.TextElideMode.ElideRight, inner_width // 2
            )
            painter.drawText(footer_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, elided)
        painter.restore()

    def action_bar_rect(self, row_rect: QRect, bar: QSize, row: int | None = None) -> QRect:
        """Where a row's action bar goes: the right end of an answer's footer line, or of a
        question's top line (without ``row``, an answer's place)."""
        if row is None:
            card = column(row_rect).adjusted(0, GAP // 2, 0, -(GAP - GAP // 2))
            user = False
        else:
            card = self._card(row_rect, self._laid_out(row, self.width))
            user = self._entry(row).role == "user"
        if user:
            top = card.top() + PADDING_Y + (self._author_height - bar.height()) // 2
        else:
            top = card.bottom() - PADDING_Y - FOOTER_HEIGHT + (FOOTER_HEIGHT - bar.height()) // 2 + 1
        return QRect(card.right() - PADDING_X - bar.width() + 4, top, bar.width(), bar.height())

    def body_rect(self, row_rect: QRect, row: int) -> QRect:
        """Where a row's text is painted (a text selection opens exactly there)."""
        cache = self._laid_out(row, self.width)
        card = self._card(row_rect, cache)
        document = cache.rendered.document
        width = min(math.ceil(document.textWidth()), card.width() - 2 * PADDING_X)
        return QRect(self._text_origin(card, cache), QSize(width, math.ceil(document.size().height())))

    def hit(self, row_rect: QRect, row: int, point: QPoint) -> tuple[str, int] | None:
        """What is at ``point`` in the row placed at ``row_rect``: ("image", n) for its n-th
        thumbnail, ("copy_code", n) for its n-th code block's Copy, or None."""
        cache = self._laid_out(row, self.width)
        card = self._card(row_rect, cache)
        top = QPoint(card.left() + PADDING_X, card.top() + PADDING_Y + self._author_height + SPACING)
        for n, place in enumerate(cache.thumbnails):
            if place.translated(top).contains(point):
                return ("image", n)
        local = QPointF(point - self._text_origin(card, cache))
        block = copy_chip_at(cache.rendered.document, local, QFontMetrics(self.footer_font))
        return ("copy_code", block) if block is not None else None

    def code_block_near(self, row_rect: QRect, row: int, point: QPoint) -> int | None:
        """The row's code block under ``point``, or the nearest one (None without code)."""
        cache = self._laid_out(row, self.width)
        origin = self._text_origin(self._card(row_rect, cache), cache)
        return code_block_near(cache.rendered.document, QPointF(point - origin))

    # Text selection (the item "editor") --------------------------------------------------------------
    def createEditor(
        self,
        parent: QWidget,
        option: QStyleOptionViewItem,  # noqa: N802 - Qt override
        index: QModelIndex | QPersistentModelIndex,
    ) -> QWidget:
        return SelectableMessage(parent)  # Escape closes it: QStyledItemDelegate.eventFilter

    def setEditorData(self, editor: QWidget, index: QModelIndex | QPersistentModelIndex) -> None:  # noqa: N802
        entry = self._entry(index.row())
        palette = editor.palette()
        palette.setColor(QPalette.ColorRole.Text, self.colours.text)
        editor.setPalette(palette)
        if not isinstance(editor, SelectableMessage):
            return
        editor.setDocument(
            untrusted_document(
                entry.text,
                markdown=entry.role == "assistant",
                quote_colour=self.colours.author,
                font=self.body_font,
                parent=editor,
            )
        )

    def setModelData(self, editor: QWidget, model, index) -> None:  # noqa: N802 - read-only
        pass

    def updateEditorGeometry(
        self,
        editor: QWidget,
        option: QStyleOptionViewItem,  # noqa: N802
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        editor.setGeometry(self.body_rect(option.rect, index.row()))

    # Idle refinement ------------------------------------------------------------------------------
    def _on_refine_timeout(self) -> None:
        """Lay out estimated rows, last first, for a few milliseconds; come back if more remain."""
        width = self.width
        deadline = time.perf_counter() + REFINE_BUDGET_S
        changed = False
        rows = self._view.model().rowCount() if self._view.model() is not None else 0
        for row in sorted(self._estimated, reverse=True):
            if row >= rows or row < self.first_row:
                self._estimated.discard(row)
                continue
            estimate = self._sizes.get(row)
            height = self._laid_out(row, width).height
            changed |= estimate is None or height != estimate.height()
            if time.perf_counter() > deadline:
                break
        now = time.perf_counter()
        if changed and self._refined_since is None:
            self._refined_since = now
        done = not self._estimated
        if self._refined_since is not None and (done or now - self._refined_since > REFINE_RELAYOUT_S):
            self._refined_since = None
            self._view.scheduleDelayedItemsLayout()
        if not done:
            self._refine.start()
