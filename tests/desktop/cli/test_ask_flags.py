"""``llama-desk ask``'s generation flags come from the table of settings: one flag a knob, with
the table's type, default and range (checked in-process: no model is loaded)."""

from __future__ import annotations

import pytest

from desktop.cli import ask
from desktop.cli.command_error import CommandError
from desktop.cli.main import build_parser
from models.chats.conversation_records import ConversationSettings
from models.inference.settings_spec import SETTINGS, SettingSpec


def parse(*flags: str):
    return build_parser().parse_args(["ask", *flags, "Hi"])


def text(value) -> str:
    return str(value)


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_every_setting_has_a_flag_with_the_tables_range(spec: SettingSpec):
    assert spec.flag == "--" + spec.name.replace("_", "-")
    args = parse()
    assert getattr(args, spec.name) is None  # left out: the conversation's or the default
    ask._check_args(args)
    top = parse(spec.flag, text(spec.high))
    assert getattr(top, spec.name) == spec.high and isinstance(getattr(top, spec.name), spec.kind)
    ask._check_args(top)
    below = spec.low if spec.low_open else spec.low - (1 if spec.kind is int else 0.01)
    for bad in (below, spec.high + (1 if spec.kind is int else 0.01)):
        with pytest.raises(CommandError) as info:
            ask._check_args(parse(spec.flag, text(bad)))
        assert str(info.value).startswith(f"{spec.flag} must be") and info.value.status == 2


def test_the_help_says_each_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ask", "--help"])
    usage = capsys.readouterr().out
    for spec in SETTINGS:
        assert spec.flag in usage
    assert "--min-p" in usage and "--repetition-penalty" in usage
    assert "default 1.0" in usage.replace("\n", " ")  # repetition penalty: 1.0 is off


def test_min_p_and_repetition_penalty_flags_become_the_conversations_settings():
    args = parse("--min-p", "0.1", "--repetition-penalty", "1.25", "--temperature", "0")
    ask._check_args(args)
    chosen = ask._chat_settings(args, ConversationSettings(top_p=0.5))
    assert (chosen.min_p, chosen.repetition_penalty, chosen.temperature, chosen.top_p) == (
        0.1,
        1.25,
        0.0,
        0.5,
    )
    settings = chosen.generation_settings()
    assert (settings.min_p, settings.repetition_penalty) == (0.1, 1.25)
