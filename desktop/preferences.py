"""Default answer settings and appearance, kept in QSettings.

``open_settings()`` is where the window keeps them: with ``LLAMA_DESK_DATA_DIR`` set, an INI file
in that folder, so a separate data folder is a separate Llama Desk (its own last model too);
otherwise the platform's usual place (on macOS ``~/Library/Preferences``).

``ChatDefaults`` is what a new conversation starts with; a conversation may override any of
it (the conversation store keeps those overrides). ``GenerationSettings`` for the engine is
built from the effective values.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from PySide6.QtCore import QSettings

from models.app_folders import DATA_DIR_ENV, data_dir
from models.chats.store import ConversationSettings
from models.inference.answer_defaults import (
    CONTEXT_LENGTH,
    MAX_PARALLEL,
    MAX_TOKENS,
    PARALLEL,
    TEMPERATURE,
    TOP_P,
)
from models.inference.engine import GenerationSettings
from models.memory.planner import KV_CACHE_CHOICES, kv_cache_bits

APPEARANCES = ("system", "light", "dark")
CONVERSATION_OVERRIDES = ("temperature", "top_p", "max_tokens", "seed", "context_length")
SETTINGS_FILE = "settings.ini"


def open_settings() -> QSettings:
    """The app's settings: ``settings.ini`` in ``$LLAMA_DESK_DATA_DIR`` when that is set (the file
    is created on the first write), otherwise the platform's native settings for Llama Desk."""
    if os.environ.get(DATA_DIR_ENV):
        return QSettings(str(data_dir() / SETTINGS_FILE), QSettings.Format.IniFormat)
    return QSettings()


@dataclass(frozen=True)
class ChatDefaults:
    system_prompt: str = ""
    temperature: float = TEMPERATURE  # Llama 4 Instruct's generation_config
    top_p: float = TOP_P
    max_tokens: int = MAX_TOKENS
    seed: int | None = None
    context_length: int = CONTEXT_LENGTH
    kv_bits: int = 16  # one of planner.KV_CACHE_CHOICES; kv_cache_bits() turns 16 into None
    appearance: str = "system"
    parallel: int = PARALLEL  # answers at once (the engine host's slots), for the window and its API

    def generation_settings(self, **overrides) -> GenerationSettings:
        values = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        return GenerationSettings(
            max_tokens=values.max_tokens,
            temperature=values.temperature,
            top_p=values.top_p,
            seed=values.seed,
            context_length=values.context_length,
            kv_bits=kv_cache_bits(values.kv_bits) if values.kv_bits in KV_CACHE_CHOICES else None,
        )


def with_conversation_settings(defaults: ChatDefaults, settings: ConversationSettings) -> ChatDefaults:
    """What a conversation uses: ``defaults`` with the conversation's system prompt and overrides."""
    overrides = {name: getattr(settings, name) for name in CONVERSATION_OVERRIDES}
    return replace(
        defaults,
        system_prompt=settings.system_prompt,
        **{name: value for name, value in overrides.items() if value is not None},
    )


def conversation_settings_from(chosen: ChatDefaults) -> ConversationSettings:
    """A conversation's own settings, as chosen in its settings dialog."""
    return ConversationSettings(
        system_prompt=chosen.system_prompt, **{name: getattr(chosen, name) for name in CONVERSATION_OVERRIDES}
    )


def load_defaults(settings: QSettings) -> ChatDefaults:
    """Read the defaults, ignoring values that are missing or of the wrong type."""
    base = ChatDefaults()
    values: dict[str, Any] = {}
    for f in fields(ChatDefaults):
        raw = settings.value(f"defaults/{f.name}", None)
        if raw is None or raw == "":
            continue
        default = getattr(base, f.name)
        try:
            if f.name == "seed":
                values[f.name] = int(str(raw))
            elif isinstance(default, bool):
                values[f.name] = str(raw).lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                values[f.name] = int(str(raw))
            elif isinstance(default, float):
                values[f.name] = float(str(raw))
            else:
                values[f.name] = str(raw)
        except (TypeError, ValueError):
            continue
    if not 1 <= values.get("parallel", PARALLEL) <= MAX_PARALLEL:
        values.pop("parallel")
    if values.get("appearance") not in (None, *APPEARANCES):
        values.pop("appearance")
    return replace(base, **values)


def save_defaults(settings: QSettings, defaults: ChatDefaults) -> None:
    for name, value in asdict(defaults).items():
        if value is None:
            settings.remove(f"defaults/{name}")
        else:
            settings.setValue(f"defaults/{name}", value)
    settings.sync()
