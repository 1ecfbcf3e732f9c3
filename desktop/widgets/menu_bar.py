"""The window's menus (File, Edit, View, Model, Chat, Window, Help): actions and shortcuts, no
decisions.

Each menu item is a signal of ``MainMenus``; the window connects them to what they do. The
Edit menu's first six act on the focused widget (``desktop.widgets.edit_commands``).
Shortcuts are written with Ctrl, which Qt shows and reads as Cmd on macOS. Every action has
an explicit menu role: Settings…, About and Quit go to the application menu on macOS
(``PreferencesRole``, ``AboutRole``, ``QuitRole``); the others are ``NoRole``, so Qt does not
move one by its name (it would take "Conversation Settings…" for Preferences).

Signals:
    open_model_requested(), attach_requested(), settings_requested(), quit_requested(),
    find_requested(), sidebar_toggled(bool), new_chat_requested(),
    conversation_settings_requested(), export_requested(str) ("md" or "json"),
    import_requested(), regenerate_requested(), copy_answer_requested(), stop_requested(),
    minimize_requested(), zoom_requested(), about_requested().
"""

from __future__ import annotations

from functools import partial

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QMainWindow, QMenu

from desktop.controllers.model_library import ModelLibrary
from desktop.widgets import edit_commands
from desktop.widgets.model_menu import ModelMenu

Key = QKeySequence.StandardKey
Role = QAction.MenuRole


class MainMenus(QObject):
    open_model_requested = Signal()
    attach_requested = Signal()
    settings_requested = Signal()
    quit_requested = Signal()
    find_requested = Signal()
    sidebar_toggled = Signal(bool)
    new_chat_requested = Signal()
    conversation_settings_requested = Signal()
    export_requested = Signal(str)
    import_requested = Signal()
    regenerate_requested = Signal()
    copy_answer_requested = Signal()
    stop_requested = Signal()
    minimize_requested = Signal()
    zoom_requested = Signal()
    about_requested = Signal()

    def __init__(self, window: QMainWindow, library: ModelLibrary):
        super().__init__(window)
        bar = window.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_model_action = self._add(
            file_menu, "Open Model Folder…", self.open_model_requested, Key.Open
        )
        self._add(file_menu, "Attach Images or PDFs…", self.attach_requested, "Ctrl+Shift+A")
        file_menu.addSeparator()
        # StandardKey.Preferences is Cmd+, on macOS and nothing elsewhere: the same keys everywhere.
        self._add(file_menu, "Settings…", self.settings_requested, "Ctrl+,", Role.PreferencesRole)
        self._file_menu = file_menu
        self._quit_separator = file_menu.addSeparator()
        self._add(file_menu, "Quit", self.quit_requested, Key.Quit, Role.QuitRole)

        self.edit_menu = bar.addMenu("&Edit")
        self.undo_action = self._edit("Undo", "undo", Key.Undo)
        self.redo_action = self._edit("Redo", "redo", Key.Redo)
        self.edit_menu.addSeparator()
        self.cut_action = self._edit("Cut", "cut", Key.Cut)
        self.copy_action = self._edit("Copy", "copy", Key.Copy)
        self.paste_action = self._edit("Paste", "paste", Key.Paste)
        self.select_all_action = self._edit("Select All", "selectAll", Key.SelectAll)
        self.edit_menu.addSeparator()
        self.find_action = self._add(self.edit_menu, "Find…", self.find_requested, Key.Find)
        self.find_action.setShortcuts([QKeySequence(Key.Find), QKeySequence("Ctrl+K")])
        self.edit_menu.aboutToShow.connect(self._on_edit_menu_about_to_show)
        self.edit_menu.aboutToHide.connect(self._on_edit_menu_about_to_hide)

        view_menu = bar.addMenu("&View")
        self.sidebar_action = self._add(view_menu, "Show Sidebar", self.sidebar_toggled, "Ctrl+Shift+S")
        self.sidebar_action.setCheckable(True)
        self.sidebar_action.setChecked(True)

        self.model_menu = ModelMenu(library, window)
        bar.addMenu(self.model_menu)

        chat_menu = bar.addMenu("&Chat")
        self.new_chat_action = self._add(chat_menu, "New Chat", self.new_chat_requested, Key.New)
        self.conversation_settings_action = self._add(
            chat_menu, "Conversation Settings…", self.conversation_settings_requested
        )
        chat_menu.addSeparator()
        self.regenerate_action = self._add(
            chat_menu, "Regenerate Last Answer", self.regenerate_requested, "Ctrl+R"
        )
        self.copy_answer_action = self._add(
            chat_menu, "Copy Last Answer", self.copy_answer_requested, "Ctrl+Shift+C"
        )
        self.stop_action = self._add(chat_menu, "Stop Answer", self.stop_requested, "Ctrl+.")
        # Esc stops an answer wherever focus is; the action is off while none runs, so Esc is
        # the focused widget's then (closing a selection, clearing the search, cancelling an edit).
        self.stop_action.setShortcuts([QKeySequence("Ctrl+."), QKeySequence("Esc")])
        self.stop_action.setEnabled(False)
        chat_menu.addSeparator()
        self._add(chat_menu, "Export as Markdown…", self._on_export_markdown_triggered)
        self._add(chat_menu, "Export as JSON…", self._on_export_json_triggered)
        self._add(chat_menu, "Import Conversation…", self.import_requested)

        window_menu = bar.addMenu("&Window")
        self._add(window_menu, "Minimize", self.minimize_requested, "Ctrl+M")
        self._add(window_menu, "Zoom", self.zoom_requested)

        help_menu = bar.addMenu("&Help")
        self._add(help_menu, "About Llama Desk", self.about_requested, role=Role.AboutRole)

    @Slot()
    def _on_export_markdown_triggered(self) -> None:
        self.export_requested.emit("md")

    @Slot()
    def _on_export_json_triggered(self) -> None:
        self.export_requested.emit("json")

    def add_file_action(self, action: QAction) -> None:
        """Put ``action`` in the File menu after Settings… (e.g. the Serve API switch)."""
        self._file_menu.insertAction(self._quit_separator, action)

    def _add(self, menu: QMenu, label: str, target, shortcut=None, role: Role = Role.NoRole) -> QAction:
        """An action in ``menu`` whose ``triggered`` goes to ``target`` (a signal or slot);
        ``shortcut`` is a standard key (all its platform bindings) or a key string."""
        action = QAction(label, self)
        if isinstance(shortcut, Key):
            action.setShortcuts(shortcut)
        elif shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setMenuRole(role)
        action.triggered.connect(target)
        menu.addAction(action)
        return action

    # Edit menu -----------------------------------------------------------------------------------
    def _edit(self, label: str, command: str, shortcut: Key) -> QAction:
        action = self._add(self.edit_menu, label, partial(self._run_edit_command, command), shortcut)
        action.setData(command)
        return action

    def _run_edit_command(self, command: str, _checked: bool = False) -> None:
        edit_commands.run(command, QApplication.focusWidget())

    def _on_edit_menu_about_to_show(self) -> None:
        """Grey out what the focused widget cannot do now (its shortcuts come back on hiding)."""
        focus = QApplication.focusWidget()
        for action in self.edit_menu.actions():
            if isinstance(action.data(), str):
                action.setEnabled(edit_commands.available(action.data(), focus))

    def _on_edit_menu_about_to_hide(self) -> None:
        for action in self.edit_menu.actions():
            if isinstance(action.data(), str):
                action.setEnabled(True)
