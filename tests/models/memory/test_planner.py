"""The memory planner: weights, Llama 4's KV layout, the prefill transient, verdicts and budgets.

The reference figures were measured for a Llama-4-Scout-shaped language model (48 layers,
hidden 5120, 40/8 heads of 128, 16 experts plus a shared expert, intermediate 8192, vocab
202,048, chunk 8192; random weights, 4-bit, group size 64) with MLX 0.32.4's CUDA backend on an
80 GB GPU, prefilling with mlx-lm's generate_step. The reference model had no vision tower.

The H200 points (issue 8, part 4) were measured out of sample with the same MLX on an H200,
each a fresh ``mx.get_peak_memory``. The issue gives planned / measured ratios of the planner
as it was then; the measured peaks below are that planner's figure divided by the ratio. Its
96K figure (76.3 GB planned, 78.7 measured) is reproduced only with the whole Scout 4-bit
config, vision tower weights included (62.37 GB, not 60.62) and 96K = 98,304 tokens: so these
points are planned from ``scout_config(4)`` as is. (The 8K and 16K points then agree with the
reference table's to 0.05 GB once the 1.74 GB of vision weights are added, as they should.)
"""

import json
import shutil

import pytest

from models.memory.budget import GIB, MemoryBudget, detect_budget, mac_budget, macos_default_wired_limit
from models.memory.planner import (
    GB,
    KV_CACHE_CHOICES,
    PlanError,
    catalog_config,
    choose_prefill_step,
    conversation_budget_check,
    estimate_weights,
    kv_cache_bits,
    layout_from_config,
    maverick_config,
    plan_from_config,
    plan_model,
    scout_config,
)

REFERENCE_WEIGHTS_GB = 60.62
# prompt tokens, prefill chunk, KV cache GB, peak GB
REFERENCE = [
    (2048, 2048, 0.45, 71.5),
    (2048, 512, 0.45, 65.7),
    (8192, 2048, 1.66, 79.7),
    (8192, 512, 1.66, 71.7),
    (8192, 256, 1.66, 68.7),
    (16384, 512, 2.06, 73.0),
    (24576, 512, 2.47, 73.5),
]


# prompt tokens, prefill chunk, measured peak GB; the full Scout 4-bit config on an H200
H200 = [
    (8192, 512, 69.81 / 0.951),
    (16384, 512, 70.67 / 0.945),
    (32768, 512, 71.79 / 0.947),
    (98304, 512, 78.7),  # 76.3 GB planned then
    (2048, 2048, 75.70 / 1.033),
    (8192, 2048, 85.76 / 1.053),
]
MEASURED = [("reference", t, s, peak) for t, s, _kv, peak in REFERENCE] + [("h200", *p) for p in H200]


@pytest.fixture(scope="module")
def scout_cuda():
    config = scout_config(bits=4, group_size=64)
    del config["vision_config"]  # the reference model was the language model alone
    return plan_from_config(config, "scout-4bit", backend="cuda")


def test_scout_config_is_the_real_layout():
    layout = layout_from_config(scout_config(4), "scout")
    assert (layout.layers, layout.hidden, layout.heads) == (48, 5120, 40)
    assert (layout.kv_heads, layout.head_dim) == (8, 128)
    assert (layout.experts, layout.expert_intermediate, layout.dense_intermediate) == (16, 8192, 16384)
    assert (layout.moe_step, layout.chunk, layout.vocab) == (1, 8192, 202048)
    assert (layout.chunked_layers, layout.global_layers) == (36, 12)
    assert layout.quant_bits == 4 and layout.quant_group == 64
    assert layout.vision.tokens_per_tile == 577
    maverick = layout_from_config(maverick_config(4), "maverick")
    assert maverick.experts == 128 and maverick.moe_step == 2
    assert sum(maverick.is_moe(i) for i in range(48)) == 24


