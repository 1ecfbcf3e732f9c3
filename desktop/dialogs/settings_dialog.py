"""The settings dialog: answer defaults and appearance, or one conversation's overrides.

In defaults mode it edits ``ChatDefaults`` (saved by the caller); in conversation mode the
same fields are shown with the conversation's values and Appearance is hidden. The dialog
only gathers values; the window decides where they go.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
)

from desktop.preferences import APPEARANCES, ChatDefaults
from models.inference.answer_defaults import MAX_PARALLEL
from models.memory.planner import KV_CACHE_CHOICES, kv_cache_bits

_KV_LABELS = {16: "bf16 (full precision)", 8: "8-bit", 4: "4-bit"}  # for KV_CACHE_CHOICES


class SettingsDialog(QDialog):
    def __init__(
        self,
        values: ChatDefaults,
        parent=None,
        conversation_title: str | None = None,
        memory=None,
        kv_caches=None,
    ):
        """``memory``: (model name, MemoryPlan, budget bytes) to say what context fits, or None.
        ``kv_caches``: the ``PromptCacheKeeper`` of saved KV caches, to show and edit its disk
        budget (defaults mode only), or None."""
        super().__init__(parent)
        self._values = values
        self.setWindowTitle(f"Settings for “{conversation_title}”" if conversation_title else "Settings")
        layout = QVBoxLayout(self)
        if conversation_title:
            note = QLabel("These settings apply to this conversation only.")
            note.setWordWrap(True)
            layout.addWidget(note)
        form = QFormLayout()
        self.system_prompt = QPlainTextEdit(values.system_prompt)
        self.system_prompt.setPlaceholderText("None (Llama 4 works well without one)")
        self.system_prompt.setFixedHeight(80)
        form.addRow("System prompt:", self.system_prompt)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(values.temperature)
        self.temperature.setToolTip("0 always picks the most likely token")
        form.addRow("Temperature:", self.temperature)
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setValue(values.top_p)
        form.addRow("Top-p:", self.top_p)
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 131072)
        self.max_tokens.setValue(values.max_tokens)
        form.addRow("Max answer tokens:", self.max_tokens)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setSpecialValueText("Random")
        self.seed.setValue(-1 if values.seed is None else values.seed)
        form.addRow("Seed:", self.seed)
        self.context_length = QSpinBox()
        self.context_length.setRange(256, 10_485_760)
        self.context_length.setSingleStep(1024)
        self.context_length.setValue(values.context_length)
        form.addRow("Context length:", self.context_length)
        self.context_hint = QLabel()
        self.context_hint.setWordWrap(True)
        self.context_hint.setObjectName("contextHint")
        self.context_hint.setTextFormat(Qt.TextFormat.PlainText)
        self.context_hint.setVisible(memory is not None)
        form.addRow("", self.context_hint)
        self._memory = memory
        self.kv_bits = QComboBox()
        for bits in KV_CACHE_CHOICES:
            self.kv_bits.addItem(_KV_LABELS[bits], bits)
        self.kv_bits.setCurrentIndex(
            KV_CACHE_CHOICES.index(values.kv_bits) if values.kv_bits in KV_CACHE_CHOICES else 0
        )
        self.kv_bits.setToolTip("A quantized KV cache holds 2–4× more conversation in the same memory")
        form.addRow("KV cache precision:", self.kv_bits)
        if conversation_title is not None:
            form.setRowVisible(self.kv_bits, False)  # one setting for the app, not per conversation
        self.appearance = QComboBox()
        for name in APPEARANCES:
            self.appearance.addItem(name.capitalize(), name)
        self.appearance.setCurrentIndex(
            APPEARANCES.index(values.appearance) if values.appearance in APPEARANCES else 0
        )
        self.parallel = QSpinBox()
        self.parallel.setRange(1, MAX_PARALLEL)
        self.parallel.setValue(values.parallel)
        self.parallel.setToolTip(
            "How many answers the model works on at once: the window's and the API's. Each holds "
            "its own KV cache; more at once raises the total speed, not one answer's."
        )
        self.parallel.setAccessibleName("Parallel requests")
        if conversation_title is None:
            form.addRow("Parallel requests:", self.parallel)
        else:
            self.parallel.hide()
        if conversation_title is None:
            form.addRow("Appearance:", self.appearance)
        else:
            self.appearance.hide()
        self.kv_storage = None
        if kv_caches is not None and conversation_title is None:
            from desktop.widgets.kv_cache_storage import KvCacheStorage

            self.kv_storage = KvCacheStorage(kv_caches)
            form.addRow("Saved KV caches:", self.kv_storage)
        layout.addLayout(form)
        self.context_length.valueChanged.connect(self._update_context_hint)
        self.kv_bits.currentIndexChanged.connect(self._update_context_hint)
        self._update_context_hint()
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._on_restore)
        layout.addWidget(buttons)

    def accept(self) -> None:
        if self.kv_storage is not None:
            self.kv_storage.apply()
        super().accept()

    def _update_context_hint(self, *_args) -> None:
        """What the chosen context length and KV precision mean for the loaded model's memory."""
        if self._memory is None:
            return
        from dataclasses import replace as replace_plan

        name, plan, budget = self._memory
        plan = replace_plan(plan, kv_bits=kv_cache_bits(int(self.kv_bits.currentData())))
        report = plan.fit(self.context_length.value(), budget)
        self.context_hint.setText(f"{name}: {report.summary}")
        self.context_hint.setProperty("verdict", report.verdict)

    def _on_restore(self) -> None:
        defaults = ChatDefaults(appearance=self._values.appearance)
        self.system_prompt.setPlainText(defaults.system_prompt)
        self.temperature.setValue(defaults.temperature)
        self.top_p.setValue(defaults.top_p)
        self.max_tokens.setValue(defaults.max_tokens)
        self.seed.setValue(-1)
        self.context_length.setValue(defaults.context_length)
        self.kv_bits.setCurrentIndex(0)
        self.parallel.setValue(defaults.parallel)

    def values(self) -> ChatDefaults:
        seed = self.seed.value()
        return replace(
            self._values,
            system_prompt=self.system_prompt.toPlainText().strip(),
            temperature=round(self.temperature.value(), 3),
            top_p=round(self.top_p.value(), 3),
            max_tokens=self.max_tokens.value(),
            seed=None if seed < 0 else seed,
            context_length=self.context_length.value(),
            kv_bits=int(self.kv_bits.currentData()),
            appearance=str(self.appearance.currentData()),
            parallel=self.parallel.value(),
        )
