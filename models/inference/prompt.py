"""Turning a conversation into Llama 4 prompt tokens.

The checkpoint's own chat template lays out the turns. Message texts go through it as
placeholders and are tokenized separately, so that:

- what a person types is always text (``<|eot|>`` typed in a message is not a control token);
- an assistant turn is fed back with the exact token ids the model generated, so the next turn
  shares its whole prefix with the KV cache and only the new tokens are prefilled;
- the prompt starts with one ``<|begin_of_text|>`` (the template's), never two.

Each ``<|image|>`` the template emits becomes the tile layout of ``models.inference.preprocess``.
The template is rendered by ``models.inference.chat_template`` (bounded work, values and output)
and every tokenizer call is guarded (``models.inference.tokenizer_guard``): a hostile template
or a tokenizer panic fails the prompt with one line.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from models.inference.chat_template import ChatTemplate
from models.inference.images import ChatImage
from models.inference.preprocess import ProcessorConfig, TilePlan, image_token_string, preprocess_image
from models.inference.tokenizer_guard import tokenizer_call

Role = Literal["system", "user", "assistant"]
_SENTINEL = re.compile("\ue000(\\d+)\ue001")


def _plain(token) -> str | list[str] | None:
    """A special-tokens-map value as the template sees it: a string or a list of strings."""
    if isinstance(token, str):
        return str(token)
    if isinstance(token, (list, tuple)) and all(isinstance(t, str) for t in token):
        return [str(t) for t in token]
    return None


@dataclass(frozen=True)
class ChatMessage:
    """One turn. ``token_ids`` are the ids an assistant turn was generated as, when known."""

    role: Role
    text: str
    images: tuple[ChatImage, ...] = ()
    token_ids: tuple[int, ...] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PromptImage:
    """An image in the prompt: its tiles and the positions of its ``<|patch|>`` tokens."""

    image: ChatImage
    plan: TilePlan
    pixel_values: np.ndarray = field(repr=False)
    positions: np.ndarray = field(repr=False)  # indices into EncodedPrompt.ids


@dataclass(frozen=True)
class EncodedPrompt:
    ids: list[int]
    keys: list  # per position: the id, or (id, image hash, n) for image features
    images: list[PromptImage]


class PromptEncoder:
    """Encodes conversations for one checkpoint's tokenizer and image processor."""

    def __init__(self, tokenizer, processor: ProcessorConfig, cache_size: int = 8):
        self.tokenizer = tokenizer
        self.processor = processor
        with tokenizer_call("reading its special tokens"):
            self.patch_id = tokenizer.convert_tokens_to_ids("<|patch|>")
            unknown = tokenizer.unk_token_id
            special = {k: _plain(v) for k, v in tokenizer.special_tokens_map.items() if _plain(v) is not None}
        if self.patch_id is None or self.patch_id == unknown:
            raise ValueError("the tokenizer has no <|patch|> token; it is not a Llama 4 tokenizer")
        self.template = ChatTemplate(tokenizer.chat_template)
        self._template_variables = special  # bos_token and the others, as transformers passes them
        self._pixels: OrderedDict[str, tuple[np.ndarray, TilePlan]] = OrderedDict()
        self._cache_size = cache_size

    def pixels(self, image: ChatImage) -> tuple[np.ndarray, TilePlan]:
        """Preprocessed tiles of ``image``, cached by content hash."""
        hit = self._pixels.get(image.sha256)
        if hit is None:
            hit = preprocess_image(image.image, self.processor)
            self._pixels[image.sha256] = hit
            if len(self._pixels) > self._cache_size:
                self._pixels.popitem(last=False)
        else:
            self._pixels.move_to_end(image.sha256)
        return hit

    def _text_ids(self, text: str) -> list[int]:
        if not text:
            return []
        with tokenizer_call("encoding a message"):
            return self.tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)

    def _template_ids(self, text: str) -> list[int]:
        if not text:
            return []
        with tokenizer_call("encoding the chat template's text"):
            return self.tokenizer.encode(text, add_special_tokens=False)

    def _answer_ids(self, message: ChatMessage, valid_id) -> list[int]:
        """An answer's exact generated ids when they are usable, else its text tokenized.

        Stored or imported ids are checked: one out of range (or a layout token) would crash
        the embedding or break the prompt, so such an answer is re-tokenized from its text."""
        ids = message.token_ids
        if ids is not None and (valid_id is None or all(valid_id(t) for t in ids)):
            return list(ids)
        return self._text_ids(message.text)

    def encode(
        self,
        messages: list[ChatMessage],
        add_generation_prompt: bool = True,
        continue_final: bool = False,
        valid_id=None,
    ) -> EncodedPrompt:
        """Encode ``messages``; with ``continue_final`` the last (assistant) turn is left open
        so that generation continues it (an answer that stopped at the token limit).
        ``valid_id(token_id) -> bool`` vets stored answer ids before they are reused."""
        if continue_final:
            if not messages or messages[-1].role != "assistant":
                raise ValueError("only an assistant answer can be continued")
            head = self.encode(messages[:-1], add_generation_prompt=True, valid_id=valid_id)
            tail = self._answer_ids(messages[-1], valid_id)
            return EncodedPrompt(ids=head.ids + tail, keys=head.keys + tail, images=head.images)
        conversation: list[dict[str, object]] = []
        images: list[ChatImage] = []
        for i, message in enumerate(messages):
            placeholder = f"\ue000{i}\ue001"
            content: str | list[dict[str, str]] = placeholder
            if message.role == "user":
                content = [{"type": "image"} for _ in message.images]
                content.append({"type": "text", "text": placeholder})
                images.extend(message.images)
            conversation.append({"role": message.role, "content": content})
        rendered = self.template.render(conversation, add_generation_prompt, self._template_variables)

        plans = [self.pixels(image) for image in images]
        per_tile = self.processor.patches_per_tile
        ids: list[int] = []
        image_index = 0
        for n, piece in enumerate(_SENTINEL.split(rendered)):
            if n % 2 == 1:  # a message's text
                message = messages[int(piece)]
                if message.role == "assistant":
                    ids.extend(self._answer_ids(message, valid_id))
                else:
                    text = message.text.strip() if message.role == "system" else message.text
                    ids.extend(self._text_ids(text))
                continue
            chunks = piece.split("<|image|>")
            for k, chunk in enumerate(chunks):
                if k > 0:
                    if image_index >= len(plans):
                        raise ValueError("the chat template emitted more images than were attached")
                    chunk = image_token_string(plans[image_index][1], per_tile) + chunk
                    image_index += 1
                ids.extend(self._template_ids(chunk))
        if image_index != len(plans):
            raise ValueError("the chat template dropped attached images")

        keys: list = list(ids)
        prompt_images = []
        patch_positions = np.flatnonzero(np.asarray(ids) == self.patch_id) if ids else np.array([])
        start = 0
        for image, (pixel_values, plan) in zip(images, plans, strict=True):
            count = plan.tiles * per_tile
            positions = patch_positions[start : start + count]
            if len(positions) != count:
                raise ValueError("the prompt has fewer <|patch|> tokens than the images need")
            for j, pos in enumerate(positions):
                keys[pos] = (self.patch_id, image.sha256, j)
            prompt_images.append(PromptImage(image, plan, pixel_values, positions))
            start += count
        if start != len(patch_positions):
            raise ValueError("the prompt has more <|patch|> tokens than the images yield")
        return EncodedPrompt(ids=ids, keys=keys, images=prompt_images)
