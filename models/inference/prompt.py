"""Turning a conversation into Llama 4 prompt tokens.

The checkpoint's own chat template lays out the turns. Message texts go through it as
placeholders and are tokenized separately, so that:

- what a person types is always text (``<|eot|>`` typed in a message is not a control token);
- an assistant turn is fed back with the exact token ids the model generated, so the next turn
  shares its whole prefix with the KV cache and only the new tokens are prefilled;
- the prompt starts with one ``<|begin_of_text|>`` (the template's), never two.

Tools go through the template too (``ChatMessage.tools`` on the first message, as
OpenAI-style function dicts), and so do an assistant's tool calls and ``tool`` results. A call's
arguments and a result are placeholders as well: where the template writes one as JSON (its
``tojson``, a quoted placeholder), the value's JSON is put in, as text; a result that is a JSON
object or list goes in as that value, as if the caller had sent it parsed. The functions'
definitions are template text, so one that holds a control token's text is refused.

Each ``<|image|>`` the template emits becomes the tile layout of ``models.inference.preprocess``.
The template is rendered by ``models.inference.chat_template`` (bounded work, values and output)
and every tokenizer call is guarded (``models.inference.tokenizer_guard``): a hostile template
or a tokenizer panic fails the prompt with one line.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from models.documents.chat_documents import ChatDocument, message_parts
from models.inference.chat_template import ChatTemplate
from models.inference.images import ChatImage
from models.inference.output_constraint import ToolSpec
from models.inference.preprocess import ProcessorConfig, TilePlan, image_token_string, preprocess_image
from models.inference.tokenizer_guard import tokenizer_call

Role = Literal["system", "user", "assistant"]  # what a stored conversation holds
MessageRole = Literal["system", "user", "assistant", "tool"]  # "tool": a call's result (the API's)
# A message's text (``\ue000i\ue001``) or a tool call's arguments (``\ue000i.j\ue001``).
_SENTINEL = re.compile("\ue000(\\d+)(?:\\.(\\d+))?\ue001")


def _plain(token) -> str | list[str] | None:
    """A special-tokens-map value as the template sees it: a string or a list of strings."""
    if isinstance(token, str):
        return str(token)
    if isinstance(token, (list, tuple)) and all(isinstance(t, str) for t in token):
        return [str(t) for t in token]
    return None


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant turn made: its id, the function and its arguments."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One turn. ``token_ids`` are the ids an assistant turn was generated as, when known.

    ``tool_calls``: the calls an assistant turn made; ``tool_call_id``: the call a ``tool``
    turn is the result of; ``tools``: the functions offered to the model, given on a
    conversation's first message (only the API's conversations have any); ``documents``: a
    question's attached PDFs, which the encoder puts in as their page images and text blocks
    (``models.documents.chat_documents.message_parts``) before its own images and text."""

    role: MessageRole
    text: str
    images: tuple[ChatImage, ...] = ()
    token_ids: tuple[int, ...] | None = field(default=None, compare=False)
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    documents: tuple[ChatDocument, ...] = ()

    def expanded(self) -> ChatMessage:
        """The message with its documents put in: page images first, their text blocks before
        its text (itself when it has none)."""
        if not self.documents:
            return self
        text, images = message_parts(self.text, self.images, self.documents)
        return replace(self, text=text, images=images, documents=())

    def with_image_pages(self, count: int) -> ChatMessage:
        """The message with only its documents' first ``count`` page images kept as images (in
        document order; the others go as text)."""
        documents = []
        for document in self.documents:
            documents.append(document.with_image_pages(count))
            count = max(0, count - len(documents[-1].image_pages))
        return replace(self, documents=tuple(documents))

    @property
    def page_images(self) -> int:
        return sum(len(document.image_pages) for document in self.documents)


def tool_definition(tool: ToolSpec) -> dict[str, Any]:
    """``tool`` as the OpenAI-style function dict chat templates take (``tools=[...]``)."""
    function: dict[str, Any] = {"name": tool.name}
    if tool.description:
        function["description"] = tool.description
    if tool.parameters:
        function["parameters"] = dict(tool.parameters)
    return {"type": "function", "function": function}


