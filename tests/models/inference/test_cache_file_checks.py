"""Every claim of a saved cache file is checked from its header against the model's layers
before any tensor is read; a file that lies is deleted. The engine-level cases (answers equal a
cold prefill) are in ``test_lying_caches.py``; here each kind of lie on the small two-layer
snapshots of ``test_prompt_cache_files``, written by our own writer (so the checksum is right
and only the lie can be caught) or edited in its header."""

import mlx.core as mx
import pytest
from mlx_lm.models.cache import ChunkedKVCache, KVCache, QuantizedKVCache

from models.inference.cache_file_checks import MAX_HEADER_BYTES
from models.inference.cache_snapshot import CacheSnapshot
from models.inference.prompt_cache_files import LoadOutcome, load_cache_file, save_cache_file
from tests.models.inference.test_prompt_cache_files import IDENTITY, layout, snapshot
from tests.support.tampered_caches import read_header, rewrite_header, spy_on_tensor_reads


def _layer(cls, state):
    layer = cls.__new__(cls)
    layer.state = state
    return layer


def _random(*shape, dtype=mx.float32):
    return mx.random.normal(shape).astype(dtype)


def chunked(tokens=80, positions=64, start=16, chunk=64, heads=2, dim=16, dtype=mx.float32):
    k, v = _random(1, heads, positions, dim, dtype=dtype), _random(1, heads, positions, dim, dtype=dtype)
    return _layer(ChunkedKVCache, (k, v, tokens, chunk, start))


def full(tokens=80, positions=80, heads=2, dim=16, dtype=mx.float32):
    k, v = _random(1, heads, positions, dim, dtype=dtype), _random(1, heads, positions, dim, dtype=dtype)
    return _layer(KVCache, (k, v, tokens))


def keys(tokens=80):
    return tuple(range(10, 10 + tokens))


