"""The app's colours: one table per colour scheme, and the ``QPalette`` made from it.

Every colour the app shows comes from here: the palette (what Qt's own widgets, dialogs, file
dialogs, menus, tooltips and links use) and the ``@name`` tokens of ``assets/style.qss`` (what
the palette cannot say: the sidebar, message cards, the notice bar, borders and focus rings).
Pairs meant to be read together reach WCAG's 4.5:1 (text) or 3:1 (control edges, focus rings);
``tests/desktop/test_appearance_contrast.py`` measures them from the pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from PySide6.QtGui import QColor, QPalette


@dataclass(frozen=True)
class Colours:
    """One scheme's colours (``#rrggbb``; ``rgba(...)`` where the style sheet blends)."""

    window: str  # dialogs, menus' surroundings, the status bar
    surface: str  # the transcript and the main window behind the cards
    base: str  # fields, lists, tables, menus
    panel: str  # the composer, the welcome panel, the sidebar's button
    alternate_base: str
    text: str
    secondary_text: str  # authors, stats, hints
    placeholder: str
    disabled_text: str
    button: str
    button_hover: str
    button_pressed: str
    control_border: str  # the edge of a field or button: >= 3:1 against window and base
    disabled_border: str
    separator: str  # decorative lines (no contrast needed)
    accent: str  # default buttons, Send, selection
    accent_hover: str
    accent_border: str  # an accent button's edge: >= 3:1 against the window
    accent_disabled: str
    on_accent: str  # text on accent
    on_accent_disabled: str  # text on a disabled accent button
    focus: str  # the focus ring: >= 3:1 against window, base and the sidebar
    highlight: str  # selected rows
    highlighted_text: str
    soft_selection: str  # the sidebar's selected conversation (text stays ``text``)
    hover: str
    link: str
    link_visited: str
    tooltip_base: str
    tooltip_text: str
    sidebar: str
    user_bubble: str
    assistant_bubble: str
    bubble_border: str
    current_border: str  # the current message's card (its focus ring)
    footer_text: str
    error_text: str
    code_background: str
    notice_background: str
    notice_border: str
    notice_text: str
    notice_button_border: str
    attachment_background: str
    attachment_border: str
    scroll_handle: str  # >= 3:1 against the surface
    scroll_handle_hover: str

    def tokens(self) -> dict[str, str]:
        return asdict(self)


LIGHT = Colours(
    window="#f2f2f0",
    surface="#f6f6f4",
    base="#ffffff",
    panel="#ffffff",
    alternate_base="#f6f6f4",
    text="#1d1d1b",
    secondary_text="#4b4b46",
    placeholder="#6e6e69",
    disabled_text="#9b9b96",
    button="#ffffff",
    button_hover="#f0f0ed",
    button_pressed="#e2e2de",
    control_border="#85857f",
    disabled_border="#cfcfca",
    separator="#deded9",
    accent="#2a56c0",
    accent_hover="#234aa8",
    accent_border="#2a56c0",
    accent_disabled="#b9c6ea",
    on_accent="#ffffff",
    on_accent_disabled="#ffffff",
    focus="#2a56c0",
    highlight="#2a56c0",
    highlighted_text="#ffffff",
    soft_selection="#d9e3f8",
    hover="#e4e4df",
    link="#1f4fbf",
    link_visited="#6a3bb5",
    tooltip_base="#2b2b29",
    tooltip_text="#f4f4f2",
    sidebar="#ecece8",
    user_bubble="#e4ecfb",
    assistant_bubble="#ffffff",
    bubble_border="#deded9",
    current_border="#2a56c0",
    footer_text="#66665f",
    error_text="#b3261e",
    code_background="#efefec",
    notice_background="#fff4e5",
    notice_border="#f0d9b5",
    notice_text="#5e410c",
    notice_button_border="#9a6b12",
    attachment_background="#f1f3f8",
    attachment_border="#c9d0e0",
    scroll_handle="#84847f",
    scroll_handle_hover="#6e6e69",
)

DARK = Colours(
    window="#26272b",
    surface="#1e1f22",
    base="#1b1c1f",
    panel="#2a2b2f",
    alternate_base="#232428",
    text="#e8e8e4",
    secondary_text="#c2c2bd",
    placeholder="#96968f",
    disabled_text="#6c6d72",
    button="#34353a",
    button_hover="#3d3e44",
    button_pressed="#47484f",
    control_border="#80818a",
    disabled_border="#3f4045",
    separator="#35363b",
    accent="#2d59c4",
    accent_hover="#3864d0",
    accent_border="#82a7ff",
    accent_disabled="#33405f",
    on_accent="#ffffff",
    on_accent_disabled="#8d96ad",
    focus="#82a7ff",
    highlight="#2d59c4",
    highlighted_text="#ffffff",
    soft_selection="#2f3f5e",
    hover="#2c2d32",
    link="#8fb0ff",
    link_visited="#c3a6ff",
    tooltip_base="#3a3b40",
    tooltip_text="#f0f0ec",
    sidebar="#1a1b1e",
    user_bubble="#2b3a55",
    assistant_bubble="#2a2b2f",
    bubble_border="#3a3b40",
    current_border="#82a7ff",
    footer_text="#ababa6",
    error_text="#f28b82",
    code_background="#1f2024",
    notice_background="#3d3322",
    notice_border="#6b5a36",
    notice_text="#f0d9a5",
    notice_button_border="#b8955a",
    attachment_background="#30333b",
    attachment_border="#555b6a",
    scroll_handle="#74757c",
    scroll_handle_hover="#8a8b92",
)

SCHEMES = {"light": LIGHT, "dark": DARK}


def colours_for(scheme: str) -> Colours:
    """The table for ``scheme`` ('light' or 'dark'; anything else is light)."""
    return SCHEMES.get(scheme, LIGHT)


def palette_for(colours: Colours) -> QPalette:
    """A complete palette from ``colours``: every role and the disabled group, so no colour of
    the system's palette (light on most desktops) shows through."""
    role = QPalette.ColorRole
    palette = QPalette()
    table = {
        role.Window: colours.window,
        role.WindowText: colours.text,
        role.Base: colours.base,
        role.AlternateBase: colours.alternate_base,
        role.ToolTipBase: colours.tooltip_base,
        role.ToolTipText: colours.tooltip_text,
        role.PlaceholderText: colours.placeholder,
        role.Text: colours.text,
        role.Button: colours.button,
        role.ButtonText: colours.text,
        role.BrightText: colours.on_accent,
        role.Highlight: colours.highlight,
        role.HighlightedText: colours.highlighted_text,
        role.Link: colours.link,
        role.LinkVisited: colours.link_visited,
        # Fusion draws bevels, frames and check marks from these.
        role.Light: colours.button_hover,
        role.Midlight: colours.button,
        role.Mid: colours.control_border,
        role.Dark: colours.control_border,
        role.Shadow: colours.control_border,
    }
    if hasattr(role, "Accent"):  # Qt 6.6+
        table[role.Accent] = colours.accent
    for which, value in table.items():
        palette.setColor(which, QColor(value))
    disabled = QPalette.ColorGroup.Disabled
    for which in (role.WindowText, role.Text, role.ButtonText, role.PlaceholderText):
        palette.setColor(disabled, which, QColor(colours.disabled_text))
    palette.setColor(disabled, role.Base, QColor(colours.window))
    palette.setColor(disabled, role.Button, QColor(colours.window))
    palette.setColor(disabled, role.Highlight, QColor(colours.disabled_border))
    palette.setColor(disabled, role.HighlightedText, QColor(colours.disabled_text))
    return palette
