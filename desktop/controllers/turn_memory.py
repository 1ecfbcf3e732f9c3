"""The loaded model's memory plan, and each turn checked against the memory budget before it is sent.

The plan (config and safetensors headers only) is worked out on the thread pool when a model
loads. Before a turn, ``turn_settings`` picks the prefill chunk that keeps the peak in budget or
says why the turn would outgrow memory; after it, the measured peak is recorded
(``models.memory.measured_peaks``) so later plans use what this machine measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from PySide6.QtCore import QObject

from desktop.controllers.model_library import ModelLibrary
from desktop.workers.background_task import run_in_background
from models.memory.turn_size import conversation_tokens, turn_tokens


class TurnMemory(QObject):
    def __init__(self, library: ModelLibrary, parent: QObject | None = None):
        super().__init__(parent)
        self.library = library
        self.plan = None  # models.memory.planner.MemoryPlan of the loaded model (unquantized KV)
        self.model_path: str | None = None
        self._turn = None  # (model path, plan, image tiles, prefill step) of the running turn

    def model_loaded(self, path: str) -> None:
        """Work out the loaded model's memory plan off the UI thread (config + headers only)."""
        from models.memory.model_plans import plan_folder, planning_budget

        self.plan, self.model_path = None, path
        override = self.library.budget_override

        def work():
            budget = planning_budget(override)
            return plan_folder(path, budget.backend), budget

        def done(result) -> None:
            if self.model_path == path:
                self.plan = result[0]
                self.library.adopt_budget(result[1])

        run_in_background(work, done, lambda _message: None, owner=self)

    def model_unloaded(self) -> None:
        self.plan = self.model_path = None

    def _corrected(self, plan):
        corrections = self.library.peak_corrections
        if corrections is None:
            return plan
        return corrections.apply(plan, self.model_path, plan.profile.name)

    def turn_settings(
        self, settings, new_text: str, images: Sequence, entries: Sequence
    ) -> tuple[object, str | None]:
        """The settings for the next turn with a prefill chunk that keeps the peak in budget,
        or a reason the turn would outgrow the memory budget. ``entries``: the conversation so far."""
        from models.inference.preprocess import ProcessorConfig, plan_tiles
        from models.memory.planner import PREFILL_STEPS, choose_prefill_step, conversation_budget_check

        plan, budget = self.plan, self.library.budget
        if plan is None or budget is None:
            return settings, None
        plan = self._corrected(replace(plan, kv_bits=settings.kv_bits))
        so_far = conversation_tokens(entries)
        # Llama 4's real tiling (336-px tiles, up to 16 + 1): the tiny test models are smaller.
        processor = ProcessorConfig()
        tiles = sum(plan_tiles(*image.size, processor).tiles for image in images)
        turn = turn_tokens(new_text, tiles, processor.patches_per_tile, settings.max_tokens)
        step = choose_prefill_step(plan, so_far + turn, budget.budget_bytes) or min(PREFILL_STEPS)
        check = conversation_budget_check(plan, so_far, turn, budget.budget_bytes, step, image_tiles=tiles)
        if not check.ok:
            return settings, check.message
        self._turn = (self.model_path, plan, tiles, step)
        return replace(settings, prefill_step_size=step), None

    def record_peak(self, step) -> None:
        """Teach the planner this answer's measured peak, off the UI thread."""
        from models.memory.budget import detect_backend
        from models.memory.measured_peaks import record_turn

        turn, self._turn = self._turn, None
        if turn is None or turn[0] is None or turn[0] != self.model_path or not step.peak_memory_gb:
            return
        path, plan, tiles, prefill_step = turn

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

    def hint_source(self, model_name: str | None):
        """(model name, plan, budget bytes) for the settings dialog's context hint, or None."""
        if self.plan is None or self.library.budget is None:
            return None
        return model_name, self._corrected(self.plan), self.library.budget.budget_bytes