def _result_value(text: str) -> Any:
    """A tool result as the template should see it: the JSON object or list it holds, else
    the text itself."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except (ValueError, RecursionError):
            pass
    return text


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
        messages = [message.expanded() for message in messages]
        if continue_final:
            if not messages or messages[-1].role != "assistant":
                raise ValueError("only an assistant answer can be continued")
            head = self.encode(messages[:-1], add_generation_prompt=True, valid_id=valid_id)
            tail = self._answer_ids(messages[-1], valid_id)
            return EncodedPrompt(ids=head.ids + tail, keys=head.keys + tail, images=head.images)
        tools = [tool_definition(tool) for tool in messages[0].tools] if messages else []
        if tools:
            self._check_definitions(tools)
        conversation, images = self._conversation(messages, bool(tools))
        rendered = self.template.render(
            conversation, add_generation_prompt, self._template_variables, tools or None
        )

        plans = [self.pixels(image) for image in images]
        per_tile = self.processor.patches_per_tile
        ids: list[int] = []
        image_index = 0
        for piece, slot in self._pieces(rendered, messages):
            if slot is not None:
                index, call, as_json = slot
                ids.extend(self._slot_ids(messages, index, call, as_json, bool(tools), valid_id))
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

    @staticmethod
    def _conversation(messages: list[ChatMessage], with_tools: bool) -> tuple[list[dict], list[ChatImage]]:
        """The messages as the template takes them, each text a placeholder, and their images.

        With tools, a user message without images is a plain string: Llama 4's template puts
        the first one after the functions with ``|trim``, which a list of parts would not
        survive (the two render alike everywhere else)."""
        conversation: list[dict[str, object]] = []
        images: list[ChatImage] = []
        for i, message in enumerate(messages):
            placeholder = f"\ue000{i}\ue001"
            entry: dict[str, object] = {"role": message.role, "content": placeholder}
            if message.role == "user" and (message.images or not with_tools):
                parts: list[dict[str, str]] = [{"type": "image"} for _ in message.images]
                parts.append({"type": "text", "text": placeholder})
                entry["content"] = parts
                images.extend(message.images)
            if message.role == "assistant" and message.tool_calls:
                entry["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": f"\ue000{i}.{j}\ue001"},
                    }
                    for j, call in enumerate(message.tool_calls)
                ]
            if message.role == "tool":
                entry["tool_call_id"] = message.tool_call_id
            conversation.append(entry)
        return conversation, images

    @staticmethod
    def _pieces(
        rendered: str, messages: list[ChatMessage]
    ) -> Iterator[tuple[str, tuple[int, int | None, bool] | None]]:
        """The rendered text as (template text, None) and ("", (message, call, as_json)) for
        each placeholder. A call's arguments or a tool result that the template wrote as JSON
        (in quotes) takes the quotes: its value's JSON goes there."""
        position = 0
        for match in _SENTINEL.finditer(rendered):
            start, end = match.span()
            index = int(match.group(1))
            call = None if match.group(2) is None else int(match.group(2))
            as_json = (call is not None or messages[index].role == "tool") and (
                start - 1 >= position and rendered[start - 1] == '"' and rendered[end : end + 1] == '"'
            )
            if as_json:
                start, end = start - 1, end + 1
            yield rendered[position:start], None
            yield "", (index, call, as_json)
            position = end
        yield rendered[position:], None

    def _slot_ids(
        self,
        messages: list[ChatMessage],
        index: int,
        call: int | None,
        as_json: bool,
        with_tools: bool,
        valid_id,
    ) -> list[int]:
        """The ids of one placeholder: a message's text, a call's arguments or a tool result
        (as JSON where the template wrote JSON), always tokenized as text."""
        message = messages[index]
        if call is not None:
            arguments = message.tool_calls[call].arguments
            return self._text_ids(json.dumps(dict(arguments), ensure_ascii=False))
        if message.role == "tool":
            if as_json:
                return self._text_ids(json.dumps(_result_value(message.text), ensure_ascii=False))
            return self._text_ids(message.text)
        if message.role == "assistant":
            return self._answer_ids(message, valid_id)
        first_turn = with_tools and index == (1 if messages[0].role == "system" else 0)
        strip = message.role == "system" or first_turn  # as the template's ``|trim``
        return self._text_ids(message.text.strip() if strip else message.text)

    def _check_definitions(self, tools: list[dict]) -> None:
        """Refuse function definitions holding a control token's text: the template writes
        them as its own text, so ``<|eot|>`` in a description would end the turn."""
        text = json.dumps(tools, ensure_ascii=False)
        if self._text_ids(text) != self._template_ids(text):
            raise ValueError("a tool's definition holds the text of one of the model's control tokens")
