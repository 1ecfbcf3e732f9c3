"""Continuous batching at Scout's real size, in one process: the engine against bare mlx-lm, and
many clients of the real HTTP server against one.

The model is mlx-vlm's Llama 4 built in memory from Meta's Scout config (48 layers, 16 experts,
hidden 5,120, vocabulary 202,048; the vision tower is the tiny one of the synthesized checkpoint,
which text prompts never run), with seeded random weights quantized to 4 bits (group 64) layer by
layer, so the full-precision weights of only one layer exist at a time. It is handed to the
project's ``Engine`` with the tokenizer and processor files of a synthesized checkpoint
(``tests.support.synthetic_checkpoints``); a logits fingerprint shows that every process built
the same model. Random weights favour byte-fragment tokens, which a streaming detokenizer holds
back, so both sides sample only from a few ASCII word tokens (the same mask for the engine and
for bare mlx-lm; the engine's banned-id mask is replaced by it). (Over 400 lines because it
builds the model, runs three measurements and writes each as it goes, in one process that must
end within one device call.)

Measurements (``--parts a,b,c``; each result is written to ``$OUT/results.json`` as soon as it
is taken, so a run cut short still returns what it measured):

- **a**: single-stream decode tokens/s, ``Engine.generate`` against mlx-lm's ``generate_step`` on
  the same language model (``LanguageModelAdapter``), greedy, alternating pairs; medians, ratio.
- **b**: continuous batching through ``EngineHost`` (``parallel`` 8) and the real server
  (``create_app`` + ``ServerThread`` on port 0): 1, 2, 4 and 8 concurrent streamed clients
  with different prompts of about 200 tokens; aggregate tokens/s (all completion tokens over the
  wall time from the first request to the last answer's end) and its ratio to one client, in
  repeats of alternating order.
- **c**: a newcomer's time to first token while 4 answers stream, against a lone request's with
  the same prompt (each request's prompt carries its own label, so no cache holds it).

Figures, not pass/fail. On the GPU machine: ``python3 bench/bench_batching_scout.py`` (see
``--help``); here, a CPU dry run of the same code at a tiny shape:
``uv run python bench/bench_batching_scout.py --tiny``. The whole run keeps within
``--budget-s`` (parts that would not fit are skipped and say so).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MLX_PTX_CACHE_DIR", "/tmp/mlxptx")  # read when mlx loads: set it first

START = time.perf_counter()
GROUP_SIZE, BITS = 64, 4
TINY_TEXT = {  # --tiny: the same code path at a CPU size
    "hidden_size": 256,
    "intermediate_size": 256,
    "intermediate_size_mlp": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "num_local_experts": 4,
    "interleave_moe_layer_step": 1,
    "moe_layers": [0, 1, 2, 3],
    "no_rope_layers": [1, 1, 1, 0],
    "attention_chunk_size": 8192,  # Scout's: prompts stay within one chunk, as there
}
_WORDS = (
    "the coast walk river stone light morning harbour boat wind north garden window table "
    "music answer question market bridge forest mountain lake field road village story paper "
    "letter summer winter orange silver quiet early later green small large warm cold open "
    "close bright dark little every other people water city train station ticket"
).split()


_LABELS = ("Juniper", "Kestrel", "Lantern", "Meadow", "Nectar", "Quartz", "Ember", "Harbor")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f} s] {message}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - START


class Results:
    """The run's figures, rewritten to ``path`` (atomically) after every measurement."""

    def __init__(self, path: Path, meta: dict):
        self.path = path
        self.data: dict[str, Any] = {"meta": meta, "parts": {}}
        path.parent.mkdir(parents=True, exist_ok=True)
        self.save()

    def put(self, key: str, value: Any) -> None:
        self.data["parts"][key] = value
        self.save()

    def save(self) -> None:
        self.data["meta"]["elapsed_s"] = round(elapsed(), 2)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


# -- the model ------------------------------------------------------------------------------------


def scale_config(checkpoint, tiny: bool):
    """The checkpoint with its text config replaced by Scout's (or the tiny dry-run shape), the
    special-token ids kept where the small tokenizer has them."""
    from tests.support.synthetic_checkpoints import INSTRUCT_TEXT_CONFIG, scout_config

    small = checkpoint.config["text_config"]
    if tiny:
        text = {**small, **TINY_TEXT}
    else:
        text = scout_config()["text_config"]
        text.update(INSTRUCT_TEXT_CONFIG)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            text[key] = small[key]
    config = {**checkpoint.config, "text_config": text}
    return replace(checkpoint, config=config)


