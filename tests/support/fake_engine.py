"""A stand-in for ``models.inference.engine.Engine`` in the GUI tests where the model is not the
subject: no model runs, no weights are read, answers come in microseconds. (Over 400 lines
because it mirrors the whole public surface of the engine, which a test holds it to.)

It has the real engine's public surface (``load``, ``name``, ``checkpoint``, ``tokenizer``,
``encoder``, ``model``, ``max_context``, ``eos_ids``, ``identity``, ``prepare``, ``generate``,
``reset_cache``, ``snapshot_cache``, ``adopt_cache``, ``close``...);
``tests/desktop/test_fake_engine.py`` compares the two so that they cannot drift apart silently. What it does:

- ``load`` validates the folder with the real ``read_checkpoint`` (so a folder that is not a
  checkpoint fails with the real message) and reports the real loading stages;
- prompts are laid out like Llama 4's (``tests.support.fake_prompt``: ``<|begin_of_text|>``,
  headers, ``<|eot|>``), text is cut into reversible pieces (``FakeTokenizer``), each image is
  ``image_tokens`` patch positions keyed by its hash; ``PromptError`` when the prompt does not
  fit the context;
- answers are words from a fixed list, streamed one token per ``GenerationStep``, chosen by the
  prompt's text (greedy, ``temperature == 0``) or also by the seed; they end with ``"stop"``
  after ``FakeScript.answer_tokens`` words, ``"length"`` at ``max_tokens``, ``"cancelled"``
  within one token of the cancel event;
- a KV cache of keys, as the real one: the next turn reuses the longest shared prefix (answers
  fed back by their token ids), so ``cached_tokens`` and ``prompt_tokens`` mean what they mean;
  ``snapshot_cache`` / ``adopt_cache`` carry it through the real saved-cache files (one layer
  of zeros beside the keys: the one place the fake touches mlx);
- ``FakeScript.token_interval_s`` paces tokens (a wait on the cancel event, never slower to
  stop), ``hold_after`` holds an answer after that many tokens until ``release()`` or cancel
  (``holding`` says it got there), ``fail_on_load`` makes loading fail, ``fail_next_answer``
  makes the next answer raise part-way;
- every ``generate`` call is recorded in ``calls`` (messages, images, settings).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from models.inference.cache_snapshot import CacheSnapshot
from models.inference.checkpoint import Checkpoint, read_checkpoint
from models.inference.engine import (
    GenerationCancelled,
    GenerationSettings,
    GenerationStep,
    ModelLoadError,
    PromptError,
)
from models.inference.model_identity import ModelIdentity, model_identity
from models.inference.prompt import ChatMessage, EncodedPrompt
from tests.support.fake_prompt import FakePromptEncoder, FakeTokenizer

ANSWER_WORDS = (
    "amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbour",
    "indigo", "juniper", "kestrel", "lagoon", "meadow", "nimbus", "orchid", "pebble",
    "quartz", "ripple", "saffron", "thistle", "umber", "violet", "willow", "yarrow",
)  # fmt: skip
LOAD_STAGES = ("Reading weights", "Loading tokenizer")


@dataclass(frozen=True)
class FakeScript:
    """How a fake engine behaves; see the module docstring."""

    answer_tokens: int | None = None  # words before "<|eot|>" ("stop"); None: only max_tokens ends it
    token_interval_s: float = 0.0
    hold_after: int | None = None
    fail_on_load: str | None = None
    image_tokens: int = 16
    peak_memory_gb: float = 0.25


@dataclass(frozen=True)
class FakeCall:
    """One ``generate`` call, as the engine received it."""

    messages: tuple[ChatMessage, ...]
    settings: GenerationSettings
    continue_final: bool

    @property
    def images(self) -> int:
        return sum(len(m.images) for m in self.messages)


class _FakeModel:
    """Stands for the loaded weights (tests hold a weak reference to see them released)."""


def _common_prefix(a: list, b: list) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class FakeEngine:
    """A loaded "checkpoint" that answers with deterministic words; see the module docstring."""

    def __init__(self, checkpoint: Checkpoint, script: FakeScript = FakeScript()):
        self.checkpoint = checkpoint
        self.script = script
        self.model: _FakeModel | None = _FakeModel()
        self.tokenizer = FakeTokenizer()
        self.encoder = FakePromptEncoder(self.tokenizer, script.image_tokens)
        text = checkpoint.config["text_config"]
        self.max_context = int(text.get("max_position_embeddings") or 131072)
        self.eos_ids = set(self.tokenizer.eos_token_ids)
        self.calls: list[FakeCall] = []
        self.holding = threading.Event()  # an answer reached ``hold_after`` tokens and waits
        self._release = threading.Event()
        self._fail_next: tuple[str, int] | None = None
        self._cache_keys: list = []
        self._cache_kv: tuple | None = None
        self._identity: ModelIdentity | None = None
        self.closed = False

    @classmethod
    def load(
        cls,
        path: str | Path,
        progress: Callable[[str], None] | None = None,
        script: FakeScript = FakeScript(),
    ) -> FakeEngine:
        """Validate ``path`` as the real engine does and report its stages; exceptions raised by
        ``progress`` pass through unchanged. ``script.fail_on_load`` fails with that message."""
        checkpoint = read_checkpoint(path)
        for stage in LOAD_STAGES:
            if progress is not None:
                progress(stage)
            if script.fail_on_load is not None and stage == LOAD_STAGES[-1]:
                raise ModelLoadError(f"Could not load {checkpoint.name}: {script.fail_on_load}")
        return cls(checkpoint, script)

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def language_model(self):
        """Stands for the language model the real engine hands to mlx-lm (nothing runs here)."""
        return self.model

    def new_cache(self) -> list:
        """A fresh, empty KV cache: one mlx-lm layer (the fake's snapshots hold one)."""
        from mlx_lm.models.cache import KVCache

        return [KVCache()]

    @property
    def cache_layout(self):
        """What its one layer holds: one head of size 1, never quantized (as its snapshots)."""
        from models.inference.cache_layout import CacheLayout, LayerLayout

        return CacheLayout((LayerLayout(kv_heads=1, head_dim=1, quantizable=False),))

    @property
    def cache_layers(self) -> tuple:
        """The live KV cache's layers: the fake keeps only keys, so its snapshot's one layer."""
        snapshot = self.snapshot_cache()
        return tuple(snapshot.layers) if snapshot is not None else ()

    @property
    def cache_keys(self) -> tuple:
        """What the KV cache holds, per position: the token id, or (id, image hash, n)."""
        return tuple(self._cache_keys)

    @property
    def identity(self) -> ModelIdentity:
        """The checkpoint's folder and content hash, which a saved cache must match."""
        if self._identity is None:
            self._identity = model_identity(self.checkpoint.path)
        return self._identity

    def snapshot_cache(self) -> CacheSnapshot | None:
        """The cache's keys with one mlx-lm layer of zeros as long as they are, so that the real
        ``PromptCacheKeeper`` writes and reads it (None when nothing is cached)."""
        if not self._cache_keys:
            return None
        import mlx.core as mx
        from mlx_lm.models.cache import KVCache

        zeros = mx.zeros((1, 1, len(self._cache_keys), 1), dtype=mx.float16)
        layer = KVCache()
        layer.state = (zeros, zeros, len(self._cache_keys))
        return CacheSnapshot((layer,), tuple(self._cache_keys), self._cache_kv)

    def adopt_cache(self, snapshot: CacheSnapshot, conversation_id: int | str | None = None) -> bool:
        """Make ``snapshot`` the cache; False (the cache as it was) when it is not a fake's."""
        layers = snapshot.layers
        if snapshot.tokens == 0 or len(layers) != len(self.new_cache()):
            return False
        if any(int(layer.state[2]) != snapshot.tokens for layer in layers):
            return False
        self._cache_keys = list(snapshot.keys)
        self._cache_kv = tuple(snapshot.kv) if snapshot.kv else None
        return True

    def save_rank_caches(
        self, conversation_id: int | str, snapshot: CacheSnapshot, budget_bytes: int
    ) -> None:
        """One machine: no other rank holds a share."""

    def reset_cache(self) -> None:
        """Forget the KV cache (the next turn prefills the whole conversation)."""
        self._cache_keys = []

    @property
    def batched(self) -> bool:
        """The fake answers one at a time, as a pipeline across a cluster does: the engine host
        runs its jobs in turn, through ``generate``."""
        return False

    @property
    def live_cache(self):
        from models.inference.batch_generation import LiveCache

        return LiveCache([], list(self._cache_keys), self._cache_kv)

    def use_cache(self, live) -> None:
        self._cache_keys, self._cache_kv = list(live.keys), live.kv

    def max_new_tokens(self, prompt: EncodedPrompt, settings: GenerationSettings) -> int:
        limit = min(settings.context_length or self.max_context, self.max_context)
        return max(0, min(settings.max_tokens, limit - len(prompt.ids)))

    def sequence(
        self,
        prompt: EncodedPrompt,
        settings: GenerationSettings,
        cancel: threading.Event,
        live,
        continue_final: bool = False,
        priority: int = 0,
        tag: object = None,
        constraint=None,
    ):
        raise NotImplementedError("the fake engine answers one at a time (batched is False)")

    def new_batch(self):
        raise NotImplementedError("the fake engine answers one at a time (batched is False)")

    def close(self) -> None:
        """Release the "model" and the cache."""
        self.reset_cache()
        self.model = None
        self.closed = True

    # -- test controls --------------------------------------------------------------------------

    def release(self) -> None:
        """Let an answer held at ``hold_after`` tokens go on to its end."""
        self._release.set()

    def fail_next_answer(self, message: str, after_tokens: int = 0) -> None:
        """Make the next answer raise ``RuntimeError(message)`` after ``after_tokens`` tokens."""
        self._fail_next = (message, after_tokens)

    # -- generation -----------------------------------------------------------------------------

    def _valid_generated_id(self, token_id: int) -> bool:
        return self.tokenizer.known(token_id)

    def prepare(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings = GenerationSettings(),  # noqa: B008 - as the real signature
        continue_final: bool = False,
    ) -> EncodedPrompt:
        """Encode ``messages``; ``PromptError`` when they cannot be answered."""
        try:
            prompt = self.encoder.encode(
                messages, continue_final=continue_final, valid_id=self._valid_generated_id
            )
        except Exception as exc:  # noqa: BLE001 - as the real engine
            raise PromptError(f"Could not build the prompt: {exc}") from exc
        limit = min(settings.context_length or self.max_context, self.max_context)
        if len(prompt.ids) >= limit:
            raise PromptError(
                f"The conversation is {len(prompt.ids):,} tokens, more than the context "
                f"length of {limit:,}. Start a new conversation or raise the context length.",
                prompt_ids=prompt.ids,
            )
        return prompt

    def generate(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings = GenerationSettings(),  # noqa: B008 - as the real signature
        cancel: threading.Event | None = None,
        continue_final: bool = False,
        prepared: EncodedPrompt | None = None,
    ) -> Iterator[GenerationStep]:
        """Stream a deterministic answer to ``messages``; see the module docstring."""
        cancel = cancel or threading.Event()
        start = time.perf_counter()
        self.calls.append(FakeCall(tuple(messages), settings, continue_final))
        blank = GenerationStep(
            text="",
            token=None,
            prompt_tokens=0,
            cached_tokens=0,
            generation_tokens=0,
            ttft_s=0.0,
            prompt_tps=0.0,
            generation_tps=0.0,
            peak_memory_gb=0.0,
        )
        try:
            prompt = prepared if prepared is not None else self.prepare(messages, settings, continue_final)
        except PromptError as exc:
            yield replace(blank, finish_reason="error", error=str(exc), prompt_token_ids=exc.prompt_ids)
            return
        limit = min(settings.context_length or self.max_context, self.max_context)
        max_tokens = max(0, min(settings.max_tokens, limit - len(prompt.ids)))
        kv = (settings.kv_bits, settings.kv_group_size) if settings.kv_bits else None
        if self._cache_kv != kv:
            self.reset_cache()
        self._cache_kv = kv
        shared = min(_common_prefix(self._cache_keys, prompt.keys), len(prompt.keys) - 1)
        self._cache_keys = list(prompt.keys)  # prefilled: the cache holds the whole prompt
        blank = replace(
            blank,
            prompt_tokens=len(prompt.ids) - shared,
            cached_tokens=shared,
            peak_memory_gb=self.script.peak_memory_gb,
            prompt_token_ids=tuple(prompt.ids),
        )
        words = self._words(prompt, settings, len(messages[-1].token_ids or ()) if continue_final else 0)
        failure, self._fail_next = self._fail_next, None
        self.holding.clear()
        self._release.clear()
        generated: list[int] = []
        reason = "length"
        first: float | None = None
        try:
            while len(generated) < max_tokens:
                if failure is not None and len(generated) >= failure[1]:
                    self.reset_cache()
                    raise RuntimeError(failure[0])
                self._pace(len(generated), cancel)
                token = next(words)
                first = first or time.perf_counter()
                generated.append(token)
                self._cache_keys.append(token)
                if token in self.eos_ids:
                    reason = "stop"
                    break
                yield self._step(
                    blank, start, first, generated, text=self.tokenizer.decode([token]), token=token
                )
                if cancel.is_set():
                    reason = "cancelled"
                    break
        except GenerationCancelled:
            reason = "cancelled"
        final = self._step(blank, start, first, generated, text="", token=None)
        yield replace(
            final, finish_reason=reason, token_ids=tuple(t for t in generated if t not in self.eos_ids)
        )

    def _pace(self, produced: int, cancel: threading.Event) -> None:
        """Wait for the next token as the script says; ``GenerationCancelled`` on cancel."""
        if self.script.hold_after is not None and produced >= self.script.hold_after:
            self.holding.set()
            while not self._release.is_set():
                if cancel.wait(0.002):
                    raise GenerationCancelled
        if self.script.token_interval_s > 0 and cancel.wait(self.script.token_interval_s):
            raise GenerationCancelled
        if cancel.is_set():
            raise GenerationCancelled

    def _words(self, prompt: EncodedPrompt, settings: GenerationSettings, start: int) -> Iterator[int]:
        """The answer's token ids: words picked by the prompt (and the seed when sampling);
        ``start`` words are already written (a continued answer)."""
        images = sorted({k[1] for k in prompt.keys if isinstance(k, tuple)})
        salt = f"{settings.seed}" if settings.temperature > 0 else "greedy"
        text = "|".join([self.tokenizer.decode(prompt.ids), *images, salt])
        rng = random.Random(hashlib.sha256(text.encode()).digest())
        count = start
        while True:
            if self.script.answer_tokens is not None and count >= self.script.answer_tokens:
                yield self.tokenizer.token_id("<|eot|>")
                continue
            word = rng.choice(ANSWER_WORDS)
            yield self.tokenizer.token_id(f" {word}" if count else word.capitalize())
            count += 1

    def _step(self, blank, start, first, generated, *, text, token) -> GenerationStep:
        now = time.perf_counter()
        ttft = (first or now) - start
        return replace(
            blank,
            text=text,
            token=token,
            generation_tokens=len(generated),
            ttft_s=ttft,
            prompt_tps=blank.prompt_tokens / ttft if ttft > 0 else 0.0,
            generation_tps=(len(generated) - 1) / (now - first) if first and now > first else 0.0,
        )


@dataclass
class FakeEngineFactory:
    """What a window's ``engine_factory`` is given: loads ``FakeEngine``s with ``script`` and
    keeps every one it made (``last`` is the one a window is using)."""

    script: FakeScript = FakeScript()
    engines: list[FakeEngine] = field(default_factory=list)

    def __call__(self, path: str | Path, progress: Callable[[str], None] | None = None) -> FakeEngine:
        engine = FakeEngine.load(path, progress=progress, script=self.script)
        self.engines.append(engine)
        return engine

    @property
    def last(self) -> FakeEngine:
        return self.engines[-1]
