"""The Settings row for saved KV caches: the disk budget, the space used, and a Clear button.

It edits a ``PromptCacheKeeper`` folder (the one the worker and ``llama-desk ask`` use): Clear
acts at once; the budget is written by ``apply()`` when the dialog is accepted.
"""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget

from models.inference.prompt_cache_keeper import PromptCacheKeeper

GB = 1024**3


def _size_text(n: int) -> str:
    if n >= GB:
        return f"{n / GB:.1f} GB"
    if n >= 1024**2:
        return f"{n / 1024**2:.0f} MB"
    return f"{n / 1024:.0f} KB" if n else "nothing"


class KvCacheStorage(QWidget):
    def __init__(self, keeper: PromptCacheKeeper, parent=None):
        super().__init__(parent)
        self._keeper = keeper
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.budget = QSpinBox()
        self.budget.setRange(0, 10_000)
        self.budget.setSuffix(" GB")
        self.budget.setValue(round(keeper.budget_bytes / GB))
        self.budget.setToolTip(
            "Conversations' KV caches are kept on disk so returning to one does not process it "
            "again; the least recently used go first past this size. 0 keeps none."
        )
        layout.addWidget(self.budget)
        self.used = QLabel()
        self.used.setObjectName("kvCacheUsed")
        layout.addWidget(self.used, 1)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self._on_clear)
        layout.addWidget(self.clear_button)
        self._show_used()

    def _show_used(self) -> None:
        files = self._keeper.files()
        used = sum(f.bytes for f in files)
        self.used.setText(f"{_size_text(used)} used ({len(files)} conversations)")
        self.clear_button.setEnabled(bool(files))

    def _on_clear(self) -> None:
        self._keeper.clear()
        self._show_used()

    def apply(self) -> None:
        """Keep the chosen budget (evicting down to it)."""
        if self.budget.value() * GB != self._keeper.budget_bytes:
            self._keeper.set_budget(self.budget.value() * GB)
        self._show_used()
