"""A Llama 4 checkpoint's shape as the memory planner needs it (``ModelLayout``, read from a
config with ``layout_from_config``), and ``PlanError`` for a folder or config it cannot read."""

from __future__ import annotations

from dataclasses import dataclass, replace


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
        return sum(self.is_chunked(i) for i in range(self.layers))

    @property
    def global_layers(self) -> int:
        return self.layers - self.chunked_layers

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim


def _int(d: dict, *keys: str, default: int | None = None) -> int:
    for key in keys:
        if d.get(key) is not None:
            return int(d[key])
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
    bits = quant.get("bits") if isinstance(quant, dict) else None
    vision = None
    v = config.get("vision_config")
    if isinstance(v, dict) and v.get("hidden_size"):
        vision = VisionLayout(
            hidden=_int(v, "hidden_size"),
            layers=_int(v, "num_hidden_layers"),
            heads=_int(v, "num_attention_heads"),
            intermediate=_int(v, "intermediate_size"),
            image_size=_int(v, "image_size", default=336),
            patch_size=_int(v, "patch_size", default=14),
            projector_input=_int(v, "projector_input_dim", default=4096),
            projector_output=_int(v, "projector_output_dim", "vision_output_dim", default=4096),
            pixel_shuffle_ratio=float(v.get("pixel_shuffle_ratio", 0.5)),
        )
    return ModelLayout(
        name=name,
        layers=_int(t, "num_hidden_layers"),
        hidden=hidden,
        heads=heads,
        kv_heads=_int(t, "num_key_value_heads", default=heads),
        head_dim=_int(t, "head_dim", default=hidden // heads),
        experts=_int(t, "num_local_experts", default=1),
        experts_per_token=_int(t, "num_experts_per_tok", default=1),
        expert_intermediate=_int(t, "intermediate_size"),
        dense_intermediate=_int(t, "intermediate_size_mlp", default=_int(t, "intermediate_size")),
        moe_step=max(1, _int(t, "interleave_moe_layer_step", default=1)),
        chunk=_int(t, "attention_chunk_size", default=8192),
        vocab=_int(t, "vocab_size"),
        max_context=_int(t, "max_position_embeddings", default=131072),
        quant_bits=int(bits) if bits else None,
        quant_group=int(quant.get("group_size", 64)) if isinstance(quant, dict) else 64,
        vision=vision,
    )
