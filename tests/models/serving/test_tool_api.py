"""Tool calling and structured output through the server, driven by the official ``openai``
client as an agent would: calls in answers (whole and streamed, reassembled by the client's own
stream helpers), a round trip of calls and results back into the prompt, an agent's loop, and
400s naming the field.

Answers that must be calls come from a scripted engine (a fake whose answer text the test
gives), so they are deterministic; the real tiny checkpoint shows the prompt the template
renders and a free answer. Forced calls and schemas need the grammar engine
(``models.inference.constraints``): those tests are skipped without it, since random weights
write valid JSON only under a grammar. Long because every
tool-calling behaviour the API promises is driven here by the official client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import openai
import pytest

from models.inference.engine import GenerationStep
from tests.support.fake_engine import FakeCall, FakeEngine

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "Asia/Tokyo"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
QUESTION = {"role": "user", "content": "What is the weather in Kobe?"}
GREEDY = {"model": "llama", "temperature": 0, "seed": 1}


class ScriptedToolEngine(FakeEngine):
    """A fake engine whose answer is ``answer(messages)``, three characters a step."""

    answer: Callable[[list], str] = staticmethod(lambda messages: "It is sunny.")

    def generate(self, messages, settings=None, cancel=None, continue_final=False, prepared=None):
        self.calls.append(FakeCall(tuple(messages), settings, continue_final))
        prompt = prepared if prepared is not None else self.prepare(messages, settings)
        text = self.answer(messages)
        pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
        ids = [self.tokenizer.token_id(piece) for piece in pieces]
        blank = GenerationStep("", None, len(prompt.ids), 0, 0, 0.01, 100.0, 100.0, 0.1)
        blank = replace(blank, prompt_token_ids=tuple(prompt.ids))
        for n, (piece, token) in enumerate(zip(pieces, ids, strict=True)):
            if cancel is not None and cancel.is_set():
                yield replace(blank, generation_tokens=n, finish_reason="cancelled", token_ids=tuple(ids[:n]))
                return
            yield replace(blank, text=piece, token=token, generation_tokens=n + 1)
        yield replace(blank, generation_tokens=len(ids), finish_reason="stop", token_ids=tuple(ids))


@pytest.fixture(scope="module")
def scripted(checkpoints):
    """(engine, openai client) on a server whose engine answers what the test scripts."""
    from openai import OpenAI

    from models.serving.api_server import ServerThread, create_app
    from models.serving.engine_host import EngineHost

    host = EngineHost(checkpoints["4bit"], loader=lambda path, **_: ScriptedToolEngine.load(path))
    host.start(timeout=60)
    server = ServerThread(create_app(host), port=0)
    server.start()
    yield host.engine, OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
    server.stop()
    host.close()


def script(engine, answer: Callable[[list], str] | str) -> None:
    engine.answer = (lambda messages: answer) if isinstance(answer, str) else answer


def test_a_pythonic_call_is_the_answers_tool_calls(scripted):
    engine, client = scripted
    script(engine, '[get_weather(city="Kobe", days=3)]')
    answer = client.chat.completions.create(messages=[QUESTION], tools=[WEATHER, CLOCK], **GREEDY)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Kobe",
        "days": 3,
    }
    offered = engine.calls[-1].messages[0].tools
    assert [t.name for t in offered] == ["get_weather", "get_time"]


def test_with_tools_a_text_answer_stays_text(scripted):
    engine, client = scripted
    script(engine, "[It] is sunny in Kobe.")  # begins like a list, is no call
    answer = client.chat.completions.create(messages=[QUESTION], tools=[WEATHER], **GREEDY)
    choice = answer.choices[0]
    assert choice.message.content == "[It] is sunny in Kobe." and choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    streamed = client.chat.completions.create(messages=[QUESTION], tools=[WEATHER], stream=True, **GREEDY)
    chunks = [c for c in streamed if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "[It] is sunny in Kobe."
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_call_the_request_did_not_offer_is_text(scripted):
    engine, client = scripted
    script(engine, '[get_weather(city="Kobe")]')
    answer = client.chat.completions.create(messages=[QUESTION], tools=[CLOCK], **GREEDY)
    assert answer.choices[0].message.content == '[get_weather(city="Kobe")]'
    assert answer.choices[0].finish_reason == "stop"
    none = client.chat.completions.create(messages=[QUESTION], tools=[WEATHER], tool_choice="none", **GREEDY)
    assert none.choices[0].message.tool_calls is None and engine.calls[-1].messages[0].tools == ()


def test_a_streamed_call_is_reassembled_by_the_clients_stream_helper(scripted):
    engine, client = scripted
    script(
        engine,
        '<|python_start|>[get_weather(city="Kobe", days=3), get_time(zone="Asia/Tokyo")]<|python_end|>',
    )
    with client.chat.completions.stream(messages=[QUESTION], tools=[WEATHER, CLOCK], **GREEDY) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls]
    assert calls == [("get_weather", {"city": "Kobe", "days": 3}), ("get_time", {"zone": "Asia/Tokyo"})]
    assert not [e for e in events if e.type == "content.delta"]  # no call text leaked as content
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert [e.name for e in done] == ["get_weather", "get_time"]


def test_streamed_call_chunks_are_shaped_as_openais(scripted):
    engine, client = scripted
    script(engine, '[get_weather(city="' + "Kobe " * 20 + '")]')
    chunks = list(client.chat.completions.create(messages=[QUESTION], tools=[WEATHER], stream=True, **GREEDY))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    first, *rest = [d[0] for d in deltas]
    assert first.index == 0 and first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "get_weather" and first.function.arguments == ""
    assert len(rest) > 1 and all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
    assert json.loads("".join(d.function.arguments for d in rest)) == {"city": "Kobe " * 20}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None


def test_parallel_tool_calls_false_keeps_one_call(scripted):
    engine, client = scripted
    script(engine, '[get_weather(city="Kobe"), get_weather(city="Osaka")]')
    answer = client.chat.completions.create(
        messages=[QUESTION], tools=[WEATHER], parallel_tool_calls=False, **GREEDY
    )
    assert [json.loads(c.function.arguments) for c in answer.choices[0].message.tool_calls] == [
        {"city": "Kobe"}
    ]


def weather_service(city: str, days: int = 1) -> dict:
    return {"city": city, "days": days, "sky": "clear", "celsius": 21}


def test_an_agents_loop_call_result_answer(scripted):
    """As the OpenAI Agents SDK runs a turn: ask with tools, run the calls the model makes,
    send their results back, repeat until the model answers in text."""
    engine, client = scripted

    def model(messages) -> str:
        if messages[-1].role != "tool":
            return '{"name": "get_weather", "parameters": {"city": "Kobe", "days": 2}}'
        result = json.loads(messages[-1].text)
        return f"It is {result['sky']} in {result['city']}, {result['celsius']} degrees."

    script(engine, model)
    messages: list = [{"role": "system", "content": "You are a weather agent."}, QUESTION]
    for _turn in range(4):
        answer = client.chat.completions.create(messages=messages, tools=[WEATHER], **GREEDY)
        message = answer.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            break
        for call in message.tool_calls:
            result = weather_service(**json.loads(call.function.arguments))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    assert messages[-1] == {"role": "assistant", "content": "It is clear in Kobe, 21 degrees."}
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    sent = engine.calls[-1].messages  # what the engine was given on the last turn
    assert sent[2].tool_calls[0].name == "get_weather" and sent[2].tool_calls[0].arguments == {
        "city": "Kobe",
        "days": 2,
    }
    assert sent[3].role == "tool" and sent[3].tool_call_id == sent[2].tool_calls[0].id


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_time"}}},
            "tool_choice",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
            "tools[0].function.parameters",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"enum": list(range(5000))}},
                }
            },
            "response_format.json_schema.schema",
        ),
        (
            {
                "messages": [
                    QUESTION,
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": "{'city': 1}"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "x"},
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    QUESTION,
                    {"role": "assistant", "content": "Hm."},
                    {"role": "tool", "tool_call_id": "call_x", "content": "x"},
                ]
            },
            "messages[2].tool_call_id",
        ),
    ],
)
def test_bad_tool_requests_are_openai_shaped_400s_naming_the_field(scripted, fields, param):
    engine, client = scripted
    before = len(engine.calls)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**{"messages": [QUESTION], **GREEDY, **fields})
    error = info.value.body
    assert (
        info.value.status_code == 400 and error["param"] == param and error["type"] == "invalid_request_error"
    )
    assert len(engine.calls) == before  # refused before anything was queued


# -- the real tiny checkpoint: the prompt the template renders, a free answer -----------------


def prompt_text(owner, app) -> str:
    tokenizer = owner.engine.encoder.tokenizer
    return tokenizer.decode(list(app.state.jobs[-1].final.prompt_token_ids))


def test_auto_leaves_the_model_free_to_answer_in_text(client, live, owner):
    answer = client.chat.completions.create(
        messages=[QUESTION], tools=[WEATHER, CLOCK], max_tokens=8, **GREEDY
    )
    choice = answer.choices[0]
    assert choice.finish_reason in ("stop", "length") and isinstance(choice.message.content, str)
    assert choice.message.tool_calls is None  # random weights write no call
    text = prompt_text(owner, live[0])
    assert "Given the following functions" in text and '"name": "get_time"' in text
    assert text.endswith("What is the weather in Kobe?<|eot|><|header_start|>assistant<|header_end|>\n\n")


def test_a_tool_round_trip_reaches_the_prompt_as_the_template_renders_it(client, live, owner):
    from transformers.utils.chat_template_utils import render_jinja_template

    call = {
        "id": "call_7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Kobe"}'},
    }
    result = '{"sky": "clear", "celsius": 21}'
    messages = [QUESTION, {"role": "assistant", "content": None, "tool_calls": [call]}]
    messages.append({"role": "tool", "tool_call_id": "call_7", "content": result})
    client.chat.completions.create(messages=messages, tools=[WEATHER], max_tokens=2, **GREEDY)
    tokenizer = owner.engine.encoder.tokenizer
    ids = list(live[0].state.jobs[-1].final.prompt_token_ids)
    expected_call = {**call, "function": {"name": "get_weather", "arguments": {"city": "Kobe"}}}
    (expected,), _ = render_jinja_template(
        [
            [
                QUESTION,
                {"role": "assistant", "content": "", "tool_calls": [expected_call]},
                {**messages[2], "content": json.loads(result)},
            ]
        ],
        tools=[WEATHER],
        chat_template=tokenizer.chat_template,
        add_generation_prompt=True,
        bos_token="<|begin_of_text|>",
    )
    assert tokenizer.decode(ids) == expected
    assert (
        '<|python_start|><|python_end|>{"name": "get_weather", "parameters": {"city": "Kobe"}}<|eot|>'
        in expected
    )
    special = {
        t: tokenizer.convert_tokens_to_ids(t) for t in ("<|python_start|>", "<|python_end|>", "<|eot|>")
    }
    assert ids.count(special["<|python_start|>"]) == 1 and ids.count(special["<|python_end|>"]) == 1
    assert ids.count(special["<|eot|>"]) == 3  # the question, the call, the result: the template's alone
    header = tokenizer.encode("<|header_start|>ipython<|header_end|>", add_special_tokens=False)
    assert any(ids[i : i + len(header)] == header for i in range(len(ids)))


# -- under the grammar (models.inference.constraints): forced calls and schemas ---------------


@pytest.fixture
def grammar():
    return pytest.importorskip("models.inference.constraints")


def arguments_valid(name: str, arguments: dict) -> bool:
    if name == "get_weather":
        days = arguments.get("days", 1)
        return set(arguments) <= {"city", "days"} and isinstance(arguments["city"], str) and 1 <= days <= 7
    return set(arguments) == {"zone"} and arguments["zone"] in ("UTC", "Asia/Tokyo")


@pytest.mark.parametrize("stream", [False, True])
def test_a_forced_call_of_one_of_two_tools_has_valid_arguments(grammar, client, stream):
    fields = {"messages": [QUESTION], "tools": [WEATHER, CLOCK], "tool_choice": "required", "max_tokens": 200}
    if stream:
        with client.chat.completions.stream(**fields, **GREEDY) as events:
            answer = events.get_final_completion()
    else:
        answer = client.chat.completions.create(**fields, **GREEDY)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    for call in choice.message.tool_calls:
        assert call.function.name in ("get_weather", "get_time")
        assert arguments_valid(call.function.name, json.loads(call.function.arguments))


def test_a_named_function_is_the_one_called(grammar, client):
    answer = client.chat.completions.create(
        messages=[QUESTION],
        tools=[WEATHER, CLOCK],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=100,
        **GREEDY,
    )
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "get_time" and arguments_valid(
        "get_time", json.loads(call.function.arguments)
    )


def test_json_schema_output_is_valid_for_the_schema(grammar, client):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "minLength": 2, "maxLength": 12},
            "sky": {"enum": ["clear", "cloudy", "rain"]},
            "celsius": {"type": "integer", "minimum": -40, "maximum": 50},
            "hours": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0, "maximum": 23},
                "maxItems": 4,
            },
        },
        "required": ["city", "sky", "celsius", "hours"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        messages=[QUESTION],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": schema, "strict": True},
        },
        max_tokens=200,
        **GREEDY,
    )
    value = json.loads(answer.choices[0].message.content)
    assert set(value) == {"city", "sky", "celsius", "hours"} and 2 <= len(value["city"]) <= 12
    assert value["sky"] in ("clear", "cloudy", "rain") and -40 <= value["celsius"] <= 50
    assert len(value["hours"]) <= 4 and all(0 <= h <= 23 for h in value["hours"])
    anything = client.chat.completions.create(
        messages=[QUESTION], response_format={"type": "json_object"}, max_tokens=100, **GREEDY
    )
    assert isinstance(json.loads(anything.choices[0].message.content), dict)
