"""The window's menus (File, Model, Chat, Help): actions and shortcuts, no decisions.

Each menu item is a signal of ``MainMenus``; the window connects them to what they do.

Signals:
    open_model_requested(), attach_requested(), settings_requested(), quit_requested(),
    new_chat_requested(), conversation_settings_requested(), export_requested(str) ("md" or
    "json"), import_requested(), stop_requested(), about_requested().
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu

from desktop.controllers.model_library import ModelLibrary
from desktop.widgets.model_menu import ModelMenu


class MainMenus(QObject):
    open_model_requested = Signal()
    attach_requested = Signal()
    settings_requested = Signal()
    quit_requested = Signal()
    new_chat_requested = Signal()
    conversation_settings_requested = Signal()
    export_requested = Signal(str)
    import_requested = Signal()
    stop_requested = Signal()
    about_requested = Signal()

    def __init__(self, window: QMainWindow, library: ModelLibrary):
        super().__init__(window)
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_model_action = self._add(
            file_menu, "Open Model Folder…", self.open_model_requested, QKeySequence.StandardKey.Open
        )
        self._add(file_menu, "Attach Images…", self.attach_requested, QKeySequence("Ctrl+Shift+A"))
        file_menu.addSeparator()
        settings = self._add(
            file_menu, "Settings…", self.settings_requested, QKeySequence.StandardKey.Preferences
        )
        settings.setMenuRole(QAction.MenuRole.PreferencesRole)
        self._file_menu = file_menu
        self._quit_separator = file_menu.addSeparator()
        self._add(file_menu, "Quit", self.quit_requested, QKeySequence.StandardKey.Quit)

        self.model_menu = ModelMenu(library, window)
        bar.addMenu(self.model_menu)

        chat_menu = bar.addMenu("&Chat")
        self.new_chat_action = self._add(
            chat_menu, "New Chat", self.new_chat_requested, QKeySequence.StandardKey.New
        )
        self.conversation_settings_action = self._add(
            chat_menu, "Conversation Settings…", self.conversation_settings_requested
        )
        chat_menu.addSeparator()
        self._add(chat_menu, "Export as Markdown…", self._on_export_markdown_triggered)
        self._add(chat_menu, "Export as JSON…", self._on_export_json_triggered)
        self._add(chat_menu, "Import Conversation…", self.import_requested)
        chat_menu.addSeparator()
        self.stop_action = self._add(chat_menu, "Stop Answer", self.stop_requested, QKeySequence("Ctrl+."))
        self.stop_action.setEnabled(False)

        help_menu = bar.addMenu("&Help")
        self._add(help_menu, "About Llama Desk", self.about_requested)

    @Slot()
    def _on_export_markdown_triggered(self) -> None:
        self.export_requested.emit("md")

    @Slot()
    def _on_export_json_triggered(self) -> None:
        self.export_requested.emit("json")

    def add_file_action(self, action: QAction) -> None:
        """Put ``action`` in the File menu after Settings… (e.g. the Serve API switch)."""
        self._file_menu.insertAction(self._quit_separator, action)

    def _add(self, menu: QMenu, label: str, target, shortcut=None) -> QAction:
        """An action in ``menu`` whose ``triggered`` goes to ``target`` (a signal or slot without
        arguments)."""
        action = QAction(label, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.triggered.connect(target)
        menu.addAction(action)
        return action
