"""A model's chat template rendered in a Jinja sandbox with bounded work, values and output.

A chat template is code that comes with the model. transformers renders it in Jinja's
immutable sandbox, which stops it reaching Python internals but not running without end: three
nested ``range(100000)`` loops ran for half a minute and took 3.5 GB, and ``'x' * 10**9`` is
one expression. So the template is rendered here instead, in an environment that matches
transformers' (``trim_blocks``, ``lstrip_blocks``, loop controls, ``tojson``,
``raise_exception``, ``strftime_now``, the special tokens as variables, so the prompt is the
same text) and counts what it does, per render:

- **work**: every loop step (filtered-out items too) and every call (macros, ``loop()``,
  methods, globals) and filter is a step; ``MAX_STEPS`` (plus a share per message) in all;
- **ranges**: ``range()`` yields at most ``MAX_RANGE_ITEMS`` items per render, all calls
  together;
- **values**: an integer argument over ``MAX_INT_ARGUMENT``, or a value (a string's
  characters, a container's items, nested) over ``MAX_VALUE_SIZE``, is refused before the
  operation that would build it (repetition, concatenation, powers, ``%``/``format`` widths,
  ``join``, ``replace``, filters) and checked again after; what one render builds in all stays
  under ``MAX_BUILT_SIZE``; the walk that sizes a value is paid for in steps;
- **output**: every piece written (literal text too, also into macros and ``set`` blocks)
  counts against ``MAX_OUTPUT_CHARS`` (plus a share per message).

Nothing relies on a timer or on stopping a thread: the counters raise ``ChatTemplateError``
(one line fit to show) from inside the render. The counting is woven in when the template is
compiled: a code generator that counts loop steps and output pieces, and the sandbox's
``call``/``call_binop`` hooks. Long because the sandbox's every way of building a large value
is bounded here, next to the counters they share.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from models.inference.folder_files import MAX_TEMPLATE_CHARS
from models.inference.model_loading import one_line

# Compiling costs about 0.2 ms a tag and 40 us a token inside tags (Llama 4's has 90 and 700).
MAX_TAGS = 5_000
MAX_TAG_TOKENS = 20_000
_TAG = re.compile(r"\{[{%](.*?)(?:[}%]\}|$)", re.DOTALL)
_TOKEN = re.compile(r"\w+|[^\w\s]")
MAX_STEPS = 100_000
MAX_RANGE_ITEMS = 100_000
MAX_INT_ARGUMENT = 100_000
MAX_VALUE_SIZE = 2_000_000
MAX_BUILT_SIZE = 10 * MAX_VALUE_SIZE
MAX_OUTPUT_CHARS = 1_000_000
PER_MESSAGE = 100  # more steps allowed per message of the conversation (and 10 times as many characters)
_MAX_INT_BITS = 65_536  # integers a template computes stay under this many bits
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*\d*(?:\.\d*)?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}")


class ChatTemplateError(ValueError):
    """The chat template cannot be used or rendered; the message is one line."""


def _too_expensive(why: str) -> ChatTemplateError:
    return ChatTemplateError(f"The model's chat template is too expensive to render ({why}).")


class _Budget:
    """What one render may still do; shared by every hook through ``_BUDGET``."""

    def __init__(self, messages: int):
        self.steps = MAX_STEPS + PER_MESSAGE * messages
        self.chars = MAX_OUTPUT_CHARS + 10 * PER_MESSAGE * messages
        self.range_items = MAX_RANGE_ITEMS
        self.built = MAX_BUILT_SIZE
        self.sizes: dict[int, tuple[Any, int]] = {}  # id -> (value, size) of immutable containers

    def step(self, n: int = 1) -> None:
        self.steps -= n
        if self.steps < 0:
            raise _too_expensive("it takes too many loop steps and calls")

    def write(self, n: int) -> None:
        self.chars -= n
        if self.chars < 0:
            raise ChatTemplateError("The model's chat template renders too long a prompt.")


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("chat_template_budget", default=None)


def _step(n: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.step(n)


def size_of(value: Any) -> int:
    """A value's size: a string's characters, plus eight per item of a container, nested; the
    walk stops (and is paid for in steps) once past ``MAX_VALUE_SIZE``."""
    budget = _BUDGET.get()
    total, walked = 0, 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack and total <= MAX_VALUE_SIZE:
        item, depth = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
            continue
        if isinstance(item, Namespace):
            item = dict(item._Namespace__attrs)  # mutable: never cached
        elif not isinstance(item, (list, tuple, dict, set, frozenset)):
            total += 1
            continue
        elif budget is not None and id(item) in budget.sizes and budget.sizes[id(item)][0] is item:
            total += budget.sizes[id(item)][1]
            continue
        if depth > 100:
            raise _too_expensive("it builds values nested too deeply")
        children = list(item.items()) if isinstance(item, dict) else list(item)
        walked += len(children) + 1
        total += 8 * len(children)
        stack.extend((child, depth + 1) for child in children)
    if budget is not None:
        budget.step(walked // 8)
        if isinstance(value, (list, tuple, dict)) and total <= MAX_VALUE_SIZE:
            budget.sizes[id(value)] = (value, total)
    return total


def _check_input(value: Any) -> None:
    """Refuse a value too large to hand on (a number too long, a value over the size bound)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_BITS:
        raise _too_expensive("it computes too large a number")
    if size_of(value) > MAX_VALUE_SIZE:
        raise _too_expensive(f"it builds a value of over {MAX_VALUE_SIZE:,} characters or items")


