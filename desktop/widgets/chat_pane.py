"""The chat column: the first-run panel over the transcript, the notice line and the composer, and
what they show of the answer flow.

``ChatPane`` follows an ``AnswerController`` (``follow``): the sent draft leaves the composer
(its thumbnails stay with the transcript), Send turns into Stop while an answer runs, and a
draft whose answer failed with nothing comes back. It handles the message buttons: copy and copy
code here, edit by putting the question back in the composer (the controller's
``editing_row``), regenerate and continue by asking the controller; ``regenerate_last`` and
``copy_last_answer`` are the same for the last answer (Chat menu shortcuts). It decides nothing
about answers itself. A copy says so (``status``: "Copied …"); a clicked thumbnail opens larger.

Its notices (``desktop.notices``) go when they no longer hold: a refused file's when the
attachments change or are sent, a refused question's when one goes, an answer's failure when
the next answer starts, a command's refusal ("Stop the current answer first.") when the answer
ends, and all of them when another conversation is shown (``forget_conversation_notices``).

Signals:
    status(str): a passing message for the status bar (what was copied).
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QVBoxLayout, QWidget

from desktop import notices
from desktop.controllers.answer_controller import AnswerController, Draft
from desktop.controllers.model_library import ModelLibrary
from desktop.dialogs.image_preview import show_image_preview
from desktop.qtmodels.transcript_model import TranscriptModel
from desktop.widgets.composer import Composer
from desktop.widgets.markdown_view import code_block_groups
from desktop.widgets.message_actions import code_as_written, code_blocks
from desktop.widgets.notice_bar import NoticeBar
from desktop.widgets.transcript_view import TranscriptView
from desktop.widgets.welcome_panel import WelcomePanel
from models.chats.answer_run import AnswerEnded


class ChatPane(QWidget):
    status = Signal(str)

    def __init__(
        self, library: ModelLibrary, transcript_model: TranscriptModel, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.answers: AnswerController | None = None
        self.transcript_model = transcript_model
        self.welcome = WelcomePanel(library)
        self.welcome.hide()
        self.transcript = TranscriptView()
        self.transcript.set_model(transcript_model)
        self.transcript.action_requested.connect(self._on_transcript_action_requested)
        self.transcript.image_requested.connect(self._on_transcript_image_requested)
        self.transcript.page_requested.connect(self._on_transcript_page_requested)
        self.notice = NoticeBar()
        self.composer = Composer()
        self.composer.notice.connect(self._on_composer_notice)
        self.composer.notice_outdated.connect(self._on_composer_notice_outdated)
        self.composer.cancel_requested.connect(self._on_composer_cancel_requested)
        self.notice.dismissed.connect(self._on_notice_dismissed)
        self.composer.edit.textChanged.connect(self._on_composer_text_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.welcome)
        layout.addWidget(self.transcript, 1)
        layout.addWidget(self.notice)
        layout.addWidget(self.composer)

    def follow(self, answers: AnswerController) -> None:
        """Show ``answers``' flow here and send its requests there."""
        self.answers = answers
        answers.notice.connect(self.notice.show_message)
        answers.question_taken.connect(self._on_answers_question_taken)
        answers.answer_started.connect(self._on_answers_answer_started)
        answers.answer_ended.connect(self._on_answers_answer_ended)
        answers.draft_returned.connect(self._on_answers_draft_returned)

    # What is shown -----------------------------------------------------------------------------
    def show_model_state(self, model_name: str | None, loading: bool) -> None:
        """The transcript's placeholder for a model loading, missing or ready."""
        if loading:
            text = "Loading the model…"
        elif model_name is None:
            text = (
                "No model loaded.\nChoose File ▸ Open Model Folder… to pick an MLX Llama 4 "
                "checkpoint.\nThen drop a photo here and ask about it."
            )
        else:
            text = (
                f"{model_name} is ready.\nDrop, paste or attach up to five images or PDFs, "
                "type a question and press Enter."
            )
        self.transcript.set_placeholder(text)

    def show_first_run(self, first_run: bool) -> None:
        """The first-run panel (download a model) instead of the transcript's placeholder."""
        self.welcome.setVisible(first_run)
        self.transcript.suppress_placeholder(first_run)

    # Asking ------------------------------------------------------------------------------------
    def send(self) -> None:
        """Ask the composer's question (or the edited one's replacement)."""
        if self.answers is None or self.answers.generating or not self.composer.has_draft():
            return
        composer = self.composer
        self.answers.ask(
            Draft(
                composer.text(),
                composer.images(),
                composer.thumbnails(),
                composer.reading_images(),
                tuple(composer.documents()),
                tuple(composer.document_thumbnails()),
                composer.reading_documents(),
            )
        )

    def _on_composer_notice(self, text: str) -> None:
        self.notice.show_message(text, notices.COMPOSER)

    def _on_composer_notice_outdated(self) -> None:
        self.notice.withdraw(notices.COMPOSER)

    def forget_conversation_notices(self) -> None:
        """Another conversation is shown: what was said about the last one's draft, edit,
        questions, answers and commands is past (the model's, store's and others' stay)."""
        self.notice.withdraw(
            notices.EDIT, notices.COMPOSER, notices.SEND, notices.PAGES, notices.ANSWER, notices.COMMAND
        )

    def _on_answers_question_taken(self, draft: Draft) -> None:
        self.composer.clear_draft()
        self.notice.withdraw(notices.COMPOSER, notices.EDIT, notices.SEND, notices.PAGES)  # the draft went
        self.transcript_model.remember_thumbnails(draft.images, draft.thumbnails)
        pages = [image for document in draft.documents for image in document.images]
        self.transcript_model.remember_thumbnails(pages, draft.document_thumbnails)

    def _on_answers_answer_started(self) -> None:
        self.composer.set_generating(True)
        self.notice.withdraw(notices.SEND, notices.ANSWER)  # an answer is under way again

    def _on_answers_answer_ended(self, _event: AnswerEnded) -> None:
        self.composer.set_generating(False)
        self.notice.withdraw(notices.COMMAND)  # "Stop the current answer first." holds no more
        self.transcript.flush()

    def _on_answers_draft_returned(self, draft: Draft) -> None:
        self.composer.restore_draft(
            draft.text,
            list(draft.images),
            list(draft.thumbnails),
            list(draft.documents),
            list(draft.document_thumbnails),
        )

    # Message actions ---------------------------------------------------------------------------
    def _on_transcript_action_requested(self, action: str, row: int) -> None:
        entry = self.transcript_model.entry(row)
        if action == "copy":
            QGuiApplication.clipboard().setText(entry.text)
            self.status.emit("Copied the message")
        elif action == "copy_code":
            self._copy_code(row)
        elif self.answers is None:
            return
        elif self.answers.generating:
            self.notice.show_message("Stop the current answer first.", notices.COMMAND)
        elif action == "edit":
            self.edit_message(row)
        elif action == "regenerate":
            self.answers.regenerate(row)
        elif action == "continue":
            self.answers.continue_answer(row)

    def _copy_code(self, row: int) -> None:
        """Copy one code block (the one clicked or pointed at) or, without one, all of them."""
        block = self.transcript.code_block_hint(row)
        document = self.transcript.rendered(row).document
        groups = code_block_groups(document)
        if block is not None and block < len(groups):
            shown = groups[block].text(document)
            QGuiApplication.clipboard().setText(
                code_as_written(self.transcript_model.entry(row).text, shown, block)
            )
            self.status.emit("Copied the code block")
            return
        blocks = code_blocks(self.transcript_model.entry(row).text)
        QGuiApplication.clipboard().setText("\n\n".join(blocks))
        self.status.emit("Copied the code" if len(blocks) == 1 else f"Copied {len(blocks)} code blocks")

    def _on_transcript_image_requested(self, row: int, which: int) -> None:
        images = self.transcript_model.entry(row).images
        if 0 <= which < len(images):
            show_image_preview(images[which], self)

    def _on_transcript_page_requested(self, row: int, which: int) -> None:
        pages = [
            image for document in self.transcript_model.entry(row).documents for image in document.images
        ]
        if 0 <= which < len(pages):
            show_image_preview(pages[which], self)

    def regenerate_last(self) -> None:
        """Answer the last question again (Ctrl/Cmd+R), or say why not."""
        rows = self.transcript_model.rowCount()
        if not rows or self.transcript_model.entry(rows - 1).role != "assistant":
            self.notice.show_message("There is no answer to regenerate yet.", notices.COMMAND)
            return
        self._on_transcript_action_requested("regenerate", rows - 1)

    def copy_last_answer(self) -> None:
        """Copy the last answer's text (Ctrl/Cmd+Shift+C), or say there is none."""
        for row in reversed(range(self.transcript_model.rowCount())):
            entry = self.transcript_model.entry(row)
            if entry.role == "assistant" and entry.text:
                QGuiApplication.clipboard().setText(entry.text)
                return
        self.notice.show_message("There is no answer to copy yet.", notices.COMMAND)

    def edit_message(self, row: int) -> None:
        """Put a question back in the composer; sending replaces it and what follows."""
        entry = self.transcript_model.entry(row)
        if self.answers is None or entry.role != "user":
            return
        if self.composer.has_draft():
            self.notice.show_message(
                "Send or clear the question you are writing before editing another.", notices.COMMAND
            )
            return
        self.composer.clear_draft()
        self.composer.restore_draft(
            entry.text,
            list(entry.images),
            list(entry.thumbnails),
            list(entry.documents),
            list(entry.document_thumbnails),
        )
        self.answers.editing_row = row
        self.notice.show_message(
            "Editing a question: Send replaces it and the messages after it; × or Esc cancels.",
            notices.EDIT,
        )
        self.composer.edit.setFocus()

    def cancel_edit(self) -> None:
        """Stop editing: the composer is emptied and the next question is a new one."""
        if self.answers is None or self.answers.editing_row is None:
            return
        self.answers.editing_row = None
        self.composer.clear_draft()
        self.notice.withdraw(notices.EDIT)

    def _on_composer_cancel_requested(self) -> None:
        """Esc with no answer of the window's running: cancel an edit in progress, else stop
        whatever the engine runs (an API request served from the window's engine)."""
        if self.answers is not None and self.answers.editing_row is not None:
            self.cancel_edit()
        else:
            self.composer.stop_requested.emit()

    def _on_notice_dismissed(self, source: str) -> None:
        if source == notices.EDIT:  # closing "Editing a question" cancels the edit
            self.cancel_edit()

    def _on_composer_text_changed(self) -> None:
        answers = self.answers
        if answers is not None and answers.editing_row is not None and not self.composer.has_draft():
            # Checked once the edit in progress is done (replacing a selection empties it first).
            QTimer.singleShot(0, self._end_abandoned_edit)

    def _end_abandoned_edit(self) -> None:
        answers = self.answers
        if answers is not None and answers.editing_row is not None and not self.composer.has_draft():
            answers.editing_row = None  # the draft was cleared: the next question is a new one
            self.notice.withdraw(notices.EDIT)
