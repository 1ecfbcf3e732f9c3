"""Everything a saved KV cache file claims, checked from its header before any tensor is read.

The safetensors header is parsed here, not by MLX: its 8-byte little-endian length is bounded
(``MAX_HEADER_BYTES``) and must fit the file, then it is JSON. The metadata must name this
format version, this model and this KV precision (else the file is another's: ``LoadOutcome``),
then hold exactly the names our writer produces for the model's layers (``cache_file_format``)
and nothing else, so no key structure from a file ever reaches ``tree_unflatten``. The
conversation's keys are bounded and well-formed, and their count is the token count. Each
tensor must be one of those names, of an allowed dtype, with a shape that follows from the
model (``CacheLayout``: batch 1, the layer's key/value heads and head size, quantized layouts
with the group size and bits) and the token count: a global layer holds every position, a
chunked layer the positions from its start position (which must leave the current chunk's
front in the cache). The data offsets must tile the data exactly to the end of the file with
sizes of shape × dtype size, so a header cannot claim more bytes than the file has. The small
scalar tensors (offsets, chunk size, start position, group size, bits) are read here, a few
bytes each, to finish the checks. Anything else is a damaged file (``CacheFileError``).
"""

from __future__ import annotations

import enum
import json
import math
import os
from dataclasses import dataclass
from typing import BinaryIO

from models.inference.cache_file_format import (
    CHECKSUM_FIELD,
    CHECKSUM_KIND,
    DTYPE_SIZES,
    FLOATS,
    layer_tensor_names,
    metadata_names,
    structure_metadata,
    tensor_names,
)
from models.inference.cache_layout import CacheLayout, LayerLayout
from models.inference.model_identity import ModelIdentity

MAX_HEADER_BYTES = 16 * 1024 * 1024  # room for the keys of about two million tokens
MAX_KEY_TEXT = 256  # an image key's hash
MAX_TOKEN_ID = 2**31 - 1
QUANT_BITS = (2, 3, 4, 5, 6, 8)


class LoadOutcome(enum.Enum):
    LOADED = "loaded"
    MISSING = "missing"
    UNREADABLE = "unreadable"  # damaged, truncated, lying about its content, or without checksum
    OTHER_VERSION = "other format version"
    OTHER_MODEL = "other model"
    OTHER_PRECISION = "other KV precision"


class CacheFileError(ValueError):
    """A saved cache that is not usable, with a one-line reason and the outcome to report."""

    def __init__(self, reason: str, outcome: LoadOutcome = LoadOutcome.UNREADABLE):
        super().__init__(reason)
        self.outcome = outcome


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # in the file
    end: int


@dataclass(frozen=True)
class CheckedFile:
    """A file whose header passed every check: what it holds, and what its tensors must hash to."""

    metadata: dict[str, str]
    keys: tuple
    classes: tuple[str, ...]
    tensors: dict[str, Tensor]
    scalars: dict[str, int]  # name -> value, as read and checked
    checksum: str


def _kv_text(kv: tuple[int, int] | None) -> str:
    return "none" if not kv else f"{int(kv[0])}:{int(kv[1])}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_exactly(handle: BinaryIO, start: int, count: int) -> bytes:
    handle.seek(start)
    data = handle.read(count)
    if len(data) != count:
        raise CacheFileError("cut short")
    return data


