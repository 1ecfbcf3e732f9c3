"""The main window: lays out the sidebar, the chat column (``ChatPane``), menus and status bar,
and wires their signals to the controllers.

Models and downloads are ``ModelController``'s, memory planning ``TurnMemory``'s, the database's
health ``StoreHealth``'s, stored conversations ``ConversationController``'s, the answer flow
(asking, edit and resend, regenerate, continue, stop, what follows an answer's end)
``AnswerController``'s; the worker (on its own thread) does the MLX work; the open
conversation's turns and what each action stores are ``ConversationSession``'s (the transcript
model is its view). Nothing here waits on MLX, disk or network.

The file is over 400 lines because it is where everything meets: the construction and wiring of
every part, the dialog each menu and sidebar command opens (with the window as parent), and the
thin public methods (``send``, ``regenerate``, ``load_model``, ``open_conversation``...) that
the menus, the sidebar and the tests call. The keyboard's way through the window is set here too
(``_set_tab_order``: sidebar, transcript and the current message's actions, notices, composer;
set again whenever the notices change). Every notice names its source (``desktop.notices``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QCoreApplication, QSettings, Qt, Signal
from PySide6.QtWidgets import QApplication, QMainWindow, QSplitter, QWidget

from desktop import notices
from desktop.appearance import apply_appearance
from desktop.controllers.answer_controller import AnswerController
from desktop.controllers.conversation_controller import ConversationController
from desktop.controllers.model_controller import ModelController
from desktop.controllers.model_library import ModelLibrary
from desktop.controllers.server_controller import ServerController
from desktop.controllers.store_health import StoreHealth
from desktop.controllers.turn_memory import TurnMemory
from desktop.dialogs import conversation_dialogs, model_dialogs
from desktop.dialogs.license_dialog import ensure_license_accepted
from desktop.dialogs.model_manager_dialog import ModelManagerDialog
from desktop.dialogs.settings_dialog import SettingsDialog
from desktop.preferences import (
    ChatDefaults,
    conversation_settings_from,
    load_defaults,
    open_settings,
    save_defaults,
    with_conversation_settings,
)
from desktop.qtmodels.transcript_model import TranscriptModel
from desktop.widgets.attachment_sources import mime_has_images
from desktop.widgets.chat_pane import ChatPane
from desktop.widgets.menu_bar import MainMenus
from desktop.widgets.serve_action import ServeApiAction
from desktop.widgets.sidebar import Sidebar
from desktop.widgets.status_bar import StatusBar
from desktop.workers.inference_worker import InferenceWorker, WorkerThread
from models.app_folders import APP_NAME
from models.chats.answer_run import AnswerEnded, EndReason
from models.chats.conversation_session import ConversationSession
from models.memory.turn_size import conversation_tokens

SIDEBAR_KEY = "window/sidebarVisible"


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
        apply_appearance(self.defaults.appearance)
        self._closed = False
        self._manager_dialog: ModelManagerDialog | None = None

        self.library = library or ModelLibrary(self)
        self.session = ConversationSession()  # the open conversation's turns (their one owner)
        self.transcript_model = TranscriptModel(self.session, self)
        self.chat = ChatPane(self.library, self.transcript_model)
        self.welcome, self.transcript = self.chat.welcome, self.chat.transcript
        self.notice, self.composer = self.chat.notice, self.chat.composer
        self.library.changed.connect(self._update_welcome)
        self.library.set_fit_parameters(self.defaults.context_length, self.defaults.kv_bits)
        self.turn_memory = TurnMemory(self.library, self)
        self.store_health = StoreHealth(data_folder, busy=lambda: self.answers.busy, parent=self)
        self.store_health.notice.connect(self.notice.show_notice)
        self.store_health.started_new.connect(self._on_store_health_started_new)
        store = self.store_health.store
        self.conversations = ConversationController(store, self)
        self.conversations.opened.connect(self._on_conversations_opened)
        self.conversations.notice.connect(self.store_health.report)

        self.worker = InferenceWorker(
            engine_factory, data_folder=store.folder, parallel=self.defaults.parallel
        )
        self.worker_thread = WorkerThread(self.worker)
        self.server_controller = ServerController(self.worker, self)  # File ▸ Serve API
        self.server_controller.set_context_length(self.defaults.context_length)
        self.models = ModelController(
            self.worker,
            self.library,
            self.settings,
            confirm=lambda name, detail: self._confirm_load_anyway(name, detail),
            when_idle=lambda action: self.answers.when_idle(action),
            parent=self,
        )
        self.models.load_started.connect(self._on_models_load_started)
        self.models.load_stage.connect(self._on_models_load_stage)
        self.models.ready.connect(self._on_models_ready)
        self.models.load_failed.connect(self._on_models_load_failed)
        self.models.notice.connect(self.notice.show_message)
        self.models.notice_outdated.connect(self.notice.withdraw)

        self.answers = AnswerController(
            self.session,
            self.worker,
            self.models,
            self.conversations,
            self.turn_memory,
            generation_settings=self.defaults.generation_settings(),
            system_prompt=self.defaults.system_prompt or None,
            confirm_fresh_start=lambda reason: self._ask_fresh_start(reason),
            parent=self,
        )
        self.chat.follow(self.answers)
        self.answers.storage_failed.connect(self.store_health.report)
        self.answers.answer_started.connect(lambda: self.stop_action.setEnabled(True))
        self.answers.answer_ended.connect(self._on_answers_answer_ended)
        self.answers.answer_finished.connect(self.answer_finished)
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(self.stop)
        self.composer.attach_requested.connect(self.choose_images)

        self.sidebar = Sidebar(store)
        self.sidebar.notice.connect(self._on_sidebar_notice)
        self.sidebar.new_requested.connect(self.new_chat)
        self.sidebar.conversation_selected.connect(self.open_conversation)
        self.sidebar.hit_selected.connect(self.open_conversation)
        self.sidebar.rename_requested.connect(self.rename_conversation)
        self.sidebar.delete_requested.connect(self.delete_conversation)
        self.sidebar.export_requested.connect(self.export_conversation)
        self.conversations.list_changed.connect(self.sidebar.refresh)
        self.answers.current_changed.connect(self.sidebar.set_current)

        self.welcome.download_requested.connect(self.download_model)
        self.welcome.pause_requested.connect(self.library.pause_download)
        self.welcome.open_folder_requested.connect(self.choose_model_folder)
        self.setCentralWidget(self._lay_out())
        self._build_menus()
        self._build_status_bar()
        self._set_tab_order()
        self.notice.changed.connect(self._on_notice_changed)
        self._update_placeholder()
        self.show_sidebar(bool(self.settings.value(SIDEBAR_KEY, True, type=bool)))
        self.composer.edit.setFocus()
        if self.store_health.problem:
            self.store_health.report(self.store_health.problem)
        else:
            self.conversations.purge_old_deleted()
            self.store_health.check()
        if library is None:
            self.library.refresh()

    # Construction ------------------------------------------------------------------------------
    def _lay_out(self) -> QSplitter:
        """The sidebar beside the chat: first-run panel, transcript, notice and composer."""
        splitter = QSplitter()
        splitter.setObjectName("mainSplitter")
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.chat)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 920])
        splitter.setChildrenCollapsible(False)
        return splitter

    def _set_tab_order(self) -> None:
        """Tab goes New Chat → search → list → (first-run panel) → transcript → the current
        message's code blocks → its actions → notice → composer → Attach → (images) → Send, and
        round again."""
        sidebar, composer, notice = self.sidebar, self.composer, self.notice
        welcome = [w for w in self.welcome.findChildren(QWidget) if w.focusPolicy() & Qt.FocusPolicy.TabFocus]
        chain = [sidebar.new_button, sidebar.search, sidebar.view, *welcome, self.transcript]
        chain.append(self.transcript.code_focus)
        chain += list(self.transcript.action_bar.buttons.values())
        chain += [*notice.focus_widgets(), composer.edit, composer.attach_button]
        chain.append(composer.send_button)
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    def _build_menus(self) -> None:
        self.menus = MainMenus(self, self.library)
        self.menus.open_model_requested.connect(self.choose_model_folder)
        self.menus.attach_requested.connect(self.choose_images)
        self.menus.settings_requested.connect(self.show_settings)
        self.menus.quit_requested.connect(self.close)
        self.menus.new_chat_requested.connect(self.new_chat)
        self.menus.conversation_settings_requested.connect(self.show_conversation_settings)
        self.menus.export_requested.connect(self._on_menus_export_requested)
        self.menus.import_requested.connect(self.import_conversation)
        self.menus.stop_requested.connect(self.stop)
        self.menus.about_requested.connect(self.show_about)
        self.menus.find_requested.connect(self.find_in_chats)
        self.menus.sidebar_toggled.connect(self.show_sidebar)
        self.menus.regenerate_requested.connect(self.chat.regenerate_last)
        self.menus.copy_answer_requested.connect(self.chat.copy_last_answer)
        self.menus.minimize_requested.connect(self.showMinimized)
        self.menus.zoom_requested.connect(self.zoom)
        self.model_menu = self.menus.model_menu
        self.model_menu.use_requested.connect(self.use_model)
        self.model_menu.download_requested.connect(self.download_model)
        self.model_menu.manage_requested.connect(self.show_model_manager)
        self.open_model_action = self.menus.open_model_action
        self.new_chat_action = self.menus.new_chat_action
        self.conversation_settings_action = self.menus.conversation_settings_action
        self.stop_action = self.menus.stop_action

    def _build_status_bar(self) -> None:
        self.status_bar = StatusBar(self)
        self.setStatusBar(self.status_bar)
        self.status_bar.cancel_load_requested.connect(self.cancel_load)
        self.models.download_status.connect(self.status_bar.show_download)
        self.model_label = self.status_bar.model_label
        self.memory_label = self.status_bar.memory_label
        self.stats_label = self.status_bar.stats_label
        self.chat.status.connect(lambda text: self.status_bar.showMessage(text, 3000))
        self.serve_api_action = ServeApiAction(self.server_controller, self.status_bar, self.notice, self)
        self.server_controller.job_running.connect(self._on_api_job_running)
        self.menus.add_file_action(self.serve_api_action)

    def _update_placeholder(self) -> None:
        self.chat.show_model_state(self.model_name, self.models.loading)

    def _on_notice_changed(self) -> None:
        self._set_tab_order()  # each notice's buttons, between the transcript and the composer

    def _on_sidebar_notice(self, text: str) -> None:
        self.store_health.report(text, notices.SEARCH)

    def _on_store_health_started_new(self) -> None:
        self.new_chat()
        self.sidebar.refresh()

    # Model -------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str | None:
        return self.models.name

    @property
    def model_path(self) -> str | None:
        return self.models.path

    def load_model(self, path: str | Path) -> None:
        """Ask the worker to load ``path``; any current answer is stopped first."""
        self.stop()
        self.models.load(path)

    def load_checked(self, path: str | Path, ask: bool = True) -> None:
        """Plan ``path`` off the UI thread, then load it if it fits; if it won't, ask first."""
        self.models.load_checked(path, ask)

    def use_model(self, listing) -> None:
        """Switch to a downloaded variant (after the answer in progress stops)."""
        self.models.use(listing)

    def choose_model_folder(self) -> None:
        folder = model_dialogs.choose_model_folder(self)
        if folder:
            self.load_checked(folder)

    def cancel_load(self) -> None:
        self.models.cancel_load()
        self.status_bar.show_stage("Cancelling…")

    def _confirm_load_anyway(self, name: str, detail: str) -> bool:
        return model_dialogs.confirm_load_anyway(self, name, detail)

    def _on_models_load_started(self, name: str) -> None:
        self.composer.document_loader.processor = None  # the model before is gone: the default tiler
        self.status_bar.show_loading(f"Loading {name}…")
        self._update_placeholder()

    def _on_models_load_stage(self, stage: str) -> None:
        self.status_bar.show_stage(f"{stage}…")

    def _on_models_ready(self, name: str, path: str) -> None:
        self.status_bar.show_model(name)
        self.model_menu.active_path = path
        self.turn_memory.model_loaded(path)
        self.composer.document_loader.processor = self._loaded_processor(path)
        self._update_placeholder()
        self._update_welcome()
        self.notice.withdraw(notices.SEND)  # "No model is loaded" and the like: past
        self.model_ready.emit(name)

    def _loaded_processor(self, path: str):
        """The tiler of the model loaded from ``path`` (PDF pages are rendered at its size), or
        None (the default tiler) if another load has replaced it meanwhile."""
        engine = self.worker.engine
        checkpoint = getattr(engine, "checkpoint", None)
        if checkpoint is None or str(checkpoint.path) != path:
            return None
        return checkpoint.processor

    def _on_models_load_failed(self, message: str) -> None:
        self.composer.document_loader.processor = None
        self.status_bar.show_model(None)
        self.turn_memory.model_unloaded()
        self.model_menu.active_path = None  # the controller shows why, as the load's notice
        self._update_placeholder()

    def download_model(self, listing) -> None:
        from models.hub.license import requires_license

        repo = listing.entry.repo_id
        if repo is None:
            return
        if requires_license(repo) and not ensure_license_accepted(self):
            self.notice.show_message(
                "The download needs the Llama 4 license to be accepted.", notices.download(repo)
            )
            return
        self.notice.withdraw(notices.download(repo))  # it starts again: what it said is past
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
            and not self.models.loading
        )
        self.chat.show_first_run(first_run)

    def _memory_hint_source(self):
        """(model name, plan, budget bytes) for the settings dialog's context hint, or None."""
        return self.turn_memory.hint_source(self.model_name)

    # Images ------------------------------------------------------------------------------------
    def choose_images(self) -> None:
        paths = conversation_dialogs.choose_images(self)
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

    # Asking (the flow is AnswerController's) ---------------------------------------------------
    @property
    def generating(self) -> bool:
        return self.answers.generating

    @property
    def generation_settings(self):
        """The default settings a conversation without its own uses (the answer controller's)."""
        return self.answers.generation_settings

    @generation_settings.setter
    def generation_settings(self, settings) -> None:
        self.answers.generation_settings = settings

    @property
    def system_prompt(self) -> str | None:
        return self.answers.system_prompt

    @system_prompt.setter
    def system_prompt(self, prompt: str | None) -> None:
        self.answers.system_prompt = prompt

    def send(self) -> None:
        self.chat.send()

    def regenerate(self, row: int) -> None:
        """Answer the last question again, replacing the answer at ``row``."""
        self.answers.regenerate(row)

    def continue_answer(self, row: int) -> None:
        """Continue the last answer where the token limit cut it."""
        self.answers.continue_answer(row)

    def stop(self) -> None:
        self.answers.stop()

    def _on_api_job_running(self, running: bool) -> None:
        """Stop also ends an API request answered on this window's engine."""
        self.stop_action.setEnabled(running or self.answers.busy)

    def _ask_fresh_start(self, reason: str) -> bool:
        return conversation_dialogs.ask_fresh_start(self, reason)

    def _on_answers_answer_ended(self, event: AnswerEnded) -> None:
        self.stop_action.setEnabled(self.server_controller.job_is_running)
        if event.reason is not EndReason.FAILED:
            step = event.final
            self.status_bar.show_answer_numbers(step.ttft_s, step.generation_tps, step.peak_memory_gb)
        self._update_context()
        self.sidebar.refresh()

    def _update_context(self) -> None:
        """The status bar's context gauge and answer numbers for the open conversation."""
        turns = [turn for turn in self.session.turns if not turn.streaming]
        length = self.conversations.settings.generation_settings(self.generation_settings).context_length
        self.status_bar.show_context(conversation_tokens(turns) if turns else None, length)

    def new_chat(self) -> None:
        self.answers.when_idle(self._start_new_chat)

    def _start_new_chat(self) -> None:
        self.conversations.new()
        self.transcript_model.clear()
        self.answers.editing_row = None
        self.chat.forget_conversation_notices()
        self.status_bar.clear_answer_numbers()
        self._update_context()
        self.sidebar.set_current(None)
        self.composer.edit.setFocus()

    # Window ------------------------------------------------------------------------------------
    def show_sidebar(self, visible: bool) -> None:
        """Show or hide the sidebar (View ▸ Show Sidebar), remembered for the next start."""
        focus = QApplication.focusWidget()
        had_focus = focus is not None and self.sidebar.isAncestorOf(focus)
        self.sidebar.setVisible(visible)
        self.menus.sidebar_action.setChecked(visible)
        self.settings.setValue(SIDEBAR_KEY, visible)
        if had_focus and not visible:
            self.composer.edit.setFocus()

    def find_in_chats(self) -> None:  # not `find`: QWidget.find() is Qt's
        """Edit ▸ Find…: the search box, with the sidebar shown."""
        if self.sidebar.isHidden():
            self.show_sidebar(True)
        self.sidebar.focus_search()

    def zoom(self) -> None:
        """Window ▸ Zoom: fill the screen, or back."""
        if self.isMaximized():
            self.showNormal()
        else:
            self.showMaximized()

    # Conversations -----------------------------------------------------------------------------
    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        if self.generating:
            self.answers.when_idle(lambda: self.open_conversation(conversation_id, message_id))
            return
        self.conversations.open(conversation_id, message_id if message_id else None)

    def _on_conversations_opened(self, result) -> None:
        if self.generating:  # a question was sent while it loaded: show it after that answer
            self.answers.after_answer(lambda: self._on_conversations_opened(result))
            return
        conversation, entries, row = result
        self.conversations.current = conversation
        self.answers.editing_row = None
        self.chat.forget_conversation_notices()
        self.transcript_model.set_entries(entries, conversation.id)
        self.sidebar.set_current(conversation.id)
        self.status_bar.clear_answer_numbers()
        stats = next((t.stats for t in reversed(self.session.turns) if t.stats and t.stats.ttft_s > 0), None)
        if stats is not None:  # the numbers of its last answer
            self.status_bar.show_answer_numbers(stats.ttft_s, stats.generation_tps, stats.peak_memory_gb)
        self._update_context()
        if row is not None:
            self.transcript.scroll_to(row)
        # The worker loads the conversation's saved KV cache now, so its next question is quick.
        self.worker.request_open_conversation.emit(conversation.id, self.generation_settings)
        self.conversation_opened.emit(conversation.id)

    def rename_conversation(self, conversation_id: int) -> None:
        current = self.conversations.store.conversation(conversation_id).display_title
        title = conversation_dialogs.ask_title(self, current)
        if title is not None:
            self.conversations.rename(conversation_id, title)

    def delete_conversation(self, conversation_id: int) -> None:
        def delete() -> None:
            was_open = self.conversations.current_id == conversation_id
            title = self.conversations.delete(conversation_id)
            if title is None:
                return
            if was_open:
                self.new_chat()
            self.notice.show_message(
                f"Deleted “{title}”.",
                notices.DELETED,
                "Undo",
                lambda: self.conversations.restore(conversation_id),
            )

        if self.conversations.current_id == conversation_id:
            self.answers.when_idle(delete)
        else:
            delete()

    def export_conversation(self, conversation_id: int | None, fmt: str) -> None:
        if conversation_id is None:
            self.notice.show_message("There is no saved conversation to export yet.", notices.EXPORT)
            return
        title = self.conversations.store.conversation(conversation_id).display_title
        path = conversation_dialogs.choose_export_path(self, title, fmt)
        if path:
            self.conversations.export(conversation_id, fmt, path)

    def _on_menus_export_requested(self, fmt: str) -> None:
        self.export_conversation(self.conversations.current_id, fmt)

    def import_conversation(self) -> None:
        path = conversation_dialogs.choose_import_file(self)
        if path:
            self.answers.when_idle(lambda: self.conversations.import_file(path))

    def show_conversation_settings(self) -> None:
        if self.conversations.current is None:
            self.notice.show_message(
                "Ask a first question; then this conversation has settings of its own.", notices.COMMAND
            )
            return
        dialog = SettingsDialog(
            with_conversation_settings(self.defaults, self.conversations.settings),
            self,
            conversation_title=self.conversations.current.display_title,
            memory=self._memory_hint_source(),
        )
        if dialog.exec() == SettingsDialog.DialogCode.Accepted:
            self.conversations.update_settings(conversation_settings_from(dialog.values()))
            self._update_context()

    # Settings ----------------------------------------------------------------------------------
    def set_defaults(self, defaults: ChatDefaults) -> None:
        """Use and remember new defaults (the next answer uses them)."""
        self.defaults = defaults
        save_defaults(self.settings, defaults)
        self.generation_settings = defaults.generation_settings()
        self.system_prompt = defaults.system_prompt or None
        apply_appearance(defaults.appearance)
        self.library.set_fit_parameters(defaults.context_length, defaults.kv_bits)
        self.server_controller.set_context_length(defaults.context_length)
        self.worker.host.parallel = defaults.parallel  # from the next answer admitted on
        self._update_context()

    def show_settings(self) -> None:
        from models.inference.prompt_cache_keeper import PromptCacheKeeper

        dialog = SettingsDialog(
            self.defaults, self, memory=self._memory_hint_source(), kv_caches=PromptCacheKeeper()
        )
        if dialog.exec() == SettingsDialog.DialogCode.Accepted:
            self.set_defaults(dialog.values())

    # About / quit ------------------------------------------------------------------------------
    def show_about(self) -> None:
        model_dialogs.show_about(self)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.composer.shut_down()  # PDFs being read stop at their next page: exit waits for none
        self.models.shut_down()
        self.stop()
        self.server_controller.stop()
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
        self.answers.shut_down()
        self.library.shutdown()
        self.conversations.store.close()

    def _on_worker_thread_finished(self) -> None:
        """The slow load ended after the window was closed: finish quitting."""
        self._shut_down()
        QCoreApplication.quit()
