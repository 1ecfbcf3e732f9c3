"""Reading the model's tool calls from its answer, whole or streamed: the pythonic and JSON forms,
only the request's function names, and anything else left as text."""

from __future__ import annotations

import json

import pytest

from models.serving.tool_calls import MAX_CALL_CHARS, CallReader, split_calls

NAMES = ("get_weather", "get_time")


def calls_of(text, names=NAMES, parallel=True):
    calls, rest = split_calls(text, names, parallel)
    return [(c.name, dict(c.arguments)) for c in calls], rest


@pytest.mark.parametrize(
    "text",
    [
        '[get_weather(city="Kobe", days=3)]',
        '  <|python_start|>[get_weather(city="Kobe", days=3)]<|python_end|>',
        '{"name": "get_weather", "parameters": {"city": "Kobe", "days": 3}}',
        '{"name": "get_weather", "arguments": {"city": "Kobe", "days": 3}}',
        '{"type": "function", "name": "get_weather", "parameters": {"city": "Kobe", "days": 3}}',
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Kobe\\", \\"days\\": 3}"}',
        '[{"name": "get_weather", "parameters": {"city": "Kobe", "days": 3}}]',
        '<|python_start|><|python_end|>{"name": "get_weather", "parameters": {"city": "Kobe", "days": 3}}'
        "<|eom|>",
    ],
)
def test_one_call_in_every_form(text):
    assert calls_of(text) == ([("get_weather", {"city": "Kobe", "days": 3})], "")


def test_several_calls_and_parallel_off_keeps_the_first():
    pythonic = '[get_weather(city="Kobe"), get_time(zone="Asia/Tokyo")]'
    in_a_row = (
        '{"name": "get_weather", "parameters": {"city": "Kobe"}}'
        '{"name": "get_time", "parameters": {"zone": "Asia/Tokyo"}}'
    )
    listed = json.dumps(
        [
            {"name": "get_weather", "parameters": {"city": "Kobe"}},
            {"name": "get_time", "parameters": {"zone": "Asia/Tokyo"}},
        ]
    )
    both = [("get_weather", {"city": "Kobe"}), ("get_time", {"zone": "Asia/Tokyo"})]
    for text in (pythonic, in_a_row, listed):
        assert calls_of(text) == (both, "")
        assert calls_of(text, parallel=False) == (both[:1], "")


def test_pythonic_values_are_literals_json_literals_too():
    calls, _ = calls_of(
        '[get_weather(city="Kobe", when=None, hourly=true, extra={"a": [1, 2.5]}, metric=False)]'
    )
    assert calls == [
        (
            "get_weather",
            {"city": "Kobe", "when": None, "hourly": True, "extra": {"a": [1, 2.5]}, "metric": False},
        )
    ]


def test_prose_after_the_calls_is_the_content():
    assert calls_of("[get_time()] Checking the clock.") == ([("get_time", {})], "Checking the clock.")


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Kobe is sunny.",
        "[1] is a citation.",
        '[delete_everything(path="/")]',  # not one of the request's tools
        '[get_weather("Kobe")]',  # positional arguments
        '[get_weather(city=open("x"))]',  # not a literal
        '[get_weather(city="Kobe"), rm(path="/")]',  # one unknown name spoils the list
        '{"name": "get_weather", "parameters": [1, 2]}',  # arguments not an object
        '{"name": "get_weather", "parameters": {}, "population": 3}',  # data, not a call
        '{"name": "get_weather", "parameters": {"x": NaN}}',
        "[get_weather(city={1, 2})]",  # a set is not JSON
        '[get_weather(city="Kobe"',  # cut off
        "Sure: [get_weather(city='Kobe')]",  # calls open the answer or are not calls
        "[" * 500 + "]" * 500,
    ],
)
def test_anything_else_is_text(text):
    assert split_calls(text, NAMES) == ((), text)


def test_no_tools_no_calls_and_a_huge_answer_is_text():
    assert split_calls('[get_weather(city="Kobe")]', ()) == ((), '[get_weather(city="Kobe")]')
    huge = '[get_weather(city="' + "x" * MAX_CALL_CHARS + '")]'
    assert split_calls(huge, NAMES) == ((), huge)


def test_call_ids_are_openai_shaped_and_distinct():
    first, second = split_calls('[get_weather(city="A"), get_weather(city="B")]', NAMES)[0]
    assert first.id.startswith("call_") and len(first.id) == 29 and first.id != second.id


def stream(reader: CallReader, pieces) -> tuple[str, list]:
    sent = "".join(reader.feed(p) for p in pieces)
    calls, rest = reader.finish()
    return sent + rest, [(c.name, dict(c.arguments)) for c in calls]


def test_a_streamed_call_is_held_back_and_read_at_the_end():
    pieces = ["<|python", "_start|>", "[get_", "weather(city", '="Kobe")', "]"]
    reader = CallReader(NAMES)
    assert [reader.feed(p) for p in pieces] == [""] * len(pieces)
    assert stream(CallReader(NAMES), pieces) == ("", [("get_weather", {"city": "Kobe"})])


@pytest.mark.parametrize(
    ("pieces", "sent_after"),
    [
        (["Hello", " there"], 1),  # plain text goes at once
        (["[1", "] a list"], 1),  # "[1" can begin no call
        (["[get_w", "ind", "ow()]"], 2),  # no tool is called get_wind...
        (["[get_weather", " is"], 2),
        (["  ", "{", " 3: 4}"], 3),  # JSON with no key first
    ],
)
def test_streamed_text_is_let_through_as_soon_as_it_cannot_be_a_call(pieces, sent_after):
    reader = CallReader(NAMES)
    sent = [reader.feed(p) for p in pieces]
    assert all(s == "" for s in sent[: sent_after - 1]) and sent[sent_after - 1] != ""
    rest = reader.finish()
    assert "".join(sent) + rest[1] == "".join(pieces) and rest[0] == ()


def test_a_held_answer_that_is_no_call_comes_out_whole_at_the_end():
    assert stream(CallReader(NAMES), ["[get_weather(", "city=Kobe)]"]) == ("[get_weather(city=Kobe)]", [])


def test_without_tools_nothing_is_held():
    reader = CallReader(())
    assert reader.feed("[get_weather(") == "[get_weather(" and reader.finish() == ((), "")
