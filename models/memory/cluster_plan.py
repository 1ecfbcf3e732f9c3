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
