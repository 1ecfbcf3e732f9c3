"""What the engine takes and gives: settings, streamed steps, and its exceptions."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.inference.settings_spec import setting

FINISH_REASONS = ("stop", "length", "cancelled", "error")


class GenerationCancelled(Exception):
    """Raised inside the engine when the cancel event is set."""


class PromptError(ValueError):
    """A conversation that cannot be answered as it is (too long, bad template); say why."""

    def __init__(self, message: str, prompt_ids: list[int] | tuple[int, ...] = ()):
        super().__init__(message)
        self.prompt_ids = tuple(prompt_ids)


class ModelLoadError(RuntimeError):
    """The checkpoint exists but could not be loaded; the message says why."""


@dataclass(frozen=True)
class GenerationSettings:
    """What an answer is generated with. The knobs a person or a client sets are the table's
    (``settings_spec.SETTINGS``: defaults, ranges, flags, fields); the rest are the engine's."""

    max_tokens: int = setting("max_tokens").default
    temperature: float = setting("temperature").default
    top_p: float = setting("top_p").default
    min_p: float = setting("min_p").default  # 0: off
    repetition_penalty: float = setting("repetition_penalty").default  # 1: off
    seed: int | None = setting("seed").default
    prefill_step_size: int = 512
    context_length: int | None = setting("context_length").default  # None: the model's maximum
    kv_bits: int | None = None  # quantize the KV cache (8 or 4); only the global layers' caches can be
    kv_group_size: int = 64


@dataclass(frozen=True)
class GenerationStep:
    """One step of an answer. The last step has a ``finish_reason``."""

    text: str
    token: int | None
    prompt_tokens: int  # prompt tokens prefilled for this turn (the cache held the rest)
    cached_tokens: int  # prompt tokens reused from the KV cache
    generation_tokens: int
    ttft_s: float
    prompt_tps: float
    generation_tps: float
    peak_memory_gb: float
    finish_reason: str | None = None
    error: str | None = None
    token_ids: tuple[int, ...] = field(default=(), repr=False)  # last step: generated ids
    prompt_token_ids: tuple[int, ...] = field(default=(), repr=False)  # last step: the prompt
