"""Every dialog and the window are readable in light and in dark: contrast measured from pixels.

Each window is rendered offscreen (``QWidget.grab``) under each appearance; for every enabled
widget that shows text, the text's contrast with its background is measured from the pixels
(``tests.support.contrast``) and must reach WCAG's 4.5:1; the edges of buttons, fields, spin
boxes, combo boxes and check boxes must reach 3:1 against what surrounds them, and a control
taking focus must change a ring all round it by 3:1 (a visible focus ring). Disabled controls
are exempt. The minimum per window and scheme is printed (``pytest -s``). Long because every
dialog the app shows is opened and measured here, in both schemes, one test each."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, QPoint, QRect, Qt, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QDialog,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from desktop import notices
from desktop.appearance import apply_appearance
from desktop.controllers.model_library import ModelLibrary
from desktop.dialogs import model_dialogs
from desktop.dialogs.license_dialog import LicenseDialog
from desktop.dialogs.model_manager_dialog import ModelManagerDialog
from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.preferences import ChatDefaults
from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.widgets.message_style import FOOTER_HEIGHT, GAP, MARGIN_X, PADDING_Y
from desktop.widgets.model_menu import ModelMenu
from desktop.widgets.transcript_view import TranscriptView
from models.chats.store import ConversationStore
from models.chats.turns import AnswerStats
from models.inference.prompt_cache_keeper import PromptCacheKeeper
from tests.support import contrast
from tests.support.stored_chats import make_exchange
from tests.support.window_helpers import make_window, wait_listed

AUTHOR_HEIGHT = 14  # the "You"/"Llama" line of a card (12-px demi-bold)
TEXT = 4.5
CONTROL = 3.0
SCHEMES = ("light", "dark")
# Pop-ups (menus, combo lists, tooltips) ask offscreen Qt for what it cannot do; harmless.
popup_warnings = pytest.mark.qt_log_ignore("This plugin does not support (raise|grabbing)")


@pytest.fixture(params=SCHEMES)
def scheme(request, qapp):
    apply_appearance(request.param)
    yield request.param
    apply_appearance("light")


def _mapped(widget: QWidget, rect: QRect, window: QWidget) -> QRect:
    """``rect`` of ``widget`` in ``window``'s coordinates."""
    return QRect(widget.mapTo(window, rect.topLeft()), rect.size())


def _settle(widget: QWidget, qtbot) -> None:
    widget.show()
    qtbot.waitExposed(widget)
    QApplication.processEvents()


def _report(name: str, scheme: str, failures: list[str], texts: list[float], edges: list[float]) -> None:
    text = f"text min {min(texts):5.2f}:1 ({len(texts)})" if texts else "text -"
    edge = f"edges min {min(edges):5.2f}:1 ({len(edges)})" if edges else "edges -"
    print(f"\nCONTRAST {name:<26} {scheme:<5} {text}  {edge}")
    for line in failures:
        print("   ", line)


def check_window(window: QWidget, name: str, scheme: str, extra=(), edges: bool = True) -> None:
    """Assert every text in ``window`` (plus ``extra`` (name, rect) pairs) reaches 4.5:1 and
    every control's edge 3:1."""
    image = contrast.pixels(window.grab().toImage())
    failures, measured, edge_ratios = [], [], []
    items = [(label, rect) for label, rect, _w in contrast.text_widgets(window)] + list(extra)
    assert items, f"{name}: nothing to measure"
    for label, rect in items:
        found = contrast.text_contrast(image, rect)
        if found is None:
            failures.append(f"{label}: no text seen in {rect}")
            continue
        measured.append(found.ratio)
        if found.ratio < TEXT:
            failures.append(f"{label}: {found.ratio:.2f}:1 ({found.foreground} on {found.background})")
    if edges:
        for label, rect, _w in contrast.control_edges(window):
            found = contrast.boundary_contrast(image, rect)
            if found is None:
                continue
            edge_ratios.append(found.ratio)
            if found.ratio < CONTROL:
                colours = f"{found.foreground} by {found.background}"
                failures.append(f"edge of {label}: {found.ratio:.2f}:1 ({colours})")
    _report(name, scheme, failures, measured, edge_ratios)
    assert not failures, f"{name} in {scheme}: " + "; ".join(failures)


@pytest.fixture
def library(qtbot):
    library = ModelLibrary(memory_bytes=int(128e9))
    wait_listed(qtbot, library, lambda: bool(library.listings))
    yield library
    library.shutdown()


