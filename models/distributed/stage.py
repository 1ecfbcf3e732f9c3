"""One rank's share of the model: a contiguous slice of decoder layers and their KV caches.

``load_stage`` builds mlx-vlm's model lazily (nothing read yet), keeps the layers
``[start, end)`` this rank runs (rank 0 also the embeddings and the vision tower, the last rank
the final norm and ``lm_head``), drops the rest and only then evaluates, so a rank reads only its
own weights from the shared safetensors. ``Stage.forward`` is mlx-vlm's
``LlamaModel.__call__`` restricted to the slice: the same masks and layer calls, with each
layer's attention kind (chunked or global) taken from its index in the whole model, so greedy
output does not depend on where the model is cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


def is_chunked(layer: int) -> bool:
    """Llama 4: every 4th layer attends globally (NoPE), the others within a chunk."""
    return (layer + 1) % 4 != 0


@dataclass
class Stage:
    """The layers ``[start, end)`` of the language model, with their caches."""

    start: int
    end: int
    layers: list
    chunk_size: int
    # mlx.nn.Modules (Any: MLX is imported late, and each is None on the ranks without it)
    norm: Any = None  # the last rank's final RMSNorm
    lm_head: Any = None  # and its output projection
    model: Any = None  # rank 0: the whole (pruned) mlx-vlm model

    def make_cache(self) -> list:
        from mlx_vlm.models.cache import KVCache

        from models.inference.chunk_cache import current_chunk_cache

        layers = range(self.start, self.end)
        return [current_chunk_cache(self.chunk_size) if is_chunked(i) else KVCache() for i in layers]

    def forward(self, h, cache: list):
        """Run the slice's layers on hidden states ``h`` (1, n, hidden), updating ``cache``."""
        import mlx.core as mx
        from mlx_vlm.models.base import create_attention_mask

        chunked = [c for i, c in zip(range(self.start, self.end), cache, strict=True) if is_chunked(i)]
        for c in chunked:
            if hasattr(c, "maybe_trim_front"):
                c.maybe_trim_front()
        # mlx-vlm takes both masks from layer 0's (chunked) cache; any chunked cache holds
        # the same positions.
        first = chunked[0] if chunked else cache[0]
        mask = create_attention_mask(h, [first])
        start = getattr(first, "start_position", 0)
        offset = first.offset
        end = offset + h.shape[1]
        linds = mx.arange(start, end)
        rinds = mx.arange(offset, end)[:, None]
        block = mx.abs((linds // self.chunk_size) - (rinds // self.chunk_size))
        chunk_mask = (block == 0) & (linds <= rinds)
        for i, layer, c in zip(range(self.start, self.end), self.layers, cache, strict=True):
            h = layer(h, chunk_mask if is_chunked(i) else mask, cache=c)
        return h

    def head(self, h):
        """The last rank: final norm and logits of the last position, as float32 (1, 1, vocab)."""
        import mlx.core as mx

        return self.lm_head(self.norm(h[:, -1:, :])).astype(mx.float32)


def load_stage(path: str | Path, start: int, end: int, first: bool, last: bool) -> Stage:
    """Load only what layers ``[start, end)`` need (see the module docstring)."""
    import mlx.core as mx
    from mlx_vlm.utils import load_model

    from models.inference.checkpoint import read_checkpoint
    from models.inference.engine import fix_vision_tower
    from models.inference.model_loading import float32_on_cpu

    checkpoint = read_checkpoint(path)
    model = load_model(checkpoint.path, lazy=True)
    lm = model.language_model
    layers = list(lm.model.layers[start:end])
    lm.model.layers = layers
    float32_on_cpu(model)  # as Engine
    chunk = int(lm.config.attention_chunk_size)
    if first:
        fix_vision_tower(model)
        if not last:
            del lm["lm_head"]
        mx.eval(model.parameters())
        return Stage(start, end, layers, chunk, lm.model.norm, lm.get("lm_head"), model)
    stage = Stage(start, end, layers, chunk, lm.model.norm if last else None, lm.lm_head if last else None)
    del model, lm
    mx.eval([layer.parameters() for layer in stage.layers])
    if last:
        mx.eval(stage.norm.parameters(), stage.lm_head.parameters())
    return stage
