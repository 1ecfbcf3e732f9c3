"""How many tokens a conversation holds and a new turn adds, for the memory check before sending.

Exact where the numbers exist (the last answer's prompt and generated token counts, or stored
token ids); otherwise an estimate that errs on the large side: about three characters per token
plus a few tokens of chat-template framing per message, and for an image Llama 4's largest
tiling (16 tiles and the global one) of 144 features each. A question's attached documents
count as they go in the prompt (``message_parts``): their text blocks with its text, their page
images with its images. Used before a turn is sent, so a conversation that would outgrow memory
is caught before the model starts; ``demoted_to_fit`` sends a question's last page images as text
instead when they would not fit (a page image costs its tiles, ``plan_tiles``, of features).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from models.documents.chat_documents import ChatDocument
    from models.inference.images import ChatImage
    from models.inference.preprocess import ProcessorConfig

CHARACTERS_PER_TOKEN = 3  # an over-estimate for English and code with Llama 4's tokenizer
FRAMING_TOKENS = 8  # header and end-of-turn tokens the chat template adds to each message
MAX_TILES_PER_IMAGE = 17  # Llama 4: up to 16 tiles plus the global one
FEATURES_PER_TILE = 144  # (336 / 14)² patches, pixel-shuffled by 0.5 per side
MAX_IMAGE_TOKENS = MAX_TILES_PER_IMAGE * FEATURES_PER_TILE


class Message(Protocol):
    """What this module reads from a transcript entry (read-only: frozen dataclasses qualify);
    a question's ``documents`` are read too where the entry has them."""

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


def _with_documents(text: str, images: Sequence[object], documents: Sequence[ChatDocument]):
    """The text and images a question goes in the prompt with, its documents' included."""
    if not documents:
        return text, tuple(images)
    from models.documents.chat_documents import message_parts

    return message_parts(text, images, documents)  # type: ignore[arg-type]  # only counted here


def turn_tokens(
    text: str,
    image_tiles: int,
    features_per_tile: int,
    max_tokens: int,
    documents: Sequence[ChatDocument] = (),
) -> int:
    """Tokens the next turn adds: the question (with its ``documents``' text blocks), its
    images' tiles (``question_tiles``: the documents' page images among them), and room for the
    answer."""
    text, _ = _with_documents(text, (), documents)
    return estimated_text_tokens(text) + image_tiles * features_per_tile + max_tokens


def image_tiles(size: tuple[int, int], processor: ProcessorConfig) -> int:
    """Tiles an image of ``size`` (width, height) is cut into, the global one included."""
    from models.inference.preprocess import plan_tiles

    return plan_tiles(size[0], size[1], processor).tiles


def question_tiles(
    images: Sequence[ChatImage], documents: Sequence[ChatDocument], processor: ProcessorConfig
) -> int:
    """Tiles of a question's own images and of its documents' page images."""
    pictures = [*images, *(image for document in documents for image in document.images)]
    return sum(image_tiles(image.size, processor) for image in pictures)


def demoted_to_fit(
    documents: Sequence[ChatDocument], tokens_over: int, processor: ProcessorConfig
) -> tuple[ChatDocument, ...]:
    """``documents`` with their last page images going in as text instead, as many as free
    ``tokens_over`` tokens (each page image frees its tiles of features; its text stays). All
    of them when that is not enough; none when ``tokens_over`` is not positive."""
    out = list(documents)
    freed = 0
    for index in range(len(out) - 1, -1, -1):
        document = out[index]
        keep = len(document.image_pages)
        for image in reversed(document.images):
            if freed >= tokens_over:
                break
            freed += image_tiles(image.size, processor) * processor.patches_per_tile
            keep -= 1
        if keep != len(document.image_pages):
            out[index] = document.with_image_pages(keep)
    return tuple(out)


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
    from each message's token ids or text, and its images at their largest tiling (a question's
    documents: their text blocks and page images)."""
    entries = list(entries)
    for entry in reversed(entries):
        if entry.role == "assistant" and entry.stats is not None:
            measured = _measured_tokens(entry.stats)
            if measured is not None:
                return measured
    # No numbers (a fresh start carried these over): estimate from the text and images.
    total = 0
    for entry in entries:
        text, images = _with_documents(entry.text, entry.images, getattr(entry, "documents", ()))
        total += len(entry.token_ids) if entry.token_ids else estimated_text_tokens(text)
        total += len(images) * MAX_IMAGE_TOKENS
    return total
