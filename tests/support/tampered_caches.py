"""Saved KV cache files that lie, made by editing a real one at the byte level.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor names with
dtype, shape and data offsets, and ``__metadata__``), then the tensors' bytes. These helpers
read that header, write a file with an edited header over the same data, overwrite a tensor's
bytes with other data of the same dtype and shape, flip one bit of a tensor, and spy on the
calls that would read tensors (``mx.load``) or build structures from untrusted keys
(``tree_unflatten``), so a test can tell that a file was refused from its header alone.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

FLOAT_DTYPES = ("F16", "BF16", "F32")


def read_header(path: Path) -> tuple[dict, int]:
    """The parsed JSON header of the safetensors file ``path`` and where its data starts."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length)), 8 + length


def rewrite_header(path: Path, header: dict, tail: bytes | None = None) -> None:
    """Write ``header`` over ``path``'s, keeping its data (or writing ``tail`` after it)."""
    _, start = read_header(path)
    data = path.read_bytes()[start:] if tail is None else tail
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def kv_tensors(header: dict) -> list[str]:
    """The names of the float keys/values tensors (4-d), in name order."""
    return sorted(
        name
        for name, entry in header.items()
        if name != "__metadata__" and entry["dtype"] in FLOAT_DTYPES and len(entry["shape"]) == 4
    )


def replace_tensor_data(path: Path, seed: int = 11) -> None:
    """Overwrite every float keys/values tensor with other values of the same dtype and shape;
    the header (and so the metadata naming the conversation's tokens) is left as it was."""
    import mlx.core as mx

    header, start = read_header(path)
    data = bytearray(path.read_bytes())
    dtypes = {"F16": mx.float16, "BF16": mx.bfloat16, "F32": mx.float32}
    mx.random.seed(seed)
    for name in kv_tensors(header):
        entry = header[name]
        other = mx.random.normal(tuple(entry["shape"])).astype(dtypes[entry["dtype"]])
        mx.eval(other)
        begin, end = entry["data_offsets"]
        data[start + begin : start + end] = bytes(memoryview(other))
    path.write_bytes(bytes(data))


def flip_a_bit(path: Path, name: str | None = None) -> None:
    """Flip the highest exponent bit of one value in the middle of a keys tensor (the first
    float one unless ``name``): one bit on disk, and a value far from what was saved."""
    header, start = read_header(path)
    name = name or kv_tensors(header)[0]
    entry = header[name]
    itemsize = 4 if entry["dtype"] == "F32" else 2
    begin, end = entry["data_offsets"]
    middle = (end - begin) // itemsize // 2
    at = start + begin + middle * itemsize + itemsize - 1  # little-endian: sign and exponent
    data = bytearray(path.read_bytes())
    data[at] ^= 0x40
    path.write_bytes(bytes(data))


class Spy:
    """Stands in for a function and records that it was called (then calls the real one, or
    raises when ``refuse``: the test then fails on ``calls`` rather than on a long wait)."""

    def __init__(self, real, refuse: bool = False):
        self.real, self.refuse, self.calls = real, refuse, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.refuse:
            raise RuntimeError("this must not be called for this file")
        return self.real(*args, **kwargs)


def spy_on_tensor_reads(monkeypatch, refuse: bool = False) -> Spy:
    """Replace ``mx.load`` (what reads a safetensors file's tensors) with a ``Spy``."""
    import mlx.core as mx

    spy = Spy(mx.load, refuse)
    monkeypatch.setattr(mx, "load", spy)
    return spy


def spy_on_tree_unflatten(monkeypatch) -> Spy:
    """Replace mlx's ``tree_unflatten`` (where mlx-lm's loader uses it too) with a refusing ``Spy``."""
    import mlx.utils
    from mlx_lm.models import cache

    spy = Spy(mlx.utils.tree_unflatten, refuse=True)
    monkeypatch.setattr(mlx.utils, "tree_unflatten", spy)
    monkeypatch.setattr(cache, "tree_unflatten", spy)
    return spy
