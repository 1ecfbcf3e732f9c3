"""min_p and repetition_penalty through the official ``openai`` client (as ``extra_body``, the way
clients send fields OpenAI does not define): they reach the engine's settings, and a value out of
the table's range is a 400 naming the field."""

from __future__ import annotations

import openai
import pytest

QUESTION = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def api(plain):
    return openai.OpenAI(base_url=plain[1].url, api_key="x", max_retries=0)


def test_the_fields_reach_the_engine(api, fake_owner):
    api.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=2, extra_body={"min_p": 0.05, "repetition_penalty": 1.2}
    )
    settings = fake_owner.engine.calls[-1].settings
    assert (settings.min_p, settings.repetition_penalty) == (0.05, 1.2)
    api.chat.completions.create(
        model="m", messages=QUESTION, max_tokens=2, extra_body={"repeat_penalty": 1.1}
    )
    settings = fake_owner.engine.calls[-1].settings
    assert (settings.min_p, settings.repetition_penalty) == (0.0, 1.1)  # min_p left out: off


@pytest.mark.parametrize(
    "field, value", [("min_p", 1.5), ("min_p", -0.1), ("repetition_penalty", 0.9), ("repeat_penalty", 3)]
)
def test_out_of_range_is_400_naming_the_field(api, field, value):
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model="m", messages=QUESTION, max_tokens=2, extra_body={field: value})
    assert info.value.status_code == 400
    assert info.value.body["param"] == field and field in info.value.body["message"]
