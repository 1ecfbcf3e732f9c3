"""The engine's glue to mlx-lm's generation loop: the language model presented with the call
``generate_step`` makes, reuse of the KV cache across turns (longest shared prefix, trimmed),
and the ids the model must never emit, masked in the sampler.
"""

from __future__ import annotations


class LanguageModelAdapter:
    """Presents mlx-vlm's Llama 4 language model with the call mlx-lm's generate_step makes."""

    def __init__(self, language_model):
        self.language_model = language_model

    def __call__(self, inputs, cache=None, input_embeddings=None):
        return self.language_model(inputs, inputs_embeds=input_embeddings, cache=cache).logits

    @property
    def layers(self):
        return self.language_model.layers

    def make_cache(self):
        """Empty caches; the chunked-attention layers' hold only their current chunk."""
        from models.inference.chunk_cache import language_model_caches

        return language_model_caches(self.language_model.config)


def common_prefix(a: list, b: list) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def masked_sampler(sampler, mask):
    """``sampler`` that never picks a banned id: the additive ``mask`` (-inf on banned ids) is
    applied to the log-probabilities, which are normalized again. In the sampler rather than a
    logits processor, so mlx-lm's ``generate_step`` does not keep the token history for it."""
    if mask is None:
        return sampler
    import mlx.core as mx

    def sample(logprobs):
        masked = logprobs + mask
        return sampler(masked - mx.logsumexp(masked, axis=-1, keepdims=True))

    return sample


def trim_to_shared(cache: list, cache_keys: list, keys: list) -> int | None:
    """Trim ``cache`` (holding ``cache_keys``) to its longest prefix shared with ``keys``, and
    return that length; None when the cache cannot be trimmed there (start a fresh one).

    A chunked-attention layer's cache holds only its current chunk (``chunk_cache``): when the
    shared prefix ends before that chunk's start, the tokens between the start of the shared
    prefix's own chunk and its end are gone from those layers. Nothing before a chunk's start is
    ever read again from a chunked layer, so the cache is cut back to that chunk boundary instead
    (``cut_to``), and at most one chunk of the prompt is prefilled again rather than all of it."""
    shared = common_prefix(cache_keys, keys)
    shared = min(shared, len(keys) - 1)  # at least one token must be processed
    chunked = [c for c in cache if hasattr(c, "chunk_size")]
    if any(getattr(c, "start_position", 0) > (shared // c.chunk_size) * c.chunk_size for c in chunked):
        shared = (shared // chunked[0].chunk_size) * chunked[0].chunk_size
        if shared == 0:
            return None
    return shared if cut_to(cache, shared) else None


def cut_to(cache: list, offset: int) -> bool:
    """Trim every layer of ``cache`` back to ``offset`` positions; a chunked-attention layer that
    no longer holds the chunk's tokens up to ``offset`` is emptied there, which is right only at
    a chunk boundary (else False, as for any layer that cannot be trimmed so far)."""
    from mlx_lm.models.cache import can_trim_prompt_cache

    if not can_trim_prompt_cache(cache):
        return False
    for c in cache:
        chunk = getattr(c, "chunk_size", None)
        if chunk is not None and getattr(c, "start_position", 0) > (offset // chunk) * chunk:
            if offset % chunk != 0:
                return False
            c.keys = c.values = None  # the chunk that starts at ``offset`` is filled again
            c.offset = c.start_position = offset
    for c in cache:
        n = c.offset - offset
        if n > 0 and c.trim(n) != n:
            return False
    return all(c.offset == offset for c in cache)


def banned_ids(hf_tokenizer, vocab: int):
    """Ids the model must never emit: past the tokenizer's vocabulary (padding rows, which
    cannot be decoded), and reserved or image-layout tokens (``<|patch|>``, ``<|image|>``,
    tile separators...), which have no meaning in an answer."""
    import numpy as np

    hf = hf_tokenizer
    banned = np.zeros(vocab, dtype=bool)
    banned[len(hf) :] = True
    layout = (
        "<|begin_of_text|>",
        "<|finetune_right_pad|>",
        "<|image_start|>",
        "<|image_end|>",
        "<|image|>",
        "<|patch|>",
        "<|tile_x_separator|>",
        "<|tile_y_separator|>",
        "<|header_start|>",
        "<|header_end|>",
    )
    for token, token_id in hf.get_added_vocab().items():
        if token_id < vocab and ("reserved_special_token" in token or token in layout):
            banned[token_id] = True
    return banned


def logit_mask(banned):
    """An additive logit mask (-inf on the banned ids), or None when nothing is banned."""
    import mlx.core as mx
    import numpy as np

    if not banned.any():
        return None
    return mx.array(np.where(banned, -np.inf, 0.0).astype(np.float32))