LIES = {
    "chunked positions other than tokens - start": lambda: (chunked(positions=47), full()),
    "chunked start leaving out the chunk's front": lambda: (chunked(positions=10, start=70), full()),
    "chunked start past the tokens": lambda: (chunked(positions=0, start=96), full()),
    "another chunk size": lambda: (chunked(chunk=32), full()),
    "global positions other than the tokens": lambda: (chunked(), full(positions=30)),
    "an offset other than the tokens": lambda: (chunked(), full(tokens=79, positions=80)),
    "another number of kv heads": lambda: (chunked(), full(heads=3)),
    "another head size": lambda: (chunked(), full(dim=32)),
    "integer keys and values": lambda: (chunked(), full(dtype=mx.int32)),
    "a layer too many": lambda: (chunked(), full(), full()),
    "a layer too few": lambda: (chunked(),),
    "layers in another order": lambda: (full(), chunked()),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_file_whose_shapes_lie_is_refused_before_reading(tmp_path, monkeypatch, lie):
    path = tmp_path / "1.safetensors"
    save_cache_file(path, CacheSnapshot(LIES[lie](), keys(), None), IDENTITY)
    reads = spy_on_tensor_reads(monkeypatch)
    result = load_cache_file(path, IDENTITY, None, layout())
    assert result.outcome is LoadOutcome.UNREADABLE and result.reason
    assert reads.calls == 0
    assert not path.exists()


def _quantized(tokens=80, bits=8, group=64, dim=64, packed=None):
    parts = [mx.quantize(_random(1, 2, tokens, dim), group_size=group, bits=bits) for _ in "kv"]
    if packed is not None:
        parts = [(w[..., :packed], s, b) for w, s, b in parts]
    return _layer(QuantizedKVCache, (tuple(parts[0]), tuple(parts[1]), tokens, group, bits))


@pytest.mark.parametrize(
    "layer",
    [
        lambda: _quantized(bits=4),  # the file says 8 bits
        lambda: _quantized(group=32),
        lambda: _quantized(packed=8),  # the packed data of 4 bits under 8 bits' scales
        lambda: full(dim=64),  # not quantized at all
    ],
    ids=["other bits", "other group size", "packed data cut", "not quantized"],
)
def test_a_quantized_layer_that_lies_is_refused_before_reading(tmp_path, monkeypatch, layer):
    path = tmp_path / "1.safetensors"
    save_cache_file(path, CacheSnapshot((chunked(), layer()), keys(), (8, 64)), IDENTITY)
    reads = spy_on_tensor_reads(monkeypatch)
    assert load_cache_file(path, IDENTITY, (8, 64), layout((8, 64))).outcome is LoadOutcome.UNREADABLE
    assert reads.calls == 0 and not path.exists()


def _edit_header(path, edit):
    header, start = read_header(path)
    tail = path.read_bytes()[start:]
    edited = edit(header, tail)
    tail = edited if isinstance(edited, bytes) else tail
    rewrite_header(path, header, tail)


HEADER_LIES = {
    "an extra metadata key": lambda h, t: h["__metadata__"].update({"0.extra": "x"}),
    "a huge scalar index": lambda h, t: h["__metadata__"].update({"2.100000000.0": "0.2"}),
    "no checksum": lambda h, t: h["__metadata__"].pop("0.checksum"),
    "another class for a layer": lambda h, t: h["__metadata__"].update({"1.1": "RotatingKVCache"}),
    "keys fewer than the tokens": lambda h, t: h["__metadata__"].update({"0.tokens": "81"}),
    "keys that are not ids": lambda h, t: h["__metadata__"].update(
        {"0.keys": "[" + ",".join(["1.5"] * 80) + "]"}
    ),
    "keys nested deeply": lambda h, t: h["__metadata__"].update({"0.keys": "[" * 100_000 + "]" * 100_000}),
    "an extra tensor": lambda h, t: h.update({"2.0": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}),
    "bytes after the last tensor": lambda h, t: t + b"\0" * 64,
    "tensors overlapping": lambda h, t: h["1.2"].update({"data_offsets": h["0.2"]["data_offsets"]}),
    "a size other than shape x dtype": lambda h, t: h["1.0"].update({"dtype": "F16"}),
    "a negative offset": lambda h, t: h["1.2"].update({"data_offsets": [-4, 0]}),
    "a shape that is not a list of sizes": lambda h, t: h["1.0"].update({"shape": [1, 2, 80.0, 16]}),
    "a tensor described with more fields": lambda h, t: h["1.0"].update({"extra": 1}),
}


@pytest.mark.parametrize("lie", list(HEADER_LIES))
def test_a_header_that_lies_is_refused_before_reading(tmp_path, monkeypatch, lie):
    path = tmp_path / "1.safetensors"
    save_cache_file(path, snapshot(), IDENTITY)
    _edit_header(path, HEADER_LIES[lie])
    reads = spy_on_tensor_reads(monkeypatch)
    result = load_cache_file(path, IDENTITY, None, layout())
    assert result.outcome is LoadOutcome.UNREADABLE, result.reason
    assert reads.calls == 0 and not path.exists()


def test_a_header_longer_than_the_bound_is_not_parsed(tmp_path, monkeypatch):
    path = tmp_path / "1.safetensors"
    with open(path, "wb") as handle:
        handle.write((MAX_HEADER_BYTES + 1).to_bytes(8, "little"))
        handle.truncate(8 + MAX_HEADER_BYTES + 1024)  # sparse: as long as the header says
    reads = spy_on_tensor_reads(monkeypatch)
    result = load_cache_file(path, IDENTITY, None, layout())
    assert result.outcome is LoadOutcome.UNREADABLE and "header" in result.reason
    assert reads.calls == 0 and not path.exists()


def test_metadata_changed_on_disk_fails_the_checksum(tmp_path):
    """A token id in the keys changed (still well-formed): the tensors are read, the checksum
    (which covers the metadata) differs, and the file is deleted."""
    path = tmp_path / "1.safetensors"
    save_cache_file(path, CacheSnapshot(snapshot().layers, keys(), None), IDENTITY)
    _edit_header(
        path,
        lambda h, t: h["__metadata__"].update({"0.keys": h["__metadata__"]["0.keys"].replace("11", "12", 1)}),
    )
    result = load_cache_file(path, IDENTITY, None, layout())
    assert result.outcome is LoadOutcome.UNREADABLE and "checksum" in result.reason
    assert not path.exists()


def test_image_keys_come_back_and_bf16_is_accepted(tmp_path):
    path = tmp_path / "1.safetensors"
    image_keys = (1, 2) + tuple((7, "sha-of-image", j) for j in range(4)) + tuple(range(10, 84))
    layers = (chunked(dtype=mx.bfloat16), full(dtype=mx.bfloat16))
    save_cache_file(path, CacheSnapshot(layers, image_keys, None), IDENTITY)
    result = load_cache_file(path, IDENTITY, None, layout())
    assert result.outcome is LoadOutcome.LOADED and result.snapshot.keys == image_keys