def build_model(config: dict, seed: int):
    """mlx-vlm's Llama 4 for ``config``, random (seeded) and quantized module by module.

    MLX initializes parameters lazily, so constructing the model allocates nothing; each decoder
    layer is then cast to bf16, quantized and evaluated before the next, and only that layer's
    full-precision weights are ever materialized."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_vlm.utils import get_model_and_args, update_module_configs

    from models.inference.model_loading import fix_vision_tower

    mx.random.seed(seed)
    model_class, _ = get_model_and_args(config=config)
    model_config = model_class.ModelConfig.from_dict(config)
    model_config = update_module_configs(model_config, model_class, config, ["text", "vision"])
    model = model_class.Model(model_config)
    fix_vision_tower(model)

    def quantizable(_path, module) -> bool:
        return hasattr(module, "to_quantized") and module.weight.shape[-1] % GROUP_SIZE == 0

    def only(name: str):
        return lambda path, module: path == name and quantizable(path, module)

    lm = model.language_model
    layers = lm.model.layers
    for index, layer in enumerate(layers):
        layer.set_dtype(mx.bfloat16)
        nn.quantize(layer, group_size=GROUP_SIZE, bits=BITS, class_predicate=quantizable)
        mx.eval(layer.parameters())
        if index % 8 == 7 or index == len(layers) - 1:
            mx.clear_cache()  # the freed full-precision buffers
            log(f"  layer {index + 1}/{len(layers)} quantized, active {mx.get_active_memory() / 1e9:.1f} GB")
    lm.model.embed_tokens.set_dtype(mx.bfloat16)
    nn.quantize(lm.model, group_size=GROUP_SIZE, bits=BITS, class_predicate=only("embed_tokens"))
    mx.eval(lm.model.embed_tokens.parameters())
    lm.model.norm.set_dtype(mx.bfloat16)
    lm.lm_head.set_dtype(mx.bfloat16)
    nn.quantize(lm, group_size=GROUP_SIZE, bits=BITS, class_predicate=only("lm_head"))
    mx.eval(lm.parameters())
    model.vision_model.set_dtype(mx.bfloat16)
    model.multi_modal_projector.set_dtype(mx.bfloat16)
    mx.eval(model.parameters())
    mx.clear_cache()
    return model


def ascii_word_mask(engine) -> tuple[Any, list[int]]:
    """An additive mask (-inf but on the tokenizer's plain ASCII word tokens) over the model's
    vocabulary, and the allowed ids."""
    import mlx.core as mx
    import numpy as np

    hf = engine.tokenizer._tokenizer
    special = set(hf.all_special_ids) | set(hf.get_added_vocab().values())
    allowed = []
    for token_id in range(len(hf)):
        if token_id in special:
            continue
        text = hf.decode([token_id])
        word = text[1:] if text.startswith(" ") else text
        if word.isascii() and word.isalpha() and len(word) >= 2:
            allowed.append(token_id)
    vocab = int(engine.checkpoint.config["text_config"]["vocab_size"])
    mask = np.full(vocab, -np.inf, dtype=np.float32)
    mask[allowed] = 0.0
    return mx.array(mask), allowed


def fingerprint(engine, ids: list[int]) -> dict:
    """Figures of the last position's logits for ``ids``: equal in every process that built the
    same model."""
    import mlx.core as mx
    import numpy as np

    logits = engine.language_model(mx.array([ids]), cache=engine.new_cache())
    last = np.array(logits[0, -1].astype(mx.float32))
    return {
        "sum": round(float(last.sum()), 4),
        "abs_mean": round(float(np.abs(last).mean()), 6),
        "max": round(float(last.max()), 4),
        "top5": [int(i) for i in np.argsort(-last, kind="stable")[:5]],
        "finite": bool(np.isfinite(last).all()),
    }


def make_engine(folder: Path, tiny: bool, seed: int):
    import mlx.core as mx

    from models.inference.checkpoint import read_checkpoint
    from models.inference.engine import Engine
    from models.inference.model_loading import load_tokenizer
    from tests.support.synthetic_checkpoints import write_checkpoint

    small = read_checkpoint(write_checkpoint(folder / "tokenizer-files", seed=seed))
    tokenizer = load_tokenizer(small)  # the small checkpoint's token ids, before the swap
    checkpoint = scale_config(small, tiny)
    text = checkpoint.config["text_config"]
    log(
        f"building {'tiny' if tiny else 'Scout'} Llama 4: {text['num_hidden_layers']} layers, "
        f"{text['num_local_experts']} experts, hidden {text['hidden_size']}, vocabulary {text['vocab_size']}"
    )
    mx.reset_peak_memory()
    built = time.perf_counter()
    model = build_model(checkpoint.config, seed)
    build_s = time.perf_counter() - built
    weights_gb = mx.get_active_memory() / 1e9
    peak_gb = mx.get_peak_memory() / 1e9
    log(f"built in {build_s:.1f} s: {weights_gb:.2f} GB active, peak {peak_gb:.2f} GB")
    engine = Engine(checkpoint, model, tokenizer)
    return engine, {
        "build_s": round(build_s, 2),
        "weights_gb": round(weights_gb, 3),
        "build_peak_gb": round(peak_gb, 3),
    }


def restrict_sampling(engine) -> tuple[Any, int]:
    """Make the engine sample only ASCII word tokens; the mask, for the bare side too."""
    mask, allowed = ascii_word_mask(engine)
    if hasattr(engine, "_logit_mask"):
        engine._logit_mask = mask
    else:  # the engine changed: its sampler keeps its own mask (say so in the results)
        log("WARNING: Engine has no _logit_mask; the engine side samples from its own mask")
    return mask, len(allowed)


# -- prompts --------------------------------------------------------------------------------------


def prompt_text(engine, label: str, target_tokens: int, seed: int) -> str:
    """``label`` and words in a seeded order, until the chat prompt is about ``target_tokens``."""
    import random

    from models.inference.prompt import ChatMessage

    rng = random.Random(seed)
    hf = engine.tokenizer._tokenizer
    words = [f"{label}:"]
    while len(hf.encode(" ".join(words), add_special_tokens=False)) < target_tokens - 12:
        words.append(rng.choice(_WORDS))
    text = " ".join(words)
    n = len(engine.prepare([ChatMessage("user", text)]).ids)
    while n > target_tokens and len(words) > 2:
        words.pop()
        text = " ".join(words)
        n = len(engine.prepare([ChatMessage("user", text)]).ids)
    return text


# -- a: single stream, engine against bare mlx-lm -------------------------------------------------


def part_a(engine, mask, args, results: Results) -> float | None:
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.sample_utils import make_sampler

    from models.inference.engine import GenerationSettings
    from models.inference.kv_reuse import masked_sampler
    from models.inference.prompt import ChatMessage

    question = [ChatMessage("user", "Describe a long walk along the coast.")]
    prompt_ids = engine.prepare(question).ids
    sampler = masked_sampler(make_sampler(temp=0.0), mask)

    def bare(max_tokens: int) -> dict:
        cache = engine.new_cache()
        start = time.perf_counter()
        first = None
        n = 0
        for _token, _ in generate_step(
            mx.array(prompt_ids),
            engine.language_model,
            max_tokens=max_tokens,
            sampler=sampler,
            prompt_cache=cache,
            prefill_step_size=512,
        ):
            n += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        assert first is not None
        return {"decode_tps": (n - 1) / (end - first) if n > 1 else 0.0, "tokens": n, "ttft_s": first - start}

    def through_engine(max_tokens: int) -> dict:
        engine.reset_cache()
        settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0)
        steps = list(engine.generate(question, settings))
        final = steps[-1]
        if final.finish_reason == "error":
            raise RuntimeError(final.error)
        text = "".join(step.text for step in steps)
        return {
            "decode_tps": final.generation_tps,
            "tokens": final.generation_tokens,
            "ttft_s": final.ttft_s,
            "text_chars": len(text),
        }

    log(f"a: warm-up (prompt {len(prompt_ids)} tokens)")
    bare(8)
    through_engine(8)
    pairs: list[dict] = []
    out: dict[str, Any] = {"prompt_tokens": len(prompt_ids), "max_tokens": args.max_tokens, "pairs": pairs}
    for index in range(args.pairs):
        if pairs and elapsed() > args.budget_s - 3 * args.max_tokens / max(
            1.0, pairs[-1]["bare"]["decode_tps"]
        ):
            out["skipped"] = f"pairs after {index}: time budget"
            log(f"a: {out['skipped']}")
            break
        b = bare(args.max_tokens)
        e = through_engine(args.max_tokens)
        pairs.append({"bare": b, "engine": e})
        log(
            f"a: pair {index + 1}: bare {b['decode_tps']:.1f} tok/s, engine {e['decode_tps']:.1f} tok/s "
            f"({e['tokens']} tokens, {e['text_chars']} chars streamed)"
        )
        out["bare_median_tps"] = statistics.median(p["bare"]["decode_tps"] for p in pairs)
        out["engine_median_tps"] = statistics.median(p["engine"]["decode_tps"] for p in pairs)
        out["ratio_engine_over_bare"] = out["engine_median_tps"] / out["bare_median_tps"]
        results.put("a_single_stream", out)
    if pairs:
        log(
            f"a: medians bare {out['bare_median_tps']:.1f}, engine {out['engine_median_tps']:.1f} tok/s, "
            f"ratio {out['ratio_engine_over_bare']:.3f}"
        )
        return out["bare_median_tps"]
    return None


# -- b and c: clients of the real server ----------------------------------------------------------


def stream_request(url: str, text: str, max_tokens: int, barrier=None, started=None) -> dict:
    """One streamed chat completion, timed as the client sees it."""
    import httpx

    body = {
        "model": "scout",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    usage: dict = {}
    first = last = None
    chunks = 0
    with httpx.Client(timeout=600) as client:
        if barrier is not None:
            barrier.wait()
        start = time.perf_counter()
        with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.read()[:300]!r}")
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise RuntimeError(f"stream error: {event['error']}")
                if event.get("usage"):
                    usage = event["usage"]
                choices = event.get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    now = time.perf_counter()
                    if first is None:
                        first = now
                        if started is not None:
                            started.set()
                    last = now
                    chunks += 1
        end = time.perf_counter()
    tokens = int(usage.get("completion_tokens", 0))
    return {
        "start": start,
        "first": first,
        "last": last,
        "end": end,
        "ttft_s": (first - start) if first is not None else None,
        "tokens": tokens,
        "chunks": chunks,
        "prompt_tokens": usage.get("prompt_tokens"),
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        "decode_tps": (tokens - 1) / (last - first)
        if first and last and last > first and tokens > 1
        else None,
    }


def run_clients(url: str, texts: list[str], max_tokens: int) -> dict:
    """``len(texts)`` clients at once (released together); aggregate figures."""
    n = len(texts)
    barrier = threading.Barrier(n)
    answers: list[dict | None] = [None] * n
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            answers[index] = stream_request(url, texts[index], max_tokens, barrier)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    done = [a for a in answers if a is not None]
    span = max(a["end"] for a in done) - min(a["start"] for a in done)
    tokens = sum(a["tokens"] for a in done)
    rates = [a["decode_tps"] for a in done if a["decode_tps"]]
    ttfts = [a["ttft_s"] for a in done if a["ttft_s"] is not None]
    return {
        "clients": n,
        "tokens": tokens,
        "wall_s": round(span, 4),
        "aggregate_tps": tokens / span if span > 0 else 0.0,
        "sum_client_decode_tps": sum(rates),
        "median_client_decode_tps": statistics.median(rates) if rates else None,
        "median_ttft_s": statistics.median(ttfts) if ttfts else None,
        "max_ttft_s": max(ttfts) if ttfts else None,
        "prompt_tokens": [a["prompt_tokens"] for a in done],
        "cached_tokens": [a["cached_tokens"] for a in done],
    }


def part_b(url: str, engine, args, results: Results, single_tps: float) -> None:
    levels = args.clients
    orders = [levels if r % 2 == 0 else list(reversed(levels)) for r in range(args.repeats)]
    log("b: warm-up at each concurrency")
    for n in levels:
        texts = [
            prompt_text(engine, f"Warm {n}-{i}", args.prompt_tokens, 1000 + 10 * n + i) for i in range(n)
        ]
        run_clients(url, texts, 4)
    runs: list[dict] = []
    out: dict[str, Any] = {
        "max_tokens": args.max_tokens,
        "prompt_tokens_target": args.prompt_tokens,
        "runs": runs,
    }
    for repeat, order in enumerate(orders):
        for n in order:
            # a batch of n decodes at least at the single-stream rate: the most it can take
            need = n * args.max_tokens / max(1.0, single_tps) + 5
            if elapsed() + need > args.budget_s:
                out.setdefault("skipped", []).append(f"repeat {repeat + 1}, {n} clients: time budget")
                log(f"b: skipped repeat {repeat + 1} with {n} clients (time budget)")
                results.put("b_batching", out)
                continue
            texts = [
                prompt_text(
                    engine, f"Client {repeat}-{n}-{i}", args.prompt_tokens, 10_000 * repeat + 100 * n + i
                )
                for i in range(n)
            ]
            run = run_clients(url, texts, args.max_tokens)
            run["repeat"] = repeat + 1
            runs.append(run)
            log(
                f"b: repeat {repeat + 1}, {n} clients: {run['aggregate_tps']:.1f} tok/s aggregate "
                f"({run['tokens']} tokens in {run['wall_s']:.2f} s), client decode median "
                f"{run['median_client_decode_tps'] or 0:.1f} tok/s, "
                f"TTFT median {run['median_ttft_s'] or 0:.3f} s"
            )
            summarize_b(out, levels)
            results.put("b_batching", out)
    if "summary" in out:
        for n, row in out["summary"].items():
            log(f"b: {n} clients: median {row['aggregate_tps']:.1f} tok/s, ratio {row['ratio_vs_1']:.2f}x")


def summarize_b(out: dict, levels: list[int]) -> None:
    summary = {}
    for n in levels:
        figures = [r["aggregate_tps"] for r in out["runs"] if r["clients"] == n]
        if figures:
            summary[str(n)] = {"aggregate_tps": statistics.median(figures), "runs": len(figures)}
    base = summary.get("1", {}).get("aggregate_tps")
    for row in summary.values():
        row["ratio_vs_1"] = row["aggregate_tps"] / base if base else None
    out["summary"] = summary


def part_c(url: str, engine, args, results: Results, single_tps: float) -> None:
    runs: list[dict] = []
    out: dict[str, Any] = {"background_clients": 4, "runs": runs}
    newcomer_tokens = 16
    background_tokens = max(2 * args.max_tokens, 64)
    base = prompt_text(engine, "Juniper", args.prompt_tokens, 77).split(" ", 1)[1]

    def text(label: str) -> str:
        # The same words after a first word of its own, which no other prompt starts with: only
        # the chat template's header is ever found in a cache.
        return f"{label}: {base}"

    def lone(label: str) -> dict:
        return stream_request(url, text(label), newcomer_tokens)

    def newcomer(label: str, repeat: int) -> dict:
        started = [threading.Event() for _ in range(4)]
        answers: list[dict | None] = [None] * 4
        errors: list[BaseException] = []

        texts = [
            prompt_text(engine, f"Stream {repeat}-{i}", args.prompt_tokens, 500 + 10 * repeat + i)
            for i in range(4)
        ]

        def background(index: int) -> None:
            try:
                answers[index] = stream_request(url, texts[index], background_tokens, started=started[index])
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                started[index].set()

        threads = [threading.Thread(target=background, args=(i,), daemon=True) for i in range(4)]
        for thread in threads:
            thread.start()
        for event in started:
            event.wait(300)
        if errors:
            raise RuntimeError(f"a background client failed: {errors[0]!r}")
        result = stream_request(url, text(label), newcomer_tokens)
        for thread in threads:
            thread.join(600)
        done = [a for a in answers if a is not None]
        first = result["first"] or result["end"]
        result["background_still_streaming"] = sum(1 for a in done if a["last"] and a["last"] > first)
        result["background_decode_tps"] = [a["decode_tps"] for a in done]
        return result

    order = (["lone", "newcomer", "newcomer", "lone"] * args.repeats)[: 2 * args.repeats]
    for index, kind in enumerate(order):
        need = 4 * background_tokens / max(1.0, single_tps) + 5
        if elapsed() + need > args.budget_s:
            out.setdefault("skipped", []).append(f"{kind} #{index + 1}: time budget")
            log(f"c: skipped {kind} #{index + 1} (time budget)")
            break
        label = _LABELS[index % len(_LABELS)] + ("" if index < len(_LABELS) else str(index))
        result = lone(label) if kind == "lone" else newcomer(label, index)
        result["kind"] = kind
        runs.append(result)
        log(
            f"c: {kind}: TTFT {result['ttft_s']:.3f} s (prompt {result['prompt_tokens']} tokens, "
            f"{result['cached_tokens']} cached)"
            + (f", {result['background_still_streaming']}/4 still streaming" if kind == "newcomer" else "")
        )
        lones = [r["ttft_s"] for r in runs if r["kind"] == "lone"]
        newcomers = [r["ttft_s"] for r in runs if r["kind"] == "newcomer"]
        if lones and newcomers:
            out["lone_median_ttft_s"] = statistics.median(lones)
            out["newcomer_median_ttft_s"] = statistics.median(newcomers)
            out["ratio_newcomer_over_lone"] = out["newcomer_median_ttft_s"] / out["lone_median_ttft_s"]
        results.put("c_newcomer_ttft", out)
    if "ratio_newcomer_over_lone" in out:
        log(
            f"c: newcomer TTFT {out['newcomer_median_ttft_s']:.3f} s "
            f"vs lone {out['lone_median_ttft_s']:.3f} s, "
            f"ratio {out['ratio_newcomer_over_lone']:.2f}"
        )


# -- main -----------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny shape (CPU dry run of the same code)")
    parser.add_argument("--parts", default="a,b,c", help="measurements to take (default a,b,c)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (default 128)")
    parser.add_argument(
        "--prompt-tokens", type=int, default=200, help="prompt length in b and c (default 200)"
    )
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs in a (default 3)")
    parser.add_argument("--repeats", type=int, default=2, help="repeats in b and c (default 2)")
    parser.add_argument("--clients", default="1,2,4,8", help="concurrent clients in b (default 1,2,4,8)")
    parser.add_argument(
        "--parallel", type=int, default=8, help="the engine host's parallel answers (default 8)"
    )
    parser.add_argument(
        "--budget-s", type=float, default=540.0, help="end within this many seconds (default 540)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or "/tmp/bench_batching_scout",
        help="results folder (default $OUT, else /tmp/bench_batching_scout)",
    )
    args = parser.parse_args()
    args.parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    args.clients = [int(n) for n in str(args.clients).split(",")]
    if 1 not in args.clients:
        args.clients.insert(0, 1)
    return args


def main() -> None:
    args = parse_args()
    from importlib.metadata import version

    import mlx.core as mx

    results = Results(
        Path(args.out) / "results.json",
        {
            "args": {k: sorted(v) if isinstance(v, set) else v for k, v in vars(args).items()},
            "device": str(mx.default_device()),
            "mlx": version("mlx"),
            "python": sys.version.split()[0],
            "ptx_cache": os.environ.get("MLX_PTX_CACHE_DIR"),
        },
    )
    try:
        results.data["meta"]["device_info"] = {k: str(v) for k, v in mx.device_info().items()}
    except Exception:  # noqa: BLE001 - informational only
        pass
    log(f"mlx {version('mlx')} on {mx.default_device()}, results to {results.path}")
    with tempfile.TemporaryDirectory() as folder:
        engine, built = make_engine(Path(folder), args.tiny, args.seed)
        mask, allowed = restrict_sampling(engine)
        built["sampled_token_count"] = allowed
        fp_ids = [
            int(i)
            for i in engine.tokenizer._tokenizer.encode("The quick brown fox jumps", add_special_tokens=False)
        ]
        compiled = time.perf_counter()
        built["fingerprint"] = fingerprint(engine, fp_ids)
        built["first_forward_s"] = round(time.perf_counter() - compiled, 2)
        results.put("model", built)
        log(
            f"fingerprint {built['fingerprint']} "
            f"(first forward {built['first_forward_s']} s); {allowed} ids sampled"
        )

        single_tps = 30.0  # until part a measures it
        if "a" in args.parts:
            measured = part_a(engine, mask, args, results)
            single_tps = measured or single_tps
        if args.parts & {"b", "c"}:
            run_server_parts(engine, args, results, single_tps)
        else:
            results.data["meta"]["peak_memory_gb"] = round(mx_peak_gb(), 3)
        results.save()
    log(f"done in {elapsed():.1f} s")


def mx_peak_gb() -> float:
    import mlx.core as mx

    return mx.get_peak_memory() / 1e9


def run_server_parts(engine, args, results: Results, single_tps: float) -> None:
    from models.serving.api_server import ServerThread, create_app
    from models.serving.engine_host import EngineHost

    host = EngineHost(
        "/nonexistent/scout-random-4bit",
        loader=lambda _path, **_kw: engine,
        parallel=args.parallel,
        fits=lambda _contexts: True,  # no checkpoint folder to plan memory from
    )
    host.start(timeout=120)
    server = ServerThread(create_app(host, model_id="scout"), port=0)
    server.start()
    url = server.url
    log(f"server at {url}, parallel {args.parallel}")
    try:
        if "b" in args.parts:
            part_b(url, engine, args, results, single_tps)
        if "c" in args.parts:
            part_c(url, engine, args, results, single_tps)
    finally:
        results.data["meta"]["peak_memory_gb"] = round(mx_peak_gb(), 3)
        server.stop()
        host.close()  # which releases the engine too


if __name__ == "__main__":
    main()
