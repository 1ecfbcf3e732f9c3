"""What a model's KV cache looks like, layer by layer: what a saved cache is checked against.

A saved cache file names its own shapes, and a file that lies about them must be refused before
any tensor is read, so the reader is told what this model's (or this pipeline rank's) cache
holds: per layer, the number of key/value heads and the head size (from the layer's attention),
the attention window of a chunked-attention layer, and whether the layer's cache is quantized
when the KV cache is (mlx-vlm quantizes the global layers only: the caches that have
``to_quantized``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerLayout:
    kv_heads: int
    head_dim: int
    chunk: int | None = None  # a chunked-attention layer's window; None for a global layer
    quantizable: bool = True  # quantized when the KV cache is

    def cache_class(self, kv: tuple[int, int] | None) -> str:
        """The mlx-lm class of this layer's saved cache with KV quantization ``kv``."""
        if self.chunk is not None:
            return "ChunkedKVCache"
        return "QuantizedKVCache" if kv and self.quantizable else "KVCache"


@dataclass(frozen=True)
class CacheLayout:
    layers: tuple[LayerLayout, ...]

    def classes(self, kv: tuple[int, int] | None) -> tuple[str, ...]:
        return tuple(layer.cache_class(kv) for layer in self.layers)


def cache_layout(fresh: list, layers) -> CacheLayout:
    """The layout of the caches ``fresh`` (a model's empty caches, one per layer) of the decoder
    ``layers`` (each with ``self_attn.n_kv_heads`` and ``self_attn.head_dim``)."""
    out = []
    for cache, layer in zip(fresh, layers, strict=True):
        attention = layer.self_attn
        chunk = getattr(cache, "chunk_size", None)
        out.append(
            LayerLayout(
                int(attention.n_kv_heads),
                int(attention.head_dim),
                int(chunk) if chunk is not None else None,
                hasattr(cache, "to_quantized"),
            )
        )
    return CacheLayout(tuple(out))
