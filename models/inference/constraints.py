"""Constrained decoding: an ``OutputConstraint`` compiled into an llguidance grammar, and for each
answer a ``Matcher`` that says which tokens may come next.

``compile_constraint(constraint, tokenizer, vocab_size)`` turns the constraint into a JSON-schema
grammar (``json_schema``: the schema; ``json_object``: any object; ``tool_call``:
``{"name": <one of the tools>, "parameters": <that tool's schema>}``, or with ``parallel`` an
array of one or more such calls), checks it with llguidance and keeps it (compiled grammars are
cached by the constraint's JSON, per tokenizer). A schema that cannot be used raises
``ConstraintError`` naming the request field (``response_format``, ``tools`` or
``tool_choice``); so does a schema bomb (deep nesting, huge enums), refused by a check of its
size and depth before llguidance sees it, llguidance's own limits, and a deadline on compiling.

``CompiledConstraint.matcher()`` gives an answer its own ``Matcher``: ``mask()`` is the allowed
next tokens as a boolean ``mx.array`` over the model's vocabulary (computed by llguidance on the
CPU into its packed bitmask — bit ``i % 32`` of word ``i // 32`` for token ``i`` — and unpacked
with numpy, so it runs on every MLX backend, not only Metal); ``advance(token)`` feeds the
sampled token; ``done`` says the grammar is complete and allows nothing more. EOS is allowed
only where the grammar accepts. Whitespace between JSON tokens is fixed (``", "`` and
``": "``), so an answer cannot wander off into blank space.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from models.inference.output_constraint import ConstraintError, OutputConstraint, ToolSpec

# A schema larger or deeper than this is refused before llguidance compiles it.
MAX_SCHEMA_DEPTH = 64  # nested objects and arrays in the schema's JSON
MAX_SCHEMA_VALUES = 20_000  # values in the schema's JSON (an enum of 20,000 strings)
MAX_SCHEMA_CHARS = 256 * 1024
MAX_PROPERTIES = 1_000  # in one object (llguidance's work grows with their square)
COMPILE_SECONDS = 0.8  # past this, compiling gives up: the schema is too complex
CACHED_GRAMMARS = 32  # per tokenizer

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions

_JSON_OPTIONS: JsonCompileOptions = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


class ConstraintViolation(RuntimeError):
    """The matcher cannot go on (a token outside the grammar, or a limit of llguidance's hit)."""


class Matcher:
    """One answer's place in the grammar: which tokens may come next, fed token by token."""

    def __init__(self, matcher, vocab_size: int):
        import numpy as np

        self._ll = matcher
        self._vocab = vocab_size
        self._bits = np.zeros((1, (vocab_size + 31) // 32), dtype=np.int32)

    def mask(self):
        """The tokens allowed next: a boolean ``mx.array`` of ``vocab_size`` entries. Raises
        ``ConstraintViolation`` when the grammar cannot go on."""
        import mlx.core as mx
        import numpy as np

        self.fill_bitmask()
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")[: self._vocab]
        return mx.array(bits.view(np.bool_))

    def fill_bitmask(self):
        """llguidance's packed mask of the tokens allowed next (int32 words; token ``i`` is bit
        ``i % 32`` of word ``i // 32``), computed in place and returned."""
        self._ll.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        if self._ll.is_error():
            raise ConstraintViolation(self._ll.get_error())
        return self._bits

    def advance(self, token: int) -> None:
        """Feed the sampled ``token``; raises ``ConstraintViolation`` if the grammar refuses it."""
        if not self._ll.consume_token(int(token)):
            raise ConstraintViolation(self._ll.get_error() or f"Token {token} is outside the grammar.")

    @property
    def accepting(self) -> bool:
        """Whether what was fed so far is complete (the answer may end here)."""
        return bool(self._ll.is_accepting())

    @property
    def done(self) -> bool:
        """Complete, and nothing more is allowed: the answer ends here ("stop")."""
        return bool(self._ll.is_stopped()) and not self._ll.is_error()


class CompiledConstraint:
    """A checked grammar for one constraint and vocabulary; ``matcher()`` for each answer."""

    def __init__(self, constraint: OutputConstraint, grammar: str, template, vocab_size: int):
        self.constraint = constraint
        self.grammar = grammar
        self.vocab_size = vocab_size
        self._template = template  # an LLMatcher at the start; answers get copies
        self._lock = threading.Lock()

    def matcher(self) -> Matcher:
        with self._lock:
            copy = self._template.deep_copy()
        return Matcher(copy, self.vocab_size)


class _Vocabulary:
    """llguidance's view of one tokenizer's vocabulary, and the grammars compiled for it."""

    def __init__(self, llg_tokenizer):
        self.llg = llg_tokenizer
        self.compiled: OrderedDict[str, CompiledConstraint] = OrderedDict()
        self.lock = threading.Lock()


_vocabularies: weakref.WeakKeyDictionary[Any, dict[tuple, _Vocabulary]] = weakref.WeakKeyDictionary()
_vocabularies_lock = threading.Lock()


def compile_constraint(
    constraint: OutputConstraint,
    tokenizer,
    vocab_size: int,
    eos_ids: Iterable[int] | None = None,
) -> CompiledConstraint:
    """The grammar for ``constraint`` over ``tokenizer`` (mlx-lm's ``TokenizerWrapper`` or a fast
    Hugging Face tokenizer) and a model whose logits have ``vocab_size`` entries; ``eos_ids``
    (default: the tokenizer's) end an answer where the grammar accepts. Raises
    ``ConstraintError`` naming the request field for a schema that cannot be used."""
    param = _param_of(constraint)
    schema = _schema_of(constraint)
    key = _checked_json(schema, param)
    vocabulary = _vocabulary(tokenizer, vocab_size, eos_ids)
    with vocabulary.lock:
        cached = vocabulary.compiled.get(key)
        if cached is not None:
            vocabulary.compiled.move_to_end(key)
            return cached
    grammar, template = _compile(key, vocabulary.llg, param)
    compiled = CompiledConstraint(constraint, grammar, template, vocab_size)
    with vocabulary.lock:
        vocabulary.compiled[key] = compiled
        while len(vocabulary.compiled) > CACHED_GRAMMARS:
            vocabulary.compiled.popitem(last=False)
    return compiled


def check_constraint(constraint: OutputConstraint) -> None:
    """Check ``constraint`` without a tokenizer, as a request arrives: the size and depth bounds
    and llguidance's validation of the grammar (bounded by ``COMPILE_SECONDS``, on a thread of
    its own). Raises ``ConstraintError`` naming the field; the engine compiles it for the model
    when the answer starts."""
    import llguidance

    param = _param_of(constraint)
    schema_json = _checked_json(_schema_of(constraint), param)
    outcome: list = []

    def run() -> None:
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json, overrides=_JSON_OPTIONS)
            outcome.append(llguidance.LLMatcher.validate_grammar(grammar, None, limits=_limits()))
        except BaseException as exc:  # noqa: BLE001 - whatever llguidance raises (a Rust panic too)
            outcome.append(str(exc) or type(exc).__name__)

    worker = threading.Thread(target=run, name="llama-desk-grammar-check", daemon=True)
    worker.start()
    worker.join(COMPILE_SECONDS)
    if not outcome:
        raise ConstraintError(f"The schema is too complex (not checked within {COMPILE_SECONDS:g} s).", param)
    if outcome[0] and not str(outcome[0]).startswith("WARNING"):
        raise ConstraintError(f"The schema cannot be used: {outcome[0]}", param)


def prepare_vocabulary(tokenizer, vocab_size: int, eos_ids: Iterable[int] | None = None) -> None:
    """Build llguidance's view of ``tokenizer`` now (about two seconds for a real vocabulary,
    else paid by the first constrained answer); safe from any thread, e.g. after a model loads."""
    _vocabulary(tokenizer, vocab_size, eos_ids)


def _param_of(constraint: OutputConstraint) -> str:
    return "tools" if constraint.kind == "tool_call" else "response_format"


def _schema_of(constraint: OutputConstraint) -> Mapping[str, Any]:
    """The JSON schema the answer must satisfy."""
    if constraint.kind == "json_object":
        return _ANY_OBJECT
    if constraint.kind == "json_schema":
        if not isinstance(constraint.schema, Mapping):
            message = "response_format.json_schema.schema must be a JSON object."
            raise ConstraintError(message, "response_format")
        return constraint.schema
    if not constraint.tools:
        raise ConstraintError("A tool call was required, but no tools were given.", "tool_choice")
    call = {"anyOf": [_call_schema(tool) for tool in constraint.tools]}
    if len(constraint.tools) == 1:
        call = _call_schema(constraint.tools[0])
    if constraint.parallel:
        return {"type": "array", "items": call, "minItems": 1}
    return call


def _call_schema(tool: ToolSpec) -> dict[str, Any]:
    parameters = tool.parameters
    if not isinstance(parameters, Mapping):
        raise ConstraintError(f"The parameters of tool {tool.name!r} must be a JSON object.", "tools")
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "parameters": parameters or _ANY_OBJECT},
        "required": ["name", "parameters"],
        "additionalProperties": False,
    }


