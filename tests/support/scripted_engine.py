"""A scripted stand-in for ``Engine`` (``prepare`` / ``generate`` / ``name``) for Qt-free tests
of answer runs and conversation sessions: it yields the steps it is given."""

from __future__ import annotations

from models.inference.engine import GenerationStep, PromptError


def step(text="", finish_reason=None, token_ids=(), error=None) -> GenerationStep:
    return GenerationStep(
        text=text,
        token=None,
        prompt_tokens=4,
        cached_tokens=0,
        generation_tokens=len(token_ids),
        ttft_s=0.1,
        prompt_tps=40.0,
        generation_tps=20.0,
        peak_memory_gb=0.5,
        finish_reason=finish_reason,
        error=error,
        token_ids=tuple(token_ids),
    )


class ScriptedEngine:
    """Yields the steps it is given; ``prompt_error`` makes ``prepare`` refuse."""

    name = "scripted"

    def __init__(self, steps, prompt_error: str | None = None, raise_after: int | None = None):
        self.steps = list(steps)
        self.prompt_error = prompt_error
        self.raise_after = raise_after
        self.closed = False

    def prepare(self, messages, settings, continue_final=False):
        if self.prompt_error:
            raise PromptError(self.prompt_error, (1, 2))
        return object()

    def generate(self, messages, settings, cancel, continue_final=False, prepared=None):
        try:
            for n, step in enumerate(self.steps):
                if self.raise_after is not None and n == self.raise_after:
                    raise RuntimeError("the GPU went away")
                yield step
        finally:
            self.closed = True
