"""Memory planner: what a Llama 4 checkpoint needs, and whether it fits, before it is loaded.

Everything here is arithmetic on a checkpoint's ``config.json`` and its safetensors headers (no
weights are read, MLX is not imported), so the model manager can say "fits", "tight" or "won't
fit" next to a model that is not even downloaded.

The model of memory, for mlx-vlm 0.7.10's Llama 4 run by mlx-lm's ``generate_step``:

``peak = weights + KV cache + prefill transient``

**Weights** are the sum of the tensor sizes in the safetensors headers (exact, any
quantization layout); without safetensors they are estimated from the config and its
``quantization`` block the way mlx-vlm's converter lays them out (every language-model linear
and embedding quantized, router included; vision tower and projector in bf16).

**KV cache**, with Llama 4's layout. Three of every four layers use chunked attention and keep
only the current ``attention_chunk_size`` chunk's tokens (``models.inference.chunk_cache``: at most
a chunk, plus the tokens being added; the planner counts that most);
every fourth layer is global (NoPE) and its ``KVCache`` grows with the whole context. Buffers
grow in steps of 256 tokens. KV quantization (``kv_bits``) goes through mlx-lm's
``maybe_quantize_kv_cache``, which calls ``to_quantized`` on each cache that has it: mlx-vlm's
``KVCache`` does, its ``ChunkedKVCache`` does not. So only the global layers' caches are
quantized (``bits/8`` bytes per element plus a scale and a bias per group of 64), the chunked
layers stay at the activation dtype, and that is what this planner counts. Since the chunked
part is bounded, only the global layers' cost grows with the context: that marginal figure is
``kv_bytes_per_token``.

**Prefill transient.** ``generate_step`` prefills the prompt in chunks of ``prefill_step``
tokens; each chunk runs the whole network on ``L`` new tokens attending to ``K`` cached ones
(``K <= chunk + L`` for the chunked layers, the whole context for the global ones). Only the
caches are evaluated, so the last layer's attention and MLP, and the logits, never run in a
prefill chunk. What a chunk allocates beyond weights and cache is modelled by four terms, each
from what mlx-vlm and MLX do, op by op:

1. *Activations*: ``layers_in_flight x (bytes per token of one layer's intermediates) x L``.
   One layer's intermediates, counted from mlx-vlm's code: the norms, q/k/v with their RoPE
   and QK-norm copies, the attention output and its transposed copy, ``o_proj`` and the
   residuals; in an MoE layer the router input, the expert-sorted copy of the tokens, the
   routed expert's gate/up/SiLU/product (``gather_qmm`` computes only the chosen expert per
   token: ``L x intermediate``, never ``L x experts x intermediate``), the shared expert's,
   the down projections and the unsort; in a dense layer its MLP. For Scout that is 336 KB per
   token at bf16. MLX frees a buffer only when the work that used it has completed, and it
   encodes ahead of the device, so on a GPU the buffers of many layers are alive at once.
2. *Attention scores*: ``score_copies x heads x L x K`` elements for attention that is not
   fused. MLX's fused kernels never materialise scores; the global layers pass the string
   ``"causal"`` (fused by cuDNN on CUDA), the chunked layers a boolean mask array, and
   quantized caches go through mlx-vlm's explicit ``quantized_scaled_dot_product_attention``
   (``quantized_matmul``, ``where``, ``softmax``: three score-sized arrays per layer, over the
   whole context). On the CPU every path materialises one copy at a time.
3. *Cache growth*: each chunk extends every layer's cache by concatenation into a new buffer;
   the old buffers of the layers in flight are held until their work completes, and the
   largest layer's copy exists at least briefly.
4. *Masks* (the chunk mask, ``L x K`` booleans; the causal mask of quantized attention) and the
   last token's float32 logits.

So the transient grows with the chunk size ``L`` far more than with the context: every term
scales with ``L``, while ``K`` is capped at ``chunk + L`` for three layers in four and the
global layers' attention is fused. In the Scout-shaped reference (CUDA), going from 8,192 to
24,576 tokens at a 512-token chunk raised the peak by 1.8 GB, 0.8 GB of it the cache itself;
going from a 512- to a 2,048-token chunk at 8,192 tokens raised it by 8 GB.

What cannot be read from the code is how many buffers the backend's scheduler keeps alive:
``layers_in_flight`` and ``score_copies``. These are measured numbers, per backend:
``CPU_PROFILE`` from ``bench/bench_memory.py`` on synthesized checkpoints (1.15 layers'
intermediates in bf16, 0.65 of a layer's in float32; one score array), ``GPU_PROFILE`` from
the Scout-shaped reference measured with MLX 0.32.4's CUDA backend on an 80 GB GPU (14.7 layers
in flight; 8.4 score-sized arrays, i.e. about three layers' unfused attention).

**Safety term (GPU).** Those two constants were fitted to the reference table for accuracy,
which left the plan on both sides of it: up to 5.6 % short at 256- and 512-token chunks, 3-5.5 %
over at 2,048-token chunks. Out of sample (MLX 0.32.4 CUDA on an H200, the same Scout shape
with its vision tower's weights loaded, 8K to 96K tokens) it was again 3-5.5 % short at
512-token chunks. A plan that is short ends in an out-of-memory error near the edge of the
budget, so the GPU profile adds what the op-by-op count misses, shaped like the shortfall: 1.35
GB at 2,048 tokens of context, 3.3-4.1 GB from 8K to 32K tokens (2.4 GB at 96K, where the
cache-growth term below already counts more), i.e. it grew with the chunked layers' attention
span (``min(cached, chunk) + L``) and stopped there. That is what extra copies of the chunked
layers' caches at that span do: mlx-vlm's ``ChunkedKVCache.update_and_fetch`` grows a cache by
concatenating a zero block into a new buffer and then writes the chunk into it. So the profile
counts ``chunked_cache_copies`` = 3 such copies, plus a fixed 1.1 GB: the smallest such terms
that put every measured point, old and new (13 in all), at 1.01 x or more of its measurement
(1 % for run-to-run variation); the worst over-estimate is 1.11 x, at 2,048-token chunks. The
suite holds the planner to all 13 (tests/models/memory/test_planner.py). Beyond 98,304 tokens
nothing was measured: larger contexts are extrapolated. There the plan's cache-growth term
(3. above) grows with the whole cache while the measured working memory did not grow from 32K
to 96K tokens, so the extrapolation should err on the safe side, but it is not a measurement.

Metal uses the GPU profile until it is measured: it too releases buffers when a command
buffer completes, and if its masked attention is fused the profile errs on the safe side. On
a Mac, each answer's measured peak corrects the plan (``models.memory.measured_peaks``): the plan is
scaled by the worst measured/planned ratio seen for that model, KV precision and backend.

One consequence worth knowing: with a quantized KV cache the global layers' attention is no
longer fused, so its scores grow with the whole context. A quantized cache saves memory while
decoding, but prefilling a long context then needs small chunks (``choose_prefill_step``).

The **vision tower** runs before the prefill, on all tiles of an image as one batch: its working
memory per tile is counted the same way (577 tokens per 336-px tile, 34 layers' activations).

Public API (no Qt, no MLX):

- ``plan_model(path, kv_bits, backend)`` (a checkpoint folder, or a folder or file with just a
  ``config.json``) / ``plan_from_config(config, ...)`` -> ``MemoryPlan``; ``scout_config(bits)``,
  ``maverick_config(bits)``, ``catalog_config(repo_id)`` for models not downloaded.
- ``MemoryPlan``: ``weights`` (``WeightBytes``), ``kv_bytes_per_token`` (beyond the chunk),
  ``kv_bytes_per_token_within_chunk``, ``kv_cache_bytes(tokens)``,
  ``prefill_transient_bytes(step, cached)``, ``prefill_peak_bytes(prompt, step)`` (the exact
  ``generate_step`` schedule), ``peak_bytes(context, step)`` (a conversation reaching
  ``context``, worst chunk alignment), ``max_context(budget, step=None)``,
  ``vision_bytes_per_tile()``, ``image_peak_bytes(tiles, cached)``, ``fit(context, budget)``
  -> ``FitReport`` (verdict ``fits``/``tight``/``wont_fit``, the numbers, ``summary``);
  ``peak_scale``, the correction learned from measured peaks (``models.memory.measured_peaks``);
  ``pipeline_stage``, a plan for one rank's slice of the layers (``models.memory.cluster_plan``):
  every layer's output is used there, and no more layers are in flight than the slice has.
- ``choose_prefill_step(plan, context, budget)``; ``conversation_budget_check(plan,
  tokens_so_far, next_turn_tokens, budget, ...)`` -> ``TurnCheck``.
- Budgets come from ``models.memory.budget.detect_budget()``; ``models.memory.model_plans``
  gives every caller the same budget and plan.

Long because the measurements behind every constant are recorded here, beside the arithmetic
they calibrate (``MemoryPlan``), which reads best whole. The checkpoint's shape
(``model_layout``), weight bytes (``weight_bytes``), backend profiles (``backend_profiles``) and
the catalog's configs (``catalog_configs``) are modules of their own, re-exported here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from models.byte_sizes import format_memory
from models.memory.backend_profiles import CPU_PROFILE, GPU_PROFILE, PROFILES, BackendProfile
from models.memory.catalog_configs import catalog_config, maverick_config, scout_config
from models.memory.model_layout import ModelLayout, PlanError, VisionLayout, layout_from_config
from models.memory.weight_bytes import (
    WeightBytes,
    estimate_weights,
    weights_from_safetensors,
)
from models.regular_files import InputFileError, read_regular_file

GB = 1_000_000_000
KV_STEP = 256  # mlx-vlm's KVCache / ChunkedKVCache / QuantizedKVCache grow in steps of 256 tokens
PREFILL_STEPS = (2048, 1024, 512, 256, 128, 64)  # mlx-engine uses 2048 down to 512
TIGHT_MARGIN = 0.10  # "tight" when the peak uses more than 90 % of the budget

Verdict = Literal["fits", "tight", "wont_fit"]


# -- the plan --------------------------------------------------------------------------------------------


KV_CACHE_CHOICES = (16, 8, 4)  # the KV precisions offered; 16 is the unquantized cache


def kv_cache_bits(bits: int | None) -> int | None:
    """The ``kv_bits`` for a chosen KV precision: None (the unquantized cache) for 16, or for no
    choice; else the bits that quantize the global layers' caches."""
    return None if not bits or bits >= 16 else int(bits)


