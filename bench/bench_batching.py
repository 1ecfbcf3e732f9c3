"""Continuous batching through the local API server: many streamed clients against one alone.

On one ``EngineHost`` (``--parallel`` slots, default the most clients asked for, at least five)
behind the real HTTP server (``create_app`` + ``ServerThread``), for a synthesized 4-bit Llama 4
checkpoint (the benchmarks' shape, as ``bench_server.py``; ``--bits 8``, or ``--bits 16`` for its
bf16 original, which MLX's CPU backend runs in float32) or ``--model FOLDER``:

- **aggregate tokens/s** with 1, 2, 4, 8 (``--clients``) concurrent clients, each streaming one
  greedy answer of ``--max-tokens`` to its own prompt of about ``--prompt-tokens`` tokens
  through the official ``openai`` client from its own thread: all completion tokens over the
  wall time from the first request's start to the last answer's end (prefills included), and the
  ratio to one client's; also the decode aggregate, the rate of content chunks of all streams
  while every one of them decodes (no prompt being read: the batch's steady state);
- **a newcomer's time to first token**: while four clients stream, one more request (a prompt of
  the same length) arrives; its time to its first content chunk against a lone request's (one
  prefill chunk's time on an idle engine), and the longest gap the four streams saw meanwhile.

Every prompt is new (no KV-cache reuse between runs). The configurations alternate in order
(1, 2, 4, 8 then 8, 4, 2, 1, ...) for ``--repeats`` rounds, so a machine that speeds up or slows
down affects them alike; medians are printed, and ``--out FILE`` writes them with every run as
JSON. Figures, not pass/fail: ``uv run python bench/bench_batching.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NEWCOMER_AFTER = 4  # clients already streaming when the newcomer arrives
NEWCOMER_TOKENS = 4  # the newcomer's answer: only its first token is timed

_WORDS = (
    "the quick brown fox jumps over lazy dog what is in this picture a cat sits on red chair next "
    "to window llama desk answers questions about images locally here some code numbers and "
    "punctuation commas periods colons photo shows mountains lake trees long walk along coast"
).split()


@dataclass
class Stream:
    """One streamed answer as the client saw it (``time.perf_counter`` seconds)."""

    start: float = 0.0
    first: float | None = None
    end: float = 0.0
    tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    chunk_times: list[float] = field(default_factory=list)
    decoding: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    @property
    def ttft(self) -> float:
        return (self.first or self.end) - self.start


def _stream(client, prompt: str, max_tokens: int, record: Stream) -> None:
    """Stream one greedy answer to ``prompt`` into ``record`` (never raises: errors are kept)."""
    try:
        record.start = time.perf_counter()
        stream = client.chat.completions.create(
            model="llama",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        for chunk in stream:
            now = time.perf_counter()
            if chunk.usage is not None:
                record.tokens = chunk.usage.completion_tokens
                record.prompt_tokens = chunk.usage.prompt_tokens
                details = chunk.usage.prompt_tokens_details
                record.cached_tokens = (details.cached_tokens or 0) if details else 0
            if chunk.choices and chunk.choices[0].delta.content:
                record.chunk_times.append(now)
                if record.first is None:
                    record.first = now
                    record.decoding.set()
        record.end = time.perf_counter()
    except Exception as exc:  # noqa: BLE001 - reported with the run
        record.end = time.perf_counter()
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.decoding.set()


def _start(client, prompt: str, max_tokens: int) -> tuple[Stream, threading.Thread]:
    record = Stream()
    thread = threading.Thread(target=_stream, args=(client, prompt, max_tokens, record), daemon=True)
    thread.start()
    return record, thread


def _concurrent(client, prompts: list[str], max_tokens: int) -> dict:
    """All ``prompts`` streamed at once, one client thread each; the run's figures."""
    records = [Stream() for _ in prompts]
    barrier = threading.Barrier(len(prompts))

    def run(prompt: str, record: Stream) -> None:
        barrier.wait()
        _stream(client, prompt, max_tokens, record)

    threads = [
        threading.Thread(target=run, args=pair, daemon=True) for pair in zip(prompts, records, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r.error for r in records if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(records)} requests failed: {errors[0]}")
    wall = max(r.end for r in records) - min(r.start for r in records)
    tokens = sum(r.tokens for r in records)
    return {
        "clients": len(prompts),
        "wall_s": wall,
        "completion_tokens": tokens,
        "prompt_tokens": sum(r.prompt_tokens for r in records),
        "cached_tokens": sum(r.cached_tokens for r in records),
        "aggregate_tps": tokens / wall,
        "decode_aggregate_tps": _all_streaming_tps(records),
        "mean_ttft_s": statistics.fmean(r.ttft for r in records),
        "max_ttft_s": max(r.ttft for r in records),
    }


def _all_streaming_tps(records: list[Stream]) -> float:
    """Tokens/s of all the streams together while every one of them decodes (from the last
    first token to the first end: no prompt is being read then); 0 when they never all do."""
    since = max(r.first or r.end for r in records)
    until = min(r.end for r in records)
    if until <= since:
        return 0.0
    return sum(1 for r in records for t in r.chunk_times if since < t <= until) / (until - since)


def _newcomer(client, background: list[str], newcomer: str, lone: str, max_tokens: int) -> dict:
    """A lone request's time to first token, then a newcomer's while ``background`` stream."""
    alone = Stream()
    _stream(client, lone, NEWCOMER_TOKENS, alone)
    streams = [_start(client, prompt, max_tokens) for prompt in background]
    for record, _thread in streams:
        record.decoding.wait()
    late = Stream()
    _stream(client, newcomer, NEWCOMER_TOKENS, late)
    for _record, thread in streams:
        thread.join()
    records = [alone, late] + [record for record, _ in streams]
    errors = [r.error for r in records if r.error]
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]}")
    arrived, answered = late.start, late.first or late.end
    gaps = []
    for record, _ in streams:
        times = [record.start] + record.chunk_times
        # the longest silence of this stream overlapping the newcomer's wait for its first token
        gaps += [b - a for a, b in zip(times, times[1:], strict=False) if b > arrived and a < answered]
    return {
        "lone_ttft_s": alone.ttft,
        "newcomer_ttft_s": late.ttft,
        "ratio": late.ttft / alone.ttft,
        "prompt_tokens": late.prompt_tokens,
        "cached_tokens": late.cached_tokens,
        "others_longest_gap_s": max(gaps, default=0.0),
        "others_streaming_at_first_token": sum(1 for record, _ in streams if record.end > answered),
    }


