"""A checkpoint's weight bytes: exact from its safetensors headers (no tensor data is read), or
estimated from its config the way mlx stores quantized linear layers; ``WeightBytes.in_float32``
the same weights with their float tensors (scales, biases, norms, unquantized matrices) cast to
float32, as the engine runs them on MLX's CPU backend."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from models.memory.model_layout import ModelLayout, PlanError
from models.regular_files import InputFileError, open_regular_file


@dataclass(frozen=True)
class WeightBytes:
    total: int
    language: int
    vision: int
    source: Literal["safetensors", "estimated"]
    activation_bytes: int = 2  # bytes per element of activations (the scales' or weights' dtype)
    float_language: int | None = None  # bytes of the language part's float tensors (None: all of it)
    float_vision: int | None = None  # likewise for the vision tower and projector

    def in_float32(self) -> WeightBytes:
        """These weights with every float tensor cast to float32 (packed integer weights kept)."""
        if self.activation_bytes >= 4:
            return self
        scale = 4 / self.activation_bytes
        float_language = self.language if self.float_language is None else self.float_language
        float_vision = self.vision if self.float_vision is None else self.float_vision
        language = self.language + round(float_language * (scale - 1))
        vision = self.vision + round(float_vision * (scale - 1))
        return replace(
            self,
            total=language + vision,
            language=language,
            vision=vision,
            activation_bytes=4,
            float_language=round(float_language * scale),
            float_vision=round(float_vision * scale),
        )


_DTYPE_BYTES = {
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F64": 8,
    "U32": 4,
    "I32": 4,
    "U8": 1,
    "I8": 1,
    "U16": 2,
    "I16": 2,
    "I64": 8,
    "U64": 8,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_FLOAT_DTYPES = {"F16", "BF16"}  # what a backend without bf16 runs in float32


def read_safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file (tensor names -> dtype, shape, data_offsets)."""
    try:
        with open_regular_file(path, path.name) as f:  # a FIFO or device is refused, not read
            size_bytes = f.read(8)
            if len(size_bytes) != 8:
                raise PlanError(f"{path.name} is not a safetensors file.")
            (size,) = struct.unpack("<Q", size_bytes)
            if size > 100_000_000:
                raise PlanError(f"{path.name} has an implausible header ({size:,} bytes).")
            header = json.loads(f.read(size))
    except InputFileError as exc:
        raise PlanError(str(exc)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path.name} cannot be read: {exc}") from None
    if not isinstance(header, dict):
        raise PlanError(f"{path.name} has no tensor table.")
    return header


def weights_from_safetensors(files: list[Path]) -> WeightBytes:
    """Exact weight bytes from the headers of ``files`` (no tensor data is read)."""
    language = vision = float_language = float_vision = 0
    act: dict[str, int] = {}
    for path in files:
        for name, info in read_safetensors_header(path).items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            start, end = info.get("data_offsets", (0, 0))
            nbytes = int(end) - int(start)
            is_float = str(info.get("dtype")) in _FLOAT_DTYPES
            if name.startswith(("vision_model", "multi_modal_projector")):
                vision += nbytes
                float_vision += nbytes * is_float
            else:
                language += nbytes
                float_language += nbytes * is_float
            if name.endswith((".scales", "norm.weight")):
                kind = str(info.get("dtype"))
                act[kind] = act.get(kind, 0) + 1
    dtype = max(act, key=lambda kind: act[kind]) if act else "BF16"
    return WeightBytes(
        language + vision,
        language,
        vision,
        "safetensors",
        _DTYPE_BYTES.get(dtype, 2),
        float_language,
        float_vision,
    )


def _linear_bytes(out_dim: int, in_dim: int, bits: int | None, group: int, dtype_bytes: int = 2) -> int:
    """A linear layer's weight as mlx stores it: packed uint32 plus bf16 scales and biases."""
    if bits and (out_dim * in_dim) % 64 == 0 and in_dim % group == 0:
        return out_dim * in_dim * bits // 8 + out_dim * (in_dim // group) * 2 * dtype_bytes
    return out_dim * in_dim * dtype_bytes


def vocab_matrix_bytes(layout: ModelLayout, dtype_bytes: int = 2) -> int:
    """One vocab x hidden matrix (the embeddings, or ``lm_head``) as the converter stores it
    (its float parts at ``dtype_bytes`` per element)."""
    return _linear_bytes(layout.vocab, layout.hidden, layout.quant_bits, layout.quant_group, dtype_bytes)


def layer_weight_bytes(layout: ModelLayout, dtype_bytes: int = 2) -> list[int]:
    """Each decoder layer's weight bytes, estimated from the config (MoE layers hold far more
    than dense ones, so a slice of layers is not a proportional share); float parts at
    ``dtype_bytes`` per element."""
    s, b, g = layout, layout.quant_bits, layout.quant_group
    lin = lambda o, i: _linear_bytes(o, i, b, g, dtype_bytes)  # noqa: E731
    sizes = []
    for i in range(s.layers):
        n = 2 * lin(s.kv_dim, s.hidden) + lin(s.q_dim, s.hidden) + lin(s.hidden, s.q_dim)
        n += 2 * dtype_bytes * s.hidden  # the two RMSNorms
        if s.is_moe(i):
            n += lin(s.experts, s.hidden)  # router
            n += s.experts * (2 * lin(s.expert_intermediate, s.hidden) + lin(s.hidden, s.expert_intermediate))
            n += 2 * lin(s.expert_intermediate, s.hidden) + lin(s.hidden, s.expert_intermediate)
        else:
            n += 2 * lin(s.dense_intermediate, s.hidden) + lin(s.hidden, s.dense_intermediate)
        sizes.append(n)
    return sizes


def estimate_weights(layout: ModelLayout) -> WeightBytes:
    """Weight bytes from the config alone, laid out as mlx-vlm's converter writes them."""
    s = layout
    language = 2 * vocab_matrix_bytes(s) + 2 * s.hidden  # embedding, lm_head, final norm
    language += sum(layer_weight_bytes(s))
    # Every byte above is linear in the float dtype's size: at 0 bytes only packed weights remain.
    packed = 2 * vocab_matrix_bytes(s, 0) + sum(layer_weight_bytes(s, 0))
    vision = 0
    v = s.vision
    if v is not None:
        bf16 = 2
        patches = (v.image_size // v.patch_size) ** 2
        params = v.hidden * 3 * v.patch_size**2 + v.hidden + (patches + 1) * v.hidden + 4 * v.hidden
        per_layer = 4 * (v.hidden * v.hidden + v.hidden) + 2 * v.hidden * v.intermediate
        per_layer += v.intermediate + v.hidden + 4 * v.hidden
        params += v.layers * per_layer
        params += v.projector_input * v.intermediate + v.projector_output * v.projector_output
        params += s.hidden * v.projector_output  # multi_modal_projector
        vision = params * bf16
    return WeightBytes(language + vision, language, vision, "estimated", 2, language - packed, vision)
