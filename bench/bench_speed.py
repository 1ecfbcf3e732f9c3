"""Speed of the engine against the bare library, on the same model in one run.

For a synthesized Llama 4 checkpoint (4-bit), the same prompt is answered greedily by:

- **bare**: mlx-lm's ``generate_step`` driving mlx-vlm's language model directly (no template,
  no cache reuse, no cancel checks, no detokenizing);
- **engine**: ``models.inference.engine.Engine.generate`` (template, banned-id mask folded into
  the sampler, detokenizer, cancel checks, KV-cache bookkeeping).

The two alternate (bare, engine, bare, engine...) ``--runs`` times, so a machine that speeds up
or slows down during the run affects both alike, and the medians are printed with the ratio
engine/bare (1.0 = no overhead; the goal is at least 0.97 for decoding), then the time to first
token of a follow-up turn with and without the engine's KV-cache reuse.
Figures, not pass/fail: run ``uv run python bench/bench_speed.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _bare_run(engine, prompt_ids: list[int], max_tokens: int) -> tuple[float, float]:
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    cache = engine.new_cache()
    start = time.perf_counter()
    first = None
    n = 0
    for _token, _ in generate_step(
        mx.array(prompt_ids),
        engine.language_model,
        max_tokens=max_tokens,
        sampler=make_sampler(temp=0.0),
        prompt_cache=cache,
        prefill_step_size=512,
    ):
        n += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return len(prompt_ids) / (first - start), (n - 1) / (end - first)


def _engine_run(engine, messages, max_tokens: int):
    from models.inference.engine import GenerationSettings

    engine.reset_cache()
    final = list(
        engine.generate(
            messages, GenerationSettings(max_tokens=max_tokens, temperature=0.0), threading.Event()
        )
    )[-1]
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating runs of each (default 7)")
    runs = max(1, parser.parse_args().runs)
    from models.inference.engine import Engine, GenerationSettings
    from models.inference.prompt import ChatMessage
    from tests.support.synthetic_checkpoints import bench_shape, quantize_checkpoint, write_checkpoint

    shape = bench_shape()
    with tempfile.TemporaryDirectory() as folder:
        source = write_checkpoint(Path(folder) / "bf16", shape)
        path = quantize_checkpoint(source, Path(folder) / "4bit", bits=4, group_size=64)
        engine = Engine.load(path)
        question = [ChatMessage("user", "Describe a long walk along the coast. " * 12)]
        max_tokens = 48
        prompt_ids = engine.prepare(question).ids
        _engine_run(engine, question, 4)  # warm up both paths
        _bare_run(engine, prompt_ids, 4)
        rows = []
        for _ in range(runs):
            bare_prefill, bare_decode = _bare_run(engine, prompt_ids, max_tokens)
            final = _engine_run(engine, question, max_tokens)
            rows.append((bare_prefill, final.prompt_tps, bare_decode, final.generation_tps))
        med = [statistics.median(column) for column in zip(*rows, strict=True)]
        low = [min(column) for column in zip(*rows, strict=True)]
        high = [max(column) for column in zip(*rows, strict=True)]
        print(f"prompt {len(prompt_ids)} tokens, {max_tokens} generated, median of {runs} alternating runs")
        for label, b, e in (("prefill", 0, 1), ("decode ", 2, 3)):
            print(
                f"{label} tok/s   bare {med[b]:8.1f} ({low[b]:.0f}-{high[b]:.0f})   "
                f"engine {med[e]:8.1f} ({low[e]:.0f}-{high[e]:.0f})   ratio {med[e] / med[b]:.3f}"
            )

        steps = list(engine.generate(question, GenerationSettings(max_tokens=32, temperature=0.0)))
        answer = ChatMessage("assistant", "".join(step.text for step in steps), token_ids=steps[-1].token_ids)
        history = question + [answer, ChatMessage("user", "And then?")]
        settings = GenerationSettings(max_tokens=1, temperature=0.0)
        warm = list(engine.generate(history, settings))[-1]
        engine.reset_cache()
        cold = list(engine.generate(history, settings))[-1]
        print(
            f"follow-up turn  cold TTFT {cold.ttft_s * 1000:7.1f} ms "
            f"({cold.prompt_tokens} tokens prefilled)   with cache reuse {warm.ttft_s * 1000:7.1f} ms "
            f"({warm.prompt_tokens} tokens prefilled)   ratio {warm.ttft_s / cold.ttft_s:.3f}"
        )


if __name__ == "__main__":
    main()
