"""One forward pass of Llama 4's language model over several sequences at once ("packed").

Continuous batching needs sequences at different positions, with different chunks and caches, to
share each step's reading of the weights. The tokens every sequence adds this step (one when it
decodes, a chunk of its prompt when it prefills) are laid side by side in one row: every
projection, the MoE experts and the norms see one ``(1, T, hidden)`` input and read the weights
once for all of them, and attention, the only part that mixes positions, runs per sequence on
that sequence's own KV cache (a list of per-layer caches, passed in as a value), at its own
offset, with its own chunked-attention mask and 8K chunk and its own (optionally quantized)
global-layer cache. A sequence alone is the same computation with one segment, which is how the
engine runs a single answer too, so an answer does not depend on what else is in the batch
beyond the rounding of matrix products over more rows.

Written here, over mlx-vlm's modules (its ``LlamaModel.__call__`` takes one offset for the whole
batch, and mlx-lm's ``BatchGenerator`` refuses chunked caches); the attention arithmetic follows
mlx-vlm's ``Attention.__call__`` step for step: RoPE at the sequence's offset, QK-norm on the RoPE
layers, temperature tuning of the global (NoPE) layers' queries, the cache update, then mlx-vlm's
``scaled_dot_product_attention`` (quantized caches included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Segment:
    """What one sequence adds to this step: ``ids`` (an ``mx.array`` of token ids) or
    ``embeddings`` (``(L, hidden)``, with image features), the sequence's per-layer ``caches``,
    and whether its last position's logits are wanted (a prefill chunk that is not the prompt's
    end needs none)."""

    caches: list
    ids: Any = None
    embeddings: Any = None
    wants_logits: bool = True

    @property
    def length(self) -> int:
        return int(self.embeddings.shape[0] if self.embeddings is not None else self.ids.shape[0])


def chunk_mask(length: int, chunk: int, start: int, offset: int):
    """Which cached keys (positions ``start..offset+length-1``) each of ``length`` queries at
    ``offset..`` may read in a chunked-attention layer: those of its own chunk, up to itself; None
    when every query may read every key (one query, all keys in its chunk)."""
    import mlx.core as mx

    end = offset + length
    if length == 1 and start >= (offset // chunk) * chunk:
        return None
    keys = mx.arange(start, end)
    queries = mx.arange(offset, end)[:, None]
    return (keys // chunk == queries // chunk) & (keys <= queries)


def _positioned(attention, q, k, v, rows: int, length: int, offset, positions):
    """``q, k, v`` (``(1, rows*length, heads*dim)``) as ``(rows, heads, length, dim)``, with RoPE
    at ``offset`` (an int, or an ``mx.array`` of each row's), QK-norm on the RoPE layers and, on
    the global (NoPE) layers, mlx-vlm's temperature tuning of the queries at ``positions`` (the
    1-based positions, shaped to broadcast over the queries), step for step as mlx-vlm does."""
    import mlx.core as mx

    q = q.reshape(rows, length, attention.n_heads, -1).transpose(0, 2, 1, 3)
    k = k.reshape(rows, length, attention.n_kv_heads, -1).transpose(0, 2, 1, 3)
    v = v.reshape(rows, length, attention.n_kv_heads, -1).transpose(0, 2, 1, 3)
    if attention.use_rope:
        q = attention.rope(q, offset=offset)
        k = attention.rope(k, offset=offset)
    if attention.use_qk_norm:
        q = mx.fast.rms_norm(q, weight=None, eps=1e-6)
        k = mx.fast.rms_norm(k, weight=None, eps=1e-6)
    if attention.attn_temperature_tuning and not attention.use_rope:
        scales = mx.log(mx.floor(positions() / attention.floor_scale) + 1.0) * attention.attn_scale + 1.0
        q = (q * scales).astype(q.dtype)
    return q, k, v


def _attention(attention, q, k, v, cache, offset: int, mask):
    """mlx-vlm's Llama 4 attention for one sequence: ``q, k, v`` are ``(1, L, heads*dim)``."""
    import mlx.core as mx
    from mlx_vlm.models.base import scaled_dot_product_attention

    length = q.shape[1]
    q, k, v = _positioned(
        attention, q, k, v, 1, length, offset, lambda: mx.arange(offset + 1, offset + length + 1)[:, None]
    )
    keys, values = cache.update_and_fetch(k, v)
    out = scaled_dot_product_attention(q, keys, values, cache, scale=attention.scale, mask=mask)
    return out.transpose(0, 2, 1, 3).reshape(1, length, -1)


