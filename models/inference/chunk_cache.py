"""The KV cache of a chunked-attention layer that holds only the chunk attention can read.

Llama 4's chunked-attention layers (three of every four) let a token attend only to the tokens of
its own ``attention_chunk_size`` chunk (8,192 tokens in Scout and Maverick) up to itself. mlx-vlm's
``ChunkedKVCache`` keeps a sliding window of the last ``chunk_size`` tokens (8,448 allocated), so a
long conversation carries up to a whole chunk of keys and values that no query can read, in memory
and in saved cache files. ``CurrentChunkCache`` drops everything before the start of the chunk
the next token falls in, before each update (``maybe_trim_front``, which the forward pass calls),
and keeps mlx-vlm's class otherwise (its update, trim and ``start_position``), so saving,
restoring and trimming treat it as the ``ChunkedKVCache`` it is.
"""

from __future__ import annotations

from typing import Any


def current_chunk_cache_class() -> Any:
    """The ``CurrentChunkCache`` class (built on first use: mlx-vlm is imported only then)."""
    global _CLASS
    if _CLASS is None:
        from mlx_vlm.models.cache import ChunkedKVCache

        class CurrentChunkCache(ChunkedKVCache):
            """A ``ChunkedKVCache`` that keeps only the current chunk's tokens."""

            def maybe_trim_front(self) -> None:
                if self.keys is None:
                    return
                chunk_start = (self.offset // self.chunk_size) * self.chunk_size
                drop = chunk_start - self.start_position
                if drop <= 0:
                    return
                valid = self.offset - self.start_position
                self.start_position = chunk_start
                if drop >= valid:  # the new chunk starts here: nothing is kept
                    self.keys = self.values = None
                    return
                keys, values = self.keys, self.values
                assert keys is not None and values is not None
                self.keys = keys[..., drop:valid, :]
                self.values = values[..., drop:valid, :]

        _CLASS = CurrentChunkCache
    return _CLASS


_CLASS: Any = None


def current_chunk_cache(chunk_size: int) -> Any:
    """An empty cache for a chunked-attention layer of window ``chunk_size``."""
    return current_chunk_cache_class()(int(chunk_size))


def language_model_caches(config: Any) -> list:
    """Empty caches for mlx-vlm's Llama 4 language model of text ``config``: a
    ``CurrentChunkCache`` for each chunked-attention layer, a ``KVCache`` for each global one
    (every fourth), as mlx-vlm's ``LanguageModel.make_cache`` lays them out."""
    from mlx_vlm.models.cache import KVCache

    chunk = int(config.attention_chunk_size)
    return [
        current_chunk_cache(chunk) if (i + 1) % 4 != 0 else KVCache() for i in range(config.num_hidden_layers)
    ]