def _checked_json(schema: Mapping[str, Any], param: str) -> str:
    """The schema as JSON text (its cache key), once its size and depth are within bounds; the
    walk is iterative, so a schema nested thousands deep is refused, not a RecursionError."""
    values = 0
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > MAX_SCHEMA_VALUES:
            raise ConstraintError(f"The schema is too large (more than {MAX_SCHEMA_VALUES:,} values).", param)
        if isinstance(value, Mapping):
            children: Iterable[Any] = value.values()
            if any(not isinstance(k, str) for k in value):
                raise ConstraintError("The schema's keys must be strings.", param)
            properties = value.get("properties")
            if isinstance(properties, Mapping) and len(properties) > MAX_PROPERTIES:
                message = f"The schema has an object of more than {MAX_PROPERTIES:,} properties."
                raise ConstraintError(message, param)
        elif isinstance(value, list | tuple):
            children = value
        else:
            if not (value is None or isinstance(value, str | int | float | bool)):
                raise ConstraintError(f"The schema holds a value JSON cannot: {value!r}.", param)
            continue
        if depth > MAX_SCHEMA_DEPTH:
            raise ConstraintError(f"The schema is nested too deeply (over {MAX_SCHEMA_DEPTH} levels).", param)
        stack.extend((child, depth + 1) for child in children)
    text = json.dumps(schema, default=_plain, ensure_ascii=False, allow_nan=False)
    if len(text) > MAX_SCHEMA_CHARS:
        raise ConstraintError(f"The schema is too large (over {MAX_SCHEMA_CHARS // 1024} KB).", param)
    return text


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _limits():
    import llguidance

    # A quarter of llguidance's defaults for building a grammar: a schema bomb stops early.
    return llguidance.LLParserLimits(initial_lexer_fuel=250_000, max_grammar_size=125_000)


