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
the tokens fed back), trimmed if the pipeline ran one token ahead. (Over 400 lines because a
step's parts, the sequences' states and their sampling, constrained or not, are one schedule
and read best together.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as PySequence
from dataclasses import dataclass, field
from typing import Any

from models.inference.batch_forward import Segment, forward
from models.inference.generation_types import GenerationSettings, GenerationStep
from models.inference.prompt import EncodedPrompt
from models.inference.settings_spec import REPETITION_CONTEXT
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


def sampler_for(
    settings: GenerationSettings, mask, context: PySequence[int] = ()
) -> Callable[[Any, Any], Any]:
    """``sample(logits, key)`` for ``settings``, as mlx-lm's ``generate_step`` samples: the
    repetition penalty on the logits (``make_repetition_penalty`` over the last
    ``REPETITION_CONTEXT`` tokens: ``context``'s tail, the prompt's, then the tokens this sampler
    drew), log-probabilities, then greedy at temperature 0, else top-p, min-p and temperature as
    ``make_sampler``, drawing with ``key`` (a request's own seed) or the global generator (``key``
    None); never a banned id (``mask``: -inf on them). A filter that is off adds no work."""
    import mlx.core as mx
    from mlx_lm.sample_utils import apply_min_p, apply_top_p, make_repetition_penalty

    temperature, top_p = float(settings.temperature), float(settings.top_p)
    min_p, penalty = float(settings.min_p), float(settings.repetition_penalty)
    penalize = make_repetition_penalty(penalty, REPETITION_CONTEXT) if penalty != 1 else None
    recent = mx.array(list(context[-REPETITION_CONTEXT:]) if penalize else [], dtype=mx.uint32)

    def sample(logits, key):
        nonlocal recent
        if penalize is not None:
            logits = penalize(recent, logits)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if mask is not None:
            logprobs = logprobs + mask
            logprobs = logprobs - mx.logsumexp(logprobs, axis=-1, keepdims=True)
        if temperature == 0:
            token = mx.argmax(logprobs, axis=-1)
        else:
            if 0 < top_p < 1:
                logprobs = apply_top_p(logprobs, top_p)
            if min_p != 0:
                logprobs = apply_min_p(logprobs, min_p)
            token = mx.random.categorical(logprobs * (1 / temperature), key=key)
        if penalize is not None:  # lazily: the token is not read back here
            recent = mx.concatenate([recent, token.astype(mx.uint32)])[-REPETITION_CONTEXT:]
        return token

    return sample


def repetition_processors(settings: GenerationSettings, cached_ids: PySequence[int]) -> list | None:
    """mlx-lm ``generate_step``'s ``logits_processors`` for ``settings``: the repetition penalty
    as ``sampler_for`` applies it (``make_logits_processors``, the last ``REPETITION_CONTEXT``
    tokens), with the tail of ``cached_ids`` (the prompt the KV cache held, which
    ``generate_step`` never sees) before the tokens it feeds; None when the penalty is off."""
    if float(settings.repetition_penalty) == 1:
        return None
    import mlx.core as mx
    from mlx_lm.sample_utils import make_logits_processors

    (penalize,) = make_logits_processors(
        repetition_penalty=float(settings.repetition_penalty), repetition_context_size=REPETITION_CONTEXT
    )
    tail = list(cached_ids[-REPETITION_CONTEXT:])
    if not tail:
        return [penalize]
    before = mx.array(tail, dtype=mx.uint32)

    def with_cached_tail(tokens, logits):
        return penalize(mx.concatenate([before, tokens.astype(mx.uint32)]), logits)

    return [with_cached_tail]


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
    sample: Callable[[Any, Any], Any]  # (logits, key) -> token: ``sampler_for``
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
        if prefill is not None:  # after the decoding ones, which go through attention together
            segments.append(self._prefill_segment(prefill))
            members.append(prefill)

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
            embeddings = seq.embeddings[begin:end]
            if last:
                seq.embeddings = None  # the image features are in the cache now
            return Segment(seq.cache.caches, embeddings=embeddings, wants_logits=last)
        ids = mx.array(seq.prompt.ids[seq.shared + begin : seq.shared + end])
        return Segment(seq.cache.caches, ids=ids, wants_logits=last)

    @staticmethod
    def _sample(members: list[Sequence], segments: list[Segment], logits, held: list) -> list:
        """Each member's next token (None for a prefill chunk); a constrained member's
        logits go to ``held`` instead, to be sampled once its mask is known."""
        out: list = []
        row = 0
        for seq, seg in zip(members, segments, strict=True):
            if not seg.wants_logits:
                out.append(None)
                continue
            line = logits[row : row + 1]
            row += 1
            if seq.constraint is not None:
                held.append((seq, line))
                out.append(None)
                continue
            out.append(seq.sample(line, seq._next_key())[0])
        return out

    def _sample_constrained(self, held: list, events: list) -> None:
        """Sample the constrained sequences' tokens under their grammars' masks. Their last
        tokens were read and fed to their matchers just before, so each mask is computed on the
        CPU while the device runs this step's forward pass; the token then goes on in the next
        step as any other, the pipeline kept."""
        import mlx.core as mx
        from mlx_lm.generate import generation_stream

        tokens = []
        for seq, logits in held:
            if seq.finished is not None:
                continue
            try:
                allowed = seq.constraint.mask()
                with mx.stream(generation_stream):
                    masked = mx.where(allowed, logits, -mx.inf)  # ``sample`` normalizes
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
