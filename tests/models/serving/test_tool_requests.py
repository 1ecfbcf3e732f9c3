"""Checking a request's tools, tool_choice, parallel_tool_calls, response_format and the tool
turns of its conversation: what the model is offered, what the answer must be, and a 400 naming
the field for anything wrong."""

from __future__ import annotations

import time

import pytest

from models.inference.output_constraint import OutputConstraint, ToolSpec
from models.serving.openai_api import ApiError, parse_chat_request

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
QUESTION = {"role": "user", "content": "Weather in Kobe?"}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Kobe"}'},
}


def request(**fields):
    return parse_chat_request({"messages": [QUESTION], **fields})


def rejected(body) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_chat_request(body)
    assert info.value.status == 400 and info.value.body()["error"]["type"] == "invalid_request_error"
    return info.value


def test_tools_ride_on_the_first_message_and_auto_is_free():
    chat = request(tools=[WEATHER, CLOCK])
    weather = ToolSpec("get_weather", "The weather in a city.", WEATHER["function"]["parameters"])
    assert chat.messages[0].tools == (weather, ToolSpec("get_time"))
    assert chat.tool_choice == "auto" and chat.call_names == ("get_weather", "get_time")
    assert chat.constraint is None and chat.parallel


def test_none_offers_no_tools_and_reads_no_calls():
    chat = request(tools=[WEATHER], tool_choice="none")
    assert chat.messages[0].tools == () and chat.call_names == () and chat.constraint is None


def test_required_and_a_named_function_force_a_call():
    required = request(tools=[WEATHER, CLOCK], tool_choice="required", parallel_tool_calls=False)
    assert required.constraint == OutputConstraint("tool_call", tools=required.tools, parallel=False)
    named = request(
        tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": "get_time"}}
    )
    assert named.constraint == OutputConstraint("tool_call", tools=(ToolSpec("get_time"),))
    assert named.call_names == ("get_time",) and not named.parallel


def test_response_format_becomes_the_constraint():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    chat = request(
        response_format={"type": "json_schema", "json_schema": {"name": "count", "schema": schema}}
    )
    assert chat.constraint == OutputConstraint("json_schema", schema=schema, name="count")
    assert request(response_format={"type": "json_object"}).constraint == OutputConstraint("json_object")
    assert request(response_format={"type": "text"}).constraint is None
    # With tools offered and auto, the model may call instead: the format is not enforced.
    assert request(tools=[WEATHER], response_format={"type": "json_object"}).constraint is None


def test_a_tool_round_trip_is_parsed():
    chat = parse_chat_request(
        {
            "tools": [WEATHER],
            "messages": [
                QUESTION,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21 C"}]},
            ],
        }
    )
    _, assistant, result = chat.messages
    assert assistant.text == "" and [(c.id, c.name, c.arguments) for c in assistant.tool_calls] == [
        ("call_1", "get_weather", {"city": "Kobe"})
    ]
    assert (result.role, result.text, result.tool_call_id) == ("tool", "21 C", "call_1")


def conversation(*messages, **fields):
    return {"messages": [QUESTION, *messages], **fields}


def with_arguments(arguments):
    call = {**CALL, "function": {**CALL["function"], "arguments": arguments}}
    return conversation(
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x"},
    )


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "rm"}}},
            "tool_choice",
            "not in tools",
        ),
        ({"tool_choice": "required"}, "tool_choice", "needs tools"),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice", "must be"),
        (
            {"tools": [{"type": "function", "function": {"description": "x"}}]},
            "tools[0].function.name",
            "1 to 64",
        ),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name", "1 to 64"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]},
            "tools[0].function.parameters",
            "object",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]", "function"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "twice"),
        ({"tools": {"get_weather": WEATHER}}, "tools", "list"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
        ({"response_format": {"type": "yaml"}}, "response_format.type", "not supported"),
        ({"response_format": "json"}, "response_format", "object"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "1 to 64",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}},
            "response_format.json_schema.schema",
            "object",
        ),
        (with_arguments("{city: Kobe}"), "messages[1].tool_calls[0].function.arguments", "not valid JSON"),
        (with_arguments("[1, 2]"), "messages[1].tool_calls[0].function.arguments", "JSON object"),
        (with_arguments({"city": "Kobe"}), "messages[1].tool_calls[0].function.arguments", "string of JSON"),
        (
            conversation(
                {"role": "assistant", "content": "Hm."},
                {"role": "tool", "tool_call_id": "call_9", "content": "x"},
            ),
            "messages[2].tool_call_id",
            "matches no tool call",
        ),
        (
            conversation(
                {"role": "tool", "tool_call_id": "call_1", "content": "x"},
                {"role": "assistant", "tool_calls": [CALL]},
                QUESTION,
            ),
            "messages[1].tool_call_id",
            "matches no tool call",
        ),
        (
            conversation({"role": "assistant", "tool_calls": [{**CALL, "id": ""}]}, QUESTION),
            "messages[1].tool_calls[0].id",
            "string",
        ),
    ],
)
def test_bad_tool_fields_name_the_field(body, param, words):
    error = rejected({"messages": [QUESTION], **body})
    assert error.param == param and words in error.message


def schema_request(schema):
    return {
        "messages": [QUESTION],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }


def nested(depth):
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"enum": list(range(100_000))}, "an enum of 100,000 values"),
        (
            {
                "anyOf": [{"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(20)}}]
                * 2_000
            },
            "over 10,000 values",
        ),
        ({"$defs": {"a": nested(40)}, "allOf": [nested(40)]}, "nests more than 64 levels"),
    ],
)
def test_a_schema_bomb_is_refused_at_once(schema, words):
    started = time.perf_counter()
    error = rejected(schema_request(schema))
    assert error.param == "response_format.json_schema.schema" and words in error.message
    assert error.code == "schema_too_large"
    assert time.perf_counter() - started < 1.0  # the issue's bound: refused within a second


def test_a_tools_parameters_bomb_names_its_tool():
    bomb = {"type": "function", "function": {"name": "f", "parameters": {"enum": ["x"] * 5_000}}}
    assert (
        rejected({"messages": [QUESTION], "tools": [WEATHER, bomb]}).param == "tools[1].function.parameters"
    )


def test_a_schema_the_grammar_cannot_compile_is_a_400_naming_the_field(monkeypatch):
    from models.inference import constraints
    from models.inference.output_constraint import ConstraintError

    seen = []

    def check(constraint):
        seen.append(constraint)
        raise ConstraintError(
            "Unsupported keyword 'patternProperties'.", "response_format.json_schema.schema"
        )

    monkeypatch.setattr(constraints, "check_constraint", check)
    error = rejected(schema_request({"type": "object", "patternProperties": {".*": {}}}))
    assert error.param == "response_format.json_schema.schema" and "patternProperties" in error.message
    assert error.code == "invalid_schema" and seen[0].kind == "json_schema"


def test_the_grammar_engine_checks_real_schemas_as_the_request_arrives():
    assert request(response_format={"type": "json_object"}).constraint is not None
    error = rejected(schema_request({"type": "object", "properties": {"a": {"type": "no-such-type"}}}))
    assert error.param.startswith("response_format") and error.code == "invalid_schema"