def _attention_decoding(attention, q, k, v, caches: list, offsets):
    """Several sequences' one decoding token each, at once where the arithmetic allows: ``q, k,
    v`` are ``(1, D, heads*dim)`` and ``offsets`` an ``mx.array`` of the D positions. RoPE,
    QK-norm and the NoPE layers' query scaling take every sequence's position in one call; only
    the cache update and attention itself run per sequence (each on its own cache)."""
    import mlx.core as mx
    from mlx_vlm.models.base import scaled_dot_product_attention

    count = q.shape[1]
    q, k, v = _positioned(
        attention, q, k, v, count, 1, offsets, lambda: (offsets + 1).reshape(count, 1, 1, 1)
    )
    outs = []
    for i, cache in enumerate(caches):
        keys, values = cache.update_and_fetch(k[i : i + 1], v[i : i + 1])
        outs.append(
            scaled_dot_product_attention(q[i : i + 1], keys, values, cache, scale=attention.scale, mask=None)
        )
    out = mx.concatenate(outs, axis=0)
    return out.transpose(0, 2, 1, 3).reshape(1, count, -1)


def forward(language_model, segments: list[Segment]):
    """Run ``segments`` through mlx-vlm's Llama 4 ``language_model`` (updating each segment's
    caches) and return the logits ``(n, vocab)`` of the last position of each segment that
    wants them, in order; None when none does. Lazy: nothing is evaluated here."""
    import mlx.core as mx

    model = language_model.model
    chunk = int(model.config.attention_chunk_size)
    parts = []
    for seg in segments:
        parts.append(seg.embeddings if seg.embeddings is not None else model.embed_tokens(seg.ids))
    h = mx.concatenate(parts, axis=0)[None] if len(parts) > 1 else parts[0][None]

    bounds, at = [], 0
    for seg in segments:
        bounds.append((at, at + seg.length))
        at += seg.length
    # Each sequence's masks, from its caches before this step (every chunked layer of a
    # sequence is at the same position; the first layer is a chunked one, as in mlx-vlm).
    local_masks, global_masks, offsets = [], [], []
    for seg, (a, b) in zip(segments, bounds, strict=True):
        for index, c in enumerate(seg.caches):
            if (index + 1) % 4 != 0:
                c.maybe_trim_front()
        first = seg.caches[0]
        offsets.append(int(first.offset))
        local_masks.append(chunk_mask(b - a, chunk, int(first.start_position), int(first.offset)))
        global_masks.append(None if b - a == 1 else "causal")

    # The leading sequences that decode one token each, every key of their chunk readable,
    # go through attention together (``_attention_decoding``).
    together = 0
    while together < len(segments) and segments[together].length == 1 and local_masks[together] is None:
        together += 1
    if together < 2:
        together = 0
    positions = mx.array(offsets[:together]) if together else None

    for index, layer in enumerate(model.layers):
        attention = layer.self_attn
        x = layer.input_layernorm(h)
        q_all, k_all, v_all = attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)
        chunked = (index + 1) % 4 != 0
        outs = []
        if together:
            caches = [seg.caches[index] for seg in segments[:together]]
            qkv = (q_all[:, :together], k_all[:, :together], v_all[:, :together])
            outs.append(_attention_decoding(attention, *qkv, caches, positions))
        for n, (seg, (a, b)) in enumerate(zip(segments, bounds, strict=True)):
            if n < together:
                continue
            cache = seg.caches[index]
            offset = offsets[n] if chunked else int(cache.offset)
            mask = local_masks[n] if chunked else global_masks[n]
            outs.append(
                _attention(attention, q_all[:, a:b], k_all[:, a:b], v_all[:, a:b], cache, offset, mask)
            )
        attended = outs[0] if len(outs) == 1 else mx.concatenate(outs, axis=1)
        h = h + attention.o_proj(attended)
        h = h + layer.feed_forward(layer.post_attention_layernorm(h))

    last = [b - 1 for seg, (_, b) in zip(segments, bounds, strict=True) if seg.wants_logits]
    if not last:
        return None
    rows = h[:, mx.array(last)] if len(last) < h.shape[1] else h
    return language_model.lm_head(model.norm(rows))[0]
