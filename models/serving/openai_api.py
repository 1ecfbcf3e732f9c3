"""OpenAI's chat-completions wire format: checking a request, shaping answers and errors.

``parse_chat_request`` turns a decoded JSON body into a frozen ``ChatRequest`` (conversation
as ``ChatMessage``s, generation settings, stream flag, stop strings) or raises ``ApiError``
with OpenAI's error shape and a reason a client can act on. Images come only as ``data:``
URLs in ``image_url`` content parts; they go through the window's own image rules
(``models.inference.images``: at most 5 per message, 64 megapixels an image from its header,
bad images refused with the reason) and a request's images are bounded in count and pixels
(``ImageBudget``). Here only headers are read: the job decodes each image once, when it runs.
Remote ``http(s)`` URLs are refused (the app is offline) and so is anything else: a client
never names a file on this machine. Text is bounded in characters, per message and in all,
before anything is tokenized.

A user message's images go before its text, as in the window. No Qt, no HTTP here. The module
is long because it checks every field of a request with a reason a client can act on, and
shapes every answer, chunk and error: one wire format, in one place.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeGuard

from models.inference.answer_defaults import CONTEXT_LENGTH, MAX_TOKENS
from models.inference.engine import GenerationSettings, GenerationStep
from models.inference.images import (
    MAX_IMAGES_PER_MESSAGE,
    MAX_IMAGES_PER_REQUEST,
    MAX_PIXELS_PER_REQUEST,
    ChatImage,
    ImageBudget,
    ImageError,
    load_image_bytes,
)
from models.inference.prompt import ChatMessage, Role
from models.inference.settings_spec import SETTINGS, SettingSpec

ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_STRINGS = 4
MAX_MESSAGE_CHARS = 2_000_000  # as a conversation import allows (models.chats.export_format)
MAX_TEXT_CHARS = 4_000_000  # a request's messages in all, whatever the context
CHARS_PER_TOKEN = 32  # generous: Llama 4's tokens hold about 4 characters of text


class ErrorType(Enum):
    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    NOT_FOUND = "not_found_error"
    SERVER = "server_error"
    RATE_LIMIT = "rate_limit_error"


class ApiError(Exception):
    """A request that cannot be answered, as OpenAI reports it (``error`` object, HTTP status)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: ErrorType = ErrorType.INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.kind.value,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_images_per_message: int = MAX_IMAGES_PER_MESSAGE
    max_images_per_request: int = MAX_IMAGES_PER_REQUEST
    max_pixels_per_request: int = MAX_PIXELS_PER_REQUEST
    max_message_chars: int = MAX_MESSAGE_CHARS
    max_text_chars: int | None = None  # None: from the context length (see ``text_chars``)
    stream_buffer_chunks: int = 256  # a stream whose client is this far behind is cancelled,
    stream_stall_s: float = 30.0  # as is one whose client takes nothing for this long
    max_messages: int = 2048
    default_max_tokens: int = MAX_TOKENS
    context_length: int | None = CONTEXT_LENGTH  # prompt + answer, in tokens (None: the model's)
    body_timeout_s: float = 60.0  # to send the whole body, once the headers are in

    @property
    def text_chars(self) -> int:
        """The most characters a request's messages may hold in all: what the context could
        take at ``CHARS_PER_TOKEN``, and never more than ``MAX_TEXT_CHARS``."""
        if self.max_text_chars is not None:
            return self.max_text_chars
        if self.context_length:
            return min(MAX_TEXT_CHARS, self.context_length * CHARS_PER_TOKEN)
        return MAX_TEXT_CHARS


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[ChatMessage, ...]
    settings: GenerationSettings
    stream: bool = False
    stop: tuple[str, ...] = ()


class AnswerMemory:
    """The token ids of recent answers, by their text: a client resending the conversation
    gets its assistant turns fed back as the ids they were generated as, so the KV cache's
    prefix matches and only the new tokens are prefilled (re-tokenizing the text can differ)."""

    def __init__(self, size: int = 64):
        self._ids: OrderedDict[str, tuple[int, ...]] = OrderedDict()
        self._size = size

    def remember(self, text: str, token_ids: tuple[int, ...]) -> None:
        if not text or not token_ids:
            return
        self._ids[text] = tuple(token_ids)
        self._ids.move_to_end(text)
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def lookup(self, text: str) -> tuple[int, ...] | None:
        return self._ids.get(text)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, ErrorType.INVALID_REQUEST, param, code)