def test_settings_dialog(qtbot, scheme):
    dialog = SettingsDialog(ChatDefaults(), kv_caches=PromptCacheKeeper())
    qtbot.addWidget(dialog)
    _settle(dialog, qtbot)
    check_window(dialog, "Settings", scheme)


def test_conversation_settings_dialog(qtbot, scheme):
    dialog = SettingsDialog(ChatDefaults(system_prompt="Answer briefly."), conversation_title="Photos")
    qtbot.addWidget(dialog)
    _settle(dialog, qtbot)
    check_window(dialog, "Conversation Settings", scheme)


@popup_warnings
def test_appearance_pop_up(qtbot, scheme):
    dialog = SettingsDialog(ChatDefaults())
    qtbot.addWidget(dialog)
    _settle(dialog, qtbot)
    dialog.appearance.showPopup()
    view = dialog.appearance.view()
    popup = view.window()
    qtbot.waitUntil(popup.isVisible)
    QApplication.processEvents()
    model = view.model()
    indexes = [model.index(row, 0) for row in range(model.rowCount())]
    items = [(f"item {i.data()!r}", _mapped(view.viewport(), view.visualRect(i), popup)) for i in indexes]
    check_window(popup, "Appearance pop-up", scheme, extra=items, edges=False)
    dialog.appearance.hidePopup()


def test_model_manager_dialog(qtbot, scheme, library):
    dialog = ModelManagerDialog(library)
    qtbot.addWidget(dialog)
    _settle(dialog, qtbot)
    dialog.table.selectRow(1)
    QApplication.processEvents()
    check_window(dialog, "Manage Models", scheme)


@popup_warnings
def test_model_menu(qtbot, scheme, library):
    menu = ModelMenu(library)
    qtbot.addWidget(menu)
    menu.popup(QPoint(20, 20))
    qtbot.waitExposed(menu)
    QApplication.processEvents()
    check_window(menu, "Model menu", scheme, extra=[(n, r) for n, r, _ in contrast.menu_items(menu)])
    menu.hide()


def test_license_dialog(qtbot, scheme):
    dialog = LicenseDialog()
    qtbot.addWidget(dialog)
    _settle(dialog, qtbot)
    check_window(dialog, "License", scheme)


