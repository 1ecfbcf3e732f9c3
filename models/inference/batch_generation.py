"""Continuous batching: many answers advanced together, one token (or prefill chunk) a step.

``Batch.step()`` runs one forward pass (``models.inference.batch_forward``) over every active
``Sequence``: one token for each sequence that decodes, and one prefill chunk (at most
``prefill_step_size`` tokens) for the sequence whose prompt is next in line, so a newcomer's
prompt is read between the others' tokens instead of after their answers. Sequences join with
``add`` at any step and leave when they finish; each keeps its own KV cache (a value it was given:
a list of per-layer caches), offsets, sampler, seed, detokenizer and limits. Steps are pipelined
as in mlx-lm's ``generate_step``: the next step is queued on the device (``mx.async_eval``)
before the previous step's tokens are read back, so building the graph overlaps the device's
work.

A sequence with a ``constraint`` (a ``models.inference.constraints.Matcher``) samples only what
its grammar allows: once its last token is read and fed to the matcher, the next mask is computed
on the CPU while the device runs the step's forward pass, then its token is sampled under it and
fed back next step like any other (one step ahead too); a complete grammar ends it with "stop".
Sequences without one take exactly the path they took before.

Each step returns ``(sequence, GenerationStep)`` pairs: a sequence's tokens in order and, last, a
step with its ``finish_reason`` ("stop", "length", "cancelled", "error"). A sequence's cancel
``Event`` is checked every step: a cancelled prefill stops within one chunk, a cancelled answer
within one token. When a sequence ends its cache holds exactly ``keys`` (the prompt's keys, then
the tokens fed back), trimmed if the pipeline ran one token ahead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.inference.batch_forward import Segment, forward
from models.inference.generation_types import GenerationSettings, GenerationStep
from models.inference.prompt import EncodedPrompt
from models.inference.tokenizer_guard import TokenizerFailure, tokenizer_call


@dataclass
class LiveCache:
    """A conversation's KV cache: per-layer caches, the key of each position they hold (token
    id, or (id, image hash, n)), and the KV quantization ``(bits, group size)`` or None."""

    caches: list
    keys: list = field(default_factory=list)
    kv: tuple[int, int] | None = None

    @property
    def tokens(self) -> int:
        return len(self.keys)


def sampler_for(settings: GenerationSettings, mask) -> Callable[[Any, Any], Any]:
    """``sample(logprobs, key)`` for ``settings``: greedy at temperature 0, else top-p and
    temperature as mlx-lm's ``make_sampler``, drawing with ``key`` (a request's own seed) or the
    global generator (``key`` None); never a banned id (``mask``: -inf on them)."""
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_top_p

    temperature, top_p = float(settings.temperature), float(settings.top_p)

    def sample(logprobs, key):
        if mask is not None:
            logprobs = logprobs + mask
            logprobs = logprobs - mx.logsumexp(logprobs, axis=-1, keepdims=True)
        if temperature == 0:
            return mx.argmax(logprobs, axis=-1)
        if 0 < top_p < 1:
            logprobs = apply_top_p(logprobs, top_p)
        return mx.random.categorical(logprobs * (1 / temperature), key=key)

    return sample


@dataclass(eq=False)
class Sequence:
    """One answer in the batch. ``cache`` already holds ``prompt.keys[:shared]``; the rest of the
    prompt (``ids`` and, for image positions, ``embeddings``) is prefilled, then up to
    ``max_tokens`` tokens are generated."""

    prompt: EncodedPrompt
    settings: GenerationSettings
    cache: LiveCache
    shared: int
    max_tokens: int
    sample: Callable[[Any, Any], Any]
    detokenizer: Any
    eos_ids: frozenset[int]
    cancel: threading.Event = field(default_factory=threading.Event)
    embeddings: Any = None  # (len(prompt.ids) - shared, hidden), or None: ids are embedded
    priority: int = 0  # higher prefills first (the window's own question)
    tag: Any = None  # the caller's: which request this is
    constraint: Any = None  # a constraints.Matcher: only the tokens its grammar allows, or None
    # -- progress ----------------------------------------------------------------------------
    fed: int = 0  # prompt tokens after ``shared`` that went into the cache
    generated: list[int] = field(default_factory=list)
    start_time: float = field(default_factory=time.perf_counter)
    first_time: float | None = None
    finished: GenerationStep | None = None
    _pending: Any = None  # the sampled token the device is computing (an mx.array), not yet read
    _key: Any = None

    def __post_init__(self) -> None:
        if self.settings.seed is not None:
            import mlx.core as mx

            self._key = mx.random.key(int(self.settings.seed))

    @property
    def prefilling(self) -> bool:
        return self.shared + self.fed < len(self.prompt.ids)

    @property
    def prefill_left(self) -> int:
        return len(self.prompt.ids) - self.shared - self.fed

    def _next_key(self):
        if self._key is None:
            return None
        import mlx.core as mx

        self._key, sub = mx.random.split(self._key)
        return sub


class Batch:
    """The sequences being answered together, advanced one ``step`` at a time on one thread."""

    def __init__(self, language_model, kv_quantizer: Callable[[Sequence], None] | None = None):
        self.language_model = language_model
        self.sequences: list[Sequence] = []
        self._quantize = kv_quantizer or quantize_kv
        self._steps = 0

    def add(self, sequence: Sequence) -> None:
        self.sequences.append(sequence)

    @property
    def active(self) -> bool:
        return bool(self.sequences)

    @property
    def decoding(self) -> int:
        return sum(1 for s in self.sequences if not s.prefilling)

    def step(self) -> list[tuple[Sequence, GenerationStep]]:
        """Advance every sequence by one token or prefill chunk; return what they produced."""
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        events: list[tuple[Sequence, GenerationStep]] = []
        for seq in list(self.sequences):
            if seq.cancel.is_set():
                self._finish(seq, "cancelled", events)
            elif seq.max_tokens == 0 and not seq.prefilling:
                self._finish(seq, "length", events)

        segments: list[Segment] = []
        members: list[Sequence] = []
        reading: list[tuple[Sequence, Any]] = []  # tokens of the last step, read after this one
        held: list[tuple[Sequence, Any]] = []  # constrained sequences' logprobs, sampled below
        prefill = self._next_prefill()
        for seq in self.sequences:
            if seq._pending is not None:
                # Fed back even when it is the last one wanted, so the cache holds the whole
                # answer for the next turn (as mlx-lm's generate_step does).
                reading.append((seq, seq._pending))
                segments.append(Segment(seq.cache.caches, ids=seq._pending.reshape(1)))
                members.append(seq)
                seq._pending = None
            elif seq is prefill:
                segments.append(self._prefill_segment(seq))
                members.append(seq)

        if segments:
            try:
                with mx.stream(generation_stream):
                    logits = forward(self.language_model, segments)
                    sampled = self._sample(members, segments, logits, held)
                    for seq in members:
                        self._quantize(seq)
                    chunks = [s for s, seg in zip(members, segments, strict=True) if not seg.wants_logits]
                    mx.async_eval(
                        [t for t in sampled if t is not None]
                        + [logprobs for _, logprobs in held]
                        + [[c.keys, c.values] for seq in chunks for c in seq.cache.caches]
                    )
            except Exception as exc:  # noqa: BLE001 - a failed step ends the answers in it
                for seq in members:
                    seq.cache.caches = []  # what the failed step left cannot be trusted
                for seq in {id(s): s for s, _ in reading + [(m, None) for m in members]}.values():
                    self._finish(seq, "error", events, f"Generation failed: {exc}")
                return events
            for seq, token in zip(members, sampled, strict=True):
                if token is not None:
                    seq._pending = token

        for seq, token in reading:
            if seq.finished is None:
                self._deliver(seq, int(token.item()), events)
        if held:
            self._sample_constrained(held, events)
        self._steps += 1
        if any(not seg.wants_logits or seg.length > 1 for seg in segments) or self._steps % 256 == 0:
            mx.clear_cache()
        return events

    # -- parts of a step -------------------------------------------------------------------------

    def _next_prefill(self) -> Sequence | None:
        waiting = [s for s in self.sequences if s.prefilling and s._pending is None]
        if not waiting:
            return None
        return max(waiting, key=lambda s: (s.priority, -s.start_time))

    @staticmethod
    def _prefill_segment(seq: Sequence) -> Segment:
        """The next piece of the prompt: chunks of ``prefill_step_size`` while more than one
        token is left, then the last token, whose logits give the first answer token (as
        mlx-lm's ``generate_step`` and a pipeline across a cluster prefill, so their answers and
        this one's are the same computation)."""
        import mlx.core as mx

        size = max(1, int(seq.settings.prefill_step_size))
        total = len(seq.prompt.ids) - seq.shared
        begin = seq.fed
        end = min(begin + size, total - 1) if total - begin > 1 else total
        seq.fed = end
        last = end == total
        if seq.embeddings is not None:
            return Segment(seq.cache.caches, embeddings=seq.embeddings[begin:end], wants_logits=last)
        ids = mx.array(seq.prompt.ids[seq.shared + begin : seq.shared + end])
        return Segment(seq.cache.caches, ids=ids, wants_logits=last)

    @staticmethod
    def _sample(members: list[Sequence], segments: list[Segment], logits, held: list) -> list:
        """Each member's next token (None for a prefill chunk); a constrained member's
        logprobs go to ``held`` instead, to be sampled once its mask is known."""
        import mlx.core as mx

        out: list = []
        row = 0
        for seq, seg in zip(members, segments, strict=True):
            if not seg.wants_logits:
                out.append(None)
                continue
            line = logits[row : row + 1]
            row += 1
            logprobs = line - mx.logsumexp(line, axis=-1, keepdims=True)
            if seq.constraint is not None:
                held.append((seq, logprobs))
                out.append(None)
                continue
            out.append(seq.sample(logprobs, seq._next_key())[0])
        return out

    def _sample_constrained(self, held: list, events: list) -> None:
        """Sample the constrained sequences' tokens under their grammars' masks. Their last
        tokens were read and fed to their matchers just before, so each mask is computed on the
        CPU while the device runs this step's forward pass; the token then goes on in the next
        step as any other, the pipeline kept."""
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        tokens = []
        for seq, logprobs in held:
            if seq.finished is not None:
                continue
            try:
                allowed = seq.constraint.mask()
                with mx.stream(generation_stream):
                    masked = mx.where(allowed, logprobs, -mx.inf)
                    seq._pending = seq.sample(masked, seq._next_key())[0]
            except Exception as exc:  # noqa: BLE001 - a grammar that cannot go on ends its answer
                self._finish(seq, "error", events, f"Structured output failed: {exc}")
                continue
            tokens.append(seq._pending)
        if tokens:
            mx.async_eval(tokens)

    def _deliver(self, seq: Sequence, token: int, events: list) -> None:
        now = time.perf_counter()
        if seq.first_time is None:
            seq.first_time = now
        seq.generated.append(token)
        if token in seq.eos_ids:
            self._finish(seq, "stop", events)
            return
        try:
            with tokenizer_call("decoding the answer"):
                seq.detokenizer.add_token(token)
                text = seq.detokenizer.last_segment
        except TokenizerFailure as exc:
            self._finish(seq, "error", events, f"Generation failed: {exc}")
            return
        events.append((seq, self._progress(seq, text, token, now)))
        if seq.constraint is not None and not self._advance(seq, token, events):
            return
        if len(seq.generated) >= seq.max_tokens:
            self._finish(seq, "length", events)
        elif seq.cancel.is_set():
            self._finish(seq, "cancelled", events)

    def _advance(self, seq: Sequence, token: int, events: list) -> bool:
        """Feed ``token`` to the sequence's grammar; False when that ended the answer: "stop"
        when the grammar is complete, "error" when it refused the token."""
        try:
            seq.constraint.advance(token)
        except Exception as exc:  # noqa: BLE001 - a grammar that cannot go on ends its answer
            self._finish(seq, "error", events, f"Structured output failed: {exc}")
            return False
        if seq.constraint.done:
            self._finish(seq, "stop", events)
            return False
        return True

    @staticmethod
    def _progress(seq: Sequence, text: str, token: int | None, now: float) -> GenerationStep:
        import mlx.core as mx

        first = seq.first_time
        ttft = (first or now) - seq.start_time
        n = len(seq.generated)
        prefilled = len(seq.prompt.ids) - seq.shared
        return GenerationStep(
            text=text,
            token=token,
            prompt_tokens=prefilled,
            cached_tokens=seq.shared,
            generation_tokens=n,
            ttft_s=ttft,
            prompt_tps=prefilled / ttft if ttft > 0 else 0.0,
            generation_tps=(n - 1) / (now - first) if first and n > 1 and now > first else 0.0,
            peak_memory_gb=mx.get_peak_memory() / 1e9,
        )

    def _finish(self, seq: Sequence, reason: str, events: list, error: str | None = None) -> None:
        if seq.finished is not None:
            return
        seq._pending = None
        text = ""
        if reason != "error":
            try:
                with tokenizer_call("decoding the answer"):
                    seq.detokenizer.finalize()
                    text = seq.detokenizer.last_segment
            except TokenizerFailure as exc:
                reason, error = "error", f"Generation failed: {exc}"
        settle(seq)
        step = self._progress(seq, text, None, time.perf_counter())
        from dataclasses import replace

        final = replace(
            step,
            finish_reason=reason,
            error=error,
            token_ids=tuple(t for t in seq.generated if t not in seq.eos_ids),
            prompt_token_ids=tuple(seq.prompt.ids),
        )
        seq.finished = final
        if seq in self.sequences:
            self.sequences.remove(seq)
        events.append((seq, final))


def settle(seq: Sequence) -> None:
    """Make the sequence's cache record what it holds: the prompt's keys up to what was fed, then
    the generated tokens fed back; a cache that disagrees with its keys is emptied."""
    cache = seq.cache
    if not cache.caches:
        cache.keys = []
        return
    fed_prompt = seq.shared + seq.fed
    keys = list(seq.prompt.keys[:fed_prompt])
    if fed_prompt == len(seq.prompt.ids):
        keys += seq.generated
    offset = cache.caches[0].offset
    if not isinstance(offset, int) or any(c.offset != offset for c in cache.caches):
        cache.caches, cache.keys = [], []
        return
    if offset > len(keys):  # the pipeline fed a token that was never read: take it back out
        excess = offset - len(keys)
        if any(c.trim(excess) != excess for c in cache.caches):
            cache.caches, cache.keys = [], []
            return
        offset = len(keys)
    cache.keys = keys[:offset]


def quantize_kv(seq: Sequence) -> None:
    """Quantize the sequence's global-layer caches when its settings ask (as mlx-lm's
    ``maybe_quantize_kv_cache`` with ``quantized_kv_start=0``)."""
    bits = seq.settings.kv_bits
    if not bits:
        return
    caches = seq.cache.caches
    for index, c in enumerate(caches):
        if hasattr(c, "to_quantized"):
            caches[index] = c.to_quantized(group_size=seq.settings.kv_group_size, bits=bits)
