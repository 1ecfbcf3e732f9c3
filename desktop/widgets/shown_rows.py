"""Which rows of a long transcript are shown: the last ones, and earlier ones on demand.

A long conversation opens with only its last ``SHOWN_ROWS`` messages shown; the rows before
them are hidden (``QListView.setRowHidden``: Qt skips hidden rows when it places rows, so a
relayout asks only the shown rows for their size, whatever the conversation's length). The view
shows ``EARLIER_ROWS`` more when the person scrolls to the top, and any row a search hit or an
action needs. Rows keep their numbers: hiding changes nothing else.
"""

from __future__ import annotations

from PySide6.QtWidgets import QListView

SHOWN_ROWS = 120  # rows shown when a conversation opens (the last ones)
EARLIER_ROWS = 40  # rows shown above at a time when the person scrolls to the top


class ShownRows:
    """Keeps rows before ``first`` hidden in ``view`` (and tells its delegate, which then
    estimates no size for them)."""

    def __init__(self, view: QListView, delegate) -> None:
        self._view = view
        self._delegate = delegate
        self.first = 0

    def _rows(self) -> int:
        model = self._view.model()
        return model.rowCount() if model is not None else 0

    def _set_first(self, row: int) -> None:
        self.first = self._delegate.first_row = row

    def show_from(self, row: int) -> None:
        """Show rows ``row`` and later; hide the ones before it."""
        rows = self._rows()
        row = max(0, min(row, rows))
        if row == self.first:
            return
        before = self.first
        self._set_first(row)
        hide = row > before
        for r in range(min(before, row), min(max(before, row), rows)):
            self._view.setRowHidden(r, hide)

    def show_row(self, row: int) -> None:
        """Make sure ``row`` is shown (and everything after it)."""
        if row < self.first:
            self.show_from(row)

    def earlier_page(self) -> range:
        """The hidden rows to show next when the person scrolls to the top."""
        return range(max(0, self.first - EARLIER_ROWS), self.first)

    def reset(self) -> None:
        """The model was reset (Qt forgot its hidden rows): show the last ``SHOWN_ROWS``."""
        self._set_first(0)
        self.show_from(self._rows() - SHOWN_ROWS)

    def rows_inserted(self, first: int, last: int) -> None:
        """Rows came: hidden among hidden ones; a new message at the end (the view follows it
        there) hides again what the person had shown far above, beyond twice ``SHOWN_ROWS``."""
        rows = self._rows()
        if first < self.first:
            self._set_first(self.first + last - first + 1)
            for row in range(first, last + 1):
                self._view.setRowHidden(row, True)
        elif last == rows - 1 and rows - self.first > 2 * SHOWN_ROWS:
            self.show_from(rows - SHOWN_ROWS)

    def rows_removed(self, first: int, last: int) -> None:
        """Rows went (edit and resend, regenerate): keep at least the last ``SHOWN_ROWS`` shown."""
        if first < self.first:  # hidden rows went with them
            self._set_first(max(first, self.first - (last - first + 1)))
        self.show_from(min(self.first, self._rows() - SHOWN_ROWS))
