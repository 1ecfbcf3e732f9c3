"""How many tokens a conversation holds and a new turn adds, for the memory check before sending.

Exact where the numbers exist (the last answer's prompt and generated token counts, or stored
token ids); otherwise an estimate that errs on the large side: about three characters per token
plus a few tokens of chat-template framing per message, and for an image Llama 4's largest
tiling (16 tiles and the global one) of 144 features each. Used before a turn is sent, so a
conversation that would outgrow memory is caught before the model starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

CHARACTERS_PER_TOKEN = 3  # an over-estimate for English and code with Llama 4's tokenizer
FRAMING_TOKENS = 8  # header and end-of-turn tokens the chat template adds to each message
MAX_TILES_PER_IMAGE = 17  # Llama 4: up to 16 tiles plus the global one
FEATURES_PER_TILE = 144  # (336 / 14)² patches, pixel-shuffled by 0.5 per side
MAX_IMAGE_TOKENS = MAX_TILES_PER_IMAGE * FEATURES_PER_TILE


class Message(Protocol):
    """What this module reads from a transcript entry (read-only: frozen dataclasses qualify)."""

    @property
    def role(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def images(self) -> Sequence[object]: ...
    @property
    def token_ids(self) -> Sequence[int] | None: ...
    @property
    def stats(self) -> object | None: ...


def estimated_text_tokens(text: str) -> int:
    """Tokens a message of ``text`` takes in the prompt, erring on the large side."""
    return len(text) // CHARACTERS_PER_TOKEN + FRAMING_TOKENS


def turn_tokens(text: str, image_tiles: int, features_per_tile: int, max_tokens: int) -> int:
    """Tokens the next turn adds: the question, its images' tiles, and room for the answer."""
    return estimated_text_tokens(text) + image_tiles * features_per_tile + max_tokens


def _measured_tokens(stats: object) -> int | None:
    """The prompt plus the generated tokens of an answer's numbers, or None without them."""
    prompt_ids = getattr(stats, "prompt_token_ids", None)
    generated = int(getattr(stats, "generation_tokens", 0) or 0)
    if prompt_ids:
        return len(prompt_ids) + generated
    prompt_tokens = getattr(stats, "prompt_tokens", None)
    if prompt_tokens:
        return int(prompt_tokens) + int(getattr(stats, "cached_tokens", 0) or 0) + generated
    return None


def conversation_tokens(entries: Iterable[Message]) -> int:
    """Tokens the conversation holds so far: the last measured answer's numbers, else an estimate
    from each message's token ids or text, and its images at their largest tiling."""
    entries = list(entries)
    for entry in reversed(entries):
        if entry.role == "assistant" and entry.stats is not None:
            measured = _measured_tokens(entry.stats)
            if measured is not None:
                return measured
    # No numbers (a fresh start carried these over): estimate from the text and images.
    return sum(
        (len(e.token_ids) if e.token_ids else estimated_text_tokens(e.text))
        + len(e.images) * MAX_IMAGE_TOKENS
        for e in entries
    )
