"""Predicted vs measured peak memory of a real prefill, on synthesized Llama 4 checkpoints.

For two checkpoint sizes (a Scout-like all-MoE one and a Maverick-like interleaved one, both
far bigger than the test checkpoints so fixed overheads do not dominate), unquantized and
4-bit, at several prompt lengths, prefill chunk sizes and KV-cache precisions, this script
runs mlx-lm's ``generate_step`` on the engine's loaded model (``Engine.load``, the same call
path the app uses), reads ``mx.get_peak_memory()`` after ``mx.reset_peak_memory()``, and prints
it beside ``MemoryPlan.prefill_peak_bytes`` for the ``cpu`` backend profile. It also encodes
images of 1 and 4 tiles through the vision tower and compares with ``vision_bytes_per_tile``.

Two ratios are printed (predicted / measured): of the whole peak, and of the part above the
weights (KV cache plus working memory), which is the part the model has to get right.
Figures, not pass/fail. On the CPU the engine runs unquantized checkpoints in float32.

    .venv/bin/python bench/bench_memory.py [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.support.synthetic_checkpoints import TinyShape  # noqa: E402

VISION = dict(vision_hidden=256, vision_layers=4, vision_heads=4, tile=336, max_patches=16, vision_out=256)
MODELS = {
    # Scout-like: every layer MoE; 8 layers so two are global (the last layer's attention never
    # runs during a prefill chunk, so a 4-layer model would hide the global layers).
    "scout-like h512": TinyShape(
        hidden=512,
        layers=8,
        heads=8,
        kv_heads=2,
        head_dim=64,
        experts=4,
        expert_intermediate=256,
        dense_intermediate=1024,
        moe_step=1,
        chunk=512,
        base_vocab=16000,
        **VISION,
    ),
    # Maverick-like: MoE every other layer, dense layers with a wide MLP.
    "maverick-like h1024": TinyShape(
        hidden=1024,
        layers=8,
        heads=16,
        kv_heads=4,
        head_dim=64,
        experts=4,
        expert_intermediate=512,
        dense_intermediate=2048,
        moe_step=2,
        chunk=1024,
        base_vocab=30000,
        **VISION,
    ),
}
# (prompt tokens, prefill chunk, kv bits) per model and variant; each run well under a minute here.
CASES = {
    ("scout-like h512", "bf16"): [
        (1024, 256, None),
        (1536, 512, None),
        (1536, 768, None),
        (1536, 512, 8),
        (1536, 512, 4),
    ],
    ("scout-like h512", "4bit"): [(384, 128, None), (512, 256, None), (512, 256, 8)],
    ("maverick-like h1024", "bf16"): [(768, 256, None), (1024, 512, None), (1024, 512, 8)],
    ("maverick-like h1024", "4bit"): [(128, 64, None), (128, 64, 4)],
}
QUICK = {key: cases[:1] for key, cases in CASES.items()}


def checkpoint(workdir: Path, name: str, variant: str) -> Path:
    from tests.support.synthetic_checkpoints import quantize_checkpoint, write_checkpoint

    slug = name.replace(" ", "-")
    bf16 = workdir / f"{slug}-bf16"
    if not (bf16 / "model.safetensors.index.json").exists():
        write_checkpoint(bf16, MODELS[name], seed=0)
    if variant == "bf16":
        return bf16
    quant = workdir / f"{slug}-{variant}"
    if not (quant / "config.json").exists():
        quantize_checkpoint(bf16, quant, bits=4, group_size=64)
    return quant


def measure_prefill(engine, tokens: int, step: int, kv_bits: int | None) -> tuple[int, float]:
    import mlx.core as mx
    import numpy as np
    from mlx_lm.generate import generate_step

    vocab = engine.checkpoint.config["text_config"]["vocab_size"]
    ids = mx.array(np.random.default_rng(tokens).integers(0, min(vocab, 8000), tokens))
    cache = engine.new_cache()
    mx.eval(ids)
    mx.clear_cache()
    mx.reset_peak_memory()
    start = time.perf_counter()
    for _ in generate_step(
        ids,
        engine.language_model,
        max_tokens=1,
        prompt_cache=cache,
        prefill_step_size=step,
        kv_bits=kv_bits,
        kv_group_size=64,
        quantized_kv_start=0,
    ):
        pass
    peak = mx.get_peak_memory()
    elapsed = time.perf_counter() - start
    del cache
    mx.clear_cache()
    return peak, elapsed


def measure_vision(engine, tiles: int) -> int:
    import mlx.core as mx

    size = engine.checkpoint.config["vision_config"]["image_size"]
    dtype = engine.model.language_model.model.embed_tokens.weight.dtype
    if dtype not in (mx.float16, mx.bfloat16, mx.float32):
        dtype = mx.bfloat16
    pixels = mx.random.normal((tiles, 3, size, size)).astype(dtype)
    mx.eval(pixels)
    mx.clear_cache()
    base = mx.get_active_memory()
    mx.reset_peak_memory()
    features = engine.model.vision_model(pixels)
    features = engine.model.multi_modal_projector(features.reshape(-1, features.shape[-1]))
    mx.eval(features)
    peak = mx.get_peak_memory() - base
    del features
    mx.clear_cache()
    return peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one case per model and variant")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "llama-desk-bench",
        help="where the synthesized checkpoints are kept between runs",
    )
    args = parser.parse_args(argv)

    import mlx.core as mx

    from models.inference.engine import Engine
    from models.memory.planner import plan_model

    args.workdir.mkdir(parents=True, exist_ok=True)
    cases = QUICK if args.quick else CASES
    from models.memory.planner import CPU_PROFILE

    print(f"MLX {mx.__version__} on {mx.default_device()}; planner profile: {CPU_PROFILE}")
    header = (
        f"{'model':<20} {'weights':<7} {'prompt':>6} {'chunk':>5} {'KV':>4} | {'weights GB':>17} | "
        f"{'peak GB pred/meas':>17} {'ratio':>6} | {'above weights MB':>17} {'ratio':>6} | {'s':>4}"
    )
    print(header)
    print("-" * len(header))
    ratios, above_ratios = [], []
    for (name, variant), runs in cases.items():
        path = checkpoint(args.workdir, name, variant)
        engine = Engine.load(path)
        mx.clear_cache()
        weights_measured = mx.get_active_memory()
        for tokens, step, kv_bits in runs:
            plan = plan_model(path, kv_bits=kv_bits, backend="cpu")
            predicted = plan.prefill_peak_bytes(tokens, step)
            measured, elapsed = measure_prefill(engine, tokens, step, kv_bits)
            above_p = predicted - plan.weights.total
            above_m = measured - weights_measured
            ratios.append(predicted / measured)
            above_ratios.append(above_p / above_m)
            label = "fp32" if variant == "bf16" else variant
            print(
                f"{name:<20} {label:<7} {tokens:>6} {step:>5} {kv_bits or 16:>4} | "
                f"{plan.weights.total / 1e9:>7.3f} / {weights_measured / 1e9:<7.3f} | "
                f"{predicted / 1e9:>7.3f} / {measured / 1e9:<7.3f} {predicted / measured:>6.3f} | "
                f"{above_p / 1e6:>7.1f} / {above_m / 1e6:<7.1f} {above_p / above_m:>6.3f} | "
                f"{elapsed:>4.0f}",
                flush=True,
            )
        plan = plan_model(path, backend="cpu")
        for tiles in (1, 4):
            measured = measure_vision(engine, tiles)
            predicted = tiles * plan.vision_bytes_per_tile()
            print(
                f"{name:<20} {'fp32' if variant == 'bf16' else variant:<7} vision, {tiles} tile(s): "
                f"working memory {predicted / 1e6:.1f} MB predicted / {measured / 1e6:.1f} MB measured "
                f"= {predicted / measured:.3f}",
                flush=True,
            )
        engine.close()
        del engine
    print("-" * len(header))
    print(
        f"peak ratio: min {min(ratios):.3f}, max {max(ratios):.3f}; above-weights ratio: "
        f"min {min(above_ratios):.3f}, max {max(above_ratios):.3f} (predicted / measured)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
