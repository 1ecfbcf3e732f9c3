"""The table of generation settings drives the engine's settings, a conversation's overrides and
the API's fields: each knob's default and range are the table's, wherever it is read."""

from __future__ import annotations

import dataclasses

import pytest

from models.chats.conversation_records import ConversationSettings, setting_problem
from models.inference.answer_defaults import CONTEXT_LENGTH, MAX_TOKENS, TEMPERATURE, TOP_P
from models.inference.generation_types import GenerationSettings
from models.inference.settings_spec import SETTINGS, SettingSpec, setting
from models.serving.openai_api import ApiError, Limits, parse_chat_request

QUESTION = [{"role": "user", "content": "Hi"}]


def outside(spec: SettingSpec) -> list:
    """Values just outside the spec's range (and the low end itself when it is open)."""
    below = spec.low if spec.low_open else (spec.low - 1 if spec.kind is int else spec.low - 0.01)
    above = spec.high + 1 if spec.kind is int else spec.high + 0.01
    return [below, above]


def test_the_table_holds_the_new_knobs_and_the_defaults():
    names = [s.name for s in SETTINGS]
    assert len(set(names)) == len(names)
    assert {"temperature", "top_p", "min_p", "repetition_penalty", "max_tokens", "seed"} <= set(names)
    assert (setting("min_p").default, setting("repetition_penalty").default) == (0.0, 1.0)
    assert (setting("min_p").low, setting("min_p").high) == (0, 1)
    assert setting("repetition_penalty").low == 1 and setting("repetition_penalty").high >= 1.5
    # answer_defaults' names are the table's values, not copies
    assert (TEMPERATURE, TOP_P, MAX_TOKENS) == tuple(
        setting(n).default for n in ("temperature", "top_p", "max_tokens")
    )
    assert CONTEXT_LENGTH == setting("context_length").app_default


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_a_generation_setting_with_the_tables_default(spec):
    defaults = GenerationSettings()
    assert hasattr(defaults, spec.name)
    assert getattr(defaults, spec.name) == spec.default
    assert spec.default is None or isinstance(spec.default, spec.kind)


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.per_conversation], ids=lambda s: s.name)
def test_a_conversation_may_override_every_setting_within_the_tables_range(spec):
    assert getattr(ConversationSettings(), spec.name) is None  # unset: the app's default
    for good in (spec.low if not spec.low_open else spec.high, spec.high):
        assert setting_problem(spec.name, good) is None
        settings = ConversationSettings.from_json({spec.name: good})
        assert getattr(settings, spec.name) == good
        assert getattr(settings.generation_settings(), spec.name) == good
    for bad in outside(spec):
        assert setting_problem(spec.name, bad), bad
        assert getattr(ConversationSettings.from_stored({spec.name: bad}), spec.name) is None


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.api_fields], ids=lambda s: s.name)
def test_the_api_reads_every_setting_field_with_the_tables_range(spec):
    unset = parse_chat_request({"messages": QUESTION}, Limits(context_length=None)).settings
    if spec.name != "max_tokens":  # the server's own default (Limits.default_max_tokens)
        assert getattr(unset, spec.name) == spec.default
    for field in spec.api_fields:
        value = spec.high if spec.kind is float else min(spec.high, 1000)
        got = parse_chat_request({"messages": QUESTION, field: value}, Limits(context_length=None))
        assert getattr(got.settings, spec.name) == value
        if spec.api_modulo:
            continue  # any integer, taken modulo
        for bad in outside(spec):
            with pytest.raises(ApiError) as info:
                parse_chat_request({"messages": QUESTION, field: bad}, Limits(context_length=None))
            assert info.value.status == 400 and info.value.param == field, bad
            assert field in info.value.message


def test_min_p_and_repetition_penalty_reach_the_api_settings():
    body = {"messages": QUESTION, "min_p": 0.05, "repetition_penalty": 1.3}
    settings = parse_chat_request(body).settings
    assert (settings.min_p, settings.repetition_penalty) == (0.05, 1.3)
    assert (
        parse_chat_request({"messages": QUESTION, "repeat_penalty": 1.1}).settings.repetition_penalty == 1.1
    )
    for field, value in [("min_p", 1.5), ("min_p", -0.1), ("repetition_penalty", 0.5), ("min_p", "0.1")]:
        with pytest.raises(ApiError) as info:
            parse_chat_request({"messages": QUESTION, field: value})
        assert info.value.status == 400 and info.value.param == field and field in info.value.message


def test_conversation_settings_and_generation_settings_have_no_knob_outside_the_table():
    """A knob a person or client sets is declared in the table (the rest are the engine's own)."""
    names = {s.name for s in SETTINGS}
    conversation = {f.name for f in dataclasses.fields(ConversationSettings)} - {"system_prompt"}
    assert conversation == {s.name for s in SETTINGS if s.per_conversation}
    engine_only = {"prefill_step_size", "kv_bits", "kv_group_size"}
    assert {f.name for f in dataclasses.fields(GenerationSettings)} == names | engine_only
