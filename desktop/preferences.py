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
from models.inference.answer_defaults import MAX_PARALLEL, PARALLEL
from models.inference.engine import GenerationSettings
from models.inference.settings_spec import SETTINGS, is_setting, setting
from models.memory.planner import KV_CACHE_CHOICES, kv_cache_bits

APPEARANCES = ("system", "light", "dark")
CONVERSATION_OVERRIDES = tuple(spec.name for spec in SETTINGS if spec.per_conversation)
SETTINGS_FILE = "settings.ini"


def open_settings() -> QSettings:
    """The app's settings: ``settings.ini`` in ``$LLAMA_DESK_DATA_DIR`` when that is set (the file
    is created on the first write), otherwise the platform's native settings for Llama Desk."""
    if os.environ.get(DATA_DIR_ENV):
        return QSettings(str(data_dir() / SETTINGS_FILE), QSettings.Format.IniFormat)
    return QSettings()


@dataclass(frozen=True)
class ChatDefaults:
    """The window's defaults: the system prompt, one field per setting of the table of settings
    (``settings_spec.SETTINGS``, which the window keeps: ``stored``) and the app's own."""

    system_prompt: str = ""
    temperature: float = setting("temperature").window_default
    top_p: float = setting("top_p").window_default
    min_p: float = setting("min_p").window_default
    repetition_penalty: float = setting("repetition_penalty").window_default
    max_tokens: int = setting("max_tokens").window_default
    seed: int | None = setting("seed").window_default
    context_length: int = setting("context_length").window_default
    kv_bits: int = 16  # one of planner.KV_CACHE_CHOICES; kv_cache_bits() turns 16 into None
    appearance: str = "system"
    parallel: int = PARALLEL  # answers at once (the engine host's slots), for the window and its API

    def generation_settings(self, **overrides) -> GenerationSettings:
        values = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        return GenerationSettings(
            **{spec.name: getattr(values, spec.name) for spec in SETTINGS if spec.stored},
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
            if is_setting(f.name):
                spec = setting(f.name)
                value = spec.kind(str(raw))
                if not spec.problem(value):  # out of the table's range: the default
                    values[f.name] = value
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