def decode_image_url(url: object, param: str) -> ChatImage:
    """A ``data:`` URL's image as a ``ChatImage`` (its header checked, nothing decoded);
    anything else raises ``ApiError`` (400)."""
    if not isinstance(url, str):
        raise _invalid("image_url.url must be a string.", param)
    lowered = url[:16].lower()
    if lowered.startswith(("http://", "https://")):
        raise _invalid(
            "Remote image URLs are not fetched: Llama Desk works offline. "
            "Send the image inline as a data: URL (data:image/png;base64,...).",
            param,
            "remote_image_url",
        )
    if not lowered.startswith("data:"):
        raise _invalid(
            "Only data: image URLs are accepted (data:image/png;base64,...); "
            "file paths and other schemes are not.",
            param,
            "unsupported_image_url",
        )
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise _invalid(
            "An image data: URL must be base64 (data:image/...;base64,...).", param, "invalid_image"
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{param} is not valid base64.", param, "invalid_image") from None
    try:
        return load_image_bytes(data, param, verify=False)
    except ImageError as exc:
        raise _invalid(str(exc), param, "invalid_image") from None


def _content(message: dict, index: int, role: str, limits: Limits, budget: ImageBudget) -> tuple[str, tuple]:
    param = f"messages[{index}].content"
    content = message.get("content")
    if content is None:
        if role == "assistant":
            return "", ()
        raise _invalid(f"{param} is missing.", param)
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise _invalid(f"{param} must be a string or a list of content parts.", param)
    texts: list[str] = []
    images: list[ChatImage] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _invalid(f"{where}.text must be a string.", where)
            texts.append(text)
        elif kind == "image_url":
            if role != "user":
                raise _invalid("Only user messages can carry images.", where)
            if len(images) >= limits.max_images_per_message:
                raise _invalid(
                    f"A message can carry at most {limits.max_images_per_message} images "
                    f"(Llama 4 was tested with up to {MAX_IMAGES_PER_MESSAGE}).",
                    where,
                    "too_many_images",
                )
            try:
                budget.check_count(where)
            except ImageError as exc:
                raise _invalid(str(exc), where, "too_many_images") from None
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            image = decode_image_url(url, where)
            try:
                budget.take(image)
            except ImageError as exc:
                raise _invalid(str(exc), where, "too_many_pixels") from None
            images.append(image)
        else:
            raise _invalid(f"{where} has an unsupported type {kind!r} (use text or image_url).", where)
    return "\n".join(texts), tuple(images)


def _messages(raw: object, limits: Limits, memory: AnswerMemory | None) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages must be a non-empty list.", "messages")
    if len(raw) > limits.max_messages:
        raise _invalid(f"At most {limits.max_messages} messages a request.", "messages")
    out = []
    budget = ImageBudget(limits.max_images_per_request, limits.max_pixels_per_request)
    chars = 0
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _invalid(f"messages[{i}] must be an object.", f"messages[{i}]")
        raw_role = message.get("role")
        role = ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise _invalid(
                f"messages[{i}].role {message.get('role')!r} is not supported "
                "(use system, developer, user or assistant).",
                f"messages[{i}].role",
            )
        text, images = _content(message, i, role, limits, budget)
        chars += len(text)
        _check_length(text, chars, f"messages[{i}].content", limits)
        ids = memory.lookup(text) if memory is not None and role == "assistant" else None
        out.append(ChatMessage(role, text, images, ids))
    if out[-1].role != "user":
        raise _invalid("The last message must be the user's.", f"messages[{len(out) - 1}].role")
    return tuple(out)


def _check_length(text: str, total: int, param: str, limits: Limits) -> None:
    """Refuse a message, or messages in all, longer in characters than the limits (checked
    before anything is tokenized: a huge text would hold the engine, or its memory)."""
    if len(text) > limits.max_message_chars:
        raise _invalid(
            f"{param} is {len(text):,} characters, more than the {limits.max_message_chars:,} "
            "a message may hold.",
            param,
            "string_above_max_length",
        )
    if total > limits.text_chars:
        raise _invalid(
            f"The messages up to {param} hold {total:,} characters, more than the "
            f"{limits.text_chars:,} a request may hold (the context could not take them).",
            param,
            "string_above_max_length",
        )


def _field_given(body: dict, spec: SettingSpec) -> str:
    """Which of the setting's request fields counts: the first one given (else the first)."""
    return next((f for f in spec.api_fields if body.get(f) is not None), spec.api_fields[0])


def _setting(body: dict, spec: SettingSpec, name: str) -> Any:
    """The request's value of one setting of the table, from field ``name``, checked against the
    table's range (None when not given); ``ApiError`` names the field."""
    value = body.get(name)
    if value is None:
        return None
    if spec.kind is int:
        if not _whole(value):
            raise _invalid(f"{name} must be an integer.", name)
        if spec.api_modulo:
            return value % spec.api_modulo
        if not spec.low <= value <= spec.high:
            raise _invalid(f"{name} must be an integer in [{spec.low}, {spec.high}].", name)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name} must be a number.", name)
    if not math.isfinite(value):
        raise _invalid(f"{name} must be a finite number.", name)
    if spec.problem(value):
        bracket = "(" if spec.low_open else "["
        raise _invalid(f"{name} must be in {bracket}{spec.low:g}, {spec.high:g}].", name)
    return float(value)


