"""Each rank's peak memory against its planned share, for a model split over N ranks.

Synthesizes a Llama 4 checkpoint far bigger than the tests' (776 MB at 4 bits: 12 layers, half
of them MoE with 32 experts, so each rank's weights dominate its working memory), answers one
question with an image on N local ranks over MLX's ring backend, asks every rank for
``mx.get_peak_memory()`` and prints it beside the rank's share of the memory plan
(``models.memory.cluster_plan``, CPU profile, the image's tiles on rank 0). With ``--single``
also prints the same answer on one rank, to show the greedy tokens do not change. Figures, not
pass/fail. Synthesizing takes about a minute (3 GB of bf16 on disk, then quantized); a run 8-10
minutes on 2 cores, with more system than user time: the ranks waiting in ``recv`` apparently
poll on the cores the working rank needs.

    .venv/bin/python bench/bench_distributed.py [--ranks 2] [--model PATH]

Or with every rank started by MLX's own launcher (this process is then each rank):

    uv run mlx.launch --backend ring -n 2 --python .venv/bin/python bench/bench_distributed.py --model PATH
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.support.synthetic_checkpoints import TinyShape  # noqa: E402

SHAPE = TinyShape(
    hidden=1024,
    layers=12,
    heads=16,
    kv_heads=4,
    head_dim=64,
    experts=32,
    expert_intermediate=2048,
    dense_intermediate=4096,
    moe_step=2,
    chunk=512,
    base_vocab=4000,
    vision_hidden=256,
    vision_layers=4,
    vision_heads=4,
    tile=336,
    max_patches=16,
    vision_out=256,
)


def _checkpoint(workdir: Path) -> Path:
    from tests.support.synthetic_checkpoints import quantize_checkpoint, write_checkpoint

    quantized = workdir / "bench-distributed-h1024-4bit"
    if not (quantized / "config.json").is_file():
        bf16 = write_checkpoint(workdir / "bench-distributed-h1024-bf16", SHAPE, seed=7)
        quantize_checkpoint(bf16, quantized, bits=4, group_size=64)
    return quantized


IMAGE_SIZE = (336, 336)


def _image_tiles(model: Path) -> int:
    """How many tiles the question's image is cut into (rank 0's vision tower encodes them)."""
    import json

    from models.inference.preprocess import ProcessorConfig, plan_tiles

    def read(name: str) -> dict:
        path = model / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    config = ProcessorConfig.from_dicts(read("preprocessor_config.json"), read("processor_config.json"))
    return plan_tiles(*IMAGE_SIZE, config).tiles


def _question():
    from PIL import Image

    from models.inference.images import load_image_bytes
    from models.inference.prompt import ChatMessage

    buffer = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, (120, 160, 90)).save(buffer, "PNG")
    image = load_image_bytes(buffer.getvalue(), "field.png")
    return [ChatMessage("user", "Describe this photo in detail.", (image,))]


def _answer(engine, messages):
    from models.inference.engine import GenerationSettings

    steps = list(engine.generate(messages, GenerationSettings(max_tokens=8, temperature=0.0)))
    return steps[-1]


def _gb(n: float) -> str:
    return f"{n / 1e9:.3f} GB"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--model", help="a checkpoint folder (default: synthesize one)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "llama-desk-bench"))
    parser.add_argument("--single", action="store_true", help="also answer on one rank and compare")
    args = parser.parse_args()

    launched = "MLX_RANK" in os.environ and "MLX_HOSTFILE" in os.environ
    if launched and os.environ["MLX_RANK"] != "0":
        from models.distributed.worker import main as worker_main

        return worker_main(["--model", args.model])
    if launched and not args.model:
        parser.error("under mlx.launch, give --model (every rank must read the same checkpoint)")
    model = Path(args.model) if args.model else _checkpoint(Path(args.workdir))

    from models.distributed.driver import PipelineEngine
    from models.distributed.hosts import local_hosts
    from models.memory.cluster_plan import plan_cluster
    from models.memory.planner import plan_model

    hosts = None if launched else local_hosts(args.ranks)
    say = lambda stage: print(stage, file=sys.stderr, flush=True)  # noqa: E731
    engine = PipelineEngine.load_cluster(model, hosts, progress=say)
    print("Answering", file=sys.stderr, flush=True)
    messages = _question()
    final = _answer(engine, messages)
    peaks = engine.pipeline.peak_memory()
    ranks = engine.ranks
    context = len(final.prompt_token_ids) + final.generation_tokens
    plan = plan_model(model, backend="cpu")
    tiles = _image_tiles(model)
    shares = plan_cluster(plan, [1] * ranks, context, 512, image_tiles=tiles).ranks
    prompt = len(final.prompt_token_ids)
    print(
        f"{model.name}: {ranks} ranks, {prompt} prompt tokens with 1 image ({tiles} tile(s)), "
        f"split {engine.split}"
    )
    print(f"  whole model planned: {_gb(plan.peak_bytes(context, 512))} (weights {_gb(plan.weights.total)})")
    for share, peak in zip(shares, peaks, strict=True):
        start, end = share.layers
        print(
            f"  rank {share.rank}: layers {start}-{end - 1}  measured peak {_gb(peak)}  "
            f"planned {_gb(share.peak_bytes)} (weights {_gb(share.weights_bytes)}, "
            f"KV {_gb(share.kv_bytes)})  "
            f"measured/planned {peak / share.peak_bytes:.2f}"
        )
    print(f"  tokens: {list(final.token_ids)}  ({final.finish_reason})")
    engine.close()
    if args.single and not launched:
        from models.inference.engine import Engine

        alone = _answer(Engine.load(model), messages)
        same = list(alone.token_ids) == list(final.token_ids)
        peak = _gb(alone.peak_memory_gb * 1e9)
        print(f"  one rank: {list(alone.token_ids)}  identical: {same}  peak {peak}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
