"""The loaded model's memory plan, and each turn checked against the memory budget before it is sent.

The plan (config and safetensors headers only) is worked out on the thread pool when a model
loads. Before a turn, ``turn_settings`` picks the prefill chunk that keeps the peak in budget or
says why the turn would outgrow memory, and ``fit_documents`` first sends as text the pages of a
question's PDFs whose images would not fit (saying so); after it, the measured peak is recorded
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
        self._turn: tuple | None = None  # (model path, plan, image tiles, prefill step) of the running turn

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

    def _check(
        self, settings, new_text: str, images: Sequence, entries: Sequence, documents: Sequence, step=None
    ):
        """(plan, the budget check of the turn, its image tiles, its prefill step), or None
        without a plan. A question's PDFs count as their page images and their text blocks."""
        from models.documents.chat_documents import message_parts
        from models.inference.preprocess import ProcessorConfig, plan_tiles
        from models.memory.planner import PREFILL_STEPS, choose_prefill_step, conversation_budget_check

        plan, budget = self.plan, self.library.budget
        if plan is None or budget is None:
            return None
        plan = self._corrected(replace(plan, kv_bits=settings.kv_bits))
        so_far = conversation_tokens(entries)
        text, all_images = message_parts(new_text, images, documents)
        # Llama 4's real tiling (336-px tiles, up to 16 + 1): the tiny test models are smaller.
        processor = ProcessorConfig()
        tiles = sum(plan_tiles(*image.size, processor).tiles for image in all_images)
        turn = turn_tokens(text, tiles, processor.patches_per_tile, settings.max_tokens)
        if step is None:
            step = choose_prefill_step(plan, so_far + turn, budget.budget_bytes) or min(PREFILL_STEPS)
        check = conversation_budget_check(plan, so_far, turn, budget.budget_bytes, step, image_tiles=tiles)
        return plan, check, tiles, step

    def turn_settings(
        self, settings, new_text: str, images: Sequence, entries: Sequence, documents: Sequence = ()
    ) -> tuple[object, str | None]:
        """The settings for the next turn with a prefill chunk that keeps the peak in budget,
        or a reason the turn would outgrow the memory budget. ``entries``: the conversation so far;
        ``documents``: the question's PDFs (``ChatDocument``)."""
        checked = self._check(settings, new_text, images, entries, documents)
        if checked is None:
            return settings, None
        plan, check, tiles, step = checked
        if not check.ok:
            return settings, check.message
        self._turn = (self.model_path, plan, tiles, step)
        return replace(settings, prefill_step_size=step), None

    def turn_peak(
        self, settings, new_text: str, images: Sequence, documents: Sequence, entries: Sequence
    ) -> int:
        """The least peak the turn can have (at the smallest prefill chunk), in bytes; 0 without
        a plan."""
        from models.memory.planner import PREFILL_STEPS

        checked = self._check(settings, new_text, images, entries, documents, step=min(PREFILL_STEPS))
        return 0 if checked is None else checked[1].peak_bytes

    def fit_documents(
        self, settings, new_text: str, images: Sequence, documents: Sequence, entries: Sequence
    ) -> tuple[tuple, str | None]:
        """The question's PDFs with as many of their page images as fit the memory budget (the
        last pages go as text first), and a line saying which pages went as text (None when
        all fit, or when even text alone would not: the turn check then says why)."""
        documents = tuple(documents)
        total = sum(len(document.image_pages) for document in documents)
        if not total or self.plan is None or self.library.budget is None:
            return documents, None
        for kept in range(total, -1, -1):
            trimmed, left = [], kept
            for document in documents:
                count = min(left, len(document.image_pages))
                left -= count
                trimmed.append(
                    document if count == len(document.image_pages) else document.with_image_pages(count)
                )
            checked = self._check(settings, new_text, images, entries, trimmed)
            if checked is not None and checked[1].ok:
                if kept == total:
                    return documents, None
                return tuple(trimmed), _demoted_line(documents, trimmed)
        return documents, None

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


def _demoted_line(before: Sequence, after: Sequence) -> str:
    """One line naming the pages of each PDF that go as text because their images do not fit."""
    from models.documents.chat_documents import page_list

    parts = []
    for old, new in zip(before, after, strict=True):
        demoted = [n for n in old.image_pages if n not in new.image_pages]
        if demoted:
            verb = "goes" if len(demoted) == 1 else "go"
            parts.append(f"{old.name}: {page_list(demoted)} {verb} as text")
    return "; ".join(parts) + " (their images would not fit in memory)."