def kv_element_bytes(kv_bits: int | None, activation_bytes: int, group: int = 64) -> float:
    """Bytes per cached element: the activation dtype, or packed bits plus a scale and bias per group."""
    kv_bits = kv_cache_bits(kv_bits)
    if kv_bits is None:
        return float(activation_bytes)
    return kv_bits / 8 + 2 * activation_bytes / group


def _round_up(n: int, step: int = KV_STEP) -> int:
    return -(-n // step) * step


@dataclass(frozen=True)
class FitReport:
    """Whether a model fits a memory budget at a context length, with the numbers behind it."""

    verdict: Verdict
    context: int
    weights_bytes: int
    kv_bytes: int  # the KV cache holding ``context`` tokens
    kv_bytes_per_token: float  # marginal, beyond the chunk (global layers only)
    transient_bytes: int  # prefill working memory at ``prefill_step``
    peak_bytes: int
    budget_bytes: int
    max_context: int  # the largest context that fits, lowering the prefill chunk (0: not even the weights)
    max_context_prefill_step: int  # the prefill chunk that context needs
    prefill_step: int
    kv_bits: int | None
    summary: str

    @property
    def fits(self) -> bool:
        return self.verdict != "wont_fit"

    @property
    def headroom_bytes(self) -> int:
        return self.budget_bytes - self.peak_bytes


@dataclass(frozen=True)
class TurnCheck:
    """Whether the next turn of a conversation stays in budget (``conversation_budget_check``)."""

    verdict: Verdict
    peak_bytes: int
    budget_bytes: int
    tokens_after_turn: int
    tokens_left: int  # how many more tokens the conversation can grow by (lowering the prefill chunk)
    prefill_step: int
    message: str

    @property
    def ok(self) -> bool:
        return self.verdict != "wont_fit"


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}K"
    return f"{n:,}"


