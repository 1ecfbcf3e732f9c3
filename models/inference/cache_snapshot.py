"""A KV cache taken out of the engine, in a form that survives a trip to disk and back.

mlx-vlm's Llama 4 caches (``KVCache`` for the global layers, ``ChunkedKVCache`` for the
chunked-attention layers, ``QuantizedKVCache`` when the KV cache is quantized) keep part of
their position in ``meta_state``, which mlx-lm's ``save_prompt_cache`` does not write, and the
``state`` of mlx-vlm's ``ChunkedKVCache`` is wrong once its front has been dropped (it slices
to ``offset`` a buffer that starts at ``start_position``). mlx-lm's own cache classes carry the
whole position in ``state``, so a snapshot holds mlx-lm caches ("portable" layers) with exactly
the live keys and values, and ``engine_caches`` rebuilds mlx-vlm's classes from them, restoring
offsets, chunk size and start position exactly. ``fitting_caches`` checks a snapshot against a
model's (or a pipeline rank's) fresh caches, and ``keys_digest`` names what a snapshot holds, so
the ranks of a pipeline can tell that their saved caches are of the same conversation state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CacheSnapshot:
    """What a conversation's KV cache holds: one portable layer per model layer, the keys the
    engine compares (token id, or (id, image hash, n) per position) and the KV quantization
    ``(bits, group size)`` or None."""

    layers: tuple
    keys: tuple
    kv: tuple[int, int] | None

    @property
    def tokens(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)


def portable_layers(caches: list) -> tuple:
    """mlx-lm copies of mlx-vlm caches, holding only the live positions (evaluated, contiguous:
    the copy is made here, on the model's thread, and later turns cannot change it)."""
    import mlx.core as mx
    from mlx_lm.models import cache as lm
    from mlx_vlm.models import cache as vlm

    def live(x, end):  # a contiguous copy: writing it needs no MLX work on the saving thread
        return mx.contiguous(x[..., :end, :])

    out: list[Any] = []  # mlx-lm caches, of several classes
    for c in caches:
        layer: Any
        if isinstance(c, vlm.ChunkedKVCache):
            end = c.offset - c.start_position
            keys, values = (live(x, end) for x in (c.keys, c.values))
            layer = lm.ChunkedKVCache.__new__(lm.ChunkedKVCache)
            layer.state = (keys, values, c.offset, c.chunk_size, c.start_position)
        elif isinstance(c, vlm.QuantizedKVCache):
            # mlx-vlm declares ``keys`` None until the first update; here they are filled.
            parts: tuple[Any, Any] = (c.keys, c.values)
            keys, values = (tuple(live(x, c.offset) for x in part) for part in parts)
            layer = lm.QuantizedKVCache.__new__(lm.QuantizedKVCache)
            layer.state = (keys, values, c.offset, c.group_size, c.bits)
        elif isinstance(c, vlm.KVCache):
            keys, values = (live(x, c.offset) for x in (c.keys, c.values))
            layer = lm.KVCache.__new__(lm.KVCache)
            layer.state = (keys, values, c.offset)
        else:
            raise TypeError(f"Cannot keep a {type(c).__name__}")
        out.append(layer)
    mx.eval([layer.state[:2] for layer in out])
    return tuple(out)


def engine_caches(layers: tuple) -> list:
    """mlx-vlm caches rebuilt from portable layers (fresh objects; the layers are not shared
    with later updates)."""
    from mlx_lm.models import cache as lm
    from mlx_vlm.models import cache as vlm

    from models.inference.chunk_cache import current_chunk_cache

    out: list[Any] = []  # mlx-vlm caches, of several classes
    for layer in layers:
        c: Any
        if isinstance(layer, lm.ChunkedKVCache):
            keys, values, offset, chunk, start = layer.state
            c = current_chunk_cache(int(chunk))
            c.keys, c.values, c.offset, c.start_position = keys, values, int(offset), int(start)
        elif isinstance(layer, lm.QuantizedKVCache):
            keys, values, offset, group, bits = layer.state
            c = vlm.QuantizedKVCache(group_size=int(group), bits=int(bits))
            c.keys, c.values, c.offset = tuple(keys), tuple(values), int(offset)
        elif isinstance(layer, lm.KVCache):
            keys, values, offset = layer.state
            c = vlm.KVCache()
            c.keys, c.values, c.offset = keys, values, int(offset)
        else:
            raise TypeError(f"Cannot restore a {type(layer).__name__}")
        out.append(c)
    return out


def keys_digest(keys: tuple | list) -> str:
    """A hash of a cache's keys (as the cache files write them: JSON, tuples as lists)."""
    text = json.dumps(list(keys), separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fitting_caches(snapshot: CacheSnapshot, fresh: list) -> list | None:
    """mlx-vlm caches rebuilt from ``snapshot`` when it fits the layers whose ``fresh`` (empty)
    caches are given: as many layers, the same chunked/global kind, every offset the snapshot's
    length; else None."""
    try:
        caches = engine_caches(snapshot.layers)
    except (TypeError, ValueError):
        return None
    if len(caches) != len(fresh) or snapshot.tokens == 0:
        return None
    for mine, theirs in zip(fresh, caches, strict=True):
        if getattr(mine, "chunk_size", None) != getattr(theirs, "chunk_size", None):
            return None
        if theirs.offset != snapshot.tokens:
            return None
    return caches
