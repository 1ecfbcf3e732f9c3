"""Vision features of the prompt's images, and the input embeddings they go into.

The vision tower and projector run once per image (an LRU of the last ``size`` images, keyed by
the image's sha256), and ``embeddings`` puts the features at the ``<|patch|>`` positions of the
prompt's tail that is prefilled.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from models.inference.generation_types import GenerationCancelled
from models.inference.prompt import EncodedPrompt


class ImageFeatures:
    def __init__(self, model, size: int = 8):
        self.model = model
        self.size = size
        self._cache: OrderedDict[str, object] = OrderedDict()

    def clear(self) -> None:
        self._cache.clear()

    def features(self, prompt_image, cancel: threading.Event):
        """The projected vision features of one prompt image (cached by the image's hash)."""
        import mlx.core as mx

        sha = prompt_image.image.sha256
        hit = self._cache.get(sha)
        if hit is not None:
            self._cache.move_to_end(sha)
            return hit
        if cancel.is_set():
            raise GenerationCancelled
        embed = self.model.language_model.model.embed_tokens
        dtype = getattr(embed, "scales", embed.weight).dtype  # a quantized table's float dtype
        if dtype not in (mx.float16, mx.bfloat16, mx.float32):
            dtype = mx.bfloat16
        pixels = mx.array(prompt_image.pixel_values).astype(dtype)
        features = self.model.vision_model(pixels)
        features = features.reshape(-1, features.shape[-1])
        features = self.model.multi_modal_projector(features)
        mx.eval(features)
        self._cache[sha] = features
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return features

    def embeddings(self, prompt: EncodedPrompt, start: int, cancel: threading.Event):
        """Input embeddings for positions ``start:``, or None when they hold no image features."""
        import mlx.core as mx
        import numpy as np

        needed = [img for img in prompt.images if img.positions.size and img.positions[-1] >= start]
        if not needed:
            return None
        ids = mx.array(prompt.ids[start:])
        embeds = self.model.language_model.model.embed_tokens(ids)
        for img in needed:
            features = self.features(img, cancel)
            keep = np.flatnonzero(img.positions >= start)
            positions = mx.array(img.positions[keep] - start)
            embeds[positions] = features[mx.array(keep)].astype(embeds.dtype)
        return embeds