def _check_value(value: Any) -> Any:
    """``value``, just built by the template: within the size bound, and paid for out of what one
    render may build in all (``MAX_BUILT_SIZE``: many variables each under the bound are still
    bounded together)."""
    _check_input(value)
    budget = _BUDGET.get()
    if budget is not None and isinstance(value, (str, bytes, list, tuple, dict, set, frozenset)):
        budget.built -= size_of(value)
        if budget.built < 0:
            raise _too_expensive(f"it builds over {MAX_BUILT_SIZE:,} characters or items in all")
    return value


def _check_arguments(args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT_ARGUMENT:
            raise _too_expensive(f"it passes a number over {MAX_INT_ARGUMENT:,} to a function")
        _check_input(value)


def _check_widths(text: str) -> None:
    """Refuse a format string (``%`` or ``str.format``) with a width or precision over
    ``MAX_INT_ARGUMENT``."""
    specs = [m.group(0) for m in _PERCENT_SPEC.finditer(text)]
    specs += [m.group(1) for m in _FORMAT_SPEC.finditer(text)]
    for spec in specs:
        for digits in re.findall(r"\d+", spec):
            if len(digits) > 6 or int(digits) > MAX_INT_ARGUMENT:
                raise _too_expensive("its format string asks for too wide a field")


def _check_str_method(receiver: str, name: str, args: tuple, kwargs: dict) -> None:
    """Bound the result of the string method (or filter) ``name`` of ``receiver`` before it
    runs: a format string's widths, a join's items, and for the rest the receiver's length
    times the largest string or number among the arguments (what ``center``, ``indent``,
    ``replace``, ``expandtabs`` can grow it by)."""
    if name in ("format", "format_map", "do_format"):
        _check_widths(receiver)
        return
    values = (*args, *kwargs.values())
    if name == "join":
        items = args[0] if args else ()
        count = len(items) if isinstance(items, (str, list, tuple, dict)) else 0
        estimate = len(receiver) * count + size_of(items)
    else:
        scale = max([1] + [len(v) for v in values if isinstance(v, str)] + [v for v in values if _is_int(v)])
        estimate = (len(receiver) + 1) * scale
    if estimate > MAX_VALUE_SIZE:
        raise _too_expensive(f"it builds a value of over {MAX_VALUE_SIZE:,} characters or items")


def _bounded_range(*args: int) -> range:
    """``range`` whose items, over every call of one render, stay under ``MAX_RANGE_ITEMS``."""
    if not all(_is_int(value) for value in args):
        raise TypeError("range() takes whole numbers")
    numbers = range(*args)
    try:
        count = len(numbers)
    except OverflowError:
        count = MAX_RANGE_ITEMS + 1
    budget = _BUDGET.get()
    left = MAX_RANGE_ITEMS if budget is None else budget.range_items
    if count > left:
        raise _too_expensive(f"its range() calls ask for over {MAX_RANGE_ITEMS:,} items")
    if budget is not None:
        budget.range_items -= count
    return numbers


_STRING_FILTERS = {"do_center", "do_indent", "do_wordwrap", "do_replace", "do_format"}


def _guard_filter(func):
    """A filter that is a step, with its arguments and result sized."""

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        _step()
        _check_arguments(args, kwargs)
        name = getattr(func, "__name__", "")
        if name == "do_join" and len(args) > 1:  # (eval_ctx, value, d="", attribute=None)
            separator = args[2] if len(args) > 2 else kwargs.get("d", "")
            _check_str_method(str(separator), "join", (args[1],), {})
        elif name in _STRING_FILTERS:
            strings = [i for i, a in enumerate(args) if isinstance(a, str)]
            if strings:
                first = strings[0]
                _check_str_method(args[first], name, args[:first] + args[first + 1 :], kwargs)
        return _check_value(func(*args, **kwargs))

    return guarded


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    """transformers' ``tojson``: no HTML escaping, with its options."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _strftime_now(format):
    return datetime.now().strftime(format)


class _TemplateNamespace(Namespace):
    """transformers' namespace: no underscore-prefixed attributes."""

    def __init__(*args, **kwargs):  # noqa: N805 - Jinja's own signature trick
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name, value):
        _TemplateNamespace._check_name(name)
        _check_input(value)
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name):
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError("chat templates cannot set underscore attributes")


