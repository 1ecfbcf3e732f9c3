"""``llama-desk models fit REPO --hosts HOSTS.json``: what each Mac of a cluster would hold.

The model's layers are split across the hosts of an ``mlx.launch`` host file in proportion to
their budgets (``models.memory.cluster_plan``): a host's ``"memory_gb"`` when it has one, else
the budget ``fit`` would use for this machine (``--budget-gb`` included). Prints each rank's
layers, weights, KV cache and peak against its budget, and whether the model fits across them;
``--json`` the same as an object with ``ranks``.
"""

from __future__ import annotations

import argparse
import json

from desktop.cli.command_error import CommandError
from models.byte_sizes import format_memory


def run_cluster_fit(args: argparse.Namespace, plans: list, budget) -> int:
    from models.distributed.hosts import HostFileError, parse_host_file
    from models.memory.cluster_plan import host_budgets, plan_cluster

    try:
        hosts = parse_host_file(args.hosts)
    except HostFileError as exc:
        raise CommandError(str(exc)) from None
    budgets = host_budgets([h.memory_gb for h in hosts.hosts], budget.budget_bytes)
    results = []
    for label, plan in plans:
        try:
            cluster = plan_cluster(plan, budgets, args.context, args.prefill_step or 512)
        except ValueError as exc:
            raise CommandError(f"{label}: {exc}") from None
        alone = plan.fit(args.context, budget.budget_bytes, args.prefill_step).verdict != "wont_fit"
        results.append((label, hosts, cluster, alone))
    if args.json:
        out = [_figures(*r) for r in results]
        print(json.dumps(out[0] if args.model is not None else out, indent=2))
        return 0
    for i, (label, hosts, cluster, alone) in enumerate(results):
        if i:
            print()
        print(f"{label} across {hosts.size} hosts at {cluster.context:,} tokens")
        for share, host in zip(cluster.ranks, hosts.hosts, strict=True):
            start, end = share.layers
            print(
                f"  rank {share.rank} {host.label}: layers {start}-{end - 1}, "
                f"weights {format_memory(share.weights_bytes)}, KV {format_memory(share.kv_bytes)}, "
                f"peak {format_memory(share.peak_bytes)} of {format_memory(share.budget_bytes)}"
                + ("" if share.fits else "  (won't fit)")
            )
        verdict = "Fits across the cluster" if cluster.fits else "Won't fit across the cluster"
        print(f"  {verdict}" + ("; it also fits one machine." if alone else "; it does not fit one machine."))
    return 0


def _figures(label: str, hosts, cluster, alone: bool) -> dict:
    return {
        "model": label,
        "context": cluster.context,
        "fits": cluster.fits,
        "fits_one_machine": alone,
        "ranks": [
            {
                "rank": share.rank,
                "host": host.ssh,
                "layers": list(share.layers),
                "weights_bytes": share.weights_bytes,
                "kv_bytes": share.kv_bytes,
                "peak_bytes": share.peak_bytes,
                "budget_bytes": share.budget_bytes,
                "fits": share.fits,
            }
            for share, host in zip(cluster.ranks, hosts.hosts, strict=True)
        ],
    }
