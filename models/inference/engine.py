"""The inference engine: a loaded Llama 4 checkpoint that streams answers.

``Engine.generate`` is a generator of frozen ``GenerationStep``s, in the manner of mlx-lm's
``stream_generate``: each carries the new text, the token, counts, time to first token, speeds,
peak memory and, on the last one, a ``finish_reason`` ("stop", "length", "cancelled", "error").

Built on the libraries, not beside them: mlx-vlm builds and loads the model (vision tower,
projector, language model with its chunked/global KV caches) and mlx-lm provides the samplers,
KV caches and streaming detokenizer. An answer runs as a ``Batch`` of one
(``models.inference.batch_generation``): ``sequence()`` makes an answer ready to join a batch
with others (the engine host's continuous batching), on a KV cache it is given as a value
(``LiveCache``), and ``generate`` runs one alone, the same computation. A pipeline across a
cluster (``batched`` False) answers through mlx-lm's ``generate_step``. Where mlx-vlm 0.7.10 departs
from Meta's reference, the loaded model is corrected, not site-packages: image tiling comes from
``models.inference.preprocess`` (mlx-vlm's processor stretches and drops the global tile) and the
features are merged by ``models.inference.image_features``; the vision tower's GELU and unfold
are fixed in ``models.inference.model_loading``; the prompt carries one ``<|begin_of_text|>``.

The KV cache outlives a turn: the next turn's prompt is compared with what the cache holds
(token ids, and image hashes for image positions) and only the differing tail is prefilled
(``models.inference.kv_reuse``). Public seams for other code (the server, pipeline parallelism,
saved caches): ``language_model``, ``new_cache()``, ``cache_keys``, ``snapshot_cache()``,
``adopt_cache()``, ``live_cache``/``use_cache()``, ``cache_layout`` and ``identity``. Loading
never lets transformers validate the model config, and any failure while loading becomes one
``ModelLoadError`` line, with MLX's buffer cache freed. While an answer runs on Metal the weights
stay wired (``models.inference.wired_memory``).

Cancel is a ``threading.Event`` checked between images, between prefill chunks and at every
token. mlx and mlx-vlm are imported inside the functions that need them, so a window can show
before they load. One thread should own an Engine. (Over 400 lines because generation, its
bookkeeping and the cache seams read best together, and a pipeline's one-at-a-time path lives
here until the pipeline batches too.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from models.inference.batch_generation import (
    Batch,
    LiveCache,
    Sequence,
    repetition_processors,
    sampler_for,
    settle,
)
from models.inference.cache_layout import CacheLayout, cache_layout
from models.inference.cache_snapshot import CacheSnapshot, fitting_caches, portable_layers
from models.inference.checkpoint import Checkpoint, CheckpointError, read_checkpoint
from models.inference.generation_types import (  # noqa: F401 - re-exported: the engine's API
    FINISH_REASONS,
    GenerationCancelled,
    GenerationSettings,
    GenerationStep,
    ModelLoadError,
    PromptError,
)
from models.inference.image_features import ImageFeatures
from models.inference.kv_reuse import (
    LanguageModelAdapter,
    banned_ids,
    logit_mask,
    masked_sampler,
    trim_to_shared,
)
from models.inference.model_identity import ModelIdentity, model_identity
from models.inference.model_loading import (  # noqa: F401 - fix_vision_tower, load_tokenizer re-exported
    ProgressRaised,
    fix_vision_tower,
    free_memory,
    load_model_and_tokenizer,
    load_tokenizer,
    one_line,
)
from models.inference.output_constraint import OutputConstraint
from models.inference.prompt import ChatMessage, EncodedPrompt, PromptEncoder
from models.inference.tokenizer_guard import tokenizer_call
from models.inference.wired_memory import wired_limit

DEFAULT_SETTINGS = GenerationSettings()
_BLANK = GenerationStep("", None, 0, 0, 0, 0.0, 0.0, 0.0, 0.0)


class Engine:
    """A loaded checkpoint, its tokenizer, and the KV cache of the last conversation."""

    def __init__(self, checkpoint: Checkpoint, model, tokenizer):

        self.checkpoint = checkpoint
        self.model = model
        self.tokenizer = tokenizer  # mlx-lm TokenizerWrapper
        self.encoder = PromptEncoder(tokenizer._tokenizer, checkpoint.processor)
        # Any: mlx-lm's generate_step takes it as an nn.Module, which it only duck-types; the
        # distributed driver puts a PipelineLM here, and close() None.
        self._lm: Any = LanguageModelAdapter(model.language_model)
        text = checkpoint.config["text_config"]
        self.max_context = int(text.get("max_position_embeddings") or 131072)
        self.eos_ids = set(tokenizer.eos_token_ids or ())
        with tokenizer_call("reading its vocabulary"):
            eot = tokenizer._tokenizer.convert_tokens_to_ids("<|eot|>")
            self._vocab_size = min(int(text["vocab_size"]), len(tokenizer._tokenizer))
            banned = banned_ids(tokenizer._tokenizer, int(text["vocab_size"]))
        if eot is not None:
            self.eos_ids.add(eot)
        self._banned = {int(i): True for i in banned.nonzero()[0] if i < self._vocab_size}
        self._logit_mask = logit_mask(banned)
        self._live = LiveCache([])  # the last conversation's KV cache (the host keeps others)
        self._features = ImageFeatures(model)
        self._continuing = False
        self._identity: ModelIdentity | None = None

    @classmethod
    def load(cls, path: str | Path, progress: Callable[[str], None] | None = None) -> Engine:
        """Load a local checkpoint folder (nothing is downloaded).

        Raises ``CheckpointError`` for a folder that is not a Llama 4 checkpoint and
        ``ModelLoadError`` (a one-line message naming the model and the cause) for anything
        else that goes wrong; MLX's buffer cache is freed before either is raised. Exceptions
        raised by ``progress`` (a cancelled load) pass through unchanged."""
        import logging

        name = Path(path).expanduser().name
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a failed load
            logging.getLogger(__name__).debug("Reading %s failed", name, exc_info=True)
            raise ModelLoadError(f"Could not load {name}: {one_line(exc)}") from None

        def report(stage: str) -> None:
            if progress is not None:
                try:
                    progress(stage)
                except Exception as exc:  # noqa: BLE001 - re-raised as is, below
                    raise ProgressRaised(exc) from None

        failure: Exception | None = None
        try:
            with tokenizer_call("loading"):
                model, tokenizer = load_model_and_tokenizer(checkpoint, report)
                engine = cls(checkpoint, model, tokenizer)
        except ProgressRaised as raised:
            failure = raised.error.with_traceback(None)
        except Exception as exc:  # noqa: BLE001 - whatever the libraries raise, the load failed
            logging.getLogger(__name__).debug("Loading %s failed", checkpoint.name, exc_info=True)
            failure = ModelLoadError(f"Could not load {checkpoint.name}: {one_line(exc)}")
        if failure is not None:
            # Outside the except block (and without its traceback), which would keep the
            # half-loaded model alive.
            model = tokenizer = None
            free_memory()
            raise failure
        return engine

    @property
    def name(self) -> str:
        return self.checkpoint.name

    @property
    def language_model(self):
        """The language model with the call mlx-lm's ``generate_step`` makes."""
        return self._lm

    def new_cache(self) -> list:
        """A fresh, empty KV cache for the language model (one cache per layer)."""
        return self._lm.make_cache()

    @property
    def cache_layout(self) -> CacheLayout:
        """What each layer's KV cache holds (heads, head size, chunked or global), which a
        saved cache is checked against before it is read."""
        return cache_layout(self.new_cache(), self._lm.layers)

    @property
    def cache_layers(self) -> tuple:
        """The live KV cache, one mlx-vlm cache object per decoder layer (read, do not keep)."""
        return tuple(self._live.caches)

    @property
    def cache_keys(self) -> tuple:
        """What the KV cache holds, per position: the token id, or (id, image hash, n)."""
        return tuple(self._live.keys)

    @property
    def live_cache(self) -> LiveCache:
        """The engine's own KV cache (what ``generate`` continues from), as a value the host can
        keep and hand back with ``use_cache``."""
        return self._live

    def use_cache(self, live: LiveCache) -> None:
        """Make ``live`` the cache ``generate`` continues from."""
        self._live = live

    @property
    def batched(self) -> bool:
        """Whether answers can share forward passes (``sequence`` and ``Batch``): a language model
        on this machine; a pipeline across a cluster answers one at a time."""
        return isinstance(self._lm, LanguageModelAdapter)

    @property
    def identity(self) -> ModelIdentity:
        """The checkpoint's folder and content hash, which a saved cache must match."""
        if self._identity is None:
            self._identity = model_identity(self.checkpoint.path)
        return self._identity

    def snapshot_cache(self) -> CacheSnapshot | None:
        """A copy of the KV cache and its keys (None when nothing is cached); later turns do
        not change it, so it can be written to disk while the engine answers on."""
        return snapshot_of(self._live)

    def adopt_cache(self, snapshot: CacheSnapshot, conversation_id: int | str | None = None) -> bool:
        """Make ``snapshot`` the KV cache (as after the turns it holds); False, and the cache
        left as it was, when it does not fit this model. ``conversation_id`` names the other
        ranks' shares for an engine split across a cluster (``PipelineEngine``); one machine
        holds the whole cache and does not need it."""
        caches = fitting_caches(snapshot, self.new_cache())
        if caches is None:
            return False
        self._take_cache(caches, snapshot)
        return True

    def save_rank_caches(
        self, conversation_id: int | str, snapshot: CacheSnapshot, budget_bytes: int
    ) -> None:
        """Have the other ranks of a cluster save their shares of the cache ``snapshot`` was
        taken from (``PipelineEngine``); one machine has no other share: nothing to do."""

    def _take_cache(self, caches: list, snapshot: CacheSnapshot) -> None:
        kv = (int(snapshot.kv[0]), int(snapshot.kv[1])) if snapshot.kv else None
        self._live = LiveCache(caches, list(snapshot.keys), kv)

    def reset_cache(self) -> None:
        """Forget the KV cache (the next turn prefills the whole conversation)."""
        self._live = LiveCache([])

    def close(self) -> None:
        """Release the model and every cache so the memory can go to the next model."""
        self.reset_cache()
        self._features.clear()
        self._features.model = None
        self.model = None
        self._lm = None
        # The patched vision tower holds a reference cycle: collect it, then hand MLX's cached
        # buffers back to the system.
        free_memory()

    # -- generation -----------------------------------------------------------------------------

    def _image_features(self, prompt_image, cancel: threading.Event):
        return self._features.features(prompt_image, cancel)

    def _embeddings(self, prompt: EncodedPrompt, start: int, cancel: threading.Event):
        return self._features.embeddings(prompt, start, cancel)

    def _reuse_cache(self, live: LiveCache, keys: list, kv: tuple[int, int] | None) -> int:
        """Trim ``live`` to its longest prefix shared with ``keys`` (emptied when it is quantized
        otherwise than ``kv`` asks); return that length."""
        if live.caches and live.kv != kv:
            live.caches, live.keys = [], []  # a cache quantized differently is not reused
        live.kv = kv
        shared = trim_to_shared(live.caches, live.keys, keys) if live.caches else None
        if shared is None:
            live.caches, live.keys = self._lm.make_cache(), []
            return 0
        live.keys = live.keys[:shared]
        return shared

    def prepare(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings = DEFAULT_SETTINGS,
        continue_final: bool = False,
    ) -> EncodedPrompt:
        """Encode ``messages`` and check them against the context; raise ``PromptError`` with a
        message fit to show when they cannot be answered. Nothing is computed on the model."""
        try:
            prompt = self.encoder.encode(
                messages, continue_final=continue_final, valid_id=self._valid_generated_id
            )
        except Exception as exc:  # noqa: BLE001 - a template or image failure is this prompt's problem
            raise PromptError(f"Could not build the prompt: {exc}") from exc
        limit = min(settings.context_length or self.max_context, self.max_context)
        if len(prompt.ids) >= limit:
            raise PromptError(
                f"The conversation is {len(prompt.ids):,} tokens, more than the context "
                f"length of {limit:,}. Start a new conversation or raise the context length.",
                prompt_ids=prompt.ids,
            )
        return prompt

    def _valid_generated_id(self, token_id: int) -> bool:
        """Whether a stored answer's token id can be fed back (else its text is re-tokenized)."""
        return 0 <= token_id < self._vocab_size and not self._banned.get(token_id, False)

    def generate(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings = DEFAULT_SETTINGS,
        cancel: threading.Event | None = None,
        continue_final: bool = False,
        prepared: EncodedPrompt | None = None,
    ) -> Iterator[GenerationStep]:
        """Stream the assistant's answer to ``messages`` (the last one is the user's), or, with
        ``continue_final``, more of the last (assistant) message. ``prepared`` is the result of
        ``prepare`` for the same arguments, when the caller already has it."""
        import mlx.core as mx

        cancel = cancel or threading.Event()
        start_time = time.perf_counter()
        mx.reset_peak_memory()
        try:
            prompt = prepared if prepared is not None else self.prepare(messages, settings, continue_final)
        except PromptError as exc:
            yield replace(_BLANK, finish_reason="error", error=str(exc), prompt_token_ids=exc.prompt_ids)
            return
        from mlx_lm.generate import generation_stream

        # On Metal the weights stay wired while the answer runs, as in mlx-lm's stream_generate.
        with wired_limit(self.model, [generation_stream]):
            if self.batched:
                yield from self._generate_alone(prompt, settings, cancel, continue_final, start_time)
            else:
                yield from self._generate_stepwise(prompt, settings, cancel, continue_final, start_time)

    def max_new_tokens(self, prompt: EncodedPrompt, settings: GenerationSettings) -> int:
        """How many tokens an answer to ``prompt`` may have: ``max_tokens``, within the context."""
        limit = min(settings.context_length or self.max_context, self.max_context)
        return max(0, min(settings.max_tokens, limit - len(prompt.ids)))

    def sequence(
        self,
        prompt: EncodedPrompt,
        settings: GenerationSettings,
        cancel: threading.Event,
        live: LiveCache,
        continue_final: bool = False,
        priority: int = 0,
        tag: object = None,
        constraint: OutputConstraint | None = None,
    ) -> Sequence:
        """An answer to ``prompt`` ready to join a ``Batch``: ``live`` (a conversation's KV cache,
        now the sequence's) is trimmed to its longest prefix shared with the prompt, and the image
        features of the rest are computed (raises ``GenerationCancelled`` when ``cancel`` is set
        meanwhile). With a ``constraint`` the answer is decoded under its grammar (raises
        ``ConstraintError`` when it cannot be compiled). Runs on the thread that owns MLX."""
        matcher = None
        if constraint is not None:
            from models.inference.constraints import compile_constraint

            vocab = int(self.checkpoint.config["text_config"]["vocab_size"])
            matcher = compile_constraint(constraint, self.tokenizer, vocab, self.eos_ids).matcher()
        kv = (settings.kv_bits, settings.kv_group_size) if settings.kv_bits else None
        start_time = time.perf_counter()
        shared = self._reuse_cache(live, prompt.keys, kv)
        embeddings = self._embeddings(prompt, shared, cancel)
        if cancel.is_set():
            raise GenerationCancelled
        detokenizer = self.tokenizer.detokenizer
        detokenizer.reset()
        if continue_final and hasattr(detokenizer, "_maybe_trim_space"):
            # mlx-lm's BPE detokenizer drops the leading space of an answer's first word; a
            # continued answer is not at its start, so give it text to continue from.
            detokenizer.text = " "
            detokenizer.offset = 1
        return Sequence(
            prompt=prompt,
            settings=settings,
            cache=live,
            shared=shared,
            max_tokens=self.max_new_tokens(prompt, settings),
            sample=sampler_for(settings, self._logit_mask, prompt.ids),
            detokenizer=detokenizer,
            eos_ids=frozenset(self.eos_ids),
            cancel=cancel,
            embeddings=embeddings,
            priority=priority,
            tag=tag,
            start_time=start_time,
            constraint=matcher,
        )

    def new_batch(self) -> Batch:
        """An empty batch over this engine's language model."""
        return Batch(self._lm.language_model)

    def _generate_alone(self, prompt, settings, cancel, continue_final, start_time):
        """One answer as a batch of one: the same computation as in a batch with others."""
        live = self._live
        try:
            seq = self.sequence(prompt, settings, cancel, live, continue_final)
        except GenerationCancelled:
            yield replace(_BLANK, finish_reason="cancelled", prompt_token_ids=tuple(prompt.ids))
            return
        except Exception as exc:  # noqa: BLE001 - a failed vision tower ends this answer
            self.reset_cache()
            yield replace(
                _BLANK,
                finish_reason="error",
                error=f"Generation failed: {exc}",
                prompt_token_ids=tuple(prompt.ids),
            )
            return
        seq.start_time = start_time
        if settings.seed is not None:
            import mlx.core as mx

            mx.random.seed(settings.seed)
        batch = self.new_batch()
        batch.add(seq)
        try:
            while batch.active:
                for _, step in batch.step():
                    yield step
        finally:
            if seq.finished is None:  # the consumer stopped early: keep what the cache holds
                settle(seq)
            if not live.caches:
                self.reset_cache()

    # -- one answer through mlx-lm's generate_step (a pipeline across a cluster) ----------------

    def _generate_stepwise(self, prompt, settings, cancel, continue_final, start_time):
        self._continuing = continue_final
        max_tokens = self.max_new_tokens(prompt, settings)
        generated: list[int] = []
        state = {"cached": 0, "prefilled": 0, "first": None}
        try:
            with tokenizer_call("decoding the answer"):  # the streaming detokenizer
                yield from self._run(prompt, settings, max_tokens, cancel, start_time, generated, state)
        except GenerationCancelled:
            yield self._final(_BLANK, "cancelled", None, prompt, generated, state, start_time)
        except Exception as exc:  # noqa: BLE001 - an MLX failure ends this answer, not the app
            self.reset_cache()
            yield self._final(
                _BLANK, "error", f"Generation failed: {exc}", prompt, generated, state, start_time
            )
        finally:
            self._settle_cache(prompt, generated)

    def _settle_cache(self, prompt: EncodedPrompt, generated: list[int]) -> None:
        """Record what the cache now holds: the prompt, then the tokens fed back so far."""
        live = self._live
        if not live.caches:
            return
        keys = prompt.keys + generated
        offset = live.caches[0].offset
        if not isinstance(offset, int):
            self.reset_cache()
            return
        if offset > len(keys):
            # A stop right at the end of prefill: the cache took a sampled token we never
            # received. Take it back out rather than throw the whole cache away.
            excess = offset - len(keys)
            if any(c.trim(excess) != excess for c in live.caches):
                self.reset_cache()
                return
            offset = len(keys)
        live.keys = keys[:offset]

    def _final(self, blank, reason, error, prompt, generated, state, start_time) -> GenerationStep:
        import mlx.core as mx

        now = time.perf_counter()
        first = state["first"]
        ttft = (first or now) - start_time
        gen_tps = 0.0
        if first and len(generated) > 1 and now > first:
            gen_tps = (len(generated) - 1) / (now - first)
        return replace(
            blank,
            prompt_tokens=state["prefilled"],
            cached_tokens=state["cached"],
            generation_tokens=len(generated),
            ttft_s=ttft,
            prompt_tps=state["prefilled"] / ttft if ttft > 0 else 0.0,
            generation_tps=gen_tps,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
            finish_reason=reason,
            error=error,
            token_ids=tuple(t for t in generated if t not in self.eos_ids),
            prompt_token_ids=tuple(prompt.ids),
        )

    def _run(self, prompt, settings, max_tokens, cancel, start_time, generated, state):
        import mlx.core as mx
        from mlx_lm.generate import generate_step
        from mlx_lm.sample_utils import make_sampler

        kv = (settings.kv_bits, settings.kv_group_size) if settings.kv_bits else None
        shared = self._reuse_cache(self._live, prompt.keys, kv)
        state["cached"] = shared
        new_ids = prompt.ids[shared:]
        state["prefilled"] = len(new_ids)
        embeddings = self._embeddings(prompt, shared, cancel)
        if cancel.is_set():
            raise GenerationCancelled
        blank = replace(_BLANK, prompt_tokens=len(new_ids), cached_tokens=shared)
        if max_tokens == 0:
            yield self._final(blank, "length", None, prompt, generated, state, start_time)
            return

        def on_prefill(_processed: int, _total: int) -> None:
            if cancel.is_set():
                raise GenerationCancelled

        if settings.seed is not None:
            mx.random.seed(settings.seed)
        base = make_sampler(temp=settings.temperature, top_p=settings.top_p, min_p=settings.min_p)
        sampler = masked_sampler(base, self._logit_mask)
        processors = repetition_processors(settings, prompt.ids[:shared])
        detokenizer = self.tokenizer.detokenizer
        detokenizer.reset()
        if self._continuing and hasattr(detokenizer, "_maybe_trim_space"):
            detokenizer.text = " "
            detokenizer.offset = 1
        steps = generate_step(
            mx.array(new_ids),
            self._lm,
            max_tokens=max_tokens,
            sampler=sampler,
            logits_processors=processors,
            prompt_cache=self._live.caches,
            prefill_step_size=max(1, settings.prefill_step_size),
            prompt_progress_callback=on_prefill,
            input_embeddings=embeddings,
            kv_bits=settings.kv_bits,
            kv_group_size=settings.kv_group_size,
            quantized_kv_start=0,
        )
        reason = "length"
        try:
            for token, _logprobs in steps:
                now = time.perf_counter()
                if state["first"] is None:
                    state["first"] = now
                generated.append(token)
                if token in self.eos_ids:
                    reason = "stop"
                    break
                detokenizer.add_token(token)
                first = state["first"]
                ttft = first - start_time
                yield GenerationStep(
                    text=detokenizer.last_segment,
                    token=int(token),  # already an int (y.item()); mlx-lm annotates mx.array
                    prompt_tokens=len(new_ids),
                    cached_tokens=shared,
                    generation_tokens=len(generated),
                    ttft_s=ttft,
                    prompt_tps=len(new_ids) / ttft if ttft > 0 else 0.0,
                    generation_tps=(len(generated) - 1) / (now - first) if now > first else 0.0,
                    peak_memory_gb=mx.get_peak_memory() / 1e9,
                )
                if cancel.is_set():
                    reason = "cancelled"
                    break
        finally:
            steps.close()
        detokenizer.finalize()
        final = self._final(blank, reason, None, prompt, generated, state, start_time)
        yield replace(final, text=detokenizer.last_segment)


def snapshot_of(live: LiveCache) -> CacheSnapshot | None:
    """A copy of ``live`` and its keys (None when it holds nothing, or disagrees with its keys);
    later turns do not change it, so it can be written to disk while the engine answers on."""
    if not live.caches or not live.keys:
        return None
    if {c.offset for c in live.caches} != {len(live.keys)}:
        return None
    return CacheSnapshot(portable_layers(live.caches), tuple(live.keys), live.kv)
