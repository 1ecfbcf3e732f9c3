"""Light and dark style sheets, and following the system's colour scheme."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

ASSETS = Path(__file__).resolve().parent.parent / "assets"


def resolved_scheme(appearance: str) -> str:
    """'light' or 'dark' for an appearance setting ('system' asks the OS)."""
    if appearance in ("light", "dark"):
        return appearance
    hints = QGuiApplication.styleHints()
    scheme = hints.colorScheme() if hints is not None else Qt.ColorScheme.Unknown
    return "dark" if scheme == Qt.ColorScheme.Dark else "light"


def style_sheet(scheme: str) -> str:
    name = "style-dark.qss" if scheme == "dark" else "style.qss"
    try:
        return (ASSETS / name).read_text(encoding="utf-8")
    except OSError:
        return ""


def apply_appearance(appearance: str) -> str:
    """Apply the style sheet for ``appearance`` to the running app; return the scheme used."""
    scheme = resolved_scheme(appearance)
    app = QApplication.instance()
    if app is not None:
        app.setStyleSheet(style_sheet(scheme))
    return scheme
