"""The Edit menu's commands on the focused widget: what each would do now, and doing it."""

from __future__ import annotations

from PySide6.QtWidgets import QLineEdit, QPlainTextEdit, QPushButton

from desktop.widgets import edit_commands


def test_commands_follow_what_the_widget_can_do_now(qtbot):
    field = QLineEdit()
    qtbot.addWidget(field)
    assert not edit_commands.available("undo", field) and not edit_commands.available("copy", field)
    field.setText("hello")
    field.selectAll()
    assert edit_commands.available("cut", field) and edit_commands.available("copy", field)
    field.setReadOnly(True)
    assert not edit_commands.available("cut", field) and not edit_commands.available("paste", field)

    text = QPlainTextEdit()
    qtbot.addWidget(text)
    qtbot.keyClicks(text, "typed")
    assert edit_commands.available("undo", text) and not edit_commands.available("copy", text)
    assert edit_commands.run("undo", text) and text.toPlainText() == ""

    button = QPushButton("Send")
    qtbot.addWidget(button)
    assert not any(edit_commands.available(c, button) for c in edit_commands.COMMANDS)
    assert not edit_commands.run("copy", button) and not edit_commands.run("copy", None)
    assert not edit_commands.run("deleteLater", text)  # only the Edit menu's commands
