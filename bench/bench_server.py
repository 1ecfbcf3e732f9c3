"""Speed through the local OpenAI-compatible server against the engine directly, same model.

For a synthesized Llama 4 checkpoint (4-bit, the shape of ``bench_speed.py``):

- **decode tokens/s**: the engine's own ``generation_tps`` when called directly (a job handed
  to the owner thread with no HTTP, so the same engine on the same thread), and through the
  server, measured by the official ``openai`` client on a streamed answer (first content
  chunk to the last, completion tokens from the final ``usage``); the ratio server/direct
  (goal >= 0.97);
- **time to first token of a follow-up request** that resends the whole conversation, with the
  engine's KV cache holding its prefix (the request right after the first turn) and without
  (after an unrelated request has replaced the cache), both as the client sees them.

Figures, not pass/fail: ``uv run python bench/bench_server.py``. On a machine shared with
other work, take the best of a few runs.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

MAX_TOKENS = 120
RUNS = 3


def _direct_tps(owner, question, max_tokens: int) -> tuple[float, int]:
    """The engine's own decode tokens/s, called directly (no HTTP) on the owner's thread."""
    import queue

    from models.inference.engine import GenerationSettings

    events: queue.Queue = queue.Queue()
    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0)
    job = owner.submit(question, settings, events.put)
    job.done.wait()
    return job.final.generation_tps, job.final.generation_tokens


def _streamed(client, messages, max_tokens: int):
    """(time to first content, decode tokens/s, usage) of one streamed answer, client side."""
    start = time.perf_counter()
    first = last = None
    usage = None
    stream = client.chat.completions.create(
        model="llama", messages=messages, max_tokens=max_tokens, temperature=0, stream=True
    )
    for chunk in stream:
        now = time.perf_counter()
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and (chunk.choices[0].delta.content or chunk.choices[0].finish_reason):
            first = first or now
            last = now
    tokens = usage.completion_tokens
    tps = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return first - start, tps, usage


def main() -> None:
    from openai import OpenAI

    from models.inference.prompt import ChatMessage
    from models.serving.api_server import ServerThread, create_app
    from models.serving.engine_host import EngineHost
    from tests.support.synthetic_checkpoints import bench_shape, quantize_checkpoint, write_checkpoint

    shape = bench_shape()
    text = "Describe a long walk along the coast. " * 12
    with tempfile.TemporaryDirectory() as folder:
        source = write_checkpoint(Path(folder) / "bf16", shape)
        path = quantize_checkpoint(source, Path(folder) / "4bit", bits=4, group_size=64)
        owner = EngineHost(path)
        owner.start()
        server = ServerThread(create_app(owner), port=0)
        server.start()
        client = OpenAI(base_url=server.url, api_key="bench", max_retries=0, timeout=600)
        try:
            question = [ChatMessage("user", text)]
            messages = [{"role": "user", "content": text}]
            _direct_tps(owner, question, 8)  # warm up both paths
            _streamed(client, messages, 8)
            direct, served = [], []
            for _ in range(RUNS):
                tps, tokens = _direct_tps(owner, question, MAX_TOKENS)
                direct.append(tps)
                _ttft, server_tps, usage = _streamed(client, messages, MAX_TOKENS)
                served.append(server_tps)
            best_direct, best_served = max(direct), max(served)
            print(
                f"decode tok/s   engine directly {best_direct:8.1f}   through the server {best_served:8.1f}"
                f"   ratio {best_served / best_direct:.3f}   ({tokens} / {usage.completion_tokens} tokens, "
                f"best of {RUNS})"
            )

            first = client.chat.completions.create(
                model="llama", messages=messages, max_tokens=32, temperature=0
            )
            history = messages + [
                {"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "And then?"},
            ]
            warm_runs, cold_runs = [], []
            for _ in range(RUNS):
                client.chat.completions.create(model="llama", messages=messages, max_tokens=32, temperature=0)
                warm_runs.append(_streamed(client, history, 1))
                other = [{"role": "system", "content": "Answer in French."}, *history]
                client.chat.completions.create(model="llama", messages=other, max_tokens=1, temperature=0)
                cold_runs.append(_streamed(client, history, 1))
            warm = min(warm_runs, key=lambda run: run[0])
            cold = min(cold_runs, key=lambda run: run[0])
            print(
                f"follow-up request  TTFT without reuse {cold[0] * 1000:7.1f} ms "
                f"({cold[2].prompt_tokens_details.cached_tokens} of {cold[2].prompt_tokens} cached)   "
                f"with reuse {warm[0] * 1000:7.1f} ms "
                f"({warm[2].prompt_tokens_details.cached_tokens} of {warm[2].prompt_tokens} cached)   "
                f"ratio {warm[0] / cold[0]:.3f}"
            )
        finally:
            server.stop()
            owner.close()


if __name__ == "__main__":
    main()
