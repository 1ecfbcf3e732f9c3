"""Splitting a model across several machines: layers per rank proportional to their memory.

``split_layers`` cuts the decoder layers into contiguous ranges, one per rank, sized by each
rank's budget. ``plan_cluster`` says what each rank would hold and whether the model fits across
the cluster. Each rank is planned as one machine running its own slice of the model
(``ModelLayout.slice``, ``MemoryPlan`` with ``pipeline_stage``), because that is what it is:

- *weights*: its layers' (MoE layers hold many times a dense layer's, so a slice is not a
  proportional share), plus the embeddings and the vision tower on rank 0 and the final norm
  and ``lm_head`` on the last rank;
- *KV cache*: its own chunked and global layers';
- *working memory*: a whole machine's prefill transient, not a fraction of one. The
  activations of the layers in flight, the attention scores, the masks and the backend's fixed
  working set exist on every rank whatever its number of layers; only the cache-growth and
  cache-copy terms scale with the rank's own caches. Every rank runs its last layer in full (its
  output is sent on, or turned into logits, at every prefill chunk);
- *transfers*: a rank after the first also holds the hidden states it received
  (``mx.distributed.recv``: ``tokens x hidden`` in the activation dtype); rank 0 receives the
  last position's float32 logits, already counted with the logits;
- *images*: rank 0 runs the vision tower, so with ``image_tiles`` its peak is also at least
  the image peak (weights, cache, the tiles' working memory).
"""

from __future__ import annotations

from dataclasses import dataclass


def split_layers(layers: int, shares: list[float]) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` per rank, each at least one layer, sizes proportional to
    ``shares`` (largest remainders)."""
    if not shares or any(s <= 0 for s in shares):
        raise ValueError("every rank needs a positive share")
    if len(shares) > layers:
        raise ValueError(f"{len(shares)} ranks but only {layers} layers")
    total = sum(shares)
    exact = [layers * s / total for s in shares]
    counts = [max(1, int(x)) for x in exact]
    while sum(counts) < layers:
        i = max(range(len(counts)), key=lambda k: exact[k] - counts[k])
        counts[i] += 1
    while sum(counts) > layers:
        i = max((k for k in range(len(counts)) if counts[k] > 1), key=lambda k: counts[k] - exact[k])
        counts[i] -= 1
    out, start = [], 0
    for n in counts:
        out.append((start, start + n))
        start += n
    return out


@dataclass(frozen=True)
class RankShare:
    rank: int
    layers: tuple[int, int]
    weights_bytes: int
    kv_bytes: int
    peak_bytes: int
    budget_bytes: int

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes


@dataclass(frozen=True)
class ClusterPlan:
    model: str
    context: int
    ranks: tuple[RankShare, ...]

    @property
    def fits(self) -> bool:
        return all(r.fits for r in self.ranks)


def rank_weight_bytes(plan, split: list[tuple[int, int]]) -> list[int]:
    """Each rank's weight bytes for ``split``: its layers' share of the language weights,
    weighed by each layer's estimated size, plus the ends (see the module docstring)."""
    from models.memory.weight_bytes import layer_weight_bytes, vocab_matrix_bytes

    layout = plan.layout
    layers = layer_weight_bytes(layout)
    matrix = vocab_matrix_bytes(layout)
    estimated = sum(layers) + 2 * matrix + 2 * layout.hidden
    # The estimate's layout, scaled to the checkpoint's own bytes (safetensors headers, or the
    # float32 copy an unquantized checkpoint becomes on the CPU).
    scale = plan.weights.language / estimated if estimated else 0.0
    out = []
    for rank, (start, end) in enumerate(split):
        weights = sum(layers[start:end]) * scale
        if rank == 0:
            weights += matrix * scale + plan.weights.vision
        if rank == len(split) - 1:
            weights += (matrix + 2 * layout.hidden) * scale
        out.append(int(weights))
    return out


def plan_cluster(
    plan, budgets: list[int], context: int, prefill_step: int = 512, image_tiles: int = 0
) -> ClusterPlan:
    """Each rank's share of ``plan`` (a ``MemoryPlan``) at ``context`` tokens, prefilled
    ``prefill_step`` at a time, with an image of ``image_tiles`` tiles encoded on rank 0 before
    the prefill (see the module docstring)."""
    from dataclasses import replace

    layout = plan.layout
    split = split_layers(layout.layers, [float(b) for b in budgets])
    step = max(1, min(prefill_step, context))
    shares = []
    for rank, ((start, end), weights, budget) in enumerate(
        zip(split, rank_weight_bytes(plan, split), budgets, strict=True)
    ):
        vision = plan.weights.vision if rank == 0 else 0
        own = replace(
            plan,
            layout=layout.slice(start, end, vision=rank == 0),
            weights=replace(plan.weights, total=weights, language=weights - vision, vision=vision),
            pipeline_stage=True,
        )
        kv = own.kv_cache_bytes(context)
        received = 0 if rank == 0 else step * layout.hidden * plan.activation_bytes
        peak = own.peak_bytes(context, prefill_step) + received
        if rank == 0 and image_tiles:
            peak = max(peak, own.image_peak_bytes(image_tiles))
        shares.append(RankShare(rank, (start, end), int(weights), int(kv), int(peak), int(budget)))
    return ClusterPlan(getattr(layout, "name", "model"), context, tuple(shares))


def host_budgets(memory_gb: list[float | None], default_bytes: int) -> list[int]:
    """Each host's budget in bytes: its ``memory_gb`` when the host file gives one, else
    ``default_bytes`` (the budget this machine plans with)."""
    return [int(gb * 1e9) if gb else int(default_bytes) for gb in memory_gb]


def fit_across(plan, budgets: list[int], context: int) -> ClusterPlan | None:
    """``plan_cluster`` for a listing's badge: None when the model cannot be split over that many
    ranks (fewer layers than ranks) or its figures do not add up."""
    try:
        return plan_cluster(plan, budgets, context)
    except (ValueError, ArithmeticError):
        return None


def describe_cluster(cluster: ClusterPlan, machines: str = "Macs", local: bool = False) -> str:
    """One line for a tooltip: the verdict across the cluster and the fullest rank; ``local``:
    the ranks all run on this machine (``--ranks N``), each planned as a machine like it."""
    fullest = max(cluster.ranks, key=lambda r: r.peak_bytes / max(1, r.budget_bytes))
    size = len(cluster.ranks)
    verdict = f"Fits across {size} {machines}" if cluster.fits else f"Won't fit across {size} {machines}"
    start, end = fullest.layers
    return (
        f"{verdict}: rank {fullest.rank} (layers {start}-{end - 1}) peaks at "
        f"{fullest.peak_bytes / 1e9:.1f} GB of {fullest.budget_bytes / 1e9:.1f} GB "
        f"at {cluster.context:,} tokens"
        + (" (ranks on this machine, each planned as a machine like this one)." if local else ".")
    )
