"""Copying one code block (its Copy, or the menu opened over it) or all of them, with "Copied"
said in the status line; a clicked thumbnail opens larger and Esc closes it."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QContextMenuEvent, QGuiApplication
from PySide6.QtWidgets import QApplication

from desktop.dialogs.image_preview import ImagePreview
from desktop.qtmodels.transcript_model import TranscriptEntry
from tests.desktop.widgets.test_chat_pane import pane  # noqa: F401 - the chat column fixture
from tests.support.stored_chats import picture

ANSWER = "First:\n\n```python\nprint(1)\n```\n\nThen:\n\n```sh\nls -la\n```\n\nDone.\n"


def _answer(chat) -> int:
    chat.show()
    chat.resize(900, 700)
    model = chat.transcript_model
    model.set_entries(
        [TranscriptEntry("user", "code?"), TranscriptEntry("assistant", ANSWER, finish_reason="stop")]
    )
    chat.transcript.executeDelayedItemsLayout()
    return 1


def _find(view, row: int, wanted) -> QPoint:
    """A point of ``row`` where the delegate finds ``wanted`` (a thumbnail, a Copy)."""
    rect = view.visualRect(view.model().index(row))
    for y in range(rect.top(), rect.bottom(), 2):
        for x in range(rect.left(), rect.right(), 2):
            if view.delegate.hit(rect, row, QPoint(x, y)) == wanted:
                return QPoint(x, y)
    raise AssertionError(f"{wanted} is not in row {row}")


def test_a_code_blocks_copy_copies_that_block_and_says_so(pane, qtbot):  # noqa: F811
    row = _answer(pane)
    view = pane.transcript
    with qtbot.waitSignal(pane.status) as said:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_find(view, row, ("copy_code", 1)))
    assert QGuiApplication.clipboard().text() == "ls -la"
    assert said.args == ["Copied the code block"]
    with qtbot.waitSignal(pane.status) as said:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_find(view, row, ("copy_code", 0)))
    assert QGuiApplication.clipboard().text() == "print(1)"


def test_a_wide_scrolled_block_copies_its_exact_code(pane, qtbot):  # noqa: F811
    code = "<b>&amp;</b>" + "".join(chr(ord("a") + n % 26) for n in range(400)) + "\n\tindented <i>"
    pane.show()
    pane.resize(900, 700)
    model = pane.transcript_model
    answer = TranscriptEntry("assistant", f"```html\n{code}\n```\n", finish_reason="stop")
    model.set_entries([TranscriptEntry("user", "code?"), answer])
    view = pane.transcript
    view.executeDelayedItemsLayout()
    assert view.delegate.scroll_code(1, 0, 10_000)  # scrolled to its end: copying is the same
    with qtbot.waitSignal(pane.status):
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_find(view, 1, ("copy_code", 0)))
    assert QGuiApplication.clipboard().text() == code


class _Choosing:
    """A context menu that, shown, chooses "Copy code" at once (no modal menu in a test)."""

    def __init__(self, menu):
        self.menu = menu

    def exec(self, _where) -> None:
        next(a for a in self.menu.actions() if a.text() == "Copy code").trigger()


def test_copy_code_in_the_menu_copies_the_block_it_was_opened_over(pane, qtbot, monkeypatch):  # noqa: F811
    row = _answer(pane)
    view = pane.transcript
    menu = view.action_menu
    monkeypatch.setattr(view, "action_menu", lambda r: _Choosing(menu(r)))
    over_first = _find(view, row, ("copy_code", 0)) + QPoint(-100, 30)  # on its code line
    event = QContextMenuEvent(
        QContextMenuEvent.Reason.Mouse, over_first, view.viewport().mapToGlobal(over_first)
    )
    with qtbot.waitSignal(pane.status) as said:
        QApplication.sendEvent(view.viewport(), event)
    assert QGuiApplication.clipboard().text() == "print(1)" and said.args == ["Copied the code block"]

    with qtbot.waitSignal(pane.status) as said:  # the action bar (and the keyboard): every block
        view.action_requested.emit("copy_code", row)
    assert QGuiApplication.clipboard().text() == "print(1)\n\nls -la"
    assert said.args == ["Copied 2 code blocks"]


def test_a_clicked_thumbnail_opens_larger_and_esc_closes_it(pane, qtbot):  # noqa: F811
    pane.show()
    pane.resize(900, 700)
    big = picture(size=(1200, 800), name="big.png")
    entry = TranscriptEntry("user", "look", images=(big,))
    pane.transcript_model.set_entries([entry])
    view = pane.transcript
    view.executeDelayedItemsLayout()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=_find(view, 0, ("image", 0)))

    def preview() -> ImagePreview | None:
        shown = [w for w in QApplication.topLevelWidgets() if isinstance(w, ImagePreview) and w.isVisible()]
        return shown[0] if shown else None

    qtbot.waitUntil(lambda: preview() is not None, timeout=10_000)
    dialog = preview()
    assert dialog.windowTitle() == "big.png"
    assert dialog.shown_size().width() > 300  # larger than the 120-px thumbnail
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: preview() is None, timeout=5_000)