def _compile(schema_json: str, llg_tokenizer, param: str) -> tuple[str, Any]:
    """The grammar for ``schema_json`` and a matcher at its start (its first mask computed), or
    ``ConstraintError``; gives up after ``COMPILE_SECONDS`` (llguidance's limits end the work
    left behind)."""
    import llguidance

    def build() -> tuple[str, Any]:
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json, overrides=_JSON_OPTIONS)
        except ValueError as exc:
            raise ConstraintError(f"The schema is not valid JSON: {exc}", param) from None
        limits = _limits()
        template = llguidance.LLMatcher(llg_tokenizer, grammar, log_level=0, limits=limits)
        if template.is_error():
            raise ConstraintError(f"The schema cannot be used: {template.get_error()}", param)
        try:
            Matcher(template.deep_copy(), llg_tokenizer.vocab_size).fill_bitmask()  # fails now, not later
        except ConstraintViolation as exc:
            raise ConstraintError(f"The schema cannot be used: {exc}", param) from None
        return grammar, template

    outcome: list = []

    def run() -> None:
        try:
            outcome.append(build())
        except ConstraintError as exc:
            outcome.append(exc)
        except BaseException as exc:  # noqa: BLE001 - whatever llguidance raises (a Rust panic too)
            outcome.append(ConstraintError(f"The schema cannot be used: {exc}", param))

    # A thread of its own, so a compile that overran its deadline delays no other.
    worker = threading.Thread(target=run, name="llama-desk-grammar", daemon=True)
    worker.start()
    worker.join(COMPILE_SECONDS)
    if not outcome:
        raise ConstraintError(
            f"The schema is too complex (not compiled within {COMPILE_SECONDS:g} s).", param
        )
    if isinstance(outcome[0], ConstraintError):
        raise outcome[0].with_traceback(None)
    return outcome[0]


def _vocabulary(tokenizer, vocab_size: int, eos_ids: Iterable[int] | None) -> _Vocabulary:
    """llguidance's tokenizer for ``tokenizer`` (built once: it walks the whole vocabulary)."""
    import llguidance.hf

    hf = getattr(tokenizer, "_tokenizer", tokenizer)  # mlx-lm's wrapper holds the HF tokenizer
    if eos_ids is None:
        eos_ids = getattr(tokenizer, "eos_token_ids", None) or [hf.eos_token_id]
    eos = tuple(sorted(int(i) for i in eos_ids))
    key = (int(vocab_size), eos)
    with _vocabularies_lock:
        per_tokenizer = _vocabularies.setdefault(hf, {})
        vocabulary = per_tokenizer.get(key)
        if vocabulary is None:
            llg = llguidance.hf.from_tokenizer(hf, n_vocab=int(vocab_size), eos_token=list(eos))
            vocabulary = _Vocabulary(llg)
            per_tokenizer[key] = vocabulary
    return vocabulary
