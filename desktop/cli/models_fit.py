"""``llama-desk models fit``: how much memory a model needs, and the longest context that fits.

``fit [REPO|PATH] [--context N] [--kv-bits 16|8|4] [--prefill-step N] [--budget-gb GB]
[--backend B] [--json]`` plans from the checkpoint's ``config.json`` and safetensors headers,
without loading anything: weights, KV cache per token, the peak at ``N`` tokens, the largest
context that fits, and the budget of this machine (``models.memory.budget``). ``--budget-gb``,
or ``LLAMA_DESK_MEMORY_BUDGET_GB`` as in the window, plans for another machine instead: that
many GB, for a Mac (the Metal profile) unless ``--backend`` says otherwise. PATH may be a
folder holding only a ``config.json``; a catalog repo that is not downloaded is planned from
its known config. Without REPO|PATH every catalog variant is listed. ``--json`` prints the
same figures as one JSON object (a list without REPO|PATH) with ``weights_bytes``,
``kv_bytes_per_token``, ``peak_bytes``, ``max_context`` and ``budget_bytes``.
"""

from __future__ import annotations

import argparse
import json

from desktop.cli.command_error import CommandError
from models.byte_sizes import format_memory
from models.inference.answer_defaults import CONTEXT_LENGTH
from models.memory.planner import KV_CACHE_CHOICES, MemoryPlan, kv_cache_bits


def add_subcommands(models_sub) -> None:
    fit = models_sub.add_parser("fit", help="memory needed and the longest context that fits")
    fit.add_argument(
        "model",
        nargs="?",
        metavar="REPO|PATH",
        help="downloaded or catalog repo id, checkpoint folder, or a folder with a config.json",
    )
    fit.add_argument(
        "--context",
        type=int,
        default=CONTEXT_LENGTH,
        help=f"context length to plan for (default {CONTEXT_LENGTH:,})",
    )
    fit.add_argument(
        "--kv-bits",
        type=int,
        choices=KV_CACHE_CHOICES,
        default=16,
        help="KV cache precision: 16 (bf16), 8 or 4 bits (global layers only)",
    )
    fit.add_argument(
        "--prefill-step",
        type=int,
        default=None,
        help="prefill chunk size (default: the largest that keeps the peak in budget)",
    )
    fit.add_argument(
        "--budget-gb",
        type=float,
        help="plan for a machine with this budget in GB instead of this one (default: "
        "$LLAMA_DESK_MEMORY_BUDGET_GB if set); implies --backend metal",
    )
    fit.add_argument(
        "--backend",
        choices=("metal", "cuda", "cpu"),
        help="MLX backend to plan for (default: this machine's, or metal with a budget)",
    )
    fit.add_argument("--json", action="store_true", help="print JSON")
    # Across several Macs (models fit --hosts; desktop.cli.models_fit_cluster).
    fit.add_argument("--hosts", metavar="HOSTS.json", help="split across an mlx.launch host file's Macs")
    fit.set_defaults(run=run_fit)


def _plans(args: argparse.Namespace, backend: str) -> list[tuple[str, MemoryPlan]]:
    """(label, MemoryPlan) for the named model, or for every catalog variant."""
    from models.hub.store import ModelNotFound, resolve_model
    from models.memory.model_plans import plan_for_model
    from models.memory.planner import PlanError

    kv_bits = kv_cache_bits(args.kv_bits)
    if args.model is None:
        from models.hub.catalog import load_catalog

        plans = []
        for entry in load_catalog():
            plan = plan_for_model(None, entry.repo_id or entry.key, entry.key, backend, kv_bits)
            if plan is not None:
                plans.append((entry.key, plan))
        return plans
    try:
        try:
            path = resolve_model(args.model)
        except ModelNotFound as exc:
            repo = args.model if args.model.count("/") == 1 else None
            plan = plan_for_model(None, repo, args.model, backend, kv_bits)
            if plan is None:
                raise CommandError(str(exc)) from None
            return [(args.model, plan)]
        from models.memory.measured_peaks import load_corrections

        # What this machine measured for the model corrects the plan (models.memory.measured_peaks).
        plan = plan_for_model(path, None, args.model, backend, kv_bits, load_corrections())
        if plan is None:  # a folder always has a plan (or raises PlanError)
            raise CommandError(f"{args.model} cannot be planned.")
        return [(args.model, plan)]
    except PlanError as exc:
        raise CommandError(str(exc)) from None


