"""Constrained decoding on a random-weight checkpoint: only the grammar can make the answer valid.

Schemas with objects, arrays, enums, integer ranges and string lengths give JSON valid for them
(checked by hand: ``jsonschema`` is not a dependency); ``json_object`` gives an object; a forced
call names one of two tools with arguments valid for it, and ``parallel`` a list of such calls;
a constrained and an unconstrained answer in one batch leave the unconstrained one's greedy
tokens as they are alone. The matcher's mask is llguidance's bitmask, unpacked (EOS only where
the grammar accepts); schemas that cannot be compiled, and schema bombs, raise
``ConstraintError`` naming the request field.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from models.inference.batch_generation import LiveCache
from models.inference.constraints import compile_constraint
from models.inference.engine import Engine, GenerationSettings
from models.inference.output_constraint import ConstraintError, OutputConstraint, ToolSpec
from models.inference.prompt import ChatMessage

GREEDY = GenerationSettings(max_tokens=160, temperature=0.0)
QUESTION = [ChatMessage("user", "Answer in JSON, please.")]

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 6},
        "age": {"type": "integer", "minimum": 18, "maximum": 99},
        "colour": {"enum": ["red", "green", "blue"]},
        "scores": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3},
    },
    "required": ["name", "age", "colour", "scores"],
    "additionalProperties": False,
}
SCHEMAS = {
    "object": PERSON,
    "array": {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 4},
    "enum": {"enum": ["north", "south", 7, None]},
    "integer-range": {"type": "integer", "minimum": -20, "maximum": 250},
    "string-length": {"type": "string", "minLength": 5, "maxLength": 9},
}
WEATHER = ToolSpec(
    "get_weather",
    "The forecast for a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "days"],
        "additionalProperties": False,
    },
)
ADD = ToolSpec(
    "add",
    "Adds two numbers.",
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"enum": [1, 2, 3]}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)


def conforms(value: Any, schema: dict) -> bool:
    """Whether ``value`` is valid for ``schema`` (the keywords these tests use)."""
    if "enum" in schema:
        return value in schema["enum"]
    if "const" in schema:
        return value == schema["const"]
    if "anyOf" in schema:
        return any(conforms(value, s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict) or not set(schema.get("required", ())) <= value.keys():
            return False
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is False and not value.keys() <= properties.keys():
            return False
        return all(conforms(v, properties[k]) for k, v in value.items() if k in properties)
    if kind == "array":
        return (
            isinstance(value, list)
            and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
            and all(conforms(item, schema.get("items", {})) for item in value)
        )
    if kind == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and schema.get("minimum", value) <= value <= schema.get("maximum", value)
        )
    if kind == "string":
        return isinstance(value, str) and schema.get("minLength", 0) <= len(value) <= schema.get(
            "maxLength", len(value)
        )
    if kind == "boolean":
        return isinstance(value, bool)
    return kind is None


def vocab_of(engine: Engine) -> int:
    """How many logits the model gives a token (its config's vocabulary, padded)."""
    return int(engine.checkpoint.config["text_config"]["vocab_size"])


def run_batch(engine: Engine, requests: list[tuple[list[ChatMessage], GenerationSettings, Any]]):
    """Answer ``requests`` (messages, settings, constraint) in one batch: each final step and text."""
    batch = engine.new_batch()
    for i, (messages, settings, constraint) in enumerate(requests):
        prompt = engine.prepare(messages, settings)
        seq = engine.sequence(
            prompt, settings, threading.Event(), LiveCache([]), tag=i, constraint=constraint
        )
        batch.add(seq)
    finals: dict[int, Any] = {}
    texts = {i: "" for i in range(len(requests))}
    steps = 0
    while batch.active:
        for seq, step in batch.step():
            texts[seq.tag] += step.text
            if step.finish_reason is not None:
                finals[seq.tag] = step
        steps += 1
        assert steps < 5000, "the batch never finished"
    return [(finals[i], texts[i]) for i in range(len(requests))]


def constrained(engine, constraint, settings=GREEDY, messages=QUESTION):
    [(final, text)] = run_batch(engine, [(messages, settings, constraint)])
    return final, text


@pytest.mark.parametrize("name", list(SCHEMAS))
@pytest.mark.parametrize("settings", [GREEDY, GenerationSettings(max_tokens=160, temperature=1.0, seed=3)])
def test_the_answer_is_valid_for_the_schema(engine_4bit, name, settings):
    schema = SCHEMAS[name]
    final, text = constrained(
        engine_4bit, OutputConstraint("json_schema", schema=schema, name=name), settings
    )
    assert final.finish_reason == "stop", (final.error, text)
    assert conforms(json.loads(text), schema), text


def test_free_answers_of_the_random_weights_are_not_json(engine_4bit):
    """The control: without the grammar these weights give no valid answer."""
    [(final, text)] = run_batch(engine_4bit, [(QUESTION, GREEDY, None)])
    with pytest.raises(ValueError):
        json.loads(text)


def test_json_object_gives_an_object(engine_4bit):
    for settings in (GREEDY, GenerationSettings(max_tokens=160, temperature=1.0, seed=1)):
        final, text = constrained(engine_4bit, OutputConstraint("json_object"), settings)
        assert final.finish_reason == "stop", (final.error, text)
        assert isinstance(json.loads(text), dict), text


@pytest.mark.parametrize("seed", [None, 0, 5])
def test_a_forced_call_names_one_of_the_tools_with_valid_arguments(engine_4bit, seed):
    settings = GREEDY if seed is None else GenerationSettings(max_tokens=160, temperature=1.0, seed=seed)
    final, text = constrained(engine_4bit, OutputConstraint("tool_call", tools=(WEATHER, ADD)), settings)
    assert final.finish_reason == "stop", (final.error, text)
    call = json.loads(text)
    tools = {tool.name: tool for tool in (WEATHER, ADD)}
    assert set(call) == {"name", "parameters"}
    assert call["name"] in tools
    assert conforms(call["parameters"], dict(tools[call["name"]].parameters)), text


def test_parallel_calls_are_a_list_of_valid_calls(engine_4bit):
    constraint = OutputConstraint("tool_call", tools=(WEATHER, ADD), parallel=True)
    ended = []
    for seed in range(6):
        settings = GenerationSettings(max_tokens=400, temperature=1.0, seed=seed)
        final, text = constrained(engine_4bit, constraint, settings)
        assert final.finish_reason in ("stop", "length"), final.error
        if final.finish_reason == "stop":
            ended.append(json.loads(text))
    assert ended, "no list of calls ended within 400 tokens"
    tools = {tool.name: tool for tool in (WEATHER, ADD)}
    for calls in ended:
        assert isinstance(calls, list) and calls
        for call in calls:
            assert conforms(call["parameters"], dict(tools[call["name"]].parameters)), calls


def test_an_unconstrained_answer_beside_a_constrained_one_is_as_alone(engine_4bit):
    other = [ChatMessage("user", "tell me a story about the sea " * 3)]
    settings = GenerationSettings(max_tokens=40, temperature=0.0)
    [(alone, _)] = run_batch(engine_4bit, [(other, settings, None)])
    schema = SCHEMAS["object"]
    together = run_batch(
        engine_4bit,
        [
            (QUESTION, GREEDY, OutputConstraint("json_schema", schema=schema)),
            (other, settings, None),
            (QUESTION, GREEDY, OutputConstraint("tool_call", tools=(WEATHER, ADD))),
        ],
    )
    assert together[1][0].token_ids == alone.token_ids
    assert conforms(json.loads(together[0][1]), schema)
    assert json.loads(together[2][1])["name"] in ("get_weather", "add")


def test_the_mask_is_llguidances_bitmask_with_eos_only_where_the_grammar_accepts(engine_4bit):
    import numpy as np

    engine = engine_4bit
    vocab = vocab_of(engine)
    hf = engine.tokenizer._tokenizer
    eot = hf.convert_tokens_to_ids("<|eot|>")
    compiled = compile_constraint(
        OutputConstraint("json_schema", schema={"type": "integer", "minimum": 1, "maximum": 30}),
        engine.tokenizer,
        vocab,
        eos_ids=[eot],
    )
    matcher = compiled.matcher()
    first = np.array(matcher.mask())
    assert first.shape == (vocab,)
    assert {hf.decode([i]) for i in np.nonzero(first)[0]} == {str(d) for d in range(1, 10)}
    assert not first[eot] and not matcher.accepting
    matcher.advance(hf.convert_tokens_to_ids("3"))
    after = np.array(matcher.mask())
    assert {hf.decode([i]) for i in np.nonzero(after)[0] if i != eot} == {"0"}  # 30, nothing more
    assert after[eot] and matcher.accepting and not matcher.done
    matcher.advance(hf.convert_tokens_to_ids("0"))
    assert matcher.done
    # Compiled once: the same constraint again is the cached grammar.
    again = OutputConstraint("json_schema", schema={"type": "integer", "minimum": 1, "maximum": 30})
    assert compile_constraint(again, engine.tokenizer, vocab, eos_ids=[eot]) is compiled


@pytest.mark.parametrize(
    "constraint, param",
    [
        (OutputConstraint("json_schema", schema={"type": "frobnicate"}), "response_format"),
        (
            OutputConstraint("json_schema", schema={"type": "integer", "minimum": 5, "maximum": 1}),
            "response_format",
        ),
        (OutputConstraint("json_schema", schema={"$ref": "#/$defs/missing"}), "response_format"),
        (OutputConstraint("json_schema", schema=None), "response_format"),
        (OutputConstraint("tool_call", tools=(ToolSpec("bad", parameters={"type": "nothing"}),)), "tools"),
        (OutputConstraint("tool_call", tools=()), "tool_choice"),
    ],
)
def test_a_schema_that_cannot_be_compiled_names_its_field(engine_4bit, constraint, param):
    with pytest.raises(ConstraintError) as raised:
        compile_constraint(constraint, engine_4bit.tokenizer, vocab_of(engine_4bit))
    assert raised.value.param == param
    assert str(raised.value)


def deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
    return schema


@pytest.mark.parametrize(
    "schema",
    [
        deep(5000),  # deeper than Python's json module can even write
        {"enum": [f"value {i}" for i in range(100_000)]},
        {"anyOf": [{"enum": [f"v{i}-{j}" for j in range(15)]} for i in range(1500)]},
        {"type": "string", "pattern": "(" + "|".join(f"word{i}" for i in range(30_000)) + ")"},
        {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(6000)}},
    ],
    ids=["deep", "huge-enum", "many-branches", "huge-pattern", "many-properties"],
)
def test_a_schema_bomb_is_refused(engine_4bit, schema):
    constraint = OutputConstraint("json_schema", schema=schema)
    with pytest.raises(ConstraintError) as raised:
        compile_constraint(constraint, engine_4bit.tokenizer, vocab_of(engine_4bit))
    assert raised.value.param == "response_format"


def test_a_schema_that_takes_too_long_to_compile_is_refused(engine_4bit, monkeypatch):
    from models.inference import constraints

    monkeypatch.setattr(constraints, "COMPILE_SECONDS", 0.001)
    slow = {"type": "object", "properties": {f"q{i}": {"type": "integer"} for i in range(1000)}}
    with pytest.raises(ConstraintError, match="too complex") as raised:
        compile_constraint(
            OutputConstraint("json_schema", schema=slow), engine_4bit.tokenizer, vocab_of(engine_4bit)
        )
    assert raised.value.param == "response_format"


def test_a_bad_schema_leaves_the_conversation_cache_alone(engine_4bit):
    live = LiveCache([])
    prompt = engine_4bit.prepare(QUESTION, GREEDY)
    with pytest.raises(ConstraintError):
        engine_4bit.sequence(
            prompt,
            GREEDY,
            threading.Event(),
            live,
            constraint=OutputConstraint("json_schema", schema={"type": "frobnicate"}),
        )
    assert live.caches == [] and live.keys == []
