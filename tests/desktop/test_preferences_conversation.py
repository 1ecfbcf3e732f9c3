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
        system_prompt="S", temperature=1.1, top_p=0.5, max_tokens=99, seed=3, context_length=4096
    )