def _prompts(host, count: int, tokens: int) -> list[str]:
    """``count`` different prompts of at least ``tokens`` prompt tokens each (template included),
    made from the tokenizer's own words so the length is close to what is asked."""
    from models.inference.prompt import ChatMessage

    def build(engine) -> list[str]:
        texts = []
        for n in range(count):
            rng = random.Random(n)
            words = [f"Request {n}:"]
            while True:
                words += rng.choices(_WORDS, k=8)
                text = " ".join(words) + "."
                if len(engine.prepare([ChatMessage("user", text)]).ids) >= tokens:
                    break
            texts.append(text)
        return texts

    return host.call(build).result()


def _median_row(rows: list[dict]) -> dict:
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    return {k: statistics.median(row[k] for row in rows) for k in keys}


def _machine() -> dict:
    import mlx.core as mx

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "mlx": mx.__version__,
        "device": str(mx.default_device()),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,2,4,8", help="concurrent clients to try (default 1,2,4,8)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (default 128)")
    parser.add_argument("--prompt-tokens", type=int, default=300, help="tokens per prompt (default 300)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every configuration (default 3)")
    parser.add_argument(
        "--parallel", type=int, default=None, help="the host's slots (default: most clients, >= 5)"
    )
    parser.add_argument("--model", help="a checkpoint folder (default: synthesize the benchmarks' shape)")
    parser.add_argument(
        "--bits",
        type=int,
        choices=(4, 8, 16),
        default=4,
        help="the synthesized checkpoint's weights: 4- or 8-bit, or 16 (bf16; float32 on MLX's CPU backend)",
    )
    parser.add_argument("--no-newcomer", action="store_true", help="skip the newcomer's time to first token")
    parser.add_argument("--out", help="write the figures and every run here as JSON")
    args = parser.parse_args()
    clients = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    if not clients or clients[0] < 1:
        parser.error("--clients takes positive numbers, e.g. 1,2,4,8")
    repeats = max(1, args.repeats)
    parallel = args.parallel or max(max(clients), NEWCOMER_AFTER + 1)

    with tempfile.TemporaryDirectory() as folder:
        if args.model:
            path = Path(args.model)
        else:
            from tests.support.synthetic_checkpoints import bench_shape, quantize_checkpoint, write_checkpoint

            source = write_checkpoint(Path(folder) / "bf16", bench_shape())
            if args.bits == 16:
                path = source
            else:
                path = quantize_checkpoint(
                    source, Path(folder) / f"{args.bits}bit", bits=args.bits, group_size=64
                )
        report = _run(
            path, clients, args.max_tokens, args.prompt_tokens, repeats, parallel, not args.no_newcomer
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


def _run(path, clients, max_tokens, prompt_tokens, repeats, parallel, newcomer) -> dict:
    from openai import OpenAI

    from models.serving.api_server import ServerThread, create_app
    from models.serving.engine_host import EngineHost

    host = EngineHost(path, parallel=parallel, queue_limit=64)
    host.start()
    server = ServerThread(create_app(host), port=0)
    server.start()
    client = OpenAI(base_url=server.url, api_key="bench", max_retries=0, timeout=3600)
    try:
        per_round = sum(clients) + (NEWCOMER_AFTER + 2 if newcomer else 0)
        prompts = iter(_prompts(host, per_round * repeats + 2, prompt_tokens))
        _concurrent(client, [next(prompts), next(prompts)], 8)  # warm up: load, compile, connect
        runs: dict[int, list[dict]] = {n: [] for n in clients}
        newcomer_runs: list[dict] = []
        started = time.perf_counter()
        for round_ in range(repeats):
            order = clients if round_ % 2 == 0 else clients[::-1]
            for n in order:
                row = _concurrent(client, [next(prompts) for _ in range(n)], max_tokens)
                runs[n].append(row)
                plural = "s" if n > 1 else " "
                print(
                    f"round {round_ + 1}  {n} client{plural}  {row['aggregate_tps']:7.2f} tok/s "
                    f"({row['completion_tokens']} tokens in {row['wall_s']:.1f} s)",
                    flush=True,
                )
            if newcomer:
                background = [next(prompts) for _ in range(NEWCOMER_AFTER)]
                row = _newcomer(client, background, next(prompts), next(prompts), max_tokens)
                newcomer_runs.append(row)
                print(
                    f"round {round_ + 1}  newcomer TTFT {row['newcomer_ttft_s']:.2f} s, alone "
                    f"{row['lone_ttft_s']:.2f} s",
                    flush=True,
                )
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
        host.close()

    medians = {n: _median_row(rows) for n, rows in runs.items()}
    base = medians[clients[0]]
    print(
        f"\n{prompt_tokens}+ prompt tokens each, {max_tokens} tokens per answer, greedy; host parallel "
        f"{parallel}; median of {repeats} alternating rounds ({elapsed:.0f} s)"
    )
    print("clients | aggregate tok/s | ratio | decode aggregate tok/s | ratio | wall s | mean TTFT s")
    for n in clients:
        m = medians[n]
        print(
            f"{n:7d} | {m['aggregate_tps']:15.2f} | {m['aggregate_tps'] / base['aggregate_tps']:5.2f} | "
            f"{m['decode_aggregate_tps']:22.2f} | "
            f"{m['decode_aggregate_tps'] / base['decode_aggregate_tps']:5.2f} | {m['wall_s']:6.1f} | "
            f"{m['mean_ttft_s']:11.2f}"
        )
    report: dict = {
        "machine": _machine(),
        "settings": {
            "clients": clients,
            "max_tokens": max_tokens,
            "prompt_tokens": prompt_tokens,
            "repeats": repeats,
            "parallel": parallel,
            "model": str(path) if path else None,
        },
        "medians": {
            str(n): {
                **m,
                "aggregate_ratio": m["aggregate_tps"] / base["aggregate_tps"],
                "decode_ratio": m["decode_aggregate_tps"] / base["decode_aggregate_tps"],
            }
            for n, m in medians.items()
        },
        "runs": {str(n): rows for n, rows in runs.items()},
    }
    if newcomer_runs:
        m = _median_row(newcomer_runs)
        print(
            f"newcomer while {NEWCOMER_AFTER} stream: TTFT {m['newcomer_ttft_s']:.2f} s against "
            f"{m['lone_ttft_s']:.2f} s alone (one prefill chunk, {m['prompt_tokens']:.0f} tokens): "
            f"ratio {m['ratio']:.2f}; the others' longest gap meanwhile {m['others_longest_gap_s']:.2f} s; "
            f"{m['others_streaming_at_first_token']:.0f} of {NEWCOMER_AFTER} still streaming at its "
            "first token"
        )
        report["newcomer"] = {"median": m, "runs": newcomer_runs}
    return report


if __name__ == "__main__":
    main()
