"""A conversation of several turns with two images, answered greedily on 1..N ranks.

Run as ``python -m tests.models.distributed.run_conversation --model PATH --ranks N`` (the
tests run it in a subprocess: a process joins one MLX ring). Prints one JSON line per turn:
the generated token ids, the finish reason, the error, the cached prompt tokens. With
``--kill-rank R --kill-after K`` it kills rank R's process after K tokens of the last turn;
with ``--stop-rank R`` it stops it instead (SIGSTOP: alive but silent), for rank 0's watchdog,
whose timeout ``--reply-timeout S`` sets.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import time

QUESTIONS = ("What is in these two pictures?", "And the colours?", "Say it again, shorter.", "Once more?")


def _image(width: int, height: int, color: tuple[int, int, int], name: str):
    from PIL import Image

    from models.inference.images import load_image_bytes

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return load_image_bytes(buffer.getvalue(), name)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--kill-rank", type=int)
    parser.add_argument("--kill-after", type=int, default=3)
    parser.add_argument("--stop-rank", type=int)
    parser.add_argument("--reply-timeout", type=float)
    args = parser.parse_args()

    from models.inference.engine import Engine, GenerationSettings
    from models.inference.prompt import ChatMessage

    if args.ranks == 1:
        engine = Engine.load(args.model)
    else:
        from models.distributed.driver import PipelineEngine
        from models.distributed.hosts import local_hosts

        engine = PipelineEngine.load_cluster(
            args.model, local_hosts(args.ranks), reply_timeout_s=args.reply_timeout
        )
    settings = GenerationSettings(max_tokens=args.max_tokens, temperature=0.0)
    images = (_image(112, 56, (200, 40, 40), "red.png"), _image(56, 112, (30, 90, 220), "blue.png"))
    messages: list = []
    for turn, question in enumerate(QUESTIONS):
        messages.append(ChatMessage("user", question, images if turn == 0 else ()))
        last = turn == len(QUESTIONS) - 1
        target = args.kill_rank if args.kill_rank is not None else args.stop_rank
        killing = last and target is not None
        how = signal.SIGKILL if args.kill_rank is not None else signal.SIGSTOP
        tokens, killed_at, final = [], None, None
        for step in engine.generate(messages, settings):
            if step.token is not None:
                tokens.append(step.token)
            if killing and killed_at is None and len(tokens) == args.kill_after:
                os.kill(engine.pipeline.cluster.processes[target].pid, how)
                killed_at = time.monotonic()
            final = step
        record = {
            "turn": turn,
            "tokens": tokens,
            "token_ids": list(final.token_ids),
            "finish_reason": final.finish_reason,
            "error": final.error,
            "cached_tokens": final.cached_tokens,
        }
        if killed_at is not None:
            record["noticed_after_s"] = time.monotonic() - killed_at
        print(json.dumps(record), flush=True)
        messages.append(ChatMessage("assistant", engine.tokenizer._tokenizer.decode(list(final.token_ids))))
        if final.error:  # the conversation is kept; the next answer is refused at once
            started = time.monotonic()
            after = list(engine.generate(messages + [ChatMessage("user", "Still there?")], settings))[-1]
            print(json.dumps({"after_error": after.error, "after_s": time.monotonic() - started}), flush=True)
        if final.error:
            break
    if args.ranks > 1 and target is None:
        peaks = engine.pipeline.peak_memory()
        print(json.dumps({"peaks": peaks, "split": engine.split}), flush=True)
    processes = getattr(getattr(engine, "pipeline", None), "cluster", None)
    engine.close()
    if processes is not None:  # how each other rank ended
        print(json.dumps({"exits": [p.returncode for p in processes.processes.values()]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
