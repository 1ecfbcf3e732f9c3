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

PDFs come as OpenAI's ``file`` content parts (``{"type": "file", "file": {"filename": ...,
"file_data": "data:application/pdf;base64,..."}}``; a ``file_id`` is refused: there is no file
store). They are read here, page by page, as the window reads them (``models.documents``): the
first pages as images at the model's tiler size (as many as the 5-images-a-message rule leaves
after the message's own images, and within the request's image budget), the rest as their text,
the document going into its message through ``message_parts``. A request's files are bounded in
bytes and pages in all (``Limits``); a file that is not a usable PDF is a 400 with one line.
This runs where ``parse_chat_request`` runs: on a worker thread, never on the event loop.

Tools (``tools``, ``tool_choice``, ``parallel_tool_calls``) and structured output
(``response_format``) are checked here too: the functions' names and parameter schemas, the
assistant's ``tool_calls`` sent back (arguments must be JSON objects) and ``tool`` results
(for a call made earlier in the conversation). A forced call (``required``, a named function)
or a JSON ``response_format`` becomes the request's ``OutputConstraint``; its schemas are
bounded in depth, size and enum values and, where the grammar engine is installed
(``models.inference.constraints``), compiled before the request is queued. With tools offered
and ``tool_choice`` ``auto`` the answer is free (a call or text), so ``response_format`` is not
enforced then. The functions ride on the first message (``ChatMessage.tools``) to the chat
template; the answer is read for calls by ``models.serving.tool_calls``.

A user message's images go before its text, as in the window. No Qt, no HTTP here. The module
is long because it checks every field of a request with a reason a client can act on, and
shapes every answer, chunk and error: one wire format, in one place.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, TypeGuard

from models.documents.chat_documents import MAX_TEXT_CHARS as MAX_DOCUMENT_TEXT_CHARS
from models.documents.chat_documents import ChatDocument, message_parts, read_document
from models.documents.pdf_reading import DocumentError, document_name, open_pdf
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
from models.inference.output_constraint import ConstraintError, OutputConstraint, ToolSpec
from models.inference.preprocess import ProcessorConfig
from models.inference.prompt import ChatMessage, MessageRole, ToolCall
from models.inference.settings_spec import SETTINGS, SettingSpec

ROLES: dict[str, MessageRole] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
MAX_STOP_STRINGS = 4
MAX_MESSAGE_CHARS = 2_000_000  # as a conversation import allows (models.chats.export_format)
MAX_TEXT_CHARS = 4_000_000  # a request's messages in all, whatever the context
CHARS_PER_TOKEN = 32  # generous: Llama 4's tokens hold about 4 characters of text
MAX_TOOLS = 128  # as OpenAI allows
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for a function's name
MAX_CALL_ID_CHARS = 256
MAX_SCHEMA_DEPTH = 64  # a parameters or response schema: levels of nesting,
MAX_SCHEMA_NODES = 10_000  # objects, lists and values in all,
MAX_ENUM_VALUES = 1_000  # and values of one enum (or const list)
TOOL_CHOICES = ("none", "auto", "required")
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024  # a request's files in all, decoded (a body is 64 MB of base64)
MAX_DOCUMENT_PAGES = 500  # a request's files' pages in all


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
    max_document_bytes: int = MAX_DOCUMENT_BYTES
    max_document_pages: int = MAX_DOCUMENT_PAGES
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
    tools: tuple[ToolSpec, ...] = ()  # offered to the model (none with tool_choice "none")
    tool_choice: str = "none"  # "none", "auto", "required" or "function" (``forced``)
    forced: str = ""  # tool_choice "function": the function's name
    parallel_tool_calls: bool = True
    constraint: OutputConstraint | None = None  # what the answer must be (the grammar's)

    @property
    def call_names(self) -> tuple[str, ...]:
        """The names the answer may call; its text is read for calls only when there are any."""
        if self.tool_choice == "none":
            return ()
        if self.tool_choice == "function":
            return (self.forced,)
        return tuple(tool.name for tool in self.tools)

    @property
    def parallel(self) -> bool:
        """Whether the answer may make more than one call."""
        return self.parallel_tool_calls and self.tool_choice != "function"


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


def _data_url_bytes(url: str, param: str, max_bytes: int, too_large: str) -> bytes:
    """The bytes of a base64 ``data:`` URL (never more than ``max_bytes``: ``too_large`` says so)."""
    header, comma, payload = url.partition(",")
    if not comma or not header.lower().endswith(";base64"):
        raise _invalid(f"{param}: a data: URL must be base64 (data:...;base64,...).", param, "invalid_file")
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise _invalid(too_large, param, "file_too_large")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{param} is not valid base64.", param, "invalid_file") from None
    if len(data) > max_bytes:
        raise _invalid(too_large, param, "file_too_large")
    return data