class _GenerationTag(jinja2.ext.Extension):
    """transformers' ``{% generation %}`` block, which only marks text: rendered as its body."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


@jinja2.pass_context
def _count_step(_context, value):
    _step()
    return value


@jinja2.pass_context
def _count_output(_context, value):
    budget = _BUDGET.get()
    if budget is not None:
        if not isinstance(value, str):
            _check_input(value)
            value = str(value)
        budget.write(len(value))
    return value


class _CountingCodeGenerator(CodeGenerator):
    """Jinja's code generator with the counters woven in: a step at every loop iteration (and
    at every item a loop's ``if`` looks at), every output piece counted, and concatenation
    (``~``) sized before it is built."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in list(node.find_all(nodes.For)):
            tick = nodes.Filter(nodes.Const(None), "_ld_step", [], [], None, None, lineno=loop.lineno)
            loop.body.insert(0, nodes.ExprStmt(tick, lineno=loop.lineno))
            if loop.test is not None:
                check = nodes.Filter(nodes.Const(True), "_ld_step", [], [], None, None, lineno=loop.lineno)
                loop.test = nodes.And(check, loop.test, lineno=loop.lineno)
        for output in list(node.find_all(nodes.Output)):
            output.nodes = [self._counted(child) for child in output.nodes]
        super().visit_Template(node, frame)

    @staticmethod
    def _counted(child: nodes.Expr) -> nodes.Expr:
        value = (
            nodes.Const(child.data, lineno=child.lineno) if isinstance(child, nodes.TemplateData) else child
        )
        return nodes.Filter(value, "_ld_output", [], [], None, None, lineno=child.lineno)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """transformers' chat-template environment, with every call and operator bounded."""

    code_generator_class = _CountingCodeGenerator
    intercepted_binops = frozenset({"*", "+", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_GenerationTag, jinja2.ext.loopcontrols],
        )
        self.filters["tojson"] = _tojson
        self.filters = {name: _guard_filter(f) for name, f in self.filters.items()}
        self.filters["_ld_step"] = _count_step
        self.filters["_ld_output"] = _count_output
        self.globals["range"] = _bounded_range
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.globals["namespace"] = _TemplateNamespace
        self.globals["dict"] = _TemplateDict()
        del self.globals["lipsum"]  # up to 100,000 paragraphs in one call; no chat template uses it

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's signature
        _step()
        _check_arguments(args, kwargs)
        target = getattr(__obj, "__wrapped__", __obj)
        receiver = getattr(target, "__self__", None)
        if isinstance(receiver, str):
            _check_str_method(receiver, getattr(target, "__name__", ""), args, kwargs)
        return _check_value(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context, operator, left, right):
        _step()
        _check_operands(operator, left, right)
        return _check_value(super().call_binop(context, operator, left, right))

    def bounded_concat(self, pieces: tuple) -> str:
        _step()
        for piece in pieces:
            _check_input(piece)
        text = "".join(str(piece) for piece in pieces)
        return _check_value(text)


