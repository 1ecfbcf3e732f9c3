"""The appearance setting: one palette and style sheet per scheme, the system's followed live."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from desktop import appearance
from desktop.appearance import apply_appearance, style_sheet
from desktop.qtmodels.transcript_model import TranscriptEntry, TranscriptModel
from desktop.theme_colours import DARK, LIGHT
from desktop.widgets.transcript_view import TranscriptView


@pytest.fixture(autouse=True)
def back_to_light(qapp):
    yield
    apply_appearance("light")


def _window_colour() -> str:
    return QApplication.palette().color(QPalette.ColorRole.Window).name()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_scheme_sets_the_palette_and_fills_every_token(scheme):
    colours = {"light": LIGHT, "dark": DARK}[scheme]
    assert apply_appearance(scheme) == scheme
    palette = QApplication.palette()
    assert palette.color(QPalette.ColorRole.Window) == QColor(colours.window)
    assert palette.color(QPalette.ColorRole.Base) == QColor(colours.base)
    assert palette.color(QPalette.ColorRole.Link) == QColor(colours.link)
    sheet = QApplication.instance().styleSheet()
    QApplication.instance().setStyleSheet("")  # the style under the sheet's
    assert QApplication.style().name().lower() == "fusion"  # off macOS: the palette applies
    QApplication.instance().setStyleSheet(sheet)
    assert not re.findall(r"@[a-z_]+", sheet)  # every @token became a colour or a path
    assert colours.user_bubble in sheet and "QPushButton:focus" in sheet


def test_macos_keeps_its_native_controls():
    sheet = style_sheet("dark", native=True)
    assert "QPushButton {" not in sheet and "QAbstractSpinBox" not in sheet
    assert "#sidebar" in sheet and DARK.sidebar in sheet


def test_system_is_followed_live(monkeypatch):
    apply_appearance("system")
    assert _window_colour() == LIGHT.window  # offscreen: the system's scheme is unknown
    monkeypatch.setattr(appearance, "resolved_scheme", lambda _setting: "dark")
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert _window_colour() == DARK.window


def test_a_chosen_scheme_ignores_the_system(monkeypatch):
    apply_appearance("light")
    monkeypatch.setattr(appearance, "resolved_scheme", lambda setting: "dark")
    QGuiApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert _window_colour() == LIGHT.window


def test_transcript_links_follow_a_switch(qtbot):
    model = TranscriptModel()
    view = TranscriptView()
    view.set_model(model)
    qtbot.addWidget(view)
    model.set_entries(
        [TranscriptEntry("assistant", "See [the docs](https://example.com/).", finish_reason="stop")]
    )
    view.show()

    def link_colour() -> str:
        block = view.rendered(0).document.begin()
        fragments = block.begin()
        while not fragments.atEnd():
            fragment = fragments.fragment()
            if fragment.charFormat().isAnchor():
                return fragment.charFormat().foreground().color().name()
            fragments += 1
        raise AssertionError("no link rendered")

    apply_appearance("light")
    assert link_colour() == LIGHT.link
    apply_appearance("dark")
    assert link_colour() == DARK.link
    assert view.delegate.colours.assistant_bubble == QColor(DARK.assistant_bubble)
