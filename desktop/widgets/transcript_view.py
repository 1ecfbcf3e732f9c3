"""Draws the transcript: a ``QListView`` over a ``TranscriptModel``, one painted card per row.

The view only draws (``MessageDelegate`` paints each message from a cached document) and
offers the message actions: an action bar over the row under the mouse or the current row, the
same actions in a context menu (or the Menu key), and Ctrl+C to copy the current message. From
the keyboard, focus entering the transcript lands on its last message (the arrow keys move),
and Tab goes on to that row's action buttons; while one has focus the bar stays on its row.
A screen reader reads each row's plain text (``TranscriptModel``'s accessible roles).
Double-clicking a message (or ``select_text``) opens its text in a read-only
``SelectableMessage`` over the row, for selecting part of it; Escape or another row closes it.
Clicking a thumbnail asks for the image larger (``image_requested``); clicking a code block's
Copy, or "Copy code" in the menu opened over a code block, is about that block
(``code_block_hint``). A code block wider than the card scrolls sideways inside it: its scroll
bar is dragged (or clicked), Shift+wheel or a sideways wheel over it scrolls it, and from the
keyboard Tab reaches each code block of the row (``CodeBlockFocus``) before the row's actions,
where Left/Right scroll it and Enter copies it. Scrolling a block repaints its row only.
A streaming answer changes its row many times a second; the view collects those changes and
redraws the changed row on a ~50 ms timer, so streaming costs the same in a long conversation
as in a short one.
While the person is at the bottom, the view follows the answer; if they scrolled up to read,
it stays where they are.

A long conversation shows only its last messages until the person scrolls up to earlier ones
(``desktop.widgets.shown_rows``).

The file is over 400 lines because the view is one Qt class whose overrides (mouse, keys, focus,
scrolling, layout, menus) all act on the same state (the hidden rows, the action bar's row, the
row open for selection, the code block dragged or focused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PySide6.QtCore import (
    Property,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFocusEvent,
    QKeyEvent,
    QKeySequence,
    QMouseEvent,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QMenu,
    QWidget,
)

from desktop.qtmodels.transcript_model import TranscriptModel
from desktop.widgets.code_block_focus import CodeBlockFocus
from desktop.widgets.markdown_view import SelectableMessage
from desktop.widgets.message_actions import ACTIONS, MessageActionBar, offered_actions
from desktop.widgets.message_delegate import MessageDelegate, RenderedMessage
from desktop.widgets.shown_rows import ShownRows

REFRESH_MS = 50
WHEEL_STEP = 48.0  # pixels a code block scrolls sideways per wheel notch (120 eighths of a degree)


@dataclass
class _CodeDrag:
    """A code block's scroll bar being dragged: its row and block, and where in the handle the
    mouse holds it."""

    row: int
    block: int
    grip: float


def _colour_property(name: str) -> Property:
    """A colour the style sheet can set (``qproperty-<name>``), handed to the delegate."""

    def read(view: TranscriptView) -> QColor:
        return getattr(view.delegate.colours, name)

    def write(view: TranscriptView, colour: QColor) -> None:
        setattr(view.delegate.colours, name, QColor(colour))
        view.delegate.restyle()

    return Property(QColor, read, write)


class TranscriptView(QListView):
    """Signals:
    action_requested(str, int): a message action was chosen (action, row).
    image_requested(int, int): a thumbnail was clicked (row, which image of the message).
    page_requested(int, int): a PDF page's thumbnail was clicked (row, which page image of the
        message's PDFs, in order).
    """

    action_requested = Signal(str, int)
    image_requested = Signal(int, int)
    page_requested = Signal(int, int)

    # Set from the style sheet: #transcript { qproperty-userBubble: #e4ecfb; … }
    userBubble = _colour_property("user_bubble")  # noqa: N815 - style sheet property names
    assistantBubble = _colour_property("assistant_bubble")  # noqa: N815
    bubbleBorder = _colour_property("bubble_border")  # noqa: N815
    currentBorder = _colour_property("current_border")  # noqa: N815
    textColour = _colour_property("text")  # noqa: N815
    authorColour = _colour_property("author")  # noqa: N815
    footerColour = _colour_property("footer")  # noqa: N815
    errorColour = _colour_property("error")  # noqa: N815
    codeBackground = _colour_property("code_background")  # noqa: N815
    scrollHandle = _colour_property("scroll_handle")  # noqa: N815
    focusRing = _colour_property("focus")  # noqa: N815

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("transcript")
        self.setAccessibleName("Messages")
        self._model: TranscriptModel | None = None
        self._dirty: set[int] = set()
        self._follow = True
        self._placing_rows = 0  # > 0: the scroll range moves because rows are placed, not the person
        self._selecting: QPersistentModelIndex | None = None  # the row whose text is open for selection
        self._placeholder_suppressed = False
        self.placeholder = QLabel(self.viewport())
        self.placeholder.setTextFormat(Qt.TextFormat.PlainText)
        self.placeholder.setObjectName("transcriptPlaceholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.delegate = MessageDelegate(self)
        # Made before the action bar: Tab reaches a row's code blocks, then its actions.
        self.code_focus = CodeBlockFocus(self.delegate.colours, self.viewport())
        self.code_focus.focused.connect(self._on_code_focus_focused)
        self.code_focus.scroll_requested.connect(self._on_code_focus_scroll_requested)
        self.code_focus.copy_requested.connect(self._on_code_focus_copy_requested)
        self.code_focus.dismissed.connect(self._on_code_focus_dismissed)
        self._code_drag: _CodeDrag | None = None
        self.action_bar = MessageActionBar(self.viewport())
        self.action_bar.action_triggered.connect(self.action_requested)
        self.action_bar.focused.connect(self._reveal_action_bar)
        self._hovered: int | None = None
        self._code_block: tuple[int, int] | None = None  # (row, block) a "Copy code" is about
        self.shown = ShownRows(self, self.delegate)  # rows before ``shown.first`` are hidden
        self.setItemDelegate(self.delegate)
        self.setUniformItemSizes(False)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListView.ResizeMode.Fixed)  # resizeEvent relays out when the width changes
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.viewport().setMouseTracking(True)  # the action bar follows the mouse
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.DefaultContextMenu)
        self.setSpacing(0)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)
        self.verticalScrollBar().rangeChanged.connect(self._on_range_changed)
        self.verticalScrollBar().valueChanged.connect(self._on_value_changed)

    # Public interface ---------------------------------------------------------------------------
    def set_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)

    def suppress_placeholder(self, suppressed: bool) -> None:
        """Hide the empty-transcript text while something else (the first-run panel) says more."""
        self._placeholder_suppressed = suppressed
        self._after_rows_changed()

    def _transcript(self) -> TranscriptModel:
        """The model, which the window sets right after building the view."""
        if self._model is None:
            raise RuntimeError("TranscriptView has no model yet (set_model)")
        return self._model

    def set_model(self, model: TranscriptModel) -> None:
        self._model = model
        self.setModel(model)
        model.rowsInserted.connect(self._on_rows_inserted)
        model.rowsRemoved.connect(self._on_rows_removed)
        model.modelReset.connect(self._on_model_reset)
        self.selectionModel().currentRowChanged.connect(self._on_current_row_changed)
        self.delegate.closeEditor.connect(self._on_delegate_close_editor)
        self._on_model_reset()

    def rendered(self, row: int) -> RenderedMessage:
        """Row ``row`` as it is painted: its document, thumbnails and footer."""
        self.flush()
        return self.delegate.rendered(row)

    def row_actions(self, row: int) -> MessageActionBar:
        """Make ``row`` current and bring it into view; return its action bar."""
        self.flush()
        self.shown.show_row(row)
        self.executeDelayedItemsLayout()
        index = self._transcript().index(row)
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.scrollTo(index)
        self._hovered = None
        self._place_action_bar()
        return self.action_bar

    def select_text(self, row: int) -> SelectableMessage | None:
        """Open row ``row``'s text for selecting with mouse and keyboard (double-click does this)."""
        self.close_text_selection()
        if self._model is None or not 0 <= row < self._model.rowCount() or self._model.entry(row).streaming:
            return None
        self.flush()
        self.shown.show_row(row)
        self.executeDelayedItemsLayout()
        index = self._model.index(row)
        self.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.openPersistentEditor(index)
        self._selecting = QPersistentModelIndex(index)
        editor = self.indexWidget(index)
        if not isinstance(editor, SelectableMessage):
            return None
        editor.setFocus()
        return editor

    def text_selection(self) -> SelectableMessage | None:
        """The open text selection, if any."""
        if self._selecting is None:
            return None
        editor = self.indexWidget(self.model().index(self._selecting.row(), 0))
        return editor if isinstance(editor, SelectableMessage) else None

    def close_text_selection(self) -> None:
        if self._selecting is not None:
            selecting, self._selecting = self._selecting, None
            if selecting.isValid():
                self.closePersistentEditor(selecting)
                self.setFocus()

    def first_shown_row(self) -> int:
        """The first row not hidden (earlier rows appear when the person scrolls up)."""
        return self.shown.first

    def show_earlier(self) -> None:
        """Show the next page of hidden rows above, laid out now, without moving the rows in view."""
        page = self.shown.earlier_page()
        if not page or self._model is None:
            return
        anchor = self._model.index(self.shown.first)
        self.executeDelayedItemsLayout()
        before = self.visualRect(anchor).top()
        for row in page:
            self.delegate.relayout_row(row)  # exact heights: nothing above moves later
        self.shown.show_from(page.start)
        self._follow = False  # the person is reading up, not following the end
        self._placing_rows += 1
        try:
            self.executeDelayedItemsLayout()
            bar = self.verticalScrollBar()
            bar.setValue(bar.value() + self.visualRect(anchor).top() - before)
        finally:
            self._placing_rows -= 1

    def scroll_to(self, row: int) -> None:
        """Bring a message into view (a search hit) and stop following the end."""
        if self._model is not None and 0 <= row < self._model.rowCount():
            self.shown.show_row(row)
            self._follow = False
            self.executeDelayedItemsLayout()
            self.scrollTo(self._model.index(row), QAbstractItemView.ScrollHint.PositionAtTop)

    def flush(self) -> None:
        """Redraw the rows marked as changed now (the timer calls this)."""
        self._timer.stop()
        dirty, self._dirty = sorted(self._dirty), set()
        if self._selecting is not None and self._selecting.row() in dirty:
            self.close_text_selection()  # the text changed under the selection
        relayout = False
        for row in dirty:
            if self._model is None or row >= self._model.rowCount():
                continue
            relayout |= self.delegate.relayout_row(row)
            index = self._model.index(row)
            super().dataChanged(index, index, [])
        if relayout:
            self.scheduleDelayedItemsLayout()
        if self.action_bar.row in dirty:
            self._place_action_bar()

    # Model changes ----------------------------------------------------------------------------------
    def dataChanged(  # noqa: N802 - Qt override
        self,
        first: QModelIndex | QPersistentModelIndex,
        last: QModelIndex | QPersistentModelIndex,
        roles: Sequence[int] = (),
    ) -> None:
        """Collect changed rows; they are redrawn together on the refresh timer."""
        self._dirty.update(range(first.row(), last.row() + 1))
        if not self._timer.isActive():
            self._timer.start()

    def _on_timer_timeout(self) -> None:
        self.flush()

    def _on_rows_inserted(self, _parent: QModelIndex, first: int, last: int) -> None:
        self.shown.rows_inserted(first, last)
        self.delegate.forget(first)
        self._follow = True
        self._after_rows_changed()

    def _on_rows_removed(self, _parent: QModelIndex, first: int, last: int) -> None:
        if self._selecting is not None and not self._selecting.isValid():
            self._selecting = None
        self.shown.rows_removed(first, last)
        self.delegate.forget(first)
        self._code_drag = None
        self._dirty = {r for r in self._dirty if r < first}
        self._after_rows_changed()

    def _on_model_reset(self) -> None:
        self._selecting = None  # Qt closed the editor with the rows
        self.shown.reset()
        self.delegate.forget(0)
        self._code_drag = None
        self._dirty.clear()
        self._hovered = None
        self._follow = True
        self._after_rows_changed()

    def _after_rows_changed(self) -> None:
        # Which row is last changed (only the last answer offers Regenerate/Continue): the action
        # bar is offered again, and the placeholder shows only while there is no row.
        rows = self._model.rowCount() if self._model is not None else 0
        self.viewport().update()
        self.placeholder.setVisible(rows == 0 and not self._placeholder_suppressed)
        self._place_action_bar()

    # Action bar, menu and keys ------------------------------------------------------------------------
    def _bar_row(self) -> int | None:
        if self.action_bar.has_focus():
            return self.action_bar.row  # the keyboard is on it: the mouse does not move it
        if self.code_focus.hasFocus():
            return self.code_focus.row
        if self._hovered is not None:
            return self._hovered
        current = self.currentIndex()
        return current.row() if current.isValid() else None

    def _place_action_bar(self) -> None:
        row = self._bar_row()
        rows = self._model.rowCount() if self._model is not None else 0
        if row is None or row >= rows:
            self.action_bar.hide()
            self.action_bar.row = None
            self._place_code_focus(None)
            return
        self.action_bar.show_for(row, self._transcript().entry(row), row == rows - 1)
        rect = self.visualRect(self._transcript().index(row))
        self.action_bar.setGeometry(self.delegate.action_bar_rect(rect, self.action_bar.sizeHint(), row))
        self.action_bar.raise_()
        self._place_code_focus(row)

    def _place_code_focus(self, row: int | None) -> None:
        """Lay the keyboard's code block stop over the code block it is on in ``row`` (none
        while the row streams or has no code)."""
        focus = self.code_focus
        groups = (
            [] if row is None or self._transcript().entry(row).streaming else self.delegate.code_groups(row)
        )
        if row is None or not groups:
            focus.hide()
            focus.row = None
            return
        scrollable = [self.delegate.code_scroll(row, n)[1] > 0 for n in range(len(groups))]
        focus.show_for(row, groups, scrollable)
        rect = self.visualRect(self._transcript().index(row))
        focus.setGeometry(self.delegate.code_box(rect, row, focus.block))
        focus.raise_()

    def _reveal_action_bar(self) -> None:
        self._reveal(self.action_bar)

    def _reveal(self, widget: QWidget) -> None:
        """Scroll so ``widget``, which has the keyboard focus, is in sight (a tall row's footer;
        the top of a code block taller than the view).

        Scrolling lays rows out exactly (their estimated heights are refined), which can move
        the widget again: so look again, a few times at most."""
        for _ in range(4):
            place, viewport = widget.geometry(), self.viewport().rect()
            shift = place.bottom() - viewport.bottom() + 8 if place.bottom() > viewport.bottom() else 0
            if place.top() - shift < viewport.top():
                shift = place.top() - viewport.top() - 8
            if not shift:
                return
            self._follow = False
            scroll = self.verticalScrollBar()
            scroll.setValue(scroll.value() + shift)
            self._place_action_bar()

    # Code blocks scrolled sideways ----------------------------------------------------------------
    def _scroll_code_by(self, row: int, block: int, delta: float) -> None:
        offset = self.delegate.code_scroll(row, block)[0]
        if self.delegate.scroll_code(row, block, offset + delta):
            self.viewport().update(self.visualRect(self._transcript().index(row)))

    def _drag_code(self, x: float) -> None:
        drag = self._code_drag
        if drag is None or self._model is None or drag.row >= self._model.rowCount():
            return
        rect = self.visualRect(self._model.index(drag.row))
        offset = self.delegate.code_offset_for_thumb(rect, drag.row, drag.block, x - drag.grip)
        if self.delegate.scroll_code(drag.row, drag.block, offset):
            self.viewport().update(rect)

    def _start_code_drag(self, row: int, block: int, x: float) -> None:
        """The mouse pressed a code block's scroll bar: hold its handle where it was pressed, or
        (pressed beside the handle) by its middle, moved under the mouse."""
        _track, thumb = self.delegate.code_thumb(self.visualRect(self._transcript().index(row)), row, block)
        on_thumb = thumb.left() <= x <= thumb.right()
        self._code_drag = _CodeDrag(row, block, x - thumb.left() if on_thumb else thumb.width() / 2)
        if not on_thumb:
            self._drag_code(x)

    def _wheel_code(self, event: QWheelEvent) -> bool:
        """Scroll the code block under the mouse sideways for a sideways wheel, or Shift+wheel;
        whether the event was the block's."""
        angle, pixels = event.angleDelta(), event.pixelDelta()
        if abs(angle.x()) > abs(angle.y()):
            delta = -(pixels.x() if pixels.x() else angle.x() * WHEEL_STEP / 120)
        elif event.modifiers() & Qt.KeyboardModifier.ShiftModifier and angle.y():
            delta = -(pixels.y() if pixels.y() else angle.y() * WHEEL_STEP / 120)
        else:
            return False
        point = event.position().toPoint()
        index = self.indexAt(point)
        if not index.isValid():
            return False
        row = index.row()
        block = self.delegate.code_block_at(self.visualRect(index), row, point)
        if block is None or not self.delegate.code_scroll(row, block)[1]:
            return False
        self._scroll_code_by(row, block, delta)
        event.accept()
        return True

    def _on_code_focus_focused(self) -> None:
        self._place_action_bar()
        self._reveal(self.code_focus)

    def _on_code_focus_scroll_requested(self, delta: float) -> None:
        if self.code_focus.row is not None:
            self._scroll_code_by(self.code_focus.row, self.code_focus.block, delta)

    def _on_code_focus_copy_requested(self) -> None:
        if self.code_focus.row is not None:
            self.copy_code_block(self.code_focus.row, self.code_focus.block)

    def _on_code_focus_dismissed(self) -> None:
        self.setFocus(Qt.FocusReason.OtherFocusReason)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        index = self.indexAt(event.position().toPoint())
        hovered = index.row() if index.isValid() else None
        if hovered != self._hovered:
            self._hovered = hovered
            self._place_action_bar()
        if self._code_drag is not None:
            self._drag_code(event.position().x())
            return
        hit = self._hit(event.position().toPoint()) if event.buttons() == Qt.MouseButton.NoButton else None
        clickable = hit is not None and hit[1] != "code_bar"
        self.viewport().setCursor(
            Qt.CursorShape.PointingHandCursor if clickable else Qt.CursorShape.ArrowCursor
        )
        super().mouseMoveEvent(event)

    # Clicks on a thumbnail or a code block's Copy ------------------------------------------------
    def _hit(self, point: QPoint) -> tuple[int, str, int] | None:
        """What is clickable at ``point``: (row, what, which); a streaming answer's scroll bars
        only (its Copy waits for the whole code)."""
        index = self.indexAt(point)
        if not index.isValid() or self._model is None:
            return None
        hit = self.delegate.hit(self.visualRect(index), index.row(), point)
        if hit is None or (hit[0] != "code_bar" and self._model.entry(index.row()).streaming):
            return None
        return (index.row(), *hit)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        hit = self._hit(event.position().toPoint()) if event.button() == Qt.MouseButton.LeftButton else None
        if hit is None:
            super().mousePressEvent(event)
            return
        row, what, which = hit
        if what == "image":
            self.image_requested.emit(row, which)
        elif what == "page":
            self.page_requested.emit(row, which)
        elif what == "code_bar":
            self._start_code_drag(row, which, event.position().x())
        else:
            self.copy_code_block(row, which)
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if self._code_drag is not None:
            self._drag_code(event.position().x())
            self._code_drag = None
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def copy_code_block(self, row: int, block: int) -> None:
        """Ask for "Copy code" of one code block of ``row`` (its Copy was clicked)."""
        self._code_block = (row, block)
        try:
            self.action_requested.emit("copy_code", row)
        finally:
            self._code_block = None

    def code_block_hint(self, row: int) -> int | None:
        """The code block of ``row`` a "Copy code" now is about: the one whose Copy was clicked,
        or the one under (or nearest to) where the context menu opened; None: all of them."""
        if self._code_block is not None and self._code_block[0] == row:
            return self._code_block[1]
        return None

    def _on_current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid() and current.row() < self.shown.first:  # Home, or typing a letter
            self.shown.show_row(current.row())
            self._follow = False
            self.executeDelayedItemsLayout()
            self.scrollTo(current)
        if self._selecting is not None and current.row() != self._selecting.row():
            self.close_text_selection()
        if self.code_focus.hasFocus() and current.row() != self.code_focus.row:
            self.setFocus(Qt.FocusReason.OtherFocusReason)  # Up/Down from a code block: the rows
        self._place_action_bar()

    def _on_delegate_close_editor(self, *_args: object) -> None:
        # Escape, Tab or focus moving elsewhere; closed once the delegate's event handling is done.
        QTimer.singleShot(0, self.close_text_selection)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        index = self.indexAt(event.position().toPoint())
        if index.isValid():
            self.select_text(index.row())
            return
        super().mouseDoubleClickEvent(event)

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.Leave and self._hovered is not None:
            self._hovered = None
            self._place_action_bar()
        return super().viewportEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt override
        # Rows are as wide as the view less a scroll bar, whether or not one is shown.
        bar = self.verticalScrollBar().sizeHint().width()
        if self.delegate.set_row_width(self.width() - 2 * self.frameWidth() - bar):
            self.scheduleDelayedItemsLayout()
        super().resizeEvent(event)

    def updateGeometries(self) -> None:  # noqa: N802 - Qt override: rows were placed again
        follow = self._follow
        self._placing_rows += 1
        try:
            super().updateGeometries()
        finally:
            self._placing_rows -= 1
            self._follow = follow
        if follow:
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())
        self.placeholder.setGeometry(self.viewport().rect())
        self._place_action_bar()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        if self._wheel_code(event):
            return
        bar = self.verticalScrollBar()
        if event.angleDelta().y() > 0 and bar.value() == bar.minimum() and self.shown.first > 0:
            self.show_earlier()  # already at the top (everything shown fits): show more
        super().wheelEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 - Qt override
        index = self.indexAt(event.pos())
        if not index.isValid():
            return
        row = index.row()
        block = None
        if event.reason() == QContextMenuEvent.Reason.Mouse:  # "Copy code": the block pointed at
            block = self.delegate.code_block_near(self.visualRect(index), row, event.pos())
        self._code_block = (row, block) if block is not None else None
        try:
            self.action_menu(row).exec(event.globalPos())
        finally:
            self._code_block = None

    def action_menu(self, row: int) -> QMenu:
        """The actions of ``row`` as a menu (what right-clicking a message shows)."""
        menu = QMenu(self)
        offered = offered_actions(self._transcript().entry(row), row == self._transcript().rowCount() - 1)
        for action, label, tooltip in ACTIONS:
            if action in offered:
                item = menu.addAction(label)
                item.setToolTip(tooltip)
                item.triggered.connect(lambda _checked=False, a=action: self.action_requested.emit(a, row))
        return menu

    def copy(self) -> bool:
        """Copy the current message (Ctrl+C, Edit ▸ Copy); False if there is none to copy."""
        current = self.currentIndex()
        if not current.isValid() or "copy" not in offered_actions(
            self._transcript().entry(current.row()), False
        ):
            return False
        self.action_requested.emit("copy", current.row())
        return True

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt override
        if event.matches(QKeySequence.StandardKey.Copy) and self.currentIndex().isValid():
            self.copy()
            return
        super().keyPressEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:  # noqa: N802 - Qt override
        rows = self._model.rowCount() if self._model is not None else 0
        if rows and not self.currentIndex().isValid() and event.reason() != Qt.FocusReason.MouseFocusReason:
            # The last message in view (the latest one while following the end): focus arriving,
            # from Tab or a window activated late, never moves what the person is reading.
            viewport = self.viewport().rect()
            current = self.indexAt(QPoint(viewport.center().x(), viewport.bottom()))
            if not current.isValid():
                current = self._transcript().index(rows - 1)
            auto_scroll = self.hasAutoScroll()
            self.setAutoScroll(False)  # Qt would scroll a partly shown row fully into view
            try:
                select = QItemSelectionModel.SelectionFlag.ClearAndSelect
                self.selectionModel().setCurrentIndex(current, select)
            finally:
                self.setAutoScroll(auto_scroll)
            if not viewport.intersects(self.visualRect(current)):
                self.scrollTo(current)
        super().focusInEvent(event)

    # Following the end --------------------------------------------------------------------------------
    def _on_value_changed(self, value: int) -> None:
        if self._placing_rows:
            return
        bar = self.verticalScrollBar()
        self._follow = value >= bar.maximum() - 4
        if value == bar.minimum() and self.shown.first > 0 and not self._follow:
            QTimer.singleShot(0, self.show_earlier)  # not while Qt is still scrolling

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)
