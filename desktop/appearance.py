"""The app's appearance: light, dark or the system's, applied as a palette and a style sheet.

``apply_appearance`` sets the ``QPalette`` of the scheme (``desktop.theme_colours``) on the
application, so every widget Qt draws (dialogs, file dialogs, message boxes, menus, pop-ups,
headers, scroll bars, tooltips, links) follows it, and fills the style sheet's ``@name``
tokens from the same table. Off macOS the Fusion style is used (it draws from the palette
and takes ``style-controls.qss``: 3:1 edges and a 2-px focus ring); macOS keeps its native
style and is asked for the same scheme (``QStyleHints.setColorScheme``, Qt 6.8+; with an older
Qt, where it cannot ask, Fusion is used there too) so its native controls match. With
"system", a change of the system's scheme is followed live (``QStyleHints.colorSchemeChanged``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QStyleHints
from PySide6.QtWidgets import QApplication

from desktop.theme_colours import Colours, colours_for, palette_for

ASSETS = Path(__file__).resolve().parent.parent / "assets"
_TOKEN = re.compile(r"@([a-z_]+)")


class _State:
    chosen = "system"  # the person's setting: 'system', 'light' or 'dark'
    applied: tuple[str, bool] | None = None  # (scheme, native) last put on the app
    following = False  # connected to the system's scheme changes
    fusion = False  # Fusion was set (style() is then wrapped by the style sheet's, unnamed)
    applying = False


def native_style() -> bool:
    """Whether the platform's own style is kept: on macOS, where Qt can ask the system for the
    chosen scheme (6.8+), so native controls match the palette; elsewhere Fusion draws from it."""
    return sys.platform == "darwin" and hasattr(QStyleHints, "setColorScheme")


def _request_scheme(appearance: str) -> None:
    """Ask the platform for the chosen scheme (native controls, title bars), or for the
    system's own with 'system' (Qt 6.8+; earlier versions have no such request)."""
    hints = QGuiApplication.styleHints()
    if hints is None or not hasattr(hints, "setColorScheme"):
        return
    wanted = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}.get(
        appearance, Qt.ColorScheme.Unknown
    )
    hints.setColorScheme(wanted)


def resolved_scheme(appearance: str) -> str:
    """'light' or 'dark' for an appearance setting ('system' asks the OS)."""
    if appearance in ("light", "dark"):
        return appearance
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hints is not None else Qt.ColorScheme.Unknown
    return "dark" if scheme == Qt.ColorScheme.Dark else "light"


def _fill(template: str, colours: Colours) -> str:
    tokens = {**colours.tokens(), "assets": ASSETS.as_posix()}
    return _TOKEN.sub(lambda match: tokens.get(match.group(1), match.group(0)), template)


def _read(name: str) -> str:
    try:
        return (ASSETS / name).read_text(encoding="utf-8")
    except OSError:
        return ""


def style_sheet(scheme: str, native: bool | None = None) -> str:
    """The app's style sheet for ``scheme``: its own widgets, and (unless ``native``) the
    Fusion controls' edges and focus rings, with the scheme's colours."""
    native = native_style() if native is None else native
    template = ("" if native else _read("style-controls.qss") + "\n") + _read("style.qss")
    return _fill(template, colours_for(scheme))


def _on_system_scheme_changed(*_args) -> None:
    if _State.chosen == "system" and not _State.applying:
        apply_appearance("system")


def _follow_system() -> None:
    hints = QGuiApplication.styleHints()
    if _State.following or hints is None:
        return
    hints.colorSchemeChanged.connect(_on_system_scheme_changed)
    _State.following = True


def apply_appearance(appearance: str) -> str:
    """Apply ``appearance`` ('system', 'light' or 'dark') to the running app: style, palette and
    style sheet; with 'system', follow the system's scheme from now on. Return the scheme used."""
    _State.chosen = appearance
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return resolved_scheme(appearance)
    _State.applying = True
    try:
        _request_scheme(appearance)
        scheme = resolved_scheme(appearance)
        native = native_style()
        if _State.applied == (scheme, native):
            return scheme
        if not native and not _State.fusion:
            app.setStyle("Fusion")  # resets the palette: set it after
            _State.fusion = True
        app.setPalette(palette_for(colours_for(scheme)))
        app.setStyleSheet(style_sheet(scheme, native))
        _State.applied = (scheme, native)
    finally:
        _State.applying = False
    _follow_system()
    return scheme