def fit_verdict(peak: int, budget: int) -> Verdict:
    """The one fit rule: over the budget won't fit; within ``TIGHT_MARGIN`` of it is tight."""
    if peak > budget:
        return "wont_fit"
    return "tight" if peak > budget * (1 - TIGHT_MARGIN) else "fits"


@dataclass(frozen=True)
class MemoryPlan:
    """A checkpoint's memory model at a KV precision on a backend; every method is arithmetic."""

    layout: ModelLayout
    weights: WeightBytes
    kv_bits: int | None = None  # None (or 16): the activation dtype
    kv_group: int = 64
    profile: BackendProfile = GPU_PROFILE
    activation_bytes: int = 2
    peak_scale: float = 1.0  # measured/planned correction learned on this machine (>= 1)
    pipeline_stage: bool = False  # one rank's layers of a pipeline: every layer's output is used

    # -- KV cache ---------------------------------------------------------------------------------

    @property
    def _global_kv_element(self) -> float:
        return kv_element_bytes(self.kv_bits, self.activation_bytes, self.kv_group)

    @property
    def kv_bytes_per_token(self) -> float:
        """What one more token of context costs once past the chunk: the global layers' K and V."""
        return self.layout.global_layers * 2 * self.layout.kv_dim * self._global_kv_element

    @property
    def kv_bytes_per_token_within_chunk(self) -> float:
        """What a token costs while the context is shorter than the chunk (every layer grows)."""
        chunked = self.layout.chunked_layers * 2 * self.layout.kv_dim * self.activation_bytes
        return chunked + self.kv_bytes_per_token

    def kv_cache_held_bytes(self, tokens: int, adding: int = 1) -> int:
        """The caches' allocated bytes right after ``tokens`` tokens, the last ``adding`` just
        added: the chunked-attention layers hold only the current chunk's tokens (what attention
        can read, ``models.inference.chunk_cache``), so this falls back at each chunk boundary."""
        if tokens <= 0:
            return 0
        s = self.layout
        per_token_layer = 2 * s.kv_dim
        glob = _round_up(tokens) * per_token_layer * self._global_kv_element * s.global_layers
        before = tokens - adding
        chunked_tokens = _round_up(tokens - (before // s.chunk) * s.chunk)
        chunked = chunked_tokens * per_token_layer * self.activation_bytes * s.chunked_layers
        return int(glob + chunked)

    def kv_cache_bytes(self, tokens: int, adding: int = 1) -> int:
        """The most the caches allocate on the way to ``tokens`` tokens (the last ``adding`` just
        added), which is what must fit: the global layers' whole context and, for the chunked
        layers, a full chunk once the context has reached one (held at a chunk's last token)."""
        if tokens <= 0:
            return 0
        s = self.layout
        per_token_layer = 2 * s.kv_dim
        glob = _round_up(tokens) * per_token_layer * self._global_kv_element * s.global_layers
        before = tokens - adding
        if before <= s.chunk:
            chunked_tokens = _round_up(tokens)
        else:  # trimmed to the chunk before the new tokens were appended
            chunked_tokens = s.chunk + _round_up(adding)
        chunked = chunked_tokens * per_token_layer * self.activation_bytes * s.chunked_layers
        return int(glob + chunked)

    # -- prefill ------------------------------------------------------------------------------------

    def _layer_activation_elements(self, moe: bool) -> int:
        """Elements per token of one (MoE or dense) layer's intermediates (counted op by op, see
        the docstring)."""
        s = self.layout
        attn = 4 * s.hidden + 5 * s.q_dim + 4 * s.kv_dim
        if moe:
            ffn = 7 * s.hidden + 5 * s.expert_intermediate * s.experts_per_token + 5 * s.expert_intermediate
        else:
            ffn = 2 * s.hidden + 5 * s.dense_intermediate
        return attn + ffn

    def activation_bytes_per_token(self) -> int:
        """Bytes per prefill token of the largest layer's intermediates (of the kinds of layer
        this layout has: MoE, dense or both)."""
        s = self.layout
        kinds = [moe for moe, count in ((True, s.moe_layers), (False, s.layers - s.moe_layers)) if count]
        elements = max(self._layer_activation_elements(moe) for moe in kinds)
        return elements * self.activation_bytes

    @property
    def _layers_in_flight(self) -> float:
        p = self.profile
        if self.activation_bytes == 4 and p.float32_layers_in_flight is not None:
            return p.float32_layers_in_flight
        return p.layers_in_flight

    @property
    def _decoder_layers_in_flight(self) -> float:
        """Decoder layers whose intermediates are alive at a prefill chunk's peak: a rank of a
        pipeline finishes each chunk before sending it on, so no more than its own layers."""
        if self.pipeline_stage:
            return min(self._layers_in_flight, self.layout.layers)
        return self._layers_in_flight

    def prefill_transient_bytes(self, step: int, cached: int) -> int:
        """Working memory of one prefill chunk of ``step`` tokens after ``cached`` cached ones."""
        s, p = self.layout, self.profile
        L = max(1, step)
        k_chunked = min(cached, s.chunk) + L
        k_global = cached + L
        act = self._decoder_layers_in_flight * self.activation_bytes_per_token() * L
        # Attention scores: the largest non-fused attention (the last layer's never runs in a
        # prefill chunk on one machine: only the cache it writes is evaluated, not its output; a
        # rank of a pipeline sends on, or takes the logits of, its last layer's output).
        score_elems = 0
        if not p.fused_masked and s.chunked_layers:
            score_elems = s.heads * L * k_chunked
        running = s.layers if self.pipeline_stage else s.layers - 1
        globals_running = s.global_layers_among(running)
        quantized_global = kv_cache_bits(self.kv_bits) is not None and cached > 0
        if globals_running > 0 and (quantized_global or not p.fused_causal):
            score_elems = max(score_elems, s.heads * L * k_global)
        scores = p.score_copies * score_elems * self.activation_bytes
        mask = L * k_chunked + (L * k_global if quantized_global else 0)  # boolean masks
        # Cache growth: each layer's cache is copied into a larger buffer; the old buffers of the
        # layers in flight are held until their work completes.
        before = self.kv_cache_bytes(cached, adding=min(cached, L)) if cached else 0
        largest_layer: float = 0
        if cached:
            largest_layer = _round_up(cached) * 2 * s.kv_dim * self._global_kv_element
        regrow = min(1.0, self._decoder_layers_in_flight / s.layers) * before + largest_layer
        logits = 3 * s.vocab * 4  # the last token's float32 logits, log-probabilities, sample
        # The safety term (see the module docstring): copies of the chunked layers' caches at
        # the chunk's attention span, which is how the measured shortfall grew with the context.
        chunked_copies = (
            p.chunked_cache_copies
            * s.chunked_layers
            * 2
            * s.kv_dim
            * self.activation_bytes
            * _round_up(k_chunked)
        )
        return int(act + scores + mask + regrow + logits + chunked_copies + p.fixed_bytes)

    def _step_peak(self, step: int, end: int) -> int:
        """Peak of a prefill chunk of ``step`` tokens ending at position ``end``."""
        L = max(1, min(step, end))
        cached = end - L
        return self._scaled(
            self.weights.total + self.kv_cache_bytes(end, adding=L) + self.prefill_transient_bytes(L, cached)
        )

    def _scaled(self, peak: float) -> int:
        """A planned peak times the correction learned from measured peaks (never below 1)."""
        return int(peak * max(1.0, self.peak_scale))

    def prefill_peak_bytes(self, prompt_tokens: int, prefill_step: int = 512) -> int:
        """Peak of prefilling a ``prompt_tokens`` prompt into an empty cache, chunk by chunk as
        mlx-lm's ``generate_step`` does (chunks of the step while more than one token remains,
        then the last token), and of the first decoded token."""
        peak, done, remaining = 0, 0, max(1, int(prompt_tokens))
        schedule = []
        while remaining > 1:
            n = min(prefill_step, remaining - 1)
            schedule.append((n, done + n))
            done, remaining = done + n, remaining - n
        schedule += [(1, done + 1), (1, done + 2)]
        seen = set()
        for n, end in reversed(schedule):  # only the last chunk of each size can be the largest
            if n in seen and n != 1:
                continue
            seen.add(n)
            peak = max(peak, self._step_peak(n, end))
        return peak

    def peak_bytes(self, context: int, prefill_step: int = 512) -> int:
        """Peak memory of a conversation reaching ``context`` tokens, prefilled ``prefill_step`` at a time.

        The worst chunk is a full one ending at the end of the context (in a conversation chunks
        do not start at multiples of the step); decoding afterwards needs less.
        """
        context = max(1, int(context))
        decode = self._scaled(
            self.weights.total + self.kv_cache_bytes(context) + self.prefill_transient_bytes(1, context - 1)
        )
        return max(self._step_peak(prefill_step, context), decode)

    def batch_peak_bytes(self, contexts: list[int] | tuple[int, ...], prefill_step: int = 512) -> int:
        """Peak memory of answers running at once (continuous batching), each reaching its
        ``contexts`` tokens: the weights once, every answer's own KV cache, and the working memory
        of one step (the engine host prefills one chunk a step, beside one token of each other
        answer), counted at the longest answer's."""
        if not contexts:
            return self._scaled(self.weights.total)
        longest = max(max(1, int(n)) for n in contexts)
        others = sum(self.kv_cache_bytes(max(1, int(n))) for n in contexts) - self.kv_cache_bytes(longest)
        return self.peak_bytes(longest, prefill_step) + self._scaled(others)

    def max_parallel(self, context: int, budget_bytes: int, prefill_step: int = 512, most: int = 16) -> int:
        """How many answers of ``context`` tokens each fit ``budget_bytes`` at once (0: not one)."""
        count = 0
        while count < most and self.batch_peak_bytes([context] * (count + 1), prefill_step) <= budget_bytes:
            count += 1
        return count

    def transient_bytes(self, context: int, prefill_step: int = 512) -> int:
        return self.peak_bytes(context, prefill_step) - self.weights.total - self.kv_cache_bytes(context)

    def max_context(self, budget_bytes: int, prefill_step: int | None = None) -> int:
        """The largest context (up to the model's maximum) whose peak fits ``budget_bytes``; 0 if none.

        ``prefill_step`` None: with the prefill chunk lowered as far as ``PREFILL_STEPS`` go.
        """
        if prefill_step is None:
            prefill_step = min(PREFILL_STEPS)
        if self.peak_bytes(1, prefill_step) > budget_bytes:
            return 0
        lo, hi = 1, self.layout.max_context
        if self.peak_bytes(hi, prefill_step) <= budget_bytes:
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.peak_bytes(mid, prefill_step) <= budget_bytes:
                lo = mid
            else:
                hi = mid
        return lo

    # -- images ---------------------------------------------------------------------------------------

    def vision_bytes_per_tile(self) -> int:
        """Working memory of the vision tower per 336-px tile (all tiles of an image run as one batch)."""
        v = self.layout.vision
        if v is None:
            return 0
        tokens = v.tokens_per_tile
        # per token and layer: norms, q/k/v (RoPE in float32 complex: 2x), attention output and
        # its transposed copy, o_proj, residuals, fc1, exact GELU (erf and product), fc2.
        elems = 16 * v.hidden + 4 * v.intermediate
        act = self._layers_in_flight * elems * tokens * self.activation_bytes
        scores = 0 if self.profile.fused_causal else self.profile.score_copies * v.heads * tokens**2 * 4
        projector = tokens // 4 * (v.intermediate + 2 * v.projector_output + self.layout.hidden) * 4
        return int(act + scores + projector)

    def image_peak_bytes(self, tiles: int, cached_tokens: int = 0) -> int:
        """Peak while encoding an image of ``tiles`` tiles with ``cached_tokens`` in the KV cache."""
        vision = tiles * self.vision_bytes_per_tile()
        return self._scaled(self.weights.total + self.kv_cache_bytes(cached_tokens) + vision)

    # -- verdicts -------------------------------------------------------------------------------------

    def fit(self, context: int, budget_bytes: int, prefill_step: int | None = None) -> FitReport:
        """The fit of ``context`` tokens in ``budget_bytes``: verdict, numbers and a summary line.

        ``prefill_step`` None: the largest of ``PREFILL_STEPS`` that keeps the peak in budget
        (the smallest if none does), as ``choose_prefill_step``.
        """
        context = max(1, min(int(context), self.layout.max_context))
        if prefill_step is None:
            prefill_step = choose_prefill_step(self, context, budget_bytes) or min(PREFILL_STEPS)
        peak = self.peak_bytes(context, prefill_step)
        kv = self.kv_cache_bytes(context)
        best = self.max_context(budget_bytes)
        best_step = (choose_prefill_step(self, best, budget_bytes) or min(PREFILL_STEPS)) if best else 0
        verdict = fit_verdict(peak, budget_bytes)
        kv_bits = kv_cache_bits(self.kv_bits)
        precision = f"{kv_bits}-bit" if kv_bits else "float32" if self.activation_bytes == 4 else "bf16"
        head = {"fits": "Fits", "tight": "Tight fit", "wont_fit": "Won't fit"}[verdict]
        if best == 0:
            weights, budget = format_memory(self.weights.total), format_memory(budget_bytes)
            tail = f"the weights alone ({weights}) exceed the {budget} budget"
        else:
            tail = f"up to {_tokens(best)} tokens fit (prefilling {best_step} at a time)"
        summary = (
            f"{head}: {format_memory(self.weights.total)} weights + {format_memory(kv)} {precision} KV cache "
            f"+ {format_memory(peak - self.weights.total - kv)} working memory = {format_memory(peak)} of "
            f"{format_memory(budget_bytes)} at {_tokens(context)} tokens; {tail}."
        )
        return FitReport(
            verdict,
            context,
            self.weights.total,
            kv,
            self.kv_bytes_per_token,
            peak - self.weights.total - kv,
            peak,
            int(budget_bytes),
            best,
            best_step,
            prefill_step,
            kv_bits,
            summary,
        )


def choose_prefill_step(
    plan: MemoryPlan, context: int, budget_bytes: int, candidates: tuple[int, ...] = PREFILL_STEPS
) -> int | None:
    """The largest prefill chunk that keeps the peak at ``context`` tokens in budget; None if none does.

    Larger chunks prefill faster, but the transient grows with the chunk (and, through the
    attention scores and the cache copies, with the context), so the chunk shrinks as the
    context grows. A chunk that leaves the ``TIGHT_MARGIN`` of headroom is preferred to a
    larger one that would not.
    """
    steps = sorted(candidates, reverse=True)
    for limit in (budget_bytes * (1 - TIGHT_MARGIN), budget_bytes):
        for step in steps:
            if plan.peak_bytes(context, step) <= limit:
                return step
    return None


def conversation_budget_check(
    plan: MemoryPlan,
    tokens_so_far: int,
    next_turn_tokens: int,
    budget_bytes: int,
    prefill_step: int = 512,
    image_tiles: int = 0,
) -> TurnCheck:
    """Before a turn: will prefilling ``next_turn_tokens`` more (prompt plus answer) stay in budget?

    ``tokens_so_far`` is what the KV cache already holds; ``image_tiles`` the tiles of the
    turn's new images (the vision tower runs before the prefill).
    """
    total = max(1, tokens_so_far + next_turn_tokens)
    step = max(1, min(prefill_step, next_turn_tokens or 1))
    peak = max(
        plan._step_peak(step, total),
        plan.image_peak_bytes(image_tiles, tokens_so_far) if image_tiles else 0,
        plan._scaled(
            plan.weights.total + plan.kv_cache_bytes(total) + plan.prefill_transient_bytes(1, total - 1)
        ),
    )
    limit = plan.max_context(budget_bytes)
    verdict = fit_verdict(peak, budget_bytes)
    if total > plan.layout.max_context:
        verdict = "wont_fit"
    left = max(0, limit - total)
    if verdict == "wont_fit":
        smaller = choose_prefill_step(plan, total, budget_bytes)
        hint = (
            f" A prefill step of {smaller} would fit."
            if smaller and smaller < prefill_step
            else " Start a new conversation or use a smaller KV precision."
        )
        message = (
            f"This turn would take the conversation to {_tokens(total)} tokens and "
            f"{format_memory(peak)}, over the {format_memory(budget_bytes)} budget.{hint}"
        )
    elif verdict == "tight":
        message = (
            f"Memory is tight: {format_memory(peak)} of {format_memory(budget_bytes)}; about {_tokens(left)} "
            "tokens left in this conversation."
        )
    else:
        message = (
            f"About {_tokens(left)} tokens left in this conversation "
            f"({format_memory(peak)} at the next turn)."
        )
    return TurnCheck(verdict, peak, int(budget_bytes), total, left, prefill_step, message)


# -- building plans -------------------------------------------------------------------------------------


def plan_from_config(
    config: dict,
    name: str = "model",
    kv_bits: int | None = None,
    backend: str = "metal",
    weights: WeightBytes | None = None,
    kv_group: int = 64,
) -> MemoryPlan:
    """A plan from a config dict alone (weights estimated unless given)."""
    if kv_bits is not None and kv_bits not in (2, 3, 4, 5, 6, 8, 16):  # what mx.quantize supports
        raise PlanError(f"KV cache bits must be 16, 8 or 4, not {kv_bits}.")
    layout = layout_from_config(config, name)
    weights = weights or estimate_weights(layout)
    profile = PROFILES.get(backend)
    if profile is None:
        raise PlanError(f"unknown backend {backend!r} (cpu, cuda or metal).")
    if backend == "cpu":
        # The engine runs every checkpoint's float tensors and activations in float32 on the CPU
        # (no bf16 gather_mm there for unquantized experts; bf16 emulated and slow for the rest).
        weights = weights.in_float32()
    activation = weights.activation_bytes
    return MemoryPlan(layout, weights, kv_cache_bits(kv_bits), kv_group, profile, activation)


def read_layout(path: str | Path) -> tuple[dict, WeightBytes | None]:
    """A folder's (or a config.json's) config and, when it has safetensors, their exact weight bytes."""
    path = Path(path).expanduser()
    config_path = path if path.is_file() else path / "config.json"
    if not config_path.exists():
        raise PlanError(f"{path} has no config.json.")
    try:
        config = json.loads(read_regular_file(config_path, 64 * 1024 * 1024, config_path.name))
    except InputFileError as exc:
        raise PlanError(str(exc)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{config_path.name} cannot be read: {exc}") from None
    except RecursionError:
        raise PlanError(f"{config_path.name} is nested too deeply to be a model config.") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise PlanError(f"{config_path.name} cannot be read: {' '.join(str(exc).split())}") from None
    if not isinstance(config, dict):
        raise PlanError(f"{config_path.name} does not hold a JSON object.")
    files = sorted(config_path.parent.glob("*.safetensors"))
    return config, (weights_from_safetensors(files) if files else None)


def plan_model(path: str | Path, kv_bits: int | None = None, backend: str = "metal") -> MemoryPlan:
    """A plan for a checkpoint folder (or a folder/file holding only its config.json)."""
    path = Path(path).expanduser()
    config, weights = read_layout(path)
    name = (path.parent if path.is_file() else path).name
    return plan_from_config(config, name, kv_bits, backend, weights)


__all__ = [
    "GB",
    "BackendProfile",
    "CPU_PROFILE",
    "GPU_PROFILE",
    "PROFILES",
    "FitReport",
    "MemoryPlan",
    "ModelLayout",
    "PlanError",
    "TurnCheck",
    "VisionLayout",
    "WeightBytes",
    "catalog_config",
    "choose_prefill_step",
    "conversation_budget_check",
    "estimate_weights",
    "fit_verdict",
    "KV_CACHE_CHOICES",
    "kv_cache_bits",
    "kv_element_bytes",
    "layout_from_config",
    "maverick_config",
    "plan_from_config",
    "plan_model",
    "read_layout",
    "scout_config",
    "weights_from_safetensors",
]
