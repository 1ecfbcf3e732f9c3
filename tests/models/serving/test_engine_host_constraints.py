"""Structured output through the engine host: a job's ``constraint`` reaches the engine.

On the tests' random-weight 4-bit checkpoint: constrained jobs running beside a free one give
schema-valid JSON and a valid forced tool call while the free one's greedy answer is what it is
alone; a schema that cannot be compiled is ``REJECTED`` naming its field (the host goes on); an
engine that answers one at a time (a pipeline across a cluster) refuses a constraint.
"""

from __future__ import annotations

import json
import queue

import pytest

from models.inference.engine import GenerationSettings
from models.inference.output_constraint import OutputConstraint, ToolSpec
from models.inference.prompt import ChatMessage
from models.serving.engine_host import EngineHost
from models.serving.jobs import EventKind

GREEDY = GenerationSettings(max_tokens=120, temperature=0.0, prefill_step_size=16)
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 8},
        "rank": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["city", "rank"],
    "additionalProperties": False,
}
TOOLS = (
    ToolSpec(
        "lookup",
        parameters={
            "type": "object",
            "properties": {"q": {"enum": ["a", "b"]}},
            "required": ["q"],
            "additionalProperties": False,
        },
    ),
    ToolSpec("stop", parameters={"type": "object", "properties": {}, "additionalProperties": False}),
)


@pytest.fixture(scope="module")
def host(checkpoints):
    host = EngineHost(checkpoints["4bit"], parallel=4, queue_limit=8)
    host.start(timeout=120)
    yield host
    host.close()


class Collect:
    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.text = ""

    def deliver(self, event):
        self.events.put(event)

    def wait(self, timeout=120):
        while True:
            event = self.events.get(timeout=timeout)
            if event.kind is EventKind.STEP:
                self.text += event.step.text
                if event.step.finish_reason is not None:
                    return event.step
            elif event.kind in (EventKind.REJECTED, EventKind.FAILED):
                return event


def test_constrained_jobs_beside_a_free_one(host):
    free = [ChatMessage("user", "say something long " * 4)]
    alone = list(host.generate(free, GREEDY))[-1]
    jobs = [
        (free, None),
        ([ChatMessage("user", "where?")], OutputConstraint("json_schema", schema=SCHEMA)),
        ([ChatMessage("user", "call one")], OutputConstraint("tool_call", tools=TOOLS)),
    ]
    collectors = [Collect() for _ in jobs]
    for (messages, constraint), collect in zip(jobs, collectors, strict=True):
        host.submit(messages, GREEDY, collect.deliver, constraint=constraint)
    finals = [collect.wait() for collect in collectors]
    assert [final.finish_reason for final in finals[1:]] == ["stop", "stop"], [c.text for c in collectors]
    assert finals[0].token_ids == alone.token_ids
    answer = json.loads(collectors[1].text)
    assert set(answer) == {"city", "rank"} and 1 <= answer["rank"] <= 5 and 1 <= len(answer["city"]) <= 8
    call = json.loads(collectors[2].text)
    assert call["name"] in ("lookup", "stop")
    assert call["parameters"] == {} if call["name"] == "stop" else call["parameters"]["q"] in ("a", "b")


def test_generate_takes_a_constraint(host):
    steps = list(
        host.generate([ChatMessage("user", "hi")], GREEDY, constraint=OutputConstraint("json_object"))
    )
    assert steps[-1].finish_reason == "stop"
    assert isinstance(json.loads("".join(step.text for step in steps)), dict)


def test_a_schema_that_cannot_be_compiled_is_rejected_naming_its_field(host):
    collect = Collect()
    bad = OutputConstraint("json_schema", schema={"type": "integer", "minimum": 9, "maximum": 1})
    host.submit([ChatMessage("user", "hi")], GREEDY, collect.deliver, constraint=bad)
    event = collect.wait()
    assert event.kind is EventKind.REJECTED
    assert event.param == "response_format" and "maximum" in event.message
    # The host answers on.
    assert list(host.generate([ChatMessage("user", "hi")], GREEDY))[-1].finish_reason in ("stop", "length")


class _OneAtATime:
    """An engine that answers one at a time (as a pipeline across a cluster does)."""

    batched = False
    name = "pipeline"

    def close(self):
        pass


def test_an_engine_answering_one_at_a_time_refuses_a_constraint():
    host = EngineHost(loader=lambda _path: _OneAtATime(), fits=lambda _contexts: True)
    host.start()
    try:
        host.load("pipeline").result(timeout=30)
        collect = Collect()
        job = host.submit(
            [ChatMessage("user", "hi")],
            GREEDY,
            collect.deliver,
            constraint=OutputConstraint("tool_call", tools=TOOLS),
        )
        event = collect.wait(timeout=30)
        assert event.kind is EventKind.REJECTED
        assert event.param == "tools" and "cluster" in event.message
        assert job.done.wait(timeout=30)
    finally:
        host.close()