def _generation_settings(body: dict, limits: Limits) -> GenerationSettings:
    """The request's generation settings: each field of the table of settings that it gives,
    checked against the table's range (max_tokens also against the context); the table's
    defaults for the rest (the server's for max_tokens)."""
    context = limits.context_length
    values = {}
    for spec in SETTINGS:
        if not spec.api_fields:
            continue
        name = _field_given(body, spec)
        asked = body.get(name)
        if spec.name == "max_tokens" and context is not None and _whole(asked) and asked > context - 1:
            raise _invalid(
                f"{name} must be at most {context - 1:,}: the context length is {context:,} "
                "tokens, prompt and answer together.",
                name,
            )
        value = _setting(body, spec, name)
        if value is not None:
            values[spec.name] = value
    values.setdefault("max_tokens", limits.default_max_tokens)
    return GenerationSettings(**values, context_length=context)


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _stop(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _invalid("stop must be a string or a list of strings.", "stop")
    if len(stops) > MAX_STOP_STRINGS:
        raise _invalid(f"stop takes at most {MAX_STOP_STRINGS} strings.", "stop")
    return tuple(s for s in stops if s)


def parse_chat_request(
    body: object, limits: Limits | None = None, memory: AnswerMemory | None = None
) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body; raise ``ApiError`` (400) saying what is wrong."""
    limits = limits or Limits()
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    if body.get("n") not in (None, 1):
        raise _invalid("Only n=1 is supported.", "n")
    if body.get("tools") or body.get("tool_choice") not in (None, "none"):
        raise _invalid("Tools are not supported.", "tools")
    messages = _messages(body.get("messages"), limits, memory)
    settings = _generation_settings(body, limits)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream must be true or false.", "stream")
    return ChatRequest(messages, settings, stream, _stop(body.get("stop")))


class StopStrings:
    """Cuts streamed text at the first stop string, holding back what could begin one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self._held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """The text that is safe to send now; after a hit, ``hit`` is True and nothing more."""
        if self.hit:
            return ""
        if not self.stops:
            return text
        buffer = self._held + text
        found = [buffer.find(s) for s in self.stops if s in buffer]
        if found:
            self.hit = True
            self._held = ""
            return buffer[: min(found)]
        keep = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buffer)), 0, -1):
                if buffer.endswith(stop[:n]):
                    keep = max(keep, n)
                    break
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.hit else held


def finish_reason(step: GenerationStep, stopped: bool) -> str:
    """OpenAI's ``finish_reason`` for an answer's last step."""
    if stopped or step.finish_reason == "stop":
        return "stop"
    return "length" if step.finish_reason == "length" else "stop"


def usage(step: GenerationStep) -> dict:
    prompt = len(step.prompt_token_ids)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": step.generation_tokens,
        "total_tokens": prompt + step.generation_tokens,
        "prompt_tokens_details": {"cached_tokens": step.cached_tokens},
    }


@dataclass(frozen=True)
class CompletionIds:
    """The id, creation time and model name every chunk of one answer repeats."""

    model: str
    id: str
    created: int

    @classmethod
    def new(cls, model: str) -> CompletionIds:
        return cls(model, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()))


def completion(ids: CompletionIds, text: str, reason: str, step: GenerationStep) -> dict:
    return {
        "id": ids.id,
        "object": "chat.completion",
        "created": ids.created,
        "model": ids.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason,
                "logprobs": None,
            }
        ],
        "usage": usage(step),
    }


def chunk(ids: CompletionIds, delta: dict, reason: str | None = None) -> dict:
    return {
        "id": ids.id,
        "object": "chat.completion.chunk",
        "created": ids.created,
        "model": ids.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}],
    }


def usage_chunk(ids: CompletionIds, step: GenerationStep) -> dict:
    return {
        "id": ids.id,
        "object": "chat.completion.chunk",
        "created": ids.created,
        "model": ids.model,
        "choices": [],
        "usage": usage(step),
    }


def models_list(model: str, context_length: int | None = None) -> dict:
    entry = {"id": model, "object": "model", "created": 0, "owned_by": "llama-desk"}
    return {"object": "list", "data": [{**entry, "context_length": context_length}]}