def test_reference_weights(scout_cuda):
    assert scout_cuda.weights.total / GB == pytest.approx(REFERENCE_WEIGHTS_GB, rel=0.03)
    with_vision = plan_from_config(scout_config(4), backend="cuda").weights
    assert with_vision.language == scout_cuda.weights.total
    assert 1.5 * GB < with_vision.vision < 2 * GB  # the bf16 vision tower and projector


@pytest.mark.parametrize("tokens, step, kv_gb, peak_gb", REFERENCE)
def test_reference_kv_cache(scout_cuda, tokens, step, kv_gb, peak_gb):
    # Measured after the prompt and the first generated token were written.
    assert scout_cuda.kv_cache_bytes(tokens + 1) / GB == pytest.approx(kv_gb, rel=0.03)


@pytest.fixture(scope="module")
def scout_cuda_with_vision():
    return plan_from_config(scout_config(bits=4, group_size=64), "scout-4bit", backend="cuda")


@pytest.mark.parametrize("model, tokens, step, peak_gb", MEASURED)
def test_every_measured_peak_is_planned_at_or_above_it(
    scout_cuda, scout_cuda_with_vision, model, tokens, step, peak_gb
):
    plan = scout_cuda if model == "reference" else scout_cuda_with_vision
    planned = plan.prefill_peak_bytes(tokens, step) / GB
    # Never optimistic (a 1 % margin for run-to-run variation), and not absurdly pessimistic.
    assert 1.01 * peak_gb <= planned <= 1.15 * peak_gb
    # The conversation-level figure (worst chunk alignment), which fit() uses, is never below it.
    assert plan.peak_bytes(tokens, step) / GB >= 1.01 * peak_gb


def test_h200_points_are_the_issues_plans(scout_cuda_with_vision):
    # The safety term is what was added: without it, the plan is the one the issue measured.
    from dataclasses import replace

    old = replace(
        scout_cuda_with_vision,
        profile=replace(scout_cuda_with_vision.profile, fixed_bytes=0, chunked_cache_copies=0.0),
    )
    assert old.prefill_peak_bytes(98304, 512) / GB == pytest.approx(76.3, abs=0.05)
    assert old.prefill_peak_bytes(98304, 512) / GB / 78.7 == pytest.approx(0.969, abs=0.001)


def test_measured_corrections_scale_every_peak(scout_cuda):
    from dataclasses import replace

    scaled = replace(scout_cuda, peak_scale=1.05)
    assert scaled.peak_bytes(32768, 512) == pytest.approx(scout_cuda.peak_bytes(32768, 512) * 1.05, abs=2)
    assert scaled.prefill_peak_bytes(8192, 512) > scout_cuda.prefill_peak_bytes(8192, 512)
    assert scaled.max_context(80 * GB) < scout_cuda.max_context(80 * GB)
    assert replace(scout_cuda, peak_scale=0.5).peak_bytes(8192, 512) == scout_cuda.peak_bytes(8192, 512)


def test_reference_out_of_memory(scout_cuda):
    # A 32,768-token prompt in 2,048-token chunks ran out of the 80 GB GPU.
    assert scout_cuda.prefill_peak_bytes(32768, 2048) > 80 * GB
    assert choose_prefill_step(scout_cuda, 32768, 80 * GB) <= 1024


def test_transient_grows_with_the_chunk_far_more_than_with_the_context(scout_cuda):
    t = scout_cuda.transient_bytes
    assert t(8192, 2048) > 1.8 * t(8192, 512)
    assert t(24576, 512) < 1.1 * t(8192, 512)
    # At a million tokens what grew is the copy of the caches being extended, not attention:
    # the chunked layers cap K and the global layers' attention is fused.
    grown = t(1_000_000, 512) - t(8192, 512)
    assert grown < 0.5 * scout_cuda.kv_cache_bytes(1_000_000)


