"""Paints one transcript message per row of a ``QListView``: who spoke, PDFs, images, text, footer.

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
the document does not draw (code boxes with Copy and a scroll bar, quote bars) is painted from
rectangles its layout already has (``message_decorations``). A code line never wraps: a code
block wider than the card is drawn clipped to its box, moved left by that block's offset, which
is kept here per row and block (``scroll_code``) and outlives the row's revisions while it
streams; changing it repaints the row and lays nothing out. ``hit`` says what is under a point
(a thumbnail, a PDF page's, a code block's Copy or scroll bar) for the view's clicks. A
question's PDFs are drawn above its images: a caption each (a PDF tag, its name, which pages
went as images and which as text) over the thumbnails of its pages sent as images.

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
    QFont,
    QFontMetrics,
    QPainter,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.widgets.markdown_view import (
    CodeGroup,
    SelectableMessage,
    code_block_groups,
    document_height,
    untrusted_document,
)
from desktop.widgets.message_decorations import (
    ShownCode,
    code_block_at,
    code_block_near,
    code_boxes,
    code_overflow,
    copy_chip_at,
    draw_document,
    offset_for_thumb,
    paint_decorations,
    scroll_bar_at,
    scroll_thumb,
    scroll_track,
)
from desktop.widgets.message_style import (
    BADGE,
    FOOTER_HEIGHT,
    GAP,
    PADDING_X,
    PADDING_Y,
    PAGE_THUMBNAIL,
    RADIUS,
    SPACING,
    USER_MIN_WIDTH,
    USER_SHARE,
    DocumentPlace,
    RenderedMessage,
    TranscriptColours,
    column,
    document_places,
    scaled_page_thumbnail,
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
    code_boxes: list[QRectF] = field(default_factory=list)  # in document coordinates
    code_groups: list[CodeGroup] = field(default_factory=list)
    code_overflows: dict[int, float] = field(default_factory=dict)  # how far a box scrolls sideways
    documents: list[DocumentPlace] = field(default_factory=list)  # from the text's left, below the author
    documents_height: int = 0


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
        self._footer_metrics = QFontMetrics(self.footer_font)
        self._caption_height = self._footer_metrics.height() + 6  # room for the PDF tag's box
        self._rows: dict[int, _RowCache] = {}
        self._renders: dict[int, int] = {}
        self._estimated: set[int] = set()  # rows whose size hint is a guess
        self._sizes: dict[int, QSize] = {}  # row: its size hint at ``width`` (exact or estimated)
        self._code_offsets: dict[int, dict[int, float]] = {}  # row: {code block: sideways offset}
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
        for cache in (self._rows, self._renders, self._sizes, self._code_offsets):
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
        page_thumbnails = (
            cached.rendered.page_thumbnails
            if cached is not None and cached.rendered.page_thumbnails
            else [scaled_page_thumbnail(image) for image in entry.document_thumbnails]
        )
        rendered = RenderedMessage(
            document,
            entry.text,
            thumbnails,
            entry.footer(),
            entry.finish_reason == "error",
            self._renders[row],
            [d.summary() for d in entry.documents],
            page_thumbnails,
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

    def _chrome_height(self, entry: TranscriptEntry, thumbnails: int = -1, documents: int = -1) -> int:
        """Everything in a row except the text (``thumbnails``: their height, -1: one row's;
        ``documents``: the PDFs' height, -1: a caption and one row of pages each)."""
        height = GAP + 2 * PADDING_Y + self._author_height + SPACING
        if documents < 0:
            documents = sum(
                self._caption_height + SPACING // 2 + (PAGE_THUMBNAIL + SPACING if d.images else 0)
                for d in entry.documents
            )
        height += documents
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
            cache.documents, cache.documents_height = document_places(entry, text_width, self._caption_height)
            text_height = math.ceil(document_height(document))
            if user:  # as wide as its text (right-aligned in the column)
                captions = [self._caption_width(caption) for caption in cache.rendered.documents]
                pages = [thumbnails_extent(place.pages).width() for place in cache.documents]
                content = max(
                    math.ceil(document.idealWidth()) + 2,
                    extent.width(),
                    *captions,
                    *pages,
                    USER_MIN_WIDTH - 2 * PADDING_X,
                )
                cache.bubble = min(text_width, content) + 2 * PADDING_X
            cache.code_groups = code_block_groups(document)
            cache.code_boxes = code_boxes(document)
            cache.code_overflows = {}  # measured when first asked (painting asks for those in sight)
            cache.width = width
            cache.height = self._chrome_height(entry, extent.height(), cache.documents_height) + text_height
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

    def _caption_width(self, caption: str) -> int:
        """How wide a PDF's caption is drawn: its tag, a gap, its text."""
        return self._badge_width() + 6 + self._footer_metrics.horizontalAdvance(caption) + 2

    def _badge_width(self) -> int:
        return self._footer_metrics.horizontalAdvance(BADGE) + 10

    def _text_origin(self, card: QRect, cache: _RowCache) -> QPoint:
        top = card.top() + PADDING_Y + self._author_height + SPACING + cache.documents_height
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
        self._paint_documents(painter, cache, x, y, inner_width)
        y += cache.documents_height
        for pixmap, place in zip(cache.rendered.thumbnails, cache.thumbnails, strict=False):
            target = place.translated(x, y)
            painter.drawPixmap(target.topLeft(), pixmap)
            painter.setPen(QPen(colours.bubble_border, 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(target), 6, 6)

        document = cache.rendered.document
        origin = self._text_origin(card_rect, cache)
        visible = QRectF(rect.intersected(self._view.viewport().rect()).translated(-origin))
        selecting = isinstance(self._view.indexWidget(index), SelectableMessage)
        code = []
        for n, (group, box) in enumerate(zip(cache.code_groups, cache.code_boxes, strict=True)):
            if box.intersects(visible):
                offset, overflow = self.code_scroll(row, n)
                # Open for selection, the editor draws the text, unscrolled.
                code.append(ShownCode(group, box, 0.0 if selecting else offset, overflow))
        painter.save()
        painter.translate(origin)
        paint_decorations(painter, document, colours, self.footer_font, code)
        if not selecting:
            draw_document(painter, document, colours.text, visible, code)
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

    def _paint_documents(self, painter: QPainter, cache: _RowCache, x: int, y: int, width: int) -> None:
        """Each PDF's caption (its tag, then what went how) and its pages' thumbnails."""
        colours = self.colours
        pixmaps = iter(cache.rendered.page_thumbnails)
        for caption, place in zip(cache.rendered.documents, cache.documents, strict=False):
            line = place.caption.translated(x, y)
            badge = QRect(line.left(), line.top() + 2, self._badge_width(), line.height() - 4)
            painter.setFont(self.footer_font)
            painter.setPen(QPen(colours.footer, 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(badge).adjusted(0.5, 0.5, -0.5, -0.5), 4, 4)
            painter.setPen(colours.author)
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, BADGE)
            text = QRect(badge.right() + 7, line.top(), max(1, width - badge.width() - 7), line.height())
            elided = self._footer_metrics.elidedText(caption, Qt.TextElideMode.ElideMiddle, text.width())
            painter.drawText(text, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, elided)
            for page in place.pages:
                pixmap = next(pixmaps, None)
                if pixmap is None:
                    break
                target = page.translated(x, y)
                painter.drawPixmap(target.topLeft(), pixmap)
                painter.setPen(QPen(colours.bubble_border, 1))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(QRectF(target), 4, 4)

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
        thumbnail, ("page", n) for the n-th PDF page sent as an image (all its PDFs' in order),
        ("copy_code", n) for its n-th code block's Copy, ("code_bar", n) for that block's
        sideways scroll bar (only a block wider than its box has one), or None."""
        cache = self._laid_out(row, self.width)
        card = self._card(row_rect, cache)
        top = QPoint(card.left() + PADDING_X, card.top() + PADDING_Y + self._author_height + SPACING)
        pages = [page for place in cache.documents for page in place.pages]
        for n, page in enumerate(pages):
            if page.translated(top).contains(point):
                return ("page", n)
        top += QPoint(0, cache.documents_height)
        for n, place in enumerate(cache.thumbnails):
            if place.translated(top).contains(point):
                return ("image", n)
        local = QPointF(point - self._text_origin(card, cache))
        block = copy_chip_at(cache.code_boxes, local, QFontMetrics(self.footer_font))
        if block is not None:
            return ("copy_code", block)
        block = scroll_bar_at(cache.code_boxes, local)
        return ("code_bar", block) if block is not None and self.code_scroll(row, block)[1] else None

    def code_block_near(self, row_rect: QRect, row: int, point: QPoint) -> int | None:
        """The row's code block under ``point``, or the nearest one (None without code)."""
        cache, origin = self._code_origin(row_rect, row)
        return code_block_near(cache.code_boxes, QPointF(point) - origin)

    # Code blocks scrolled sideways --------------------------------------------------------------
    def _code_origin(self, row_rect: QRect, row: int) -> tuple[_RowCache, QPointF]:
        """The row laid out, and where its document's origin is in the view."""
        cache = self._laid_out(row, self.width)
        return cache, QPointF(self._text_origin(self._card(row_rect, cache), cache))

    def code_groups(self, row: int) -> list[CodeGroup]:
        """The code blocks of row ``row``, in order."""
        return self._laid_out(row, self.width).code_groups

    def code_block_at(self, row_rect: QRect, row: int, point: QPoint) -> int | None:
        """The row's code block whose box holds ``point``, if any."""
        cache, origin = self._code_origin(row_rect, row)
        return code_block_at(cache.code_boxes, QPointF(point) - origin)

    def code_box(self, row_rect: QRect, row: int, block: int) -> QRect:
        """Where code block ``block`` of the row placed at ``row_rect`` is painted."""
        cache, origin = self._code_origin(row_rect, row)
        return cache.code_boxes[block].translated(origin).toAlignedRect()

    def code_scroll(self, row: int, block: int) -> tuple[float, float]:
        """(offset, overflow) of a code block: how far it is scrolled sideways, and how far it
        can be (0 when it fits its box)."""
        cache = self._laid_out(row, self.width)
        overflow = cache.code_overflows.get(block)
        if overflow is None:
            if block >= len(cache.code_boxes):
                return 0.0, 0.0
            document = cache.rendered.document
            overflow = code_overflow(document, cache.code_groups[block], cache.code_boxes[block])
            cache.code_overflows[block] = overflow
        return min(self._code_offsets.get(row, {}).get(block, 0.0), overflow), overflow

    def scroll_code(self, row: int, block: int, offset: float) -> bool:
        """Scroll a code block sideways to ``offset`` (clamped to what it can); return whether it
        moved (the view then repaints the row)."""
        before, overflow = self.code_scroll(row, block)
        offset = min(max(0.0, offset), overflow)
        self._code_offsets.setdefault(row, {})[block] = offset
        return offset != before

    def code_thumb(self, row_rect: QRect, row: int, block: int) -> tuple[QRectF, QRectF]:
        """(track, handle) of a code block's scroll bar, where they are painted."""
        cache, origin = self._code_origin(row_rect, row)
        box = cache.code_boxes[block]
        offset, overflow = self.code_scroll(row, block)
        return scroll_track(box).translated(origin), scroll_thumb(box, overflow, offset).translated(origin)

    def code_offset_for_thumb(self, row_rect: QRect, row: int, block: int, thumb_left: float) -> float:
        """The offset that puts the block's scroll bar handle at ``thumb_left`` (view x)."""
        cache, origin = self._code_origin(row_rect, row)
        overflow = self.code_scroll(row, block)[1]
        return offset_for_thumb(cache.code_boxes[block], overflow, thumb_left - origin.x())

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