class _TemplateDict:
    """transformers' ``dict``: a call and ``fromkeys``, nothing else of the type."""

    def __call__(self, *args, **kwargs):
        return dict(*args, **kwargs)

    def fromkeys(self, *args, **kwargs):
        return dict.fromkeys(*args, **kwargs)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_operands(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be over the bounds, before it is computed."""
    sequences = (str, bytes, list, tuple)
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if isinstance(sequence, sequences) and _is_int(count):
                if count > 0 and size_of(sequence) * count > MAX_VALUE_SIZE:
                    raise _too_expensive(f"it builds a value of over {MAX_VALUE_SIZE:,} characters or items")
        if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise _too_expensive("it computes too large a number")
    elif operator == "+":
        if isinstance(left, sequences) and isinstance(right, sequences):
            if size_of(left) + size_of(right) > MAX_VALUE_SIZE:
                raise _too_expensive(f"it builds a value of over {MAX_VALUE_SIZE:,} characters or items")
    elif operator == "**":
        if _is_int(left) and _is_int(right) and abs(left) > 1 and right * left.bit_length() > _MAX_INT_BITS:
            raise _too_expensive("it computes too large a number")
    elif operator == "%" and isinstance(left, str):
        _check_widths(left)
        _check_arguments(right if isinstance(right, tuple) else (right,), {})


def _templates_of(chat_template: Any) -> str | None:
    if isinstance(chat_template, str):
        return chat_template
    if isinstance(chat_template, dict):
        default = chat_template.get("default")
        return default if isinstance(default, str) else None
    return None


class ChatTemplate:
    """A compiled chat template; ``render`` is bounded as the module docstring says."""

    def __init__(self, source: Any):
        text = _templates_of(source)
        if text is None:
            raise ChatTemplateError("The model has no chat template.")
        if len(text) > MAX_TEMPLATE_CHARS:
            raise ChatTemplateError(
                f"The model's chat template is longer than {MAX_TEMPLATE_CHARS:,} characters."
            )
        if text.count("{{") + text.count("{%") > MAX_TAGS:
            raise ChatTemplateError(f"The model's chat template has over {MAX_TAGS:,} tags; it is refused.")
        if sum(len(_TOKEN.findall(tag.group(1))) for tag in _TAG.finditer(text)) > MAX_TAG_TOKENS:
            raise ChatTemplateError(
                f"The model's chat template has over {MAX_TAG_TOKENS:,} tokens in its tags; it is refused."
            )
        self.source = text
        try:
            self._template = _BoundedEnvironment().from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(
                f"The model's chat template is not valid ({one_line(exc, 200)}, line {exc.lineno})."
            ) from None
        except ChatTemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model's code failed, whatever it raised
            raise ChatTemplateError(
                f"The model's chat template cannot be compiled ({one_line(exc, 200)})."
            ) from None

    def render(
        self,
        messages: list[dict],
        add_generation_prompt: bool,
        variables: dict[str, Any],
        tools: list[dict] | None = None,
    ) -> str:
        """The template's text for ``messages`` (plain dicts), with ``variables`` (the special
        tokens) defined and ``tools`` (OpenAI-style function dicts, or None) offered, as
        transformers renders it; ``ChatTemplateError`` when it fails or goes past a bound."""
        token = _BUDGET.set(_Budget(len(messages) + len(tools or ())))
        try:
            return self._template.render(
                **variables,
                messages=messages,
                tools=tools,
                documents=None,
                add_generation_prompt=add_generation_prompt,
            )
        except ChatTemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - the model's code failed, whatever it raised
            raise ChatTemplateError(f"The model's chat template failed: {one_line(exc, 200)}") from None
        finally:
            _BUDGET.reset(token)