def test_kv_layout_chunked_layers_are_bounded(scout_cuda):
    assert scout_cuda.kv_bytes_per_token == 12 * 2 * 1024 * 2  # 12 global layers, K and V, bf16
    assert scout_cuda.kv_bytes_per_token_within_chunk == 48 * 2 * 1024 * 2
    grow = scout_cuda.kv_cache_bytes(200_001) - scout_cuda.kv_cache_bytes(100_001)
    assert grow == pytest.approx(100_000 * scout_cuda.kv_bytes_per_token, rel=0.01)
    early = scout_cuda.kv_cache_bytes(4097) - scout_cuda.kv_cache_bytes(1)
    assert early == pytest.approx(4096 * scout_cuda.kv_bytes_per_token_within_chunk, rel=0.07)


@pytest.mark.parametrize("bits, per_element", [(8, 1 + 4 / 64), (4, 0.5 + 4 / 64)])
def test_kv_quantization_reaches_only_the_global_layers(bits, per_element):
    plan = plan_from_config(scout_config(4), kv_bits=bits, backend="metal")
    assert plan.kv_bytes_per_token == pytest.approx(12 * 2 * 1024 * per_element)
    full = plan_from_config(scout_config(4), backend="metal")
    chunked_part = 36 * 2 * 1024 * 2
    assert plan.kv_bytes_per_token_within_chunk == pytest.approx(chunked_part + plan.kv_bytes_per_token)
    # Decoding, the smaller cache leaves room for more context; prefilling, see below.
    assert plan.kv_cache_bytes(600_000) < full.kv_cache_bytes(400_000)


def test_quantized_kv_prefill_materialises_global_scores():
    plain = plan_from_config(scout_config(4), backend="metal")
    quant = plan_from_config(scout_config(4), kv_bits=8, backend="metal")
    # mlx-vlm's quantized attention is explicit ops: its scores grow with the whole context.
    assert quant.transient_bytes(300_000, 512) > 3 * plain.transient_bytes(300_000, 512)
    assert choose_prefill_step(quant, 200_000, 100 * GB) < choose_prefill_step(plain, 200_000, 100 * GB)


def test_unquantized_on_cpu_runs_in_float32():
    plan = plan_from_config(scout_config(None), backend="cpu")
    metal = plan_from_config(scout_config(None), backend="metal")
    assert plan.weights.total == 2 * metal.weights.total
    assert plan.activation_bytes == 4 and metal.activation_bytes == 2


def test_quantized_on_cpu_counts_float32_scales_and_activations(checkpoints):
    """On the CPU the engine runs a quantized checkpoint's float parameters (scales, biases,
    norms, the vision tower) and its activations in float32; its packed weights stay as stored."""
    cpu = plan_model(checkpoints["4bit"], backend="cpu")
    metal = plan_model(checkpoints["4bit"], backend="metal")
    assert metal.activation_bytes == 2 and cpu.activation_bytes == 4
    packed = 0
    for file in checkpoints["4bit"].glob("*.safetensors"):
        with open(file, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        packed += sum(
            e["data_offsets"][1] - e["data_offsets"][0]
            for n, e in header.items()
            if n != "__metadata__" and e["dtype"] == "U32"
        )
    assert cpu.weights.total == packed + 2 * (metal.weights.total - packed)
    assert cpu.kv_bytes_per_token == 2 * metal.kv_bytes_per_token
    assert cpu.activation_bytes_per_token() == 2 * metal.activation_bytes_per_token()
    estimated = plan_from_config(scout_config(4), backend="cpu")
    assert estimated.activation_bytes == 4
    assert estimated.weights.total > plan_from_config(scout_config(4), backend="metal").weights.total


def _tensor_bytes(path):
    total = 0
    for file in path.glob("*.safetensors"):
        with open(file, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
        total += file.stat().st_size - 8 - size
    return total


@pytest.mark.parametrize("variant", ["bf16", "4bit", "8bit"])
def test_weights_from_headers_and_from_config(checkpoints, variant):
    plan = plan_model(checkpoints[variant])
    assert plan.weights.source == "safetensors"
    assert plan.weights.total == _tensor_bytes(checkpoints[variant])
    assert estimate_weights(plan.layout).total == plan.weights.total  # the converter's layout


def test_config_only_folder_is_planned_from_the_config(checkpoints, tmp_path):
    shutil.copy(checkpoints["4bit"] / "config.json", tmp_path / "config.json")
    plan = plan_model(tmp_path)
    assert plan.weights.source == "estimated"
    assert plan.weights.total == plan_model(checkpoints["4bit"]).weights.total
    assert plan_model(tmp_path / "config.json").weights.total == plan.weights.total


def test_unreadable_or_foreign_configs_are_refused(tmp_path):
    with pytest.raises(PlanError, match="no config.json"):
        plan_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "text_config": {}}))
    with pytest.raises(PlanError, match="not a Llama 4"):
        plan_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(PlanError, match="cannot be read"):
        plan_model(tmp_path)
    with pytest.raises(PlanError, match="KV cache bits"):
        plan_from_config(scout_config(4), kv_bits=7)


