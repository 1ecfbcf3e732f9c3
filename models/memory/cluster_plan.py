"""Splitting a model across several machines: layers per rank proportional to their memory.

``split_layers`` cuts the decoder layers into contiguous ranges, one per rank, sized by each
rank's budget (rank 0 also carries the embeddings and the vision tower, the last rank the
``lm_head``). ``plan_cluster`` uses ``models.memory.planner``'s per-model figures to say what
each rank would hold and whether the model fits across the cluster.
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


def plan_cluster(plan, budgets: list[int], context: int, prefill_step: int = 512) -> ClusterPlan:
    """Each rank's share of ``plan`` (a ``MemoryPlan``) at ``context`` tokens.

    Language weights outside the layers (embeddings, ``lm_head``) are taken as two vocab x
    hidden matrices of the layers' precision; the rest is spread evenly per layer. The KV
    cache and the transient peak of one machine scale with the share of layers each rank runs."""
    layout = plan.layout
    n = layout.layers
    split = split_layers(n, [float(b) for b in budgets])
    bits = layout.quant_bits
    vocab_matrix = layout.vocab * layout.hidden * (bits / 8 if bits else 2)
    ends = int(2 * vocab_matrix)
    per_layer = max(0, plan.weights.language - ends) / n
    vision = plan.weights.vision
    kv_total = plan.kv_cache_bytes(context)
    whole_peak = plan.peak_bytes(context, prefill_step)
    transient = max(0, whole_peak - plan.weights.total - kv_total)
    shares = []
    for rank, ((start, end), budget) in enumerate(zip(split, budgets, strict=True)):
        count = end - start
        weights = per_layer * count
        if rank == 0:
            weights += vocab_matrix + vision
        if rank == len(split) - 1:
            weights += vocab_matrix
        kv = kv_total * count / n
        peak = weights + kv + transient * count / n
        shares.append(RankShare(rank, (start, end), int(weights), int(kv), int(peak), int(budget)))
    return ClusterPlan(getattr(layout, "name", "model"), context, tuple(shares))
