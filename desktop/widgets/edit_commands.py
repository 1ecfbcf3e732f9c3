"""The Edit menu's commands (Undo, Redo, Cut, Copy, Paste, Select All) on the focused widget.

A text field, the composer and the transcript (``TranscriptView.copy`` copies the current
message) each have methods of these names; ``run`` calls the focused widget's, ``available``
says whether it would do something now (the menu greys out the rest while it is open).
"""

from __future__ import annotations

from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QTextEdit, QWidget

COMMANDS = ("undo", "redo", "cut", "copy", "paste", "selectAll")


def run(command: str, widget: QWidget | None) -> bool:
    """Do ``command`` (one of ``COMMANDS``) on ``widget``; False if it has no such command."""
    method = getattr(widget, command, None) if widget is not None else None
    if command not in COMMANDS or not callable(method):
        return False
    method()
    return True


def available(command: str, widget: QWidget | None) -> bool:
    """Whether ``command`` would do something on ``widget`` now (e.g. Cut needs a selection)."""
    if widget is None or not callable(getattr(widget, command, None)):
        return False
    if isinstance(widget, QLineEdit):
        editable = not widget.isReadOnly()
        state = {
            "undo": widget.isUndoAvailable(),
            "redo": widget.isRedoAvailable(),
            "cut": editable and widget.hasSelectedText(),
            "copy": widget.hasSelectedText(),
            "paste": editable,
        }
        return state.get(command, True)
    if isinstance(widget, QPlainTextEdit | QTextEdit):
        editable = not widget.isReadOnly()
        selected = widget.textCursor().hasSelection()
        document = widget.document()
        state = {
            "undo": editable and document.isUndoAvailable(),
            "redo": editable and document.isRedoAvailable(),
            "cut": editable and selected,
            "copy": selected,
            "paste": editable and widget.canPaste(),
        }
        return state.get(command, True)
    return True
