"""A conversation's settings over the defaults, and back from the dialog's values."""

from __future__ import annotations

from desktop.preferences import ChatDefaults, conversation_settings_from, with_conversation_settings
from models.chats.store import ConversationSettings


def test_a_conversation_overrides_only_what_it_sets():
    defaults = ChatDefaults(system_prompt="Be brief.", temperature=0.6, max_tokens=2048, kv_bits=8)
    own = ConversationSettings(system_prompt="Be thorough.", temperature=0.0, seed=7)
    effective = with_conversation_settings(defaults, own)
    assert effective.system_prompt == "Be thorough."
    assert (effective.temperature, effective.seed) == (0.0, 7)
    assert (effective.max_tokens, effective.top_p, effective.kv_bits) == (2048, 0.9, 8)


def test_the_dialogs_values_become_the_conversations_settings():
    chosen = ChatDefaults(
        system_prompt="S", temperature=1.1, top_p=0.5, max_tokens=99, seed=3, context_length=4096
    )
    assert conversation_settings_from(chosen) == ConversationSettings(
        system_prompt="S",
        temperature=1.1,
        top_p=0.5,
        min_p=0.0,
        repetition_penalty=1.0,
        max_tokens=99,
        seed=3,
        context_length=4096,
    )


def test_a_conversation_overrides_min_p_and_repetition_penalty():
    defaults = ChatDefaults(min_p=0.02)
    own = ConversationSettings(repetition_penalty=1.2)
    effective = with_conversation_settings(defaults, own)
    assert (effective.min_p, effective.repetition_penalty) == (0.02, 1.2)
    settings = effective.generation_settings()
    assert (settings.min_p, settings.repetition_penalty) == (0.02, 1.2)
    assert conversation_settings_from(effective).repetition_penalty == 1.2