def _figures(label: str, plan, context: int, budget, step: int | None) -> dict:
    report = plan.fit(context, budget.budget_bytes, step)  # step None: the largest that fits
    return {
        "model": label,
        "weights_bytes": plan.weights.total,
        "weights_source": plan.weights.source,
        "kv_bits": report.kv_bits or 16,
        "kv_bytes_per_token": round(plan.kv_bytes_per_token, 3),
        "kv_bytes_per_token_within_chunk": round(plan.kv_bytes_per_token_within_chunk, 3),
        "attention_chunk": plan.layout.chunk,
        "context": report.context,
        "prefill_step": report.prefill_step,
        "kv_bytes": report.kv_bytes,
        "peak_bytes": report.peak_bytes,
        "max_context": report.max_context,
        "max_context_prefill_step": report.max_context_prefill_step,
        "model_max_context": plan.layout.max_context,
        "budget_bytes": report.budget_bytes,
        "budget_source": budget.source,
        "app_bytes": budget.app_bytes,
        "backend": plan.profile.name,
        "measured_correction": max(1.0, plan.peak_scale),
        "verdict": report.verdict,
        "summary": report.summary,
    }


def _print_text(f: dict) -> None:
    kv = "bf16" if f["kv_bits"] == 16 else f"{f['kv_bits']}-bit (global layers)"
    source = "safetensors headers" if f["weights_source"] == "safetensors" else "estimated from config.json"
    beyond, within = f["kv_bytes_per_token"] / 1e3, f["kv_bytes_per_token_within_chunk"] / 1e3
    rows = [
        ("weights", f"{format_memory(f['weights_bytes'])} ({source})"),
        (
            "KV cache per token",
            f"{beyond:.1f} KB beyond the {f['attention_chunk']:,}-token chunk, "
            f"{within:.1f} KB within it; {kv}",
        ),
        (
            f"peak at {f['context']:,} tokens",
            f"{format_memory(f['peak_bytes'])} (KV cache {format_memory(f['kv_bytes'])}, "
            f"prefill chunk {f['prefill_step']})",
        ),
        (
            "largest context",
            f"{f['max_context']:,} tokens, prefill chunk {f['max_context_prefill_step']} "
            f"(model maximum {f['model_max_context']:,})",
        ),
        (
            "budget",
            f"{format_memory(f['budget_bytes'])} ({f['budget_source']}"
            + (f", minus {format_memory(f['app_bytes'])} used by the app" if f["app_bytes"] else "")
            + f"; {f['backend']} backend)",
        ),
    ]
    if f["measured_correction"] > 1:
        rows.append(
            (
                "measured here",
                f"peaks up to {f['measured_correction']:.2f}x the plan; the figures above include that",
            )
        )
    width = max(len(label) for label, _ in rows) + 2
    print(f["model"])
    for label, value in rows:
        print(f"  {label.ljust(width)}{value}")
    print(f"  {f['summary']}")


def run_fit(args: argparse.Namespace) -> int:
    from models.memory.budget import budget_override, detect_backend
    from models.memory.model_plans import planning_budget

    if args.context < 1:
        raise CommandError("--context must be at least 1.", 2)
    if args.prefill_step is not None and args.prefill_step < 1:
        raise CommandError("--prefill-step must be at least 1.", 2)
    try:
        budget = budget_override(args.budget_gb, args.backend or "metal")
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None
    backend = budget.backend if budget is not None else args.backend or detect_backend()
    budget = planning_budget(budget, backend)
    plans = _plans(args, backend)
    if not plans:
        raise CommandError("no model to plan.")
    if args.hosts is not None:  # across several Macs: desktop.cli.models_fit_cluster
        from desktop.cli.models_fit_cluster import run_cluster_fit

        return run_cluster_fit(args, plans, budget)
    figures = [_figures(label, plan, args.context, budget, args.prefill_step) for label, plan in plans]
    if args.json:
        print(json.dumps(figures[0] if args.model is not None else figures, indent=2))
    else:
        for i, f in enumerate(figures):
            if i:
                print()
            _print_text(f)
    return 0
