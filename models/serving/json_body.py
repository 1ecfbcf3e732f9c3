"""A request body's JSON, decoded within bounds: nesting depth, integer size, finite numbers.

``decode_json`` scans the bytes outside strings for nesting before ``json.loads`` sees them
(a deeply nested body would otherwise recurse in the decoder, on a thread with a small stack),
never turns an integer of more than ``MAX_INTEGER_DIGITS`` digits into an ``int``, and refuses
``NaN``, ``Infinity`` and numbers too large for a float (``1e400``). Each refusal is an
``ApiError`` (400) that names the field it found the value in.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

from models.serving.openai_api import ApiError

MAX_DEPTH = 64
MAX_INTEGER_DIGITS = 20

# A string, from its opening quote to its closing one or the end of the body: always matches
# where it starts, so the scan is linear even for a body of unmatched quotes.
_STRING = re.compile(rb'"(?:[^"\\]++|\\[\s\S]?)*+(?:"|\Z)')
# Where an integer could be too long or a float overflow (outside strings); other bodies are
# decoded without the per-number hooks, which cost a Python call per number.
_RISKY_NUMBER = rb"\d[eE]|\d{%d}"
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = np.zeros(256, np.int32)
_STEPS[list(b"[{")] = 1
_STEPS[list(b"]}")] = -1
_CHUNK = 1 << 20


class _Refused:
    """Stands in for a value that must not be used, so that its place can be named."""

    def __init__(self, reason: str):
        self.reason = reason


def outside_strings(raw: bytes | bytearray) -> bytes:
    """``raw`` with every string's contents taken out."""
    return _STRING.sub(b'""', raw)


def nesting_depth_exceeds(skeleton: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """Whether the arrays and objects of ``skeleton`` (``outside_strings``) nest deeper than
    ``max_depth``."""
    brackets = skeleton.translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return False
    codes = np.frombuffer(brackets, np.uint8)
    depth = 0
    for start in range(0, len(codes), _CHUNK):
        running = np.cumsum(_STEPS[codes[start : start + _CHUNK]]) + depth
        if int(running.max()) > max_depth:
            return True
        depth = int(running[-1])
    return False


def decode_json(
    raw: bytes | bytearray, max_depth: int = MAX_DEPTH, max_digits: int = MAX_INTEGER_DIGITS
) -> object:
    """``raw`` decoded, or ``ApiError`` (400) saying what is wrong and where."""
    skeleton = outside_strings(raw)
    if nesting_depth_exceeds(skeleton, max_depth):
        raise ApiError(400, f"The body is nested more than {max_depth} levels deep.", code="invalid_json")
    refused = []

    def parse_int(text: str) -> object:
        digits = len(text) - text.startswith("-")
        if digits > max_digits:
            refused.append(True)
            return _Refused(f"has {digits:,} digits; integers of at most {max_digits} digits are accepted")
        return int(text)

    def parse_float(text: str) -> object:
        value = float(text)
        if math.isfinite(value):
            return value
        refused.append(True)
        return _Refused(_NOT_FINITE)

    def parse_constant(_text: str) -> object:
        refused.append(True)
        return _Refused(_NOT_FINITE)

    risky = re.search(_RISKY_NUMBER % (max_digits + 1), skeleton) is not None
    try:
        body = json.loads(
            raw,
            parse_int=parse_int if risky else None,
            parse_float=parse_float if risky else None,
            parse_constant=parse_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"The body is not valid JSON: {exc}", code="invalid_json") from None
    except (RecursionError, ValueError, OverflowError):
        raise ApiError(400, "The body is not valid JSON.", code="invalid_json") from None
    if refused:
        path, value = _first_refused(body)
        raise ApiError(400, f"{path or 'The body'} {value.reason}.", param=path or None)
    return body


_NOT_FINITE = "must be a finite number (NaN, Infinity and numbers beyond ±1.8e308 are refused)"


def _first_refused(body: object) -> tuple[str, _Refused]:
    """The path (``messages[0].content``) and value of the first refused value, in body order."""
    stack: list[tuple[str, object]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Refused):
            return path, value
        if isinstance(value, dict):
            items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    raise AssertionError("a refused value was recorded but not found")  # pragma: no cover
