"""The window's status bar: the model and its loading, live memory, downloads, how much of the
context the open conversation holds, and the last answer's numbers, each labelled.

One peak is shown: the last answer's (with its time to first token and speed); the live figure
is the memory MLX holds now.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from models.byte_sizes import GB, format_bytes


def _plain_label(name: str, text: str = "") -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setObjectName(name)
    return label


class StatusBar(QStatusBar):
    """Signals:
    cancel_load_requested(): the person pressed Cancel while a model loads.
    """

    cancel_load_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_label = _plain_label("modelLabel", "No model")
        self.addWidget(self.model_label)
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 0)
        self.load_progress.setMaximumWidth(120)
        self.load_progress.hide()
        self.addWidget(self.load_progress)
        self.cancel_load_button = QPushButton("Cancel")
        self.cancel_load_button.setObjectName("cancelLoad")
        self.cancel_load_button.setAccessibleName("Cancel loading the model")
        self.cancel_load_button.clicked.connect(self.cancel_load_requested)
        self.cancel_load_button.hide()
        self.addWidget(self.cancel_load_button)
        self.memory_label = _plain_label("memoryLabel")
        self.memory_label.setToolTip("Memory MLX holds now")
        self.addPermanentWidget(self.memory_label)
        self.download_label = _plain_label("downloadLabel")
        self.addPermanentWidget(self.download_label)
        self.context_label = _plain_label("contextLabel")
        self.context_label.setToolTip(
            "Tokens this conversation holds, of its context length (Settings ▸ Context length)"
        )
        self.addPermanentWidget(self.context_label)
        self.stats_label = _plain_label("statsLabel")
        self.stats_label.setToolTip(
            "The last answer: time to its first token, generation speed, and the most memory it took"
        )
        self.addPermanentWidget(self.stats_label)
        self._memory_timer = QTimer(self)
        self._memory_timer.setInterval(1000)
        self._memory_timer.timeout.connect(self.refresh_memory)

    # The model -----------------------------------------------------------------------------------
    def show_loading(self, text: str) -> None:
        """A load started (or reached a stage): ``text`` with a busy bar and Cancel."""
        self.model_label.setText(text)
        self.load_progress.show()
        self.cancel_load_button.show()
        self._memory_timer.stop()  # no model while another loads
        self.memory_label.setText("")

    def show_stage(self, text: str) -> None:
        self.model_label.setText(text)

    def show_model(self, name: str | None) -> None:
        """The load ended: the model's name (live memory starts), or "No model"."""
        self.load_progress.hide()
        self.cancel_load_button.hide()
        self.model_label.setText(name or "No model")
        if name is None:
            self._memory_timer.stop()
        else:
            self._memory_timer.start()
        self.refresh_memory()

    # Answers and downloads -----------------------------------------------------------------------
    def show_answer_numbers(self, ttft_s: float, generation_tps: float, peak_memory_gb: float) -> None:
        text = f"First token {ttft_s:.2f} s · {generation_tps:.1f} tok/s"
        if peak_memory_gb > 0:
            text += f" · Peak {format_bytes(peak_memory_gb * GB)}"
        self.stats_label.setText(text)

    def clear_answer_numbers(self) -> None:
        self.stats_label.setText("")

    def show_context(self, used: int | None, context_length: int | None) -> None:
        """The context gauge: ``used`` tokens of ``context_length`` (``used`` None: nothing to
        show; ``context_length`` None: the model's own, not known here)."""
        if used is None:
            self.context_label.setText("")
        elif context_length is None:
            self.context_label.setText(f"{used:,} tokens")
        else:
            self.context_label.setText(f"{used:,} / {context_length:,} tokens")

    def show_download(self, text: str) -> None:
        self.download_label.setText(text)

    def refresh_memory(self) -> None:
        """The live memory readout (reads MLX's allocator counters; never waits on a computation)."""
        mx = sys.modules.get("mlx.core")  # never imported here: only once the worker loaded MLX
        if mx is None or not self._memory_timer.isActive():
            self.memory_label.setText("")
            return
        self.memory_label.setText(f"Memory {format_bytes(mx.get_active_memory())}")