def _tensor(name: str, entry, data_start: int, data_len: int) -> Tensor:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise CacheFileError(f"tensor {name} is not described as safetensors describe one")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise CacheFileError(f"tensor {name} has dtype {str(dtype)[:20]}")
    if not isinstance(shape, list) or len(shape) > 4 or not all(_is_int(n) and n >= 0 for n in shape):
        raise CacheFileError(f"tensor {name} has no valid shape")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(n) for n in offsets):
        raise CacheFileError(f"tensor {name} has no valid data offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_len:
        raise CacheFileError(f"tensor {name} lies outside the file")
    if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise CacheFileError(f"tensor {name}'s size does not match its shape")
    return Tensor(name, dtype, tuple(shape), data_start + begin, data_start + end)


def read_header(handle: BinaryIO) -> tuple[dict[str, str], dict[str, Tensor]]:
    """The metadata and tensors of the safetensors file open as ``handle``, bounded and
    consistent with the file's size; no tensor data is read."""
    size = os.fstat(handle.fileno()).st_size
    if size < 8:
        raise CacheFileError("cut short")
    length = int.from_bytes(_read_exactly(handle, 0, 8), "little")
    if length > MAX_HEADER_BYTES:
        raise CacheFileError(f"its header claims {length:,} bytes")
    if 8 + length > size:
        raise CacheFileError("cut short")
    try:
        parsed = json.loads(_read_exactly(handle, 8, length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CacheFileError("its header is not JSON") from None
    if not isinstance(parsed, dict):
        raise CacheFileError("its header is not a table")
    metadata = parsed.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CacheFileError("its metadata is not a table of texts")
    data_start, data_len = 8 + length, size - 8 - length
    tensors = {name: _tensor(name, entry, data_start, data_len) for name, entry in parsed.items()}
    at = data_start
    for tensor in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if tensor.start != at:
            raise CacheFileError("its tensors overlap or leave gaps")
        at = tensor.end
    if at != size:
        raise CacheFileError("its tensors do not fill the file")
    return metadata, tensors


def _keys(metadata: dict[str, str]) -> tuple:
    tokens_text = metadata["0.tokens"]
    if not tokens_text.isdigit() or len(tokens_text) > 9:
        raise CacheFileError("its token count is not a number")
    try:
        keys = json.loads(metadata["0.keys"])
    except (ValueError, RecursionError):
        raise CacheFileError("its keys are not JSON") from None
    if not isinstance(keys, list) or not keys or len(keys) != int(tokens_text):
        raise CacheFileError("its keys do not match its token count")
    out: list = []
    for key in keys:
        if _is_int(key) and 0 <= key <= MAX_TOKEN_ID:
            out.append(key)
        elif (
            isinstance(key, list)
            and len(key) == 3
            and _is_int(key[0])
            and 0 <= key[0] <= MAX_TOKEN_ID
            and isinstance(key[1], str)
            and len(key[1]) <= MAX_KEY_TEXT
            and _is_int(key[2])
            and 0 <= key[2] <= MAX_TOKEN_ID
        ):
            out.append(tuple(key))
        else:
            raise CacheFileError("its keys are not token ids and image positions")
    return tuple(out)


def _expect(tensor: Tensor, dtypes: tuple[str, ...], shape: tuple[int, ...]) -> None:
    if tensor.dtype not in dtypes:
        raise CacheFileError(f"tensor {tensor.name} has dtype {tensor.dtype}")
    if tensor.shape != shape:
        raise CacheFileError(f"tensor {tensor.name} has shape {list(tensor.shape)}, not {list(shape)}")


def _check_layer(
    index: int,
    name: str,
    layer: LayerLayout,
    tokens: int,
    kv: tuple[int, int] | None,
    tensors: dict[str, Tensor],
    scalars: dict[str, int],
) -> None:
    arrays, scalar_names = layer_tensor_names(index, name)
    values = [scalars[s] for s in scalar_names]
    if values[0] != tokens:
        raise CacheFileError(f"layer {index} says {values[0]} positions, not {tokens}")
    heads, dim = layer.kv_heads, layer.head_dim
    positions = tokens
    if name == "ChunkedKVCache":
        chunk, start = values[1], values[2]
        if chunk != layer.chunk:
            raise CacheFileError(f"layer {index} has attention chunks of {chunk}, not {layer.chunk}")
        if not 0 <= start <= (tokens // chunk) * chunk:
            raise CacheFileError(f"layer {index} starts at position {start} of {tokens}")
        positions = tokens - start
    if name == "QuantizedKVCache":
        assert kv is not None  # the class follows from ``kv``
        bits, group = kv
        if (values[2], values[1]) != (bits, group):
            raise CacheFileError(f"layer {index} is quantized otherwise than the file says")
        if bits not in QUANT_BITS or group <= 0 or dim % group or dim * bits % 32:
            raise CacheFileError(f"layer {index} cannot be quantized in {bits} bits, groups of {group}")
        for part in ("0", "1"):
            data, scales, biases = (tensors[f"{index}.{part}.{k}"] for k in "012")
            _expect(data, ("U32",), (1, heads, positions, dim * bits // 32))
            _expect(scales, FLOATS, (1, heads, positions, dim // group))
            _expect(biases, (scales.dtype,), scales.shape)
        return
    keys, values_ = (tensors[a] for a in arrays)
    _expect(keys, FLOATS, (1, heads, positions, dim))
    _expect(values_, (keys.dtype,), keys.shape)


def check_file(
    handle: BinaryIO,
    version: str,
    identity: ModelIdentity,
    kv: tuple[int, int] | None,
    layout: CacheLayout,
) -> CheckedFile:
    """Check the saved cache open as ``handle`` for format ``version``, ``identity``, ``kv``
    and ``layout``; ``CacheFileError`` (with the outcome to report) when it is not usable."""
    metadata, tensors = read_header(handle)
    found = metadata.get("0.format_version")
    if found != version:
        outcome = LoadOutcome.UNREADABLE if found is None else LoadOutcome.OTHER_VERSION
        raise CacheFileError(f"format version {str(found)[:20]}", outcome)
    if (metadata.get("0.model_name"), metadata.get("0.model_digest")) != (identity.name, identity.digest):
        raise CacheFileError("saved for another model", LoadOutcome.OTHER_MODEL)
    if metadata.get("0.kv") != _kv_text(kv):
        raise CacheFileError("saved with another KV precision", LoadOutcome.OTHER_PRECISION)
    classes = layout.classes(kv)
    if CHECKSUM_FIELD not in metadata:
        raise CacheFileError("no checksum (saved by an older version)")
    if set(metadata) != metadata_names(classes):
        raise CacheFileError("its metadata is not what this model's cache files hold")
    if any(metadata[k] != v for k, v in structure_metadata(classes).items()):
        raise CacheFileError("its layers are not this model's")
    if not metadata[CHECKSUM_FIELD].startswith(f"{CHECKSUM_KIND}:"):
        raise CacheFileError("its checksum is of an unknown kind")
    if set(tensors) != tensor_names(classes):
        raise CacheFileError("its tensors are not this model's layers")
    keys = _keys(metadata)
    scalars = {}
    for name in sorted(tensors):
        tensor = tensors[name]
        if not tensor.shape and tensor.dtype == "I32":  # a scalar: 4 bytes
            scalars[name] = int.from_bytes(_read_exactly(handle, tensor.start, 4), "little", signed=True)
    for index, (name, layer) in enumerate(zip(classes, layout.layers, strict=True)):
        missing = [s for s in layer_tensor_names(index, name)[1] if s not in scalars]
        if missing:
            raise CacheFileError(f"tensor {missing[0]} is not a number")
        _check_layer(index, name, layer, len(keys), kv, tensors, scalars)
    return CheckedFile(metadata, keys, classes, tensors, scalars, metadata[CHECKSUM_FIELD])
