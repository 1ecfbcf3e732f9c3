"""A checkpoint's config checked against its weights' tensor table, before anything is built.

mlx-vlm builds the model from ``config.json`` before it loads a single weight: a config that
says ``num_hidden_layers: 1000000000`` builds layers until memory runs out. The safetensors
headers (read here with a bound, no tensor data) say what the weights really hold, so the
sizes that shape the model are compared with them first: the layer counts of the language
model and of the vision tower (the distinct ``layers.N.`` indices), the hidden sizes (the
layer norms), the vocabulary (the embedding's rows), the attention projections, the experts
and the feed-forward sizes (their output rows: quantization packs only the input dimension).
Each value must be a whole number; a mismatch is refused in one line naming both numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


class WeightsMismatch(ValueError):
    """The config does not describe the weights; the message says how, in one line."""


def read_tensor_shapes(files: list[Path]) -> dict[str, list[int]]:
    """Tensor name -> shape, from the safetensors headers of ``files`` (no tensor is read)."""
    from models.memory.model_layout import PlanError
    from models.memory.weight_bytes import read_safetensors_header

    shapes: dict[str, list[int]] = {}
    for path in files:
        try:
            header = read_safetensors_header(path)
        except PlanError as exc:
            raise WeightsMismatch(str(exc)) from None
        for name, info in header.items():
            shape = info.get("shape") if isinstance(info, dict) else None
            if isinstance(shape, list) and all(type(n) is int for n in shape):
                shapes[name] = shape
    return shapes


def _is_vision(name: str) -> bool:
    match = _LAYER.search(name)
    return "vision" in (name[: match.start()] if match else name)


def _layer_count(shapes: dict[str, list[int]], vision: bool) -> int:
    indices = set()
    for name in shapes:
        match = _LAYER.search(name)
        if match and _is_vision(name) == vision:
            indices.add(int(match.group(1)))
    return len(indices)


def _rows(shapes: dict[str, list[int]], suffix: str, vision: bool) -> int | None:
    """The first dimension of the first tensor ending in ``suffix`` (of the tower), if any."""
    for name in sorted(shapes):
        if name.endswith(suffix) and _is_vision(name) == vision and shapes[name]:
            return shapes[name][0]
    return None


def _whole(section: dict, key: str, where: str) -> int | None:
    value = section.get(key)
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise WeightsMismatch(f"{where}.{key} in config.json is not a whole number ({value!r:.40}).")
    return value


def check_config_against_weights(config: dict, shapes: dict[str, list[int]]) -> None:
    """Raise ``WeightsMismatch`` when ``config``'s sizes disagree with the tensor ``shapes``."""
    text, vision = config["text_config"], config["vision_config"]

    def t(key: str) -> int | None:
        return _whole(text, key, "text_config")

    def v(key: str) -> int | None:
        return _whole(vision, key, "vision_config")

    def product(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else a * b

    checks = [
        (t("num_hidden_layers"), _layer_count(shapes, False), "{} layers"),
        (v("num_hidden_layers"), _layer_count(shapes, True), "{} vision layers"),
        (t("hidden_size"), _rows(shapes, "input_layernorm.weight", False), "hidden size {}"),
        (v("hidden_size"), _rows(shapes, "layernorm_pre.weight", True), "vision hidden size {}"),
        (t("vocab_size"), _rows(shapes, "embed_tokens.weight", False), "a vocabulary of {} tokens"),
        (
            product(t("num_attention_heads"), t("head_dim")),
            _rows(shapes, "self_attn.q_proj.weight", False),
            "{} for the attention heads times head_dim",
        ),
        (
            product(t("num_key_value_heads"), t("head_dim")),
            _rows(shapes, "self_attn.k_proj.weight", False),
            "{} for the key-value heads times head_dim",
        ),
        (t("num_local_experts"), _rows(shapes, "feed_forward.router.weight", False), "{} experts"),
        (
            t("intermediate_size"),
            _rows(shapes, "shared_expert.gate_proj.weight", False),
            "an expert intermediate size of {}",
        ),
        (
            t("intermediate_size_mlp"),
            _rows(shapes, "feed_forward.gate_proj.weight", False),
            "a dense intermediate size of {}",
        ),
        (v("intermediate_size"), _rows(shapes, "mlp.fc1.weight", True), "a vision intermediate size of {}"),
    ]
    for said, found, what in checks:
        if said is not None and found is not None and said != found:
            raise WeightsMismatch(f"config.json says {what.format(said)}; the weights have {found}.")
