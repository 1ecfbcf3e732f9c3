"""The settings dialog: answer defaults and appearance, or one conversation's overrides.

In defaults mode it edits ``ChatDefaults`` (saved by the caller); in conversation mode the
same fields are shown with the conversation's values and Appearance is hidden. The answer
settings are one spin box each, from the table of settings (``settings_spec.SETTINGS``: label,
range, step, tooltip). The dialog only gathers values; the window decides where they go.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

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
from models.inference.settings_spec import SETTINGS, SettingSpec, setting
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
        self.context_hint = QLabel()  # under Context length: what fits in memory
        self.context_hint.setWordWrap(True)
        self.context_hint.setObjectName("contextHint")
        self.context_hint.setTextFormat(Qt.TextFormat.PlainText)
        self.context_hint.setVisible(memory is not None)
        # One spin box per setting of the table the window keeps, with the table's range.
        self.boxes: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for spec in SETTINGS:
            if spec.stored:
                self.boxes[spec.name] = box = _spin_box(spec, getattr(values, spec.name))
                form.addRow(spec.label, box)
                if conversation_title is not None and not spec.per_conversation:
                    form.setRowVisible(box, False)
                if spec.name == "context_length":
                    form.addRow("", self.context_hint)
        context_length = self.boxes["context_length"]
        assert isinstance(context_length, QSpinBox)
        self.context_length = context_length
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
        for name, box in self.boxes.items():
            _show(box, getattr(defaults, name))
        self.kv_bits.setCurrentIndex(0)
        self.parallel.setValue(defaults.parallel)

    def values(self) -> ChatDefaults:
        return replace(
            self._values,
            system_prompt=self.system_prompt.toPlainText().strip(),
            **{name: _chosen(box, setting(name)) for name, box in self.boxes.items()},
            kv_bits=int(self.kv_bits.currentData()),
            appearance=str(self.appearance.currentData()),
            parallel=self.parallel.value(),
        )


def _spin_box(spec: SettingSpec, value: Any) -> QSpinBox | QDoubleSpinBox:
    """A spin box over the setting's range (``SettingSpec.dialog_range``) showing ``value``."""
    low, high = spec.dialog_range()
    box: QSpinBox | QDoubleSpinBox
    if spec.kind is int:
        box = QSpinBox()
        box.setRange(int(low), int(high))
        box.setSingleStep(int(spec.step))
    else:
        box = QDoubleSpinBox()
        box.setDecimals(spec.decimals)
        box.setRange(low, high)
        box.setSingleStep(spec.step)
    if spec.unset_text:
        box.setSpecialValueText(spec.unset_text)  # shown at the minimum, one step below the range
    box.setToolTip(spec.help[:1].upper() + spec.help[1:])
    box.setAccessibleName(spec.label.rstrip(":"))
    _show(box, value)
    return box


def _show(box: QSpinBox | QDoubleSpinBox, value: Any) -> None:
    """Show ``value``; unset (None) is the box's minimum, its special value text."""
    if isinstance(box, QSpinBox):
        box.setValue(box.minimum() if value is None else int(value))
    else:
        box.setValue(box.minimum() if value is None else float(value))


def _chosen(box: QSpinBox | QDoubleSpinBox, spec: SettingSpec) -> Any:
    """The box's value as the setting's (None: unset, for a setting that may be)."""
    if spec.unset_text and box.value() == box.minimum():
        return None
    return round(box.value(), spec.decimals) if spec.kind is float else int(box.value())