def test_message_box(qtbot, scheme):
    box = QMessageBox(QMessageBox.Icon.Warning, "This model won't fit", "It needs more memory.")
    box.setInformativeText("Loading it anyway may make the system swap heavily.")
    box.addButton("Load Anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    qtbot.addWidget(box)
    _settle(box, qtbot)
    check_window(box, "QMessageBox", scheme)


def test_about_box(qtbot, scheme):
    parent = QWidget()
    qtbot.addWidget(parent)
    seen: list[str] = []

    def measure() -> None:
        box = QApplication.activeModalWidget()
        try:
            assert isinstance(box, QMessageBox)
            QApplication.processEvents()
            check_window(box, "About", scheme)
            seen.append("ok")
        finally:
            if box is not None:
                box.done(0)

    QTimer.singleShot(0, measure)
    model_dialogs.show_about(parent)
    assert seen == ["ok"]


def test_file_dialog(qtbot, scheme, tmp_path):
    for name in ("photo one.png", "photo two.jpg", "notes"):
        (tmp_path / name).write_bytes(b"x")
    dialog = QFileDialog(None, "Attach images", str(tmp_path), "Images (*.png *.jpg)")
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    dialog.resize(760, 460)
    qtbot.addWidget(dialog)
    _settle(dialog, qtbot)
    view = dialog.findChild(QWidget, "listView")
    qtbot.waitUntil(lambda: view.model().rowCount(view.rootIndex()) >= 2, timeout=10_000)
    QApplication.processEvents()
    check_window(dialog, "File dialog", scheme)


def test_main_window(qtbot, scheme, tmp_path, fake_engines):
    store = ConversationStore(tmp_path / "data")
    for _ in range(2):
        make_exchange(store, turns=1)
    store.close()
    window = make_window(qtbot, tmp_path, engine_factory=fake_engines)
    wait_listed(qtbot, window.library, lambda: bool(window.library.listings))
    apply_appearance(scheme)  # the window applied its own setting ("system") when it opened
    window.resize(1180, 780)
    window.notice.show_message("notes.txt is not a supported image.", notices.COMPOSER, "Undo", lambda: None)
    window.notice.show_message("Cannot reach the Hub at https://huggingface.co.", notices.HUB)
    QApplication.processEvents()
    sidebar = window.sidebar.view
    qtbot.waitUntil(lambda: sidebar.model().rowCount() == 2)
    title_height = sidebar.fontMetrics().height()
    details = []  # each conversation's second line ("just now"), in smaller, lighter type
    for row in range(sidebar.model().rowCount()):
        cell = sidebar.visualRect(sidebar.model().index(row, 0))
        detail = cell.adjusted(10, 6 + title_height + 2, -10, -4)
        details.append((f"sidebar detail {row}", _mapped(sidebar.viewport(), detail, window)))
    check_window(window, "Main window", scheme, extra=details)


def test_transcript_cards_code_and_links(qtbot, scheme):
    model = TranscriptModel()
    view = TranscriptView()
    view.set_model(model)
    view.resize(800, 600)
    qtbot.addWidget(view)
    model.set_entries(
        [
            TranscriptEntry("user", "What is in this photo?"),
            TranscriptEntry(
                "assistant",
                "A red square on a white table.",
                finish_reason="stop",
                stats=AnswerStats(generation_tokens=74, generation_tps=41.2),
            ),
            TranscriptEntry("assistant", "```\nprint('code in a block')\n```", finish_reason="stop"),
            TranscriptEntry("assistant", "[A link to the docs](https://example.com/)", finish_reason="stop"),
        ]
    )
    _settle(view, qtbot)
    view.executeDelayedItemsLayout()
    view.viewport().repaint()
    extra = []
    for row, what in enumerate(("question", "answer", "code block", "link")):
        index = model.index(row, 0)
        body = view.delegate.body_rect(view.visualRect(index), row)
        extra.append((f"card {what}", _mapped(view.viewport(), body, view)))
        row_rect = view.visualRect(index)
        author = QRect(body.left(), row_rect.top() + GAP // 2 + PADDING_Y, 60, AUTHOR_HEIGHT)
        extra.append((f"card {what} author", _mapped(view.viewport(), author, view)))
    answer = view.visualRect(model.index(1, 0))
    footer = QRect(
        view.delegate.body_rect(answer, 1).left(),
        answer.bottom() - (GAP - GAP // 2) - PADDING_Y - FOOTER_HEIGHT,
        160,
        FOOTER_HEIGHT,
    )
    extra.append(("card footer", _mapped(view.viewport(), footer, view)))
    check_window(view, "Transcript", scheme, extra=extra, edges=False)


@popup_warnings
def test_tooltips_checkboxes_and_label_links(qtbot, scheme):
    probe = QWidget()
    layout = QVBoxLayout(probe)
    link = QLabel('Read <a href="https://example.com">the Llama 4 license</a> first.')
    link.setObjectName("probeLink")
    layout.addWidget(link)
    layout.addWidget(QCheckBox("Keep saved KV caches"))
    layout.addWidget(QLineEdit("typed text"))
    qtbot.addWidget(probe)
    _settle(probe, qtbot)
    image = contrast.pixels(probe.grab().toImage())
    # The link's own words: measured against the label's background, the words around excluded.
    words = link.fontMetrics().horizontalAdvance("Read ")
    rect = QRect(link.mapTo(probe, QPoint(words + 2, 0)), link.size()).adjusted(0, 0, -words - 60, 0)
    found = contrast.text_contrast(image, rect)
    assert found is not None and found.ratio >= TEXT, f"label link in {scheme}: {found}"
    check_window(probe, "Probe (check box, field)", scheme)

    QToolTip.showText(probe.mapToGlobal(QPoint(10, 10)), "A quantized KV cache holds more", probe)
    tip = next(w for w in QApplication.topLevelWidgets() if w.objectName() == "qtooltip_label")
    qtbot.waitUntil(tip.isVisible)
    QApplication.processEvents()
    check_window(tip, "Tooltip", scheme, edges=False)
    QToolTip.hideText()


FOCUSABLE = ("button", "spin box", "line edit")


@pytest.mark.parametrize("kind", FOCUSABLE)
def test_focus_ring_is_visible(qtbot, scheme, kind):
    window = QDialog()
    layout = QVBoxLayout(window)
    other = QPushButton("Elsewhere")
    layout.addWidget(other)
    widget = {"button": lambda: QPushButton("Download"), "spin box": QSpinBox, "line edit": QLineEdit}[kind]()
    layout.addWidget(widget)
    qtbot.addWidget(window)
    _settle(window, qtbot)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    other.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(other.hasFocus)
    before = contrast.pixels(window.grab().toImage())
    widget.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(widget.hasFocus)
    after = contrast.pixels(window.grab().toImage())
    rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    changed, perimeter = contrast.focus_change(before, after, rect)
    print(f"\nFOCUS {kind:<10} {scheme:<5} {changed} px changed by 3:1 (perimeter {perimeter})")
    # At least a 1-px ring all round changes by 3:1 (rounded corners cut a few pixels off).
    assert changed >= 0.9 * perimeter, f"{kind} in {scheme}: focus changes {changed} px by 3:1, not a ring"


def test_current_message_ring_is_visible(qtbot, scheme):
    model = TranscriptModel()
    view = TranscriptView()
    view.set_model(model)
    view.resize(700, 400)
    qtbot.addWidget(view)
    model.set_entries(
        [
            TranscriptEntry("user", "A question"),
            TranscriptEntry("assistant", "An answer", finish_reason="stop"),
        ]
    )
    _settle(view, qtbot)
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    view.setFocus()
    view.executeDelayedItemsLayout()
    view.clearSelection()
    view.setCurrentIndex(QModelIndex())
    before = contrast.pixels(view.grab().toImage())
    view.setCurrentIndex(model.index(1, 0))
    QApplication.processEvents()
    after = contrast.pixels(view.grab().toImage())
    row = view.visualRect(model.index(1, 0))
    card = _mapped(view.viewport(), row.adjusted(MARGIN_X, GAP // 2, -MARGIN_X, -(GAP - GAP // 2)), view)
    changed, perimeter = contrast.focus_change(before, after, card, pad=1)
    print(f"\nFOCUS {'message':<10} {scheme:<5} {changed} px changed by 3:1 (perimeter {perimeter})")
    assert changed >= 0.9 * perimeter, f"current message in {scheme}: {changed} px changed by 3:1, not a ring"


def test_scroll_bar_handle_stands_out(qtbot, scheme):
    model = TranscriptModel()
    view = TranscriptView()
    view.set_model(model)
    view.resize(600, 300)
    qtbot.addWidget(view)
    model.set_entries([TranscriptEntry("user", f"Question {n} " * 20) for n in range(12)])
    _settle(view, qtbot)
    view.executeDelayedItemsLayout()
    bar = view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.isVisible() and bar.maximum() > 0)
    bar.setValue(bar.maximum() // 2)
    QApplication.processEvents()
    image = contrast.pixels(view.grab().toImage())
    found = contrast.fill_contrast(image, _mapped(bar, bar.rect(), view))  # the handle on its track
    shown = f"{found.ratio:5.2f}:1 ({found.foreground} on {found.background})" if found else "none seen"
    print(f"\nCONTRAST {'Scroll bar handle':<26} {scheme:<5} {shown}")
    assert found is not None and found.ratio >= CONTROL, f"scroll bar in {scheme}: {found}"


def test_a_code_blocks_scroll_bar_and_focus_ring_stand_out(qtbot, scheme):
    model = TranscriptModel()
    view = TranscriptView()
    view.set_model(model)
    view.resize(700, 400)
    qtbot.addWidget(view)
    wide = "".join(chr(ord("a") + n % 26) for n in range(300))
    model.set_entries([TranscriptEntry("assistant", f"```\n{wide}\n```\n", finish_reason="stop")])
    _settle(view, qtbot)
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow)
    view.rendered(0)
    view.scheduleDelayedItemsLayout()
    view.executeDelayedItemsLayout()
    view.setFocus()
    view.setCurrentIndex(model.index(0, 0))
    QApplication.processEvents()
    before = contrast.pixels(view.grab().toImage())
    row = view.visualRect(model.index(0, 0))
    _track, handle = view.delegate.code_thumb(row, 0, 0)
    box = view.delegate.code_box(row, 0, 0)
    handle_px = _mapped(view.viewport(), handle.toAlignedRect(), view).center()
    fill_px = _mapped(view.viewport(), box, view).topLeft() + QPoint(12, 8)
    found = float(contrast.ratio(before[handle_px.y(), handle_px.x()], before[fill_px.y(), fill_px.x()]))
    print(f"\nCONTRAST {'Code scroll bar handle':<26} {scheme:<5} {found:5.2f}:1")
    assert found >= CONTROL, f"code scroll bar in {scheme}: {found:.2f}:1"

    view.code_focus.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(view.code_focus.hasFocus)
    after = contrast.pixels(view.grab().toImage())
    changed, perimeter = contrast.focus_change(before, after, _mapped(view.viewport(), box, view), pad=1)
    print(f"\nFOCUS {'code block':<10} {scheme:<5} {changed} px changed by 3:1 (perimeter {perimeter})")
    assert changed >= 0.9 * perimeter, f"code block in {scheme}: {changed} px changed by 3:1, not a ring"
