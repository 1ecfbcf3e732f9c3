"""The model's tool calls, read from its answer: Llama 4's pythonic form and the JSON forms.

Llama 4 calls functions as a Python list, ``[get_weather(city="Kobe", days=3)]``, or, as its
chat template asks (and as a forced call's grammar writes), as JSON: ``{"name": ...,
"parameters": {...}}``, a list of those, or several in a row; ``"arguments"`` is taken for
``"parameters"``. The calls must open the answer (after ``<|python_start|>``, if the model
writes it); prose after them is the message's content. The forms are read with mlx-vlm's
parsers (``mlx_vlm.tools.parsers.pythonic`` and ``json_tools``), wrapped here: their result
is checked (only the request's function names count, arguments must be a JSON object) and
``true``/``false``/``null`` in a pythonic call are taken as JSON's. Anything else is text.

``split_calls`` reads a whole answer; ``CallReader`` reads a streamed one, holding back what
could still begin a call (as ``StopStrings`` holds back what could begin a stop string) and
letting text through as soon as it cannot. No Qt, no HTTP here.
"""

from __future__ import annotations

import ast
import json
import re
import uuid
from collections.abc import Collection
from functools import cache
from typing import Any

from models.inference.prompt import ToolCall

MAX_CALL_CHARS = 256_000  # an answer longer than this, held as a call, is let through as text
PYTHON_START = "<|python_start|>"
PYTHON_END = "<|python_end|>"
_CLOSING_MARKERS = (PYTHON_END, "<|eom|>", "<|eot|>")
_NAME_START = re.compile(r"\[\s*([A-Za-z_][\w.-]*)?(\s*)(\()?")
_JSON_LITERALS = {"true": True, "false": False, "null": None}
_CALL_KEYS = {"name", "parameters", "arguments", "type", "id"}


def new_call_id() -> str:
    """A call's id, as OpenAI writes them: ``call_`` and 24 random characters."""
    return f"call_{uuid.uuid4().hex[:24]}"


@cache
def _parsers():
    """mlx-vlm's pythonic and JSON tool-call parsers (imported when first needed: mlx-vlm
    brings MLX with it)."""
    from mlx_vlm.tools.parsers import json_tools, pythonic

    return pythonic, json_tools


def _balanced_end(text: str, start: int) -> int | None:
    """Where the bracketed expression opening at ``text[start]`` ends (one past its closing
    bracket), skipping strings in either quote; None when it has not ended."""
    depth = 0
    quote = None
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth <= 0:
                return index + 1
    return None


