"""A Llama 4 checkpoint's shape as the memory planner needs it (``ModelLayout``, read from a
config with ``layout_from_config``), and ``PlanError`` for a folder or config it cannot read.

A config may come from anywhere (a model folder, a downloaded repo), so every figure read is
checked: a whole number (a JSON integer, or a float such as 5120.0) within its bounds, never a
string, a boolean, NaN or infinity; ``num_hidden_layers`` at most ``MAX_LAYERS``. A bad value is
a ``PlanError`` naming the key ("config.json: text_config.hidden_size must be ..."). The layer
counts the planner needs (chunked, global, MoE) are worked out in closed form, not layer by
layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

MAX_LAYERS = 4096  # Scout and Maverick have 48 decoder layers (the vision tower 34)
MAX_SIZE = 2**31 - 1  # any other size or count of a config (hidden size, vocabulary, context, ...)


class PlanError(ValueError):
    """A folder or config the planner cannot read; the message says why."""


@dataclass(frozen=True)
class VisionLayout:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    image_size: int
    patch_size: int
    projector_input: int
    projector_output: int
    pixel_shuffle_ratio: float

    @property
    def tokens_per_tile(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1  # patches plus the class token


@dataclass(frozen=True)
class ModelLayout:
    """The dimensions that decide memory, read from a Llama 4 ``config.json``."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int
    experts_per_token: int
    expert_intermediate: int
    dense_intermediate: int
    moe_step: int
    chunk: int
    vocab: int
    max_context: int
    quant_bits: int | None = None
    quant_group: int = 64
    vision: VisionLayout | None = None
    first_layer: int = 0  # a slice of a model (one rank's layers): its first layer's index in the whole

    def is_chunked(self, layer: int) -> bool:
        """Whether ``layer`` (counted from this layout's first) uses chunked attention."""
        return (self.first_layer + layer + 1) % 4 != 0

    def is_moe(self, layer: int) -> bool:
        return (self.first_layer + layer) % self.moe_step == self.moe_step - 1

    def slice(self, start: int, end: int, vision: bool = False) -> ModelLayout:
        """The layers ``[start, end)`` of this model as a layout of their own (one rank's share of
        a pipeline), with the vision tower only if ``vision``."""
        if not 0 <= start < end <= self.layers:
            raise ValueError(f"layers {start}-{end - 1} are not within the model's {self.layers}")
        return replace(
            self,
            layers=end - start,
            first_layer=self.first_layer + start,
            vision=self.vision if vision else None,
        )

    @property
    def chunked_layers(self) -> int:
        return self.layers - self.global_layers_among(self.layers)

    def global_layers_among(self, count: int) -> int:
        """How many of this layout's first ``count`` layers use global attention (every fourth
        layer of the whole model): the multiples of 4 in ``first+1 .. first+count``."""
        return (self.first_layer + count) // 4 - self.first_layer // 4

    @property
    def moe_layers(self) -> int:
        """How many of this layout's layers are MoE (``is_moe``): every ``moe_step``-th."""
        step = self.moe_step
        return (self.first_layer + self.layers) // step - self.first_layer // step

    @property
    def global_layers(self) -> int:
        return self.layers - self.chunked_layers

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim


def _shown(value: object) -> str:
    """``value`` as a message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value: object, key: str, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """``value`` of config key ``key`` as a whole number in ``[minimum, maximum]``, else PlanError."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    if number is None:
        raise PlanError(f"config.json: {key} must be a whole number, not {_shown(value)}.")
    if not minimum <= number <= maximum:
        shown = f"{number:,}" if abs(number) < 10**40 else "a number that large"
        raise PlanError(f"config.json: {key} must be from {minimum:,} to {maximum:,}, not {shown}.")
    return number


def _ratio(value: object, key: str) -> float:
    """A fraction in (0, 1] (the vision tower's ``pixel_shuffle_ratio``), else PlanError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        where = f"config.json: vision_config.{key}"
        raise PlanError(f"{where} must be a number above 0 and at most 1, not {_shown(value)}.")
    return float(value)


def _int(
    d: dict,
    *keys: str,
    default: int | None = None,
    section: str = "text_config",
    minimum: int = 1,
    maximum: int = MAX_SIZE,
) -> int:
    for key in keys:
        if d.get(key) is not None:
            return _whole(d[key], f"{section}.{key}", minimum, maximum)
    if default is None:
        raise PlanError(f"config.json lacks {keys[0]}.")
    return default


def layout_from_config(config: dict, name: str = "model") -> ModelLayout:
    """The memory-relevant dimensions of a Llama 4 config (raises PlanError if it is not one)."""
    if config.get("model_type") != "llama4" or not isinstance(config.get("text_config"), dict):
        raise PlanError(f"{name} is not a Llama 4 model (model_type {config.get('model_type')!r}).")
    t = config["text_config"]
    hidden = _int(t, "hidden_size")
    heads = _int(t, "num_attention_heads")
    quant = config.get("quantization") or config.get("quantization_config") or {}
    bits = group = None
    if isinstance(quant, dict):
        bits = None if quant.get("bits") is None else _whole(quant["bits"], "quantization.bits", 1, 16)
        group = _int(quant, "group_size", default=64, section="quantization", maximum=MAX_SIZE)
    vision = None
    v = config.get("vision_config")
    if isinstance(v, dict) and v.get("hidden_size"):
        vision = VisionLayout(
            hidden=_int(v, "hidden_size", section="vision_config"),
            layers=_int(v, "num_hidden_layers", section="vision_config", maximum=MAX_LAYERS),
            heads=_int(v, "num_attention_heads", section="vision_config"),
            intermediate=_int(v, "intermediate_size", section="vision_config"),
            image_size=_int(v, "image_size", default=336, section="vision_config"),
            patch_size=_int(v, "patch_size", default=14, section="vision_config"),
            projector_input=_int(v, "projector_input_dim", default=4096, section="vision_config"),
            projector_output=_int(
                v, "projector_output_dim", "vision_output_dim", default=4096, section="vision_config"
            ),
            pixel_shuffle_ratio=_ratio(v.get("pixel_shuffle_ratio", 0.5), "pixel_shuffle_ratio"),
        )
    return ModelLayout(
        name=name,
        layers=_int(t, "num_hidden_layers", maximum=MAX_LAYERS),
        hidden=hidden,
        heads=heads,
        kv_heads=_int(t, "num_key_value_heads", default=heads),
        head_dim=_int(t, "head_dim", default=max(1, hidden // heads)),
        experts=_int(t, "num_local_experts", default=1),
        experts_per_token=_int(t, "num_experts_per_tok", default=1),
        expert_intermediate=_int(t, "intermediate_size"),
        dense_intermediate=_int(t, "intermediate_size_mlp", default=_int(t, "intermediate_size")),
        moe_step=max(1, _int(t, "interleave_moe_layer_step", default=1, minimum=0, maximum=MAX_LAYERS)),
        chunk=_int(t, "attention_chunk_size", default=8192),
        vocab=_int(t, "vocab_size"),
        max_context=_int(t, "max_position_embeddings", default=131072),
        quant_bits=bits,
        quant_group=group or 64,
        vision=vision,
    )
