"""The names inside a saved KV cache file, shared by its writer and its reader, and its checksum.

A file is mlx-lm's prompt-cache format (what ``save_prompt_cache`` writes, so mlx-lm's
``load_prompt_cache`` still reads it): a safetensors file whose tensors are named
``<layer>.<state index>`` (``<layer>.<0|1>.<0|1|2>`` for a quantized layer's keys and values:
packed data, scales, biases), whose scalars (offset; chunk size and start position; group size
and bits) are int32 tensors, and whose metadata holds our fields as ``0.<field>``, each layer's
cache class as ``1.<layer>`` and mlx-lm's list of the scalar tensors as ``2.<n>.0``/``2.<n>.1``.
Every name follows from the layers' classes, so the reader knows them all before it opens a file
and accepts no other.

``Checksum`` (xxh3-64, several GB/s) covers the metadata but the checksum itself, then every
tensor's own xxh3-64 (its name, dtype and shape, and its bytes, hashed where they lie in memory,
no copy) in name order: the tensors hash in parallel, one per core, as they are read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import xxhash

# class -> (tensor names of its keys and values within ``state``, positions of its scalars)
SCHEMA: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "KVCache": (("0", "1"), (2,)),  # keys, values, offset
    "ChunkedKVCache": (("0", "1"), (2, 3, 4)),  # ..., offset, chunk size, start position
    "QuantizedKVCache": (("0.0", "0.1", "0.2", "1.0", "1.1", "1.2"), (2, 3, 4)),  # offset, group, bits
}
FIELDS = ("format_version", "model_name", "model_digest", "kv", "tokens", "keys", "checksum")
CHECKSUM_FIELD = "0.checksum"
CHECKSUM_KIND = "xxh3_64_per_tensor"  # a file of another kind is refused as damaged
DTYPE_SIZES = {"F16": 2, "BF16": 2, "F32": 4, "U32": 4, "I32": 4}
FLOATS = ("F16", "BF16", "F32")


def safetensors_dtype(dtype) -> str:
    """The safetensors name of an MLX dtype that saved caches hold (``KeyError`` for others)."""
    import mlx.core as mx

    names = {mx.float16: "F16", mx.bfloat16: "BF16", mx.float32: "F32", mx.uint32: "U32", mx.int32: "I32"}
    for known, name in names.items():
        if dtype == known:
            return name
    raise KeyError(f"a {dtype} tensor")


def structure_metadata(classes: Sequence[str]) -> dict[str, str]:
    """The metadata entries mlx-lm's format adds for layers of ``classes``."""
    out = {f"1.{i}": name for i, name in enumerate(classes)}
    out["2.0"] = ""
    n = 0
    for i, name in enumerate(classes):
        for j in SCHEMA[name][1]:
            n += 1
            out[f"2.{n}.0"], out[f"2.{n}.1"] = f"{i}.{j}", "scalar"
    return out


def metadata_names(classes: Sequence[str]) -> set[str]:
    return {f"0.{field}" for field in FIELDS} | set(structure_metadata(classes))


def layer_tensor_names(index: int, name: str) -> tuple[list[str], list[str]]:
    """The names of layer ``index``'s (of class ``name``) keys/values tensors and scalars."""
    arrays, scalars = SCHEMA[name]
    return [f"{index}.{a}" for a in arrays], [f"{index}.{j}" for j in scalars]


def tensor_names(classes: Sequence[str]) -> set[str]:
    out: set[str] = set()
    for i, name in enumerate(classes):
        arrays, scalars = layer_tensor_names(i, name)
        out.update(arrays + scalars)
    return out


def tensor_digest(name: str, dtype: str, shape: Sequence[int], array) -> bytes:
    """xxh3-64 of one tensor: its name, dtype and shape, then its bytes where they lie (an
    evaluated ``mx.array``; no copy unless it is not contiguous). xxhash lets go of the GIL
    while it hashes, so tensors hash in parallel on as many threads as there are cores."""
    digest = xxhash.xxh3_64(f"{name}:{dtype}:{list(shape)}\n".encode())
    view = memoryview(array)
    if not view.c_contiguous:
        view = memoryview(view.tobytes())
    digest.update(view)
    return digest.digest()


class Checksum:
    """xxh3-64 of a file's content (see the module docstring): the metadata, then each tensor's
    ``tensor_digest`` in name order, so the tensors can be hashed in any order and in parallel."""

    def __init__(self, metadata: dict[str, str]):
        fields = {k: v for k, v in metadata.items() if k != CHECKSUM_FIELD}
        self._head = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
        self._digests: dict[str, bytes] = {}

    def add(self, name: str, dtype: str, shape: Sequence[int], array) -> None:
        """Hash one tensor (an evaluated ``mx.array``, read in place)."""
        self.add_digest(name, tensor_digest(name, dtype, shape, array))

    def add_digest(self, name: str, digest: bytes) -> None:
        """One tensor's ``tensor_digest``, computed elsewhere (another thread)."""
        self._digests[name] = digest

    def text(self) -> str:
        whole = xxhash.xxh3_64(self._head)
        for name in sorted(self._digests):
            whole.update(name.encode() + b"\0" + self._digests[name])
        return f"{CHECKSUM_KIND}:{whole.hexdigest()}"
