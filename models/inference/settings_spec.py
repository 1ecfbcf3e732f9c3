"""The generation settings a person or a client can set, each declared once: ``SETTINGS``.

A ``SettingSpec`` says everything about one knob: its type, default and range, the
``llama-desk ask`` flag and its help, the API request field(s), the Settings dialog's label and
spin box, and whether a conversation may override it. The rest is derived from the table:

- ``GenerationSettings``' defaults (``generation_types``) and ``answer_defaults``' names;
- a value's check (``SettingSpec.problem``): a stored conversation, an import, ask's flags
  (``conversation_records.setting_problem``) and the dialog's ranges (``dialog_range``);
- the window's defaults (``desktop.preferences.ChatDefaults``, loaded and saved by name);
- ask's flags (``desktop.cli.ask``) and the API's fields (``models.serving.openai_api``);
- a conversation's overrides (``ConversationSettings``), stored without a schema change: the
  knobs of schema 2 keep their columns, the others go in the JSON ``settings`` column.

Adding a knob: a ``SettingSpec`` here, a field in ``GenerationSettings``, ``ConversationSettings``
and ``ChatDefaults`` (tests/models/inference/test_settings_spec.py says when one is missing), and
its use in the sampler (``batch_generation.sampler_for`` and ``engine``'s stepwise path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_CONTEXT_LENGTH = 10_485_760  # Llama 4 Scout's 10M tokens
MAX_SEED = 2**63 - 1
SPIN_BOX_MAX = 2**31 - 1  # QSpinBox holds a C int
REPETITION_CONTEXT = 64  # the recent tokens (the prompt's tail included) the penalty looks at


@dataclass(frozen=True)
class SettingSpec:
    """One generation setting. ``default`` is the engine's (``GenerationSettings``); None means
    unset (a random seed, the model's whole context)."""

    name: str  # the field of GenerationSettings, ConversationSettings and ChatDefaults
    kind: type  # int or float
    default: Any
    low: int | float
    high: int | float
    label: str  # the Settings dialog's row
    help: str  # ask's flag help and the dialog's tooltip
    low_open: bool = False  # ``low`` itself is not allowed (top_p > 0)
    app_default: Any = None  # what the window starts with, where it differs from ``default``
    api_fields: tuple[str, ...] = ()  # request fields, the first one given wins; () for none
    api_modulo: int | None = None  # the API takes any integer and uses it modulo this
    step: float = 1  # the dialog's spin box
    decimals: int = 0
    dialog_low: int | float | None = None  # where the spin box's range is narrower
    dialog_high: int | float | None = None
    unset_text: str = ""  # the spin box's word for unset, shown one step below its range
    per_conversation: bool = True  # a conversation may override it (and stores its override)
    stored: bool = True  # the window keeps a default for it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def window_default(self) -> Any:
        """What the window's defaults (``ChatDefaults``) start with."""
        return self.default if self.app_default is None else self.app_default

    def range_text(self) -> str:
        if self.low_open:
            return f"above {self.low:g}, at most {self.high:g}"
        if self.kind is int:
            high = "2**63-1" if self.high == MAX_SEED else f"{self.high:,}"
            return f"from {self.low:,} to {high}"
        return f"from {self.low:g} to {self.high:g}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a valid value of this setting (None: it is, or it is unset)."""
        if value is None:
            return None
        if self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high
            return None if ok else f"must be a whole number {self.range_text()}"
        ok = (
            _finite(value)
            and (self.low < value if self.low_open else self.low <= value)
            and value <= self.high
        )
        return None if ok else f"must be a number {self.range_text()}"

    def value(self, raw: Any) -> Any:
        """A checked value in the setting's type (an int stored where a float is meant)."""
        return float(raw) if self.kind is float and raw is not None else raw

    def dialog_range(self) -> tuple[int | float, int | float]:
        """The spin box's minimum and maximum: the range (an open end one step in; an unset
        value one step below it), within what a spin box holds."""
        step = 1 if self.kind is int else 10**-self.decimals
        low = self.dialog_low if self.dialog_low is not None else self.low
        if self.low_open and self.dialog_low is None:
            low = round(low + step, self.decimals)
        high = self.dialog_high if self.dialog_high is not None else self.high
        if self.kind is int:
            high = min(high, SPIN_BOX_MAX)
        if self.unset_text:
            low -= step
        return low, high


def _finite(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "temperature",
        float,
        0.6,  # Llama 4 Instruct's generation_config
        0.0,
        2.0,
        "Temperature:",
        "0 always picks the most likely token",
        api_fields=("temperature",),
        step=0.05,
        decimals=2,
    ),
    SettingSpec(
        "top_p",
        float,
        0.9,
        0.0,
        1.0,
        "Top-p:",
        "sample from the most likely tokens that make up this much probability (1 is off)",
        low_open=True,
        api_fields=("top_p",),
        step=0.05,
        decimals=2,
    ),
    SettingSpec(
        "min_p",
        float,
        0.0,
        0.0,
        1.0,
        "Min-p:",
        "drop tokens less likely than this fraction of the most likely one (0 is off)",
        api_fields=("min_p",),
        step=0.01,
        decimals=2,
    ),
    SettingSpec(
        "repetition_penalty",
        float,
        1.0,
        1.0,
        2.0,
        "Repetition penalty:",
        f"make the last {REPETITION_CONTEXT} tokens less likely to come again (1 is off)",
        api_fields=("repetition_penalty", "repeat_penalty"),
        step=0.05,
        decimals=2,
    ),
    SettingSpec(
        "max_tokens",
        int,
        1024,
        1,
        MAX_CONTEXT_LENGTH,
        "Max answer tokens:",
        "the longest answer, in tokens",
        api_fields=("max_completion_tokens", "max_tokens"),
    ),
    SettingSpec(
        "seed",
        int,
        None,
        0,
        MAX_SEED,
        "Seed:",
        "the same seed gives the same answer (unset: random)",
        api_fields=("seed",),
        api_modulo=2**32,
        unset_text="Random",
    ),
    SettingSpec(
        "context_length",
        int,
        None,  # the engine's: the model's whole context
        2,
        MAX_CONTEXT_LENGTH,
        "Context length:",
        "refuse prompts longer than this, in tokens (prompt and answer together)",
        app_default=32768,  # what a conversation is planned and run with, unless set otherwise
        step=1024,
        dialog_low=256,
    ),
)

_BY_NAME = {spec.name: spec for spec in SETTINGS}


def setting(name: str) -> SettingSpec:
    """The spec named ``name`` (KeyError for a name not in the table)."""
    return _BY_NAME[name]


def is_setting(name: str) -> bool:
    return name in _BY_NAME