class _JsonLiterals(ast.NodeTransformer):
    """``true``, ``false`` and ``null`` as Python's constants (a model mixing JSON into a
    pythonic call; mlx-vlm's parser refuses the names)."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _JSON_LITERALS:
            return ast.copy_location(ast.Constant(_JSON_LITERALS[node.id]), node)
        return node


def _pythonic(segment: str) -> list[dict] | None:
    pythonic, _ = _parsers()
    try:
        parsed = pythonic.parse_tool_call(segment)
    except Exception:  # noqa: BLE001 - the parser's every failure means "not a call"
        try:
            tree = _JsonLiterals().visit(ast.parse(segment.strip(), mode="eval"))
            parsed = pythonic.parse_tool_call(ast.unparse(tree))
        except Exception:  # noqa: BLE001 - still not a call
            return None
    return parsed if isinstance(parsed, list) else [parsed]


def _json_calls(text: str) -> tuple[list[Any], str] | None:
    """JSON values from the start of ``text`` (one, a list, or several in a row, separated by
    whitespace, ``;`` or ``,``) and what follows them; None when it does not open with one."""
    _, json_tools = _parsers()
    segment_end = _balanced_end(text, 0)
    if segment_end is None:
        return None
    try:
        first = json_tools.parse_tool_call(text[:segment_end])
    except Exception:  # noqa: BLE001 - not JSON
        return None
    values = first if isinstance(first, list) else [first]
    position = segment_end
    decoder = json.JSONDecoder()
    while True:
        gap = re.match(r"[\s;,]*", text[position:])
        after = position + (gap.end() if gap else 0)
        if text[after : after + 1] != "{":
            return values, text[position:]
        try:
            value, end = decoder.raw_decode(text, after)
        except (ValueError, RecursionError):
            return values, text[position:]
        values.append(value)
        position = end


def _arguments(value: Any) -> dict | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _call(item: Any, names: Collection[str]) -> ToolCall | None:
    """One parsed call, checked: a known name, arguments a JSON object."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict) and item.get("type") == "function":  # OpenAI's own shape
        item = item["function"]
    elif not set(item) <= _CALL_KEYS:
        return None
    name = item.get("name")
    if not isinstance(name, str) or name.strip() not in names:
        return None
    raw = item["parameters"] if "parameters" in item else item.get("arguments", {})
    arguments = _arguments(raw)
    if arguments is None:
        return None
    try:
        json.dumps(arguments, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # a set, bytes, NaN: not JSON
        return None
    return ToolCall(new_call_id(), name.strip(), arguments)


def _body_start(text: str) -> int:
    """Where a call could begin: past leading whitespace and ``<|python_start|>`` (and the
    ``<|python_end|>`` right after it, as Llama 4's template writes a call)."""
    start = len(text) - len(text.lstrip())
    for marker in (PYTHON_START, PYTHON_END):
        if not text.startswith(marker, start):
            break
        start += len(marker)
        start += len(text[start:]) - len(text[start:].lstrip())
    return start


def _rest(text: str) -> str:
    """Prose after the calls, without the markers that close a call."""
    rest = text.strip()
    changed = True
    while changed:
        changed = False
        for marker in _CLOSING_MARKERS:
            if rest.startswith(marker):
                rest, changed = rest[len(marker) :].strip(), True
    return rest


def split_calls(text: str, names: Collection[str], parallel: bool = True) -> tuple[tuple[ToolCall, ...], str]:
    """The calls ``text`` opens with, and the content left (the whole text when it makes no
    call). Every call must name one of ``names``; without ``parallel`` only the first counts."""
    if not names or len(text) > MAX_CALL_CHARS:
        return (), text
    start = _body_start(text)
    body = text[start:]
    items: list[Any] | None = None
    rest = ""
    if body.startswith("["):
        end = _balanced_end(body, 0)
        if end is not None:
            items = _pythonic(body[:end])
            rest = body[end:]
    if items is None and body[:1] in ("{", "["):
        found = _json_calls(body)
        if found is not None:
            items, rest = found
    if not items:
        return (), text
    calls = [_call(item, names) for item in items]
    if any(call is None for call in calls):
        return (), text
    checked = tuple(call for call in calls if call is not None)
    return (checked if parallel else checked[:1]), _rest(rest)


def _could_begin(text: str, names: Collection[str]) -> bool:
    """Whether ``text`` (the answer so far) could still be the start of a call."""
    start = _body_start(text)
    body = text[start:]
    if not body:
        return True
    if PYTHON_START.startswith(body) or PYTHON_END.startswith(body):
        return True  # a marker, arriving piece by piece
    if body[0] == "{":
        return body[1:].lstrip()[:1] in ("", '"')
    if body[0] != "[":
        return False
    match = _NAME_START.match(body)
    if match is None:
        return False
    after = body[match.end() :]
    name = match.group(1)
    if name is None:  # "[" and spaces, or a JSON list
        return after[:1] in ("", "{")
    if match.group(3):  # "[name(": the name is whole
        return name in names
    if after:  # "[name" and something other than "("
        return False
    return any(known.startswith(name) for known in names)


class CallReader:
    """Reads a streamed answer for tool calls: ``feed`` returns the text that is safe to send
    now, holding back what could still begin a call; ``finish`` returns the calls (if the
    answer was calls) and the content still to send."""

    def __init__(self, names: Collection[str], parallel: bool = True):
        self.names = tuple(names)
        self.parallel = parallel
        self._held = ""
        self._deciding = bool(self.names)

    @property
    def holding(self) -> bool:
        """Whether text is held back as a possible call."""
        return bool(self._held)

    def feed(self, text: str) -> str:
        if not self._deciding:
            return text
        self._held += text
        if len(self._held) <= MAX_CALL_CHARS and _could_begin(self._held, self.names):
            return ""
        self._deciding = False
        held, self._held = self._held, ""
        return held

    def finish(self) -> tuple[tuple[ToolCall, ...], str]:
        """The calls the answer made (none when it was text) and the text not yet sent."""
        held, self._held = self._held, ""
        self._deciding = False
        if not held:
            return (), ""
        return split_calls(held, self.names, self.parallel)
