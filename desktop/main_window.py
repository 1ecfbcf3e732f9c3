"""The main window: transcript, composer, menus and status bar, wired to the MLX worker.

The window decides what happens on Send, Stop, a finished answer or a failed load; the
worker (on its own thread) does the MLX work; the transcript model holds the conversation.
Nothing here waits on MLX, disk or network.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.appearance import apply_appearance
from desktop.controllers.conversation_controller import ConversationController
from desktop.controllers.model_library import ModelLibrary
from desktop.dialogs.license_dialog import ensure_license_accepted
from desktop.dialogs.model_manager_dialog import ModelManagerDialog
from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.preferences import ChatDefaults, load_defaults, open_settings, save_defaults
from desktop.qtmodels.transcript_model import TranscriptModel
from desktop.widgets.composer import Composer, mime_has_images
from desktop.widgets.model_menu import ModelMenu
from desktop.widgets.sidebar import Sidebar
from desktop.widgets.transcript_view import TranscriptView, code_blocks
from desktop.widgets.welcome_panel import WelcomePanel, describe_progress
from desktop.workers.background_task import run_in_background
from desktop.workers.inference_worker import AnswerJob, InferenceWorker, WorkerThread
from models.chats.database import DatabaseDamaged, check_database, move_aside
from models.chats.store import ConversationSettings, ConversationStore, StoreError

APP_NAME = "Llama Desk"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff)"
DAMAGE_ACTION = "Move Aside and Start New"


def format_gigabytes(gigabytes: float) -> str:
    """Memory for people: '61.2 GB', or '3.4 MB' for the small numbers of small models."""
    if gigabytes >= 1:
        return f"{gigabytes:.1f} GB"
    return f"{gigabytes * 1000:.1f} MB"


class NoticeBar(QFrame):
    """A dismissible one-line message above the composer (errors, refusals)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("noticeBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.label, 1)
        self.action_button = QPushButton()
        self.action_button.setObjectName("noticeAction")
        self.action_button.clicked.connect(self._on_action_button_clicked)
        self.action_button.hide()
        layout.addWidget(self.action_button)
        self._action = None
        close = QToolButton()
        close.setText("×")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self.hide()

    def show_message(self, text: str, action_label: str | None = None, action=None) -> None:
        """Show ``text``; with ``action_label``, a button that calls ``action`` (e.g. Undo)."""
        self.label.setText(text)
        self._action = action
        self.action_button.setText(action_label or "")
        self.action_button.setVisible(bool(action_label and action))
        self.show()

    def _on_action_button_clicked(self) -> None:
        action, self._action = self._action, None
        self.hide()
        if action is not None:
            action()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    """Signals:
    model_ready(str): a model finished loading and the window shows it.
    conversation_opened(int): a stored conversation is shown (its id).
    answer_finished(object): the last GenerationStep of an answer, after the UI took it in.
    """

    model_ready = Signal(str)
    answer_finished = Signal(object)
    conversation_opened = Signal(int)

    def __init__(
        self,
        engine_factory=None,
        settings: QSettings | None = None,
        data_folder: str | Path | None = None,
        library: ModelLibrary | None = None,
    ):
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.resize(1180, 780)
        self.setAcceptDrops(True)
        self.settings = settings or open_settings()
        self.defaults: ChatDefaults = load_defaults(self.settings)
        self.generation_settings = self.defaults.generation_settings()
        self.system_prompt: str | None = self.defaults.system_prompt or None
        apply_appearance(self.defaults.appearance)
        self.model_name: str | None = None
        self._loading = False
        self._answer_row: int | None = None
        self._user_row: int | None = None
        self._editing_row: int | None = None
        self._continuing = False
        self._sent_draft = None
        self._after_answer: list = []
        self._closed = False
        self._job: AnswerJob | None = None
        self._before: list | None = None  # the transcript before the running answer's changes
        self._recorded_question: int | None = None
        self._next_settings = None
        self.model_path: str | None = None
        self._load_cancel = threading.Event()

        self.notice = NoticeBar()
        self.library = library or ModelLibrary(self)
        self.library.download_progress.connect(self._on_library_download_progress)
        self.library.download_finished.connect(self._on_library_download_finished)
        self.library.download_failed.connect(self._on_library_download_failed)
        self.library.changed.connect(self._update_welcome)
        self.library.set_fit_parameters(self.defaults.context_length, self.defaults.kv_bits)
        self.memory_plan = None  # models.memory.planner.MemoryPlan of the loaded model (unquantized KV)
        self._turn_memory = None  # (model path, plan, image tiles, prefill step) of the running turn
        self._manager_dialog: ModelManagerDialog | None = None
        store, store_problem = self._open_store(data_folder)
        self.conversations = ConversationController(store, self)
        self.conversations.opened.connect(self._on_conversations_opened)
        self.conversations.notice.connect(self._show_store_notice)

        self.worker = InferenceWorker(engine_factory, data_folder=store.folder)
        self.worker_thread = WorkerThread(self.worker)
        self.worker.recorded.connect(self._on_worker_recorded)
        self.worker.storage_failed.connect(self._show_store_notice)
        self.worker.load_started.connect(self._on_worker_load_started)
        self.worker.load_progress.connect(self._on_worker_load_progress)
        self.worker.loaded.connect(self._on_worker_loaded)
        self.worker.load_failed.connect(self._on_worker_load_failed)
        self.worker.text_ready.connect(self._on_worker_text_ready)
        self.worker.finished.connect(self._on_worker_finished)

        self.transcript_model = TranscriptModel(self)
        self.transcript = TranscriptView()
        self.transcript.set_model(self.transcript_model)
        self.transcript.action_requested.connect(self._on_transcript_action_requested)
        self.composer = Composer()
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.composer.attach_requested.connect(self.choose_images)
        self.composer.notice.connect(self.notice.show_message)
        self.composer.edit.textChanged.connect(self._on_composer_text_changed)

        self.sidebar = Sidebar(store)
        self.sidebar.notice.connect(self._show_store_notice)
        self.sidebar.new_requested.connect(self.new_chat)
        self.sidebar.conversation_selected.connect(self.open_conversation)
        self.sidebar.hit_selected.connect(self.open_conversation)
        self.sidebar.rename_requested.connect(self.rename_conversation)
        self.sidebar.delete_requested.connect(self.delete_conversation)
        self.sidebar.export_requested.connect(self.export_conversation)
        self.conversations.list_changed.connect(self.sidebar.refresh)

        chat = QWidget()
        layout = QVBoxLayout(chat)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.welcome = WelcomePanel(self.library)
        self.welcome.download_requested.connect(self.download_model)
        self.welcome.pause_requested.connect(self.library.pause_download)
        self.welcome.open_folder_requested.connect(self.choose_model_folder)
        self.welcome.hide()
        layout.addWidget(self.welcome)
        layout.addWidget(self.transcript, 1)
        layout.addWidget(self.notice)
        layout.addWidget(self.composer)
        splitter = QSplitter()
        splitter.setObjectName("mainSplitter")
        splitter.addWidget(self.sidebar)
        splitter.addWidget(chat)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 920])
        splitter.setChildrenCollapsible(False)
        self.setCentralWidget(splitter)
        self._build_menus()
        self._build_status_bar()
        self._update_placeholder()
        self.composer.edit.setFocus()
        if store_problem:
            self._show_store_notice(store_problem)
        else:
            self.conversations.purge_old_deleted()
            self._check_store()
        if library is None:
            self.library.refresh()

    def _open_store(self, data_folder) -> tuple[ConversationStore, str | None]:
        """The conversation store, or a temporary one (and why) when the real one can't open."""
        self._damaged_database: Path | None = None
        try:
            return ConversationStore(data_folder), None
        except (StoreError, OSError) as exc:
            import tempfile

            if isinstance(exc, DatabaseDamaged):
                self._damaged_database = exc.path

            self._temporary_store = tempfile.TemporaryDirectory(prefix="llama-desk-")
            return (
                ConversationStore(self._temporary_store.name),
                f"Conversations cannot be saved this session: {exc}",
            )

    # A damaged conversation database ----------------------------------------------------------
    def _check_store(self) -> None:
        """SQLite's quick check of the conversation database, on the thread pool."""
        path = self.conversations.store.db.path
        run_in_background(partial(check_database, path), self._on_store_checked, lambda _message: None)

    def _on_store_checked(self, damage: DatabaseDamaged | None) -> None:
        if damage is not None and not self._closed:
            self._show_store_notice(str(damage))

    def _show_store_notice(self, message: str) -> None:
        """Show a storage failure; a damaged database comes with "Move Aside and Start New"."""
        if " is damaged (" in message:
            self.notice.show_message(
                f"{message} Move it aside to start a new one; the old file is kept.",
                DAMAGE_ACTION,
                self._move_damaged_database_aside,
            )
        else:
            self.notice.show_message(message)

    def _move_damaged_database_aside(self) -> None:
        if self._damaged_database is not None:  # this session uses a temporary store
            try:
                moved = move_aside(self._damaged_database)
            except StoreError as exc:
                self.notice.show_message(str(exc))
                return
            self._damaged_database = None
            self.notice.show_message(
                f"The damaged database was moved to {moved}. Restart Llama Desk to start a new one."
            )
            return
        if self._job is not None:
            self.notice.show_message(
                "Stop the current answer first, then move the damaged database aside.",
                DAMAGE_ACTION,
                self._move_damaged_database_aside,
            )
            return
        try:
            moved = self.conversations.store.db.move_aside_and_start_new()
        except StoreError as exc:
            self.notice.show_message(str(exc))
            return
        self.new_chat()
        self.sidebar.refresh()
        self.notice.show_message(f"The damaged database was moved to {moved} (kept); a new one has started.")

    # Construction ------------------------------------------------------------------------------
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_model_action = QAction("Open Model Folder…", self)
        self.open_model_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_model_action.triggered.connect(self.choose_model_folder)
        file_menu.addAction(self.open_model_action)
        attach = QAction("Attach Images…", self)
        attach.setShortcut(QKeySequence("Ctrl+Shift+A"))
        attach.triggered.connect(self.choose_images)
        file_menu.addAction(attach)
        file_menu.addSeparator()
        settings_action = QAction("Settings…", self)
        settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        settings_action.triggered.connect(self.show_settings)
        file_menu.addAction(settings_action)
        file_menu.addSeparator()
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        self.model_menu = ModelMenu(self.library, self)
        self.model_menu.use_requested.connect(self.use_model)
        self.model_menu.download_requested.connect(self.download_model)
        self.model_menu.manage_requested.connect(self.show_model_manager)
        self.menuBar().addMenu(self.model_menu)

        chat_menu = self.menuBar().addMenu("&Chat")
        self.new_chat_action = QAction("New Chat", self)
        self.new_chat_action.setShortcut(QKeySequence.StandardKey.New)
        self.new_chat_action.triggered.connect(self.new_chat)
        chat_menu.addAction(self.new_chat_action)
        self.conversation_settings_action = QAction("Conversation Settings…", self)
        self.conversation_settings_action.triggered.connect(self.show_conversation_settings)
        chat_menu.addAction(self.conversation_settings_action)
        chat_menu.addSeparator()
        export_md = QAction("Export as Markdown…", self)
        export_md.triggered.connect(lambda: self.export_conversation(self.conversations.current_id, "md"))
        chat_menu.addAction(export_md)
        export_json = QAction("Export as JSON…", self)
        export_json.triggered.connect(lambda: self.export_conversation(self.conversations.current_id, "json"))
        chat_menu.addAction(export_json)
        import_action = QAction("Import Conversation…", self)
        import_action.triggered.connect(self.import_conversation)
        chat_menu.addAction(import_action)
        chat_menu.addSeparator()
        self.stop_action = QAction("Stop Answer", self)
        self.stop_action.setShortcut(QKeySequence("Ctrl+."))
        self.stop_action.triggered.connect(self.stop)
        self.stop_action.setEnabled(False)
        chat_menu.addAction(self.stop_action)

        help_menu = self.menuBar().addMenu("&Help")
        about = QAction("About Llama Desk", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_label = QLabel("No model")
        self.model_label.setTextFormat(Qt.TextFormat.PlainText)
        self.model_label.setObjectName("modelLabel")
        bar.addWidget(self.model_label)
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 0)
        self.load_progress.setMaximumWidth(120)
        self.load_progress.hide()
        bar.addWidget(self.load_progress)
        self.cancel_load_button = QPushButton("Cancel")
        self.cancel_load_button.setObjectName("cancelLoad")
        self.cancel_load_button.clicked.connect(self.cancel_load)
        self.cancel_load_button.hide()
        bar.addWidget(self.cancel_load_button)
        self.memory_label = QLabel("")
        self.memory_label.setTextFormat(Qt.TextFormat.PlainText)
        self.memory_label.setObjectName("memoryLabel")
        self.memory_label.setToolTip("Memory MLX holds now, and its peak during the last answer")
        bar.addPermanentWidget(self.memory_label)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(1000)
        self._memory_timer.timeout.connect(self._on_memory_timer_timeout)
        self.download_label = QLabel("")
        self.download_label.setTextFormat(Qt.TextFormat.PlainText)
        self.download_label.setObjectName("downloadLabel")
        bar.addPermanentWidget(self.download_label)
        self.stats_label = QLabel("")
        self.stats_label.setTextFormat(Qt.TextFormat.PlainText)
        self.stats_label.setObjectName("statsLabel")
        bar.addPermanentWidget(self.stats_label)

    def _update_placeholder(self) -> None:
        if self._loading:
            text = "Loading the model…"
        elif self.model_name is None:
            text = (
                "No model loaded.\nChoose File ▸ Open Model Folder… to pick an MLX Llama 4 "
                "checkpoint.\nThen drop a photo here and ask about it."
            )
        else:
            text = (
                f"{self.model_name} is ready.\nDrop, paste or attach up to five images, "
                "type a question and press Enter."
            )
        self.transcript.set_placeholder(text)

    # Model -------------------------------------------------------------------------------------
    def load_model(self, path: str | Path) -> None:
        """Ask the worker to load ``path``; any current answer is stopped first."""
        self.stop()
        self._load_cancel.set()  # a load still waiting or running is superseded
        self._load_cancel = threading.Event()
        self.worker.request_load.emit(str(path), self._load_cancel)

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an MLX Llama 4 checkpoint folder")
        if folder:
            self.load_checked(folder)

    def load_checked(self, path: str | Path, ask: bool = True) -> None:
        """Plan ``path`` off the UI thread, then load it if it fits; if it won't, ask first (or,
        with ``ask`` False, only say so)."""
        from models.memory.budget import detect_budget
        from models.memory.planner import plan_model

        override, corrections = self.library.budget_override, self.library.peak_corrections
        context, kv_bits = self.library.context, self.library.kv_bits
        name = Path(path).name

        def work():
            budget = override or detect_budget()
            plan = plan_model(path, kv_bits=kv_bits, backend=budget.backend)
            if corrections is not None:
                plan = corrections.apply(plan, path, budget.backend)
            return plan.fit(context, budget.budget_bytes)

        def done(report) -> None:
            if report.verdict != "wont_fit":
                self._when_idle(lambda: self.load_model(path))
            elif ask and self._confirm_load_anyway(name, report.summary):
                self._when_idle(lambda: self.load_model(path))
            else:
                self.notice.show_message(
                    f"{name} won't fit: {report.summary} Choose it in the Model menu to load it anyway."
                )

        # A folder the planner cannot read is left to the loader, which says what is wrong.
        run_in_background(work, done, lambda _message: self._when_idle(lambda: self.load_model(path)))

    def cancel_load(self) -> None:
        self._load_cancel.set()
        self.model_label.setText("Cancelling…")

    def _on_worker_load_started(self, name: str) -> None:
        self._loading = True
        self.model_name = None
        self.model_label.setText(f"Loading {name}…")
        self.load_progress.show()
        self.cancel_load_button.show()
        self._update_placeholder()

    def _on_worker_load_progress(self, stage: str) -> None:
        self.model_label.setText(f"{stage}…")

    def _end_loading(self) -> None:
        self._loading = False
        self.load_progress.hide()
        self.cancel_load_button.hide()

    def _on_worker_loaded(self, name: str, path: str) -> None:
        self._end_loading()
        self.model_name = name
        self.model_path = path
        self.model_label.setText(name)
        self.settings.setValue("last_model", path)
        self.model_menu.active_path = path
        self.library.remember_folder(path)  # a folder opened directly is listed in the Model menu
        self._plan_loaded_model(path)
        self._memory_timer.start()
        self._on_memory_timer_timeout()
        self._update_placeholder()
        self._update_welcome()
        self.model_ready.emit(name)

    def _on_worker_load_failed(self, message: str) -> None:
        self._end_loading()
        self.model_name = None
        self.model_path = None
        self.memory_plan = None
        self.model_menu.active_path = None
        self.model_label.setText("No model")
        self.notice.show_message(message)
        self._update_placeholder()

    def _plan_loaded_model(self, path: str) -> None:
        """Work out the loaded model's memory plan off the UI thread (config + headers only)."""
        from models.memory.budget import detect_budget
        from models.memory.planner import plan_model

        self.memory_plan = None
        override = self.library.budget_override

        def work():
            budget = override or detect_budget()
            return plan_model(path, backend=budget.backend), budget

        def done(result) -> None:
            if self.model_path == path:
                self.memory_plan, self.library.budget = result[0], self.library.budget or result[1]

        run_in_background(work, done, lambda _message: None)

    def _turn_settings(self, settings, new_text: str, images) -> tuple[object, str | None]:
        """The settings for the next turn with a prefill chunk that keeps the peak in budget,
        or a reason the turn would outgrow the memory budget."""
        from dataclasses import replace as replace_settings

        from models.inference.preprocess import ProcessorConfig, plan_tiles
        from models.memory.planner import PREFILL_STEPS, choose_prefill_step, conversation_budget_check

        plan, budget = self.memory_plan, self.library.budget
        if plan is None or budget is None:
            return settings, None
        plan = replace_settings(plan, kv_bits=settings.kv_bits)
        if self.library.peak_corrections is not None:
            plan = self.library.peak_corrections.apply(plan, self.model_path, plan.profile.name)
        so_far = self._tokens_in_conversation()
        # Llama 4's real tiling (336-px tiles, up to 16 + 1): the tiny test models are smaller.
        tiles = sum(plan_tiles(*image.size, ProcessorConfig()).tiles for image in images)
        turn = len(new_text) // 3 + 8 + tiles * ProcessorConfig().patches_per_tile + settings.max_tokens
        step = choose_prefill_step(plan, so_far + turn, budget.budget_bytes) or min(PREFILL_STEPS)
        check = conversation_budget_check(plan, so_far, turn, budget.budget_bytes, step, image_tiles=tiles)
        if not check.ok:
            return settings, check.message
        self._turn_memory = (self.model_path, plan, tiles, step)  # for _record_measured_peak
        return replace_settings(settings, prefill_step_size=step), None

    def _tokens_in_conversation(self) -> int:
        """Tokens the conversation holds so far, from its last answer's numbers (0 if none)."""
        for entry in reversed(self.transcript_model.entries()):
            stats = entry.stats
            if entry.role == "assistant" and stats is not None and getattr(stats, "prompt_token_ids", None):
                return len(stats.prompt_token_ids) + int(getattr(stats, "generation_tokens", 0))
            if entry.role == "assistant" and stats is not None and getattr(stats, "prompt_tokens", None):
                return (
                    int(stats.prompt_tokens)
                    + int(getattr(stats, "cached_tokens", 0))
                    + int(getattr(stats, "generation_tokens", 0))
                )
        # No numbers (a fresh start carried these over): estimate from the text and images.
        return sum(
            len(e.token_ids) if e.token_ids else len(e.text) // 3 + 8 for e in self.transcript_model.entries()
        ) + sum(len(e.images) * 17 * 144 for e in self.transcript_model.entries())

    def _on_memory_timer_timeout(self) -> None:
        """The live memory readout (reads MLX's allocator counters; never waits on a computation)."""
        import sys

        mx = sys.modules.get("mlx.core")
        if mx is None or self.model_name is None:
            self.memory_label.setText("")
            return
        self.memory_label.setText(
            f"Memory {format_gigabytes(mx.get_active_memory() / 1e9)} · "
            f"peak {format_gigabytes(mx.get_peak_memory() / 1e9)}"
        )

    def use_model(self, listing) -> None:
        """Switch to a downloaded variant: the answer in progress stops, the current model is
        unloaded completely, then the new one loads; the conversation stays."""
        if listing.path is None:
            return
        if self.model_name is not None and self.model_path == str(listing.path):
            return
        badge = self.library.fit(listing)
        if (
            badge is not None
            and badge.verdict == "wont_fit"
            and not self._confirm_load_anyway(listing.entry.display_name, badge.detail)
        ):
            return
        self._when_idle(lambda: self.load_model(listing.path))

    def _confirm_load_anyway(self, name: str, detail: str) -> bool:
        """Ask before loading a model the planner says won't fit (the OS could kill the app)."""
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "This model won't fit",
            f"{name} needs more memory than this machine can give it.",
            parent=self,
        )
        box.setInformativeText(
            f"{detail}\n\nLoading it anyway may make the system swap heavily or "
            "end Llama Desk. A smaller context length or KV-cache precision "
            "(File ▸ Settings…) may make it fit."
        )
        load = box.addButton("Load Anyway", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is load

    def download_model(self, listing) -> None:
        from models.hub.license import requires_license

        repo = listing.entry.repo_id
        if repo is None:
            return
        if requires_license(repo) and not ensure_license_accepted(self):
            self.notice.show_message("The download needs the Llama 4 license to be accepted.")
            return
        self.library.start_download(repo)

    def show_model_manager(self) -> None:
        if self._manager_dialog is None:
            self._manager_dialog = ModelManagerDialog(self.library, self)
            self._manager_dialog.use_requested.connect(self.use_model)
            self._manager_dialog.download_requested.connect(self.download_model)
        self.library.refresh()
        self._manager_dialog.show()
        self._manager_dialog.raise_()

    def _update_welcome(self) -> None:
        first_run = (
            self.library.loaded
            and not self.library.runnable()
            and self.model_name is None
            and not self._loading
        )
        self.welcome.setVisible(first_run)
        self.transcript.placeholder.setVisible(not first_run and self.transcript_model.rowCount() == 0)

    def _listing_name(self, repo_id: str) -> str:
        listing = self.library.listing(repo_id)
        return listing.entry.display_name if listing else repo_id

    def _on_library_download_progress(self, repo_id: str, progress) -> None:
        percent = 100 * progress.bytes_done / progress.bytes_total if progress.bytes_total else 0
        self.download_label.setText(
            f"Downloading {self._listing_name(repo_id)}: {percent:.0f} % · {describe_progress(progress)}"
        )

    def _on_library_download_finished(self, repo_id: str, path: str) -> None:
        self.download_label.setText("")
        self.notice.show_message(f"{self._listing_name(repo_id)} is downloaded and ready.")
        if self.model_name is None and not self._loading:
            self.load_checked(path, ask=False)

    def _on_library_download_failed(self, repo_id: str, message: str) -> None:
        self.download_label.setText("")
        name = self._listing_name(repo_id)
        if message == "Paused.":
            self.notice.show_message(f"{name}: download paused; resume it from the Model menu.")
        elif message == "Cancelled.":
            self.notice.show_message(f"{name}: download cancelled.")
        else:
            self.notice.show_message(f"{name}: {message}")

    # Images ------------------------------------------------------------------------------------
    def choose_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Attach images", "", IMAGE_FILTER)
        if paths:
            self.composer.add_files(paths)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if mime_has_images(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if mime_has_images(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        if self.composer.add_from_mime(event.mimeData()):
            event.acceptProposedAction()

    # Asking ------------------------------------------------------------------------------------
    @property
    def generating(self) -> bool:
        return self._answer_row is not None

    def send(self) -> None:
        if self.generating or not self.composer.has_draft():
            return
        if self.model_name is None:
            self.notice.show_message(
                "Still loading the model; your question is kept."
                if self._loading
                else "No model is loaded; open one with File ▸ Open Model Folder…. Your question is kept."
            )
            return
        if self.composer.loader.pending:
            self.notice.show_message("An image is still being read; try again in a moment.")
            return
        text = self.composer.text()
        images, thumbnails = self.composer.images(), self.composer.thumbnails()
        settings = self.conversations.settings.generation_settings(self.generation_settings)
        turn_settings, too_big = self._turn_settings(settings, text, images)
        if too_big is not None:
            self._offer_fresh_start(too_big)
            return
        self._next_settings = turn_settings
        self._sent_draft = (text, images, thumbnails)
        self._before = self.transcript_model.entries()
        self.composer.clear_draft()
        self.notice.hide()
        truncate_from = None
        if self._editing_row is not None:
            # Sending an edited question replaces it and everything after it.
            truncate_from = self.transcript_model.entry(self._editing_row).message_id
            self.transcript_model.remove_from(self._editing_row)
            self._editing_row = None
        conversation_id = self.conversations.ensure_current(self.system_prompt or "")
        self._user_row = self.transcript_model.append_user(text, images, thumbnails)
        self._start_answer(
            self.transcript_model.begin_answer(),
            conversation_id=conversation_id,
            question=(text, tuple(images)),
            truncate_from=truncate_from,
        )

    def _effective_system_prompt(self) -> str | None:
        if self.conversations.current is not None:
            return self.conversations.settings.system_prompt.strip() or None
        return self.system_prompt

    def _start_answer(
        self,
        row: int,
        continue_final: bool = False,
        *,
        conversation_id=None,
        question=None,
        truncate_from=None,
        resume_message_id=None,
    ) -> None:
        """Ask the worker for the answer that goes (or continues) in ``row``, and store it."""
        messages = self.transcript_model.messages(self._effective_system_prompt())
        settings = self._next_settings or self.conversations.settings.generation_settings(
            self.generation_settings
        )
        self._next_settings = None
        self._answer_row = row
        self._continuing = continue_final
        self._recorded_question = None
        self.composer.set_generating(True)
        self.stop_action.setEnabled(True)
        self._job = AnswerJob(
            messages=messages,
            settings=settings,
            continue_final=continue_final,
            conversation_id=conversation_id if conversation_id is not None else self.conversations.current_id,
            question=question,
            truncate_from=truncate_from,
            resume_message_id=resume_message_id,
        )
        self.worker.request_generate.emit(self._job)

    def _on_worker_recorded(self, ids) -> None:
        if self._closed:
            return
        question_id, answer_id = ids
        self._recorded_question = question_id
        if question_id is not None and self._user_row is not None:
            self.transcript_model.entry(self._user_row).message_id = question_id
        if self._answer_row is not None:
            self.transcript_model.entry(self._answer_row).message_id = answer_id
        self.conversations.reload_current()
        self.sidebar.set_current(self.conversations.current_id)

    def _ask_fresh_start(self, reason: str) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Warning, "This conversation is too long for memory", reason, parent=self
        )
        box.setInformativeText(
            "Continue in a new conversation that keeps the last question and "
            "answer? Your question stays in the composer."
        )
        fresh = box.addButton("Continue in New Conversation", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is fresh

    def _plan_turn(self, text: str = "", images=()) -> bool:
        """Check the next turn against the memory budget and keep its settings; say why not."""
        settings = self.conversations.settings.generation_settings(self.generation_settings)
        turn_settings, too_big = self._turn_settings(settings, text, images)
        if too_big is not None:
            self.notice.show_message(too_big)
            return False
        self._next_settings = turn_settings
        return True

    def _offer_fresh_start(self, reason: str) -> None:
        """The next turn would outgrow memory: say so, and offer to carry on in a new conversation
        that keeps only the last exchange (the draft stays in the composer either way)."""
        if not self._ask_fresh_start(reason):
            self.notice.show_message(reason)
            return
        carried = [entry for entry in self.transcript_model.entries() if not entry.streaming][-2:]
        self._editing_row = None
        system_prompt = self._effective_system_prompt() or ""
        self.conversations.new()
        conversation_id = self.conversations.ensure_current(system_prompt)
        copies = []
        for entry in carried:
            copy = replace(entry, message_id=None, stats=None)
            if conversation_id is not None:
                try:
                    stored = self.conversations.store.add_message(
                        conversation_id,
                        entry.role,
                        entry.text,
                        entry.images,
                        finish_reason=entry.finish_reason,
                        token_ids=entry.token_ids,
                    )
                    copy.message_id = stored.id
                except (StoreError, OSError) as exc:
                    self.notice.show_message(f"The earlier messages could not be copied: {exc}")
            copies.append(copy)
        self.transcript_model.set_entries(copies)
        self.conversations.reload_current()
        self.sidebar.set_current(self.conversations.current_id)
        self.notice.show_message("Continued in a new conversation with the last exchange; press Send.")

    # Message actions ---------------------------------------------------------------------------
    def _on_transcript_action_requested(self, action: str, row: int) -> None:
        entry = self.transcript_model.entry(row)
        if action == "copy":
            QGuiApplication.clipboard().setText(entry.text)
        elif action == "copy_code":
            QGuiApplication.clipboard().setText("\n\n".join(code_blocks(entry.text)))
        elif self.generating:
            self.notice.show_message("Stop the current answer first.")
        elif action == "edit":
            self.edit_message(row)
        elif action == "regenerate":
            self.regenerate(row)
        elif action == "continue":
            self.continue_answer(row)

    def _on_composer_text_changed(self) -> None:
        if self._editing_row is not None and not self.composer.has_draft():
            # Checked once the edit in progress is done (replacing a selection empties it first).
            QTimer.singleShot(0, self._end_abandoned_edit)

    def _end_abandoned_edit(self) -> None:
        if self._editing_row is not None and not self.composer.has_draft():
            self._editing_row = None  # the draft was cleared: the next question is a new one
            self.notice.hide()

    def edit_message(self, row: int) -> None:
        """Put a question back in the composer; sending replaces it and what follows."""
        entry = self.transcript_model.entry(row)
        if entry.role != "user":
            return
        if self.composer.has_draft():
            self.notice.show_message("Send or clear the question you are writing before editing another.")
            return
        self.composer.clear_draft()
        self.composer.restore_draft(entry.text, list(entry.images), list(entry.thumbnails))
        self._editing_row = row
        self.notice.show_message("Editing a question: Send replaces it and the messages after it.")
        self.composer.edit.setFocus()

    def regenerate(self, row: int) -> None:
        """Answer the last question again, replacing the answer at ``row``."""
        if self.model_name is None or row != self.transcript_model.rowCount() - 1:
            return
        if self.transcript_model.entry(row).role != "assistant":
            return
        if not self._plan_turn():
            return
        answer_id = self.transcript_model.entry(row).message_id
        self._before = self.transcript_model.entries()
        self.transcript_model.remove_from(row)
        self._user_row = row - 1
        self._sent_draft = None
        self._start_answer(self.transcript_model.begin_answer(), truncate_from=answer_id)

    def continue_answer(self, row: int) -> None:
        """Continue the last answer where the token limit cut it."""
        entry = self.transcript_model.entry(row)
        last = row == self.transcript_model.rowCount() - 1
        if self.model_name is None or not last or entry.role != "assistant":
            return
        if not self._plan_turn():
            return
        self._sent_draft = None
        self._before = None
        self._start_answer(
            row,
            continue_final=True,  # takes the messages before the row streams
            resume_message_id=entry.message_id,
        )
        self.transcript_model.resume_answer(row)

    def stop(self) -> None:
        if self.generating and self._job is not None:
            self._job.cancel.set()

    def _when_idle(self, action) -> bool:
        """Run ``action`` now, or after the answer being generated is stopped; True if now."""
        if self.generating:
            self._after_answer.append(action)
            self.stop()
            return False
        action()
        return True

    def new_chat(self) -> None:
        if self.generating:
            self._when_idle(self.new_chat)
            return
        self.conversations.new()
        self.transcript_model.clear()
        self._editing_row = None
        self.stats_label.setText("")
        self.sidebar.set_current(None)
        self.composer.edit.setFocus()

    # Conversations -----------------------------------------------------------------------------
    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        if self.generating:
            self._when_idle(lambda: self.open_conversation(conversation_id, message_id))
            return
        self.conversations.open(conversation_id, message_id if message_id else None)

    def _on_conversations_opened(self, result) -> None:
        if self.generating:  # a question was sent while it loaded: show it after that answer
            self._after_answer.append(lambda: self._on_conversations_opened(result))
            return
        conversation, entries, row = result
        self.conversations.current = conversation
        self._editing_row = None
        self.transcript_model.set_entries(entries)
        self.sidebar.set_current(conversation.id)
        self.stats_label.setText("")
        if row is not None:
            self.transcript.scroll_to(row)
        # The worker loads the conversation's saved KV cache now, so its next question is quick.
        self.worker.request_open_conversation.emit(conversation.id, self.generation_settings)
        self.conversation_opened.emit(conversation.id)

    def rename_conversation(self, conversation_id: int) -> None:
        current = self.conversations.store.conversation(conversation_id).display_title
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=current)
        if ok and title.strip():
            self.conversations.rename(conversation_id, title.strip())

    def delete_conversation(self, conversation_id: int) -> None:
        def delete() -> None:
            was_open = self.conversations.current_id == conversation_id
            title = self.conversations.delete(conversation_id)
            if title is None:
                return
            if was_open:
                self.new_chat()
            self.notice.show_message(
                f"Deleted “{title}”.", "Undo", lambda: self.conversations.restore(conversation_id)
            )

        if self.conversations.current_id == conversation_id:
            self._when_idle(delete)
        else:
            delete()

    def export_conversation(self, conversation_id: int | None, fmt: str) -> None:
        if conversation_id is None:
            self.notice.show_message("There is no saved conversation to export yet.")
            return
        title = self.conversations.store.conversation(conversation_id).display_title
        safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
        kind = "Markdown (*.md)" if fmt == "md" else "JSON (*.json)"
        path, _ = QFileDialog.getSaveFileName(self, "Export conversation", f"{safe}.{fmt}", kind)
        if path:
            self.conversations.export(conversation_id, fmt, path)

    def import_conversation(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a conversation", "", "JSON (*.json)")
        if path:
            self._when_idle(lambda: self.conversations.import_file(path))

    def show_conversation_settings(self) -> None:
        if self.conversations.current is None:
            self.notice.show_message("Ask a first question; then this conversation has settings of its own.")
            return
        settings = self.conversations.settings
        effective = replace(
            self.defaults,
            system_prompt=settings.system_prompt,
            **{
                name: getattr(settings, name)
                for name in ("temperature", "top_p", "max_tokens", "seed", "context_length")
                if getattr(settings, name) is not None
            },
        )
        dialog = SettingsDialog(
            effective,
            self,
            conversation_title=self.conversations.current.display_title,
            memory=self._memory_hint_source(),
        )
        if dialog.exec() == SettingsDialog.DialogCode.Accepted:
            chosen = dialog.values()
            self.conversations.update_settings(
                ConversationSettings(
                    system_prompt=chosen.system_prompt,
                    temperature=chosen.temperature,
                    top_p=chosen.top_p,
                    max_tokens=chosen.max_tokens,
                    seed=chosen.seed,
                    context_length=chosen.context_length,
                )
            )

    def _on_worker_text_ready(self, text: str) -> None:
        if self._answer_row is not None and not self._closed:
            self.transcript_model.append_text(self._answer_row, text)

    def _on_worker_finished(self, step) -> None:
        row = self._answer_row
        if row is None or self._closed:
            return
        self._answer_row = None
        self.composer.set_generating(False)
        self.stop_action.setEnabled(False)
        entry = self.transcript_model.entry(row)
        self.transcript_model.finish_answer(row, step, continued=self._continuing)
        self.transcript.flush()
        if step.finish_reason == "error":
            if not entry.text and self._before is not None:
                # Nothing came back: show the conversation as it was and give the draft back.
                self.transcript_model.set_entries(self._before)
                if self._sent_draft is not None:
                    self.composer.restore_draft(*self._sent_draft)
                self.conversations.reload_current()  # the worker removed what it had added
            self.notice.show_message(step.error or "The answer failed.")
        else:
            self.stats_label.setText(
                f"TTFT {step.ttft_s:.2f} s · {step.generation_tps:.1f} tok/s · "
                f"peak {format_gigabytes(step.peak_memory_gb)}"
            )
            self._record_measured_peak(step)
        self._sent_draft = None
        self._before = None
        self._job = None
        pending, self._after_answer = self._after_answer, []
        try:
            self.sidebar.refresh()
        finally:
            for action in pending:
                action()
            self.answer_finished.emit(step)

    def _record_measured_peak(self, step) -> None:
        """Teach the planner this answer's measured peak, off the UI thread (``measured_peaks``)."""
        from models.memory.budget import detect_backend
        from models.memory.measured_peaks import record_turn

        memory, self._turn_memory = self._turn_memory, None
        if memory is None or memory[0] is None or memory[0] != self.model_path or not step.peak_memory_gb:
            return
        path, plan, tiles, prefill_step = memory

        def work():
            return record_turn(
                path,
                detect_backend(),
                plan,
                step.peak_memory_gb * 1e9,
                step.cached_tokens,
                step.prompt_tokens,
                step.generation_tokens,
                prefill_step,
                tiles,
            )

        run_in_background(work, self.library.set_peak_corrections, lambda _message: None)

    def _memory_hint_source(self):
        """(model name, plan, budget bytes) for the settings dialog's context hint, or None."""
        if self.memory_plan is None or self.library.budget is None:
            return None
        plan, corrections = self.memory_plan, self.library.peak_corrections
        if corrections is not None:  # what this machine measured for the model
            plan = corrections.apply(plan, self.model_path, plan.profile.name)
        return self.model_name, plan, self.library.budget.budget_bytes

    # Settings ----------------------------------------------------------------------------------
    def set_defaults(self, defaults: ChatDefaults) -> None:
        """Use and remember new defaults (the next answer uses them)."""
        self.defaults = defaults
        save_defaults(self.settings, defaults)
        self.generation_settings = defaults.generation_settings()
        self.system_prompt = defaults.system_prompt or None
        apply_appearance(defaults.appearance)
        self.library.set_fit_parameters(defaults.context_length, defaults.kv_bits)

    def show_settings(self) -> None:
        from models.inference.prompt_cache_keeper import PromptCacheKeeper

        dialog = SettingsDialog(
            self.defaults, self, memory=self._memory_hint_source(), kv_caches=PromptCacheKeeper()
        )
        if dialog.exec() == SettingsDialog.DialogCode.Accepted:
            self.set_defaults(dialog.values())

    # About / quit ------------------------------------------------------------------------------
    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About Llama Desk",
            "<b>Llama Desk</b><br>Offline multimodal chat with Llama 4 through MLX.<br><br>"
            "Built with Llama.<br>Llama 4 is licensed under the Llama 4 Community License, "
            "Copyright © Meta Platforms, Inc. All Rights Reserved.",
        )

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self._load_cancel.set()
        self.stop()
        if not self.worker_thread.stop(timeout_ms=3000):
            # A model load cannot be interrupted inside MLX: hide now, quit when it returns.
            event.ignore()
            self.hide()
            self.worker_thread.thread.finished.connect(self._on_worker_thread_finished)
            if self.worker_thread.thread.isFinished():
                self._on_worker_thread_finished()
            return
        self._shut_down()
        super().closeEvent(event)

    def _shut_down(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.library.shutdown()
        self.conversations.store.close()

    def _on_worker_thread_finished(self) -> None:
        """The slow load ended after the window was closed: finish quitting."""
        from PySide6.QtCore import QCoreApplication

        self._shut_down()
        QCoreApplication.quit()