def test_fit_report_verdicts_and_summary():
    plan = plan_from_config(scout_config(4), backend="metal")
    peak = plan.peak_bytes(32768, 512)
    roomy = plan.fit(32768, int(peak * 1.5), 512)
    assert roomy.verdict == "fits" and roomy.fits
    assert roomy.peak_bytes == peak and roomy.weights_bytes == plan.weights.total
    assert roomy.max_context > 32768 and roomy.headroom_bytes > 0
    assert "Fits" in roomy.summary and "tokens fit" in roomy.summary
    tight = plan.fit(32768, int(peak * 1.05), 512)
    assert tight.verdict == "tight" and tight.fits
    short = plan.fit(32768, int(peak * 0.95), 512)
    assert short.verdict == "wont_fit" and not short.fits
    smallest = plan.peak_bytes(32768, 64)
    chosen = plan.fit(32768, int(peak * 0.95))  # the chunk is lowered to fit
    assert chosen.fits and chosen.prefill_step < 512 and chosen.max_context >= 32768
    short = plan.fit(32768, int(smallest * 0.95))
    assert not short.fits and short.max_context < 32768 and short.prefill_step == 64
    none = plan.fit(32768, 10 * GB, 512)
    assert none.max_context == 0 and "weights alone" in none.summary
    with pytest.raises(AttributeError):
        roomy.verdict = "fits"  # frozen


def test_max_context_is_the_edge_of_the_budget():
    plan = plan_from_config(scout_config(4), backend="metal")
    budget = 90 * GB
    best = plan.max_context(budget, 512)
    assert plan.peak_bytes(best, 512) <= budget < plan.peak_bytes(best + 1, 512)
    assert plan.max_context(budget) > best  # lowering the prefill chunk leaves room for more
    assert plan.max_context(10**15, 512) == plan.layout.max_context
    report = plan.fit(8192, budget, 2048)
    assert report.max_context == plan.max_context(budget)
    assert plan.peak_bytes(report.max_context, report.max_context_prefill_step) <= budget


def test_choose_prefill_step_shrinks_as_the_context_grows():
    plan = plan_from_config(scout_config(4), backend="metal")
    budget = 100 * GB
    steps = [choose_prefill_step(plan, n, budget) for n in (8192, 200_000, 300_000)]
    assert steps[0] >= steps[1] >= steps[2]
    assert steps[0] > steps[2]
    assert choose_prefill_step(plan, 8192, 50 * GB) is None  # the weights alone do not fit
    for n, step in zip((8192, 200_000, 300_000), steps, strict=True):
        assert plan.peak_bytes(n, step) <= budget
    assert choose_prefill_step(plan, 2_000_000, budget) is None