def _file_name(raw: object, param: str) -> str:
    """A ``filename`` as it may go in the prompt: one line, printable, bounded."""
    if raw is None:
        return "document.pdf"
    if not isinstance(raw, str):
        raise _invalid(f"{param}.file.filename must be a string.", param, "invalid_file")
    return document_name(raw)


class _DocumentReader:
    """Reads a request's ``file`` parts, within its bytes, pages and text (``Limits``) in all."""

    def __init__(self, limits: Limits, processor: ProcessorConfig | None):
        self.limits = limits
        self.processor = processor or ProcessorConfig()
        self.bytes_left = limits.max_document_bytes
        self.pages_left = limits.max_document_pages
        # The documents' text layers in all, across the request: half of what a message (and
        # the request) may hold, so that later pages are "left out" rather than the request 400.
        self.text_left = min(limits.max_message_chars // 2, limits.text_chars // 2)

    def decode(self, part: dict, param: str) -> tuple[str, bytes]:
        """A ``file`` part's name and bytes (nothing read yet); ``ApiError`` says what is wrong."""
        file = part.get("file")
        if not isinstance(file, dict):
            raise _invalid(
                f"{param}.file must be an object with file_data (data:application/pdf;base64,...).",
                param,
                "invalid_file",
            )
        if file.get("file_id") is not None:
            raise _invalid(
                f"{param}.file.file_id is not supported: Llama Desk keeps no file store. "
                "Send the file inline as file_data (data:application/pdf;base64,...).",
                param,
                "unsupported_file_id",
            )
        name = _file_name(file.get("filename"), param)
        url = file.get("file_data")
        if not isinstance(url, str):
            raise _invalid(
                f"{param}.file.file_data must be a data: URL (data:application/pdf;base64,...).",
                param,
                "invalid_file",
            )
        lowered = url[:16].lower()
        if lowered.startswith(("http://", "https://")):
            raise _invalid(
                "Remote file URLs are not fetched: Llama Desk works offline. "
                "Send the file inline as file_data (data:application/pdf;base64,...).",
                param,
                "unsupported_file_url",
            )
        if not lowered.startswith("data:"):
            raise _invalid(
                "Only data: URLs are accepted as file_data (data:application/pdf;base64,...); "
                "file paths and other schemes are not.",
                param,
                "unsupported_file_url",
            )
        mb = self.limits.max_document_bytes / (1024 * 1024)
        too_large = f"{name} would bring the request's files over {mb:g} MB in all."
        data = _data_url_bytes(url, param, self.bytes_left, too_large)
        self.bytes_left -= len(data)
        return name, data

    def read(self, name: str, data: bytes, param: str, image_pages: int) -> ChatDocument:
        """``data`` read as a document: its first ``image_pages`` pages as images."""
        try:
            with open_pdf(data, name) as pdf:
                count = pdf.page_count
            if count > self.pages_left:
                raise _invalid(
                    f"{name} has {count:,} pages: the files of a request may bring at most "
                    f"{self.limits.max_document_pages:,} pages in all.",
                    param,
                    "too_many_pages",
                )
            self.pages_left -= count
            text_chars = min(MAX_DOCUMENT_TEXT_CHARS, max(self.text_left, 0))
            document = read_document(
                data, name, image_pages=image_pages, processor=self.processor, max_text_chars=text_chars
            )
            self.text_left -= sum(len(page.text) for page in document.pages)
            return document
        except DocumentError as exc:
            raise _invalid(" ".join(str(exc).split()), param, "invalid_file") from None


def _take_pages(document: ChatDocument, budget: ImageBudget) -> ChatDocument:
    """``document`` with as many page images as the request's image budget takes (the others
    go as text: a page is never a reason to refuse the request)."""
    kept = 0
    for image in document.images:
        try:
            budget.take(image)
        except ImageError:
            break
        kept += 1
    return document if kept == len(document.images) else document.with_image_pages(kept)


def _content(
    message: dict, index: int, role: str, limits: Limits, budget: ImageBudget, reader: _DocumentReader
) -> tuple[str, tuple[ChatImage, ...], tuple[ChatDocument, ...]]:
    """A message's text, images and documents (its PDFs, read page by page)."""
    param = f"messages[{index}].content"
    content = message.get("content")
    if content is None:
        if role == "assistant":
            return "", (), ()
        raise _invalid(f"{param} is missing.", param)
    if isinstance(content, str):
        return content, (), ()
    if not isinstance(content, list):
        raise _invalid(f"{param} must be a string or a list of content parts.", param)
    texts: list[str] = []
    images: list[ChatImage] = []
    files: list[tuple[str, bytes, str]] = []  # (name, bytes, param), read once the images are in
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
        elif kind == "file":
            if role != "user":
                raise _invalid("Only user messages can carry files.", where)
            files.append((*reader.decode(part, where), where))
        else:
            raise _invalid(f"{where} has an unsupported type {kind!r} (use text, image_url or file).", where)
    documents: list[ChatDocument] = []
    room = limits.max_images_per_message - len(images)  # the 5-images rule: pages count too
    for name, data, where in files:
        allowed = max(0, min(room, budget.max_images - budget.images))
        document = _take_pages(reader.read(name, data, where, allowed), budget)
        room -= len(document.image_pages)
        documents.append(document)
    return "\n".join(texts), tuple(images), tuple(documents)


def _messages(
    raw: object, limits: Limits, memory: AnswerMemory | None, processor: ProcessorConfig | None = None
) -> tuple[ChatMessage, ...]:
    if not isinstance(raw, list) or not raw:
        raise _invalid("messages must be a non-empty list.", "messages")
    if len(raw) > limits.max_messages:
        raise _invalid(f"At most {limits.max_messages} messages a request.", "messages")
    out = []
    budget = ImageBudget(limits.max_images_per_request, limits.max_pixels_per_request)
    reader = _DocumentReader(limits, processor)
    chars = 0
    call_ids: set[str] = set()  # the calls made so far, which a tool result must answer
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise _invalid(f"messages[{i}] must be an object.", f"messages[{i}]")
        raw_role = message.get("role")
        role = ROLES.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise _invalid(
                f"messages[{i}].role {message.get('role')!r} is not supported "
                "(use system, developer, user, assistant or tool).",
                f"messages[{i}].role",
            )
        calls = _message_calls(message, i) if role == "assistant" else ()
        text, images, documents = _content(message, i, role, limits, budget, reader)
        shown = message_parts(text, images, documents)[0]  # the text as it goes in, documents too
        chars += len(shown) + sum(len(json.dumps(dict(c.arguments))) + len(c.name) for c in calls)
        _check_length(shown, chars, f"messages[{i}].content", limits)
        call_id = _result_call_id(message, i, call_ids) if role == "tool" else None
        call_ids.update(call.id for call in calls)
        ids = memory.lookup(text) if memory is not None and role == "assistant" and not calls else None
        out.append(
            ChatMessage(role, text, images, ids, tool_calls=calls, tool_call_id=call_id, documents=documents)
        )
    if out[-1].role not in ("user", "tool"):
        raise _invalid(
            "The last message must be the user's (or a tool's result).", f"messages[{len(out) - 1}].role"
        )
    return tuple(out)


def _message_calls(message: dict, index: int) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls``, checked: ids, function names, JSON arguments."""
    raw = message.get("tool_calls")
    where = f"messages[{index}].tool_calls"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _invalid(f"{where} must be a list.", where)
    calls = []
    for j, call in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(call, dict):
            raise _invalid(f"{at} must be an object.", at)
        if call.get("type", "function") != "function":
            raise _invalid(f"{at}.type must be function.", f"{at}.type")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id or len(call_id) > MAX_CALL_ID_CHARS:
            raise _invalid(f"{at}.id must be a string of 1 to {MAX_CALL_ID_CHARS} characters.", f"{at}.id")
        function = call.get("function")
        if not isinstance(function, dict):
            raise _invalid(f"{at}.function must be an object.", f"{at}.function")
        name = _function_name(function.get("name"), f"{at}.function.name")
        calls.append(
            ToolCall(call_id, name, _arguments(function.get("arguments"), f"{at}.function.arguments"))
        )
    return tuple(calls)


def _arguments(raw: object, param: str) -> dict:
    """A call's ``arguments``: a string of JSON holding an object (decoded within bounds)."""
    from models.serving.json_body import decode_json  # it raises this module's ApiError

    if not isinstance(raw, str):
        raise _invalid(f"{param} must be a string of JSON.", param)
    try:
        value = decode_json(raw.encode("utf-8")) if raw.strip() else {}
    except ApiError as exc:
        raise _invalid(f"{param} is not valid JSON: {exc.message}", param, "invalid_tool_arguments") from None
    if not isinstance(value, dict):
        raise _invalid(f"{param} must be a JSON object.", param, "invalid_tool_arguments")
    return value


def _result_call_id(message: dict, index: int, call_ids: set[str]) -> str:
    param = f"messages[{index}].tool_call_id"
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(f"{param} must name the call this is the result of.", param)
    if call_id not in call_ids:
        raise _invalid(
            f"{param} {call_id!r} matches no tool call of an earlier assistant message.",
            param,
            "unknown_tool_call_id",
        )
    return call_id


def _function_name(raw: object, param: str) -> str:
    if not isinstance(raw, str) or FUNCTION_NAME.fullmatch(raw) is None:
        raise _invalid(
            f"{param} must be 1 to 64 letters, digits, underscores or dashes.", param, "invalid_function_name"
        )
    return raw


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


def _check_schema(schema: object, param: str) -> Mapping[str, Any]:
    """A JSON schema (an object), bounded in nesting, size and enum values before anything
    compiles it: a schema bomb is refused here, in microseconds."""
    if not isinstance(schema, dict):
        raise _invalid(f"{param} must be a JSON schema (an object).", param, "invalid_schema")
    nodes = 0
    stack: list[tuple[object, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise _invalid(
                f"{param} is too large: over {MAX_SCHEMA_NODES:,} values in all.", param, "schema_too_large"
            )
        if depth > MAX_SCHEMA_DEPTH:
            raise _invalid(
                f"{param} nests more than {MAX_SCHEMA_DEPTH} levels deep.", param, "schema_too_large"
            )
        if isinstance(value, dict):
            for key in ("enum", "const"):
                listed = value.get(key)
                if isinstance(listed, list) and len(listed) > MAX_ENUM_VALUES:
                    raise _invalid(
                        f"{param} has an {key} of {len(listed):,} values, more than {MAX_ENUM_VALUES:,}.",
                        param,
                        "schema_too_large",
                    )
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    return schema


def _tools(raw: object) -> tuple[ToolSpec, ...]:
    """The request's ``tools``: functions with a name, a description and a parameters schema."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _invalid("tools must be a list of functions.", "tools")
    if len(raw) > MAX_TOOLS:
        raise _invalid(f"tools takes at most {MAX_TOOLS} functions.", "tools")
    tools: list[ToolSpec] = []
    for i, tool in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise _invalid(f'{at} must be an object of type "function".', at)
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _invalid(f"{at}.function must be an object.", f"{at}.function")
        name = _function_name(function.get("name"), f"{at}.function.name")
        if any(t.name == name for t in tools):
            raise _invalid(f"{at}.function.name {name!r} is given twice.", f"{at}.function.name")
        description = function.get("description", "")
        if not isinstance(description, str):
            raise _invalid(f"{at}.function.description must be a string.", f"{at}.function.description")
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {}
        else:
            parameters = _check_schema(parameters, f"{at}.function.parameters")
        tools.append(ToolSpec(name, description, parameters))
    return tuple(tools)


def _tool_choice(raw: object, tools: tuple[ToolSpec, ...]) -> tuple[str, str]:
    """``tool_choice`` as (choice, forced name): "none", "auto", "required", or ("function",
    its name) for a named function, which must be one of ``tools``."""
    if raw is None:
        return ("auto" if tools else "none"), ""
    if isinstance(raw, str) and raw in TOOL_CHOICES:
        choice, name = raw, ""
    elif isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        choice, name = "function", raw["function"].get("name")
        if not isinstance(name, str) or name not in {t.name for t in tools}:
            raise _invalid(
                f"tool_choice names the function {name!r}, which is not in tools.",
                "tool_choice",
                "unknown_tool",
            )
    else:
        raise _invalid(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}.',
            "tool_choice",
        )
    if choice in ("required", "function") and not tools:
        raise _invalid(f"tool_choice {raw!r} needs tools to choose from.", "tool_choice")
    return choice, name


def _response_format(raw: object) -> OutputConstraint | None:
    """``response_format``: text (no constraint), any JSON object, or JSON for a schema."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _invalid("response_format must be an object.", "response_format")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputConstraint("json_object")
    if kind != "json_schema":
        raise _invalid(
            f"response_format.type {kind!r} is not supported (use text, json_object or json_schema).",
            "response_format.type",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict):
        raise _invalid("response_format.json_schema must be an object.", "response_format.json_schema")
    name = _function_name(spec.get("name"), "response_format.json_schema.name")
    if not isinstance(spec.get("strict", True), bool | None):
        raise _invalid(
            "response_format.json_schema.strict must be true or false.", "response_format.json_schema.strict"
        )
    schema = _check_schema(spec.get("schema"), "response_format.json_schema.schema")
    return OutputConstraint("json_schema", schema=schema, name=name)


def _constraint(
    tools: tuple[ToolSpec, ...], choice: str, forced: str, parallel: bool, response: OutputConstraint | None
) -> OutputConstraint | None:
    """What the answer must be: the calls a forced ``tool_choice`` asks for, else the
    ``response_format`` (not while the model is free to call a tool instead: ``auto``)."""
    if choice == "required":
        return OutputConstraint("tool_call", tools=tools, parallel=parallel)
    if choice == "function":
        return OutputConstraint("tool_call", tools=tuple(t for t in tools if t.name == forced))
    if choice == "auto":
        return None
    return response


def check_constraint(constraint: OutputConstraint | None) -> None:
    """Check ``constraint`` as the request arrives (bounds, and the grammar engine's validation),
    so that a schema that cannot be used is the request's 400 naming the field, not a failed
    answer; the engine compiles it for the model's vocabulary when the answer starts (and
    refuses it there too, as a 400)."""
    if constraint is None:
        return
    from models.inference.constraints import check_constraint as check_grammar

    default = "tools" if constraint.kind == "tool_call" else "response_format"
    try:
        check_grammar(constraint)
    except ConstraintError as exc:
        raise _invalid(str(exc), exc.param or default, "invalid_schema") from None


def parse_chat_request(
    body: object,
    limits: Limits | None = None,
    memory: AnswerMemory | None = None,
    processor: ProcessorConfig | None = None,
) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body; raise ``ApiError`` (400) saying what is wrong.
    ``processor``: the model's tiler, which a PDF's page images are rendered for (Llama 4's
    by default). Files are read here: call it off the event loop."""
    limits = limits or Limits()
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    if body.get("n") not in (None, 1):
        raise _invalid("Only n=1 is supported.", "n")
    tools = _tools(body.get("tools"))
    choice, forced = _tool_choice(body.get("tool_choice"), tools)
    parallel = body.get("parallel_tool_calls", True)
    if parallel is None:
        parallel = True
    if not isinstance(parallel, bool):
        raise _invalid("parallel_tool_calls must be true or false.", "parallel_tool_calls")
    response = _response_format(body.get("response_format"))
    messages = _messages(body.get("messages"), limits, memory, processor)
    if tools and choice != "none":
        definitions = sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in tools)
        _check_length("", sum(len(m.text) for m in messages) + definitions, "tools", limits)
        messages = (replace(messages[0], tools=tools), *messages[1:])
    settings = _generation_settings(body, limits)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream must be true or false.", "stream")
    constraint = _constraint(tools, choice, forced, parallel, response)
    check_constraint(constraint)
    return ChatRequest(
        messages,
        settings,
        stream,
        _stop(body.get("stop")),
        tools=tools if choice != "none" else (),
        tool_choice=choice,
        forced=forced,
        parallel_tool_calls=parallel,
        constraint=constraint,
    )


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


def finish_reason(step: GenerationStep, stopped: bool, called: bool = False) -> str:
    """OpenAI's ``finish_reason`` for an answer's last step (``called``: it made tool calls)."""
    if called:
        return "tool_calls"
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


ARGUMENT_PIECE_CHARS = 32  # a streamed call's arguments come in pieces of this size, as OpenAI's


def arguments_json(call: ToolCall) -> str:
    return json.dumps(dict(call.arguments), ensure_ascii=False)


def tool_call_json(call: ToolCall) -> dict:
    """A call as ``message.tool_calls`` lists it: ``arguments`` a string of JSON."""
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments_json(call)},
    }


def tool_call_deltas(calls: tuple[ToolCall, ...]) -> list[dict]:
    """The ``delta``s that stream ``calls`` as OpenAI does: for each, one with its index, id,
    type and name (and empty arguments), then its arguments in pieces."""
    deltas: list[dict] = []
    for index, call in enumerate(calls):
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append({"tool_calls": [head]})
        text = arguments_json(call)
        for start in range(0, len(text), ARGUMENT_PIECE_CHARS):
            piece = text[start : start + ARGUMENT_PIECE_CHARS]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    return deltas


def completion(
    ids: CompletionIds, text: str, reason: str, step: GenerationStep, calls: tuple[ToolCall, ...] = ()
) -> dict:
    """The whole answer; with ``calls``, ``content`` is None unless the model wrote text too."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = [tool_call_json(call) for call in calls]
    return {
        "id": ids.id,
        "object": "chat.completion",
        "created": ids.created,
        "model": ids.model,
        "choices": [
            {
                "index": 0,
                "message": message,
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
