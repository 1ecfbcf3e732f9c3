"""What an answer must be, when a caller asks for structured output: the shared contract of the
API (``response_format``, forced tool calls) and the engine's constrained decoding.

An ``OutputConstraint`` is a value: valid JSON for a schema (``json_schema``), any JSON object
(``json_object``), or a call of the given tools (``tool_call``: one call, or with ``parallel`` a
list of calls, each ``{"name": ..., "parameters": {...}}`` with the parameters valid for that
tool's schema). The engine compiles it into a grammar (``models.inference.constraints``) and
masks the logits with it, token by token, so the output is valid whatever the weights.
``ConstraintError`` says what cannot be compiled, naming the request field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("json_schema", "json_object", "tool_call")


class ConstraintError(ValueError):
    """A schema or tool list that cannot be used; ``param`` names the request field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its name, what it does, and its parameters' JSON schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputConstraint:
    kind: str  # one of KINDS
    schema: Mapping[str, Any] | None = None  # json_schema: the schema
    tools: tuple[ToolSpec, ...] = ()  # tool_call: the tools, one of which is called
    parallel: bool = False  # tool_call: a list of one or more calls
    name: str = ""  # json_schema: the schema's name, as the request gave it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConstraintError(f"Unknown output constraint {self.kind!r}.")