def test_conversation_budget_check_warns_before_a_turn_outgrows_the_budget():
    plan = plan_from_config(scout_config(4), backend="metal")
    budget = 90 * GB
    limit = plan.max_context(budget)
    ok = conversation_budget_check(plan, 10_000, 2_000, budget)
    assert ok.ok and ok.verdict == "fits" and ok.tokens_after_turn == 12_000
    assert ok.tokens_left == limit - 12_000 and "tokens left" in ok.message
    over = conversation_budget_check(plan, limit - 100, 5_000, budget)
    assert not over.ok and over.verdict == "wont_fit" and "over the" in over.message
    images = conversation_budget_check(plan, 10_000, 2_000, budget, image_tiles=17)
    assert images.peak_bytes >= ok.peak_bytes
    assert plan.vision_bytes_per_tile() > 0


def test_catalog_configs_from_repo_names():
    assert catalog_config("mlx-community/Llama-4-Scout-17B-16E-Instruct-6bit")["quantization"]["bits"] == 6
    maverick = catalog_config("mlx-community/Llama-4-Maverick-17B-128E-Instruct-8bit")
    assert maverick["text_config"]["num_local_experts"] == 128
    assert catalog_config("mlx-community/Qwen3-8B-4bit") is None
    sizes = [
        plan_from_config(catalog_config(f"x/Llama-4-Scout-17B-16E-Instruct-{b}bit")).weights.total
        for b in (3, 4, 6, 8)
    ]
    assert sizes == sorted(sizes)


def test_budgets():
    assert macos_default_wired_limit(128 * GIB) == 96 * GIB
    assert macos_default_wired_limit(18 * GIB) == 12 * GIB
    mac = mac_budget(128, app_bytes=GB)
    assert mac.budget_bytes == 96 * GIB - GB and mac.backend == "metal"
    assert mac_budget(128, wired_limit_mb=120_000).limit_bytes == 120_000 << 20
    assert MemoryBudget(10, 5, 7, "cpu", "x").budget_bytes == 0
    here = detect_budget(backend="cpu")
    assert 0 < here.budget_bytes <= here.limit_bytes <= here.total_bytes


def test_catalog_configs_follow_the_catalog_entry(monkeypatch):
    from models.hub import catalog

    listed = catalog.CatalogEntry("a/renamed", "Renamed", "maverick", repo_id="a/renamed", bits=6)
    monkeypatch.setattr(catalog, "load_catalog", lambda: [listed])
    config = catalog_config("a/renamed")  # no family or bits in the name: the entry has them
    assert config["text_config"]["num_local_experts"] == 128 and config["quantization"]["bits"] == 6


@pytest.mark.parametrize(
    ("chosen", "kv_bits"), [(16, None), (None, None), (0, None), (32, None), (8, 8), (4, 4)]
)
def test_16_bits_means_the_unquantized_cache(chosen, kv_bits):
    assert kv_cache_bits(chosen) == kv_bits


def test_the_offered_kv_precisions_plan():
    plans = [plan_from_config(scout_config(4), kv_bits=kv_cache_bits(b)) for b in KV_CACHE_CHOICES]
    assert KV_CACHE_CHOICES[0] == 16 and plans[0].kv_bits is None
    per_token = [p.kv_bytes_per_token for p in plans]
    assert per_token == sorted(per_token, reverse=True) and len(set(per_token)) == len(per_token)


def test_parallel_answers_share_the_weights_and_each_hold_their_cache():
    import json
    import tempfile
    from pathlib import Path

    from models.memory.planner import plan_model
    from tests.support.synthetic_checkpoints import scout_config

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(json.dumps(scout_config()))
        plan = plan_model(folder, kv_bits=None, backend="metal")
    one = plan.peak_bytes(32768)
    assert plan.batch_peak_bytes([32768]) == one
    four = plan.batch_peak_bytes([32768] * 4)
    assert four == one + 3 * plan.kv_cache_bytes(32768)  # the weights once, four caches
    assert plan.batch_peak_bytes([32768, 1000]) < four
    budget = one + 2 * plan.kv_cache_bytes(32768) + 1
    assert plan.max_parallel(32768, budget) == 3
    assert plan.max_parallel(32768, plan.weights.total) == 0
