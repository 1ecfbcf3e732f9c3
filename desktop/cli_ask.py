"""``llama-desk ask``: one question (with images) answered on stdout by the engine.

Streams the answer as it is generated, or with ``--json`` prints one JSON object with the
text, token ids and figures. Never opens a window and never imports Qt.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

from desktop.command_error import CommandError


def add_parser(sub) -> None:
    parser = sub.add_parser("ask", help="answer one question on the command line")
    parser.add_argument("--model", required=True, help="checkpoint folder or downloaded repo id")
    parser.add_argument("--image", action="append", default=[], metavar="FILE",
                        help="attach an image (repeat for several, at most 5)")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--temperature", type=float, default=0.6, help="0 is greedy")
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--context-length", type=int, help="refuse prompts longer than this")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("prompt", help="the question")
    parser.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.max_tokens < 1:
        raise CommandError("--max-tokens must be at least 1.", 2)
    if args.temperature < 0:
        raise CommandError("--temperature cannot be negative.", 2)
    if not 0 < args.top_p <= 1:
        raise CommandError("--top-p must be in (0, 1].", 2)
    if args.context_length is not None and args.context_length < 2:
        raise CommandError("--context-length must be at least 2.", 2)
    if not args.prompt.strip() and not args.image:
        raise CommandError("the prompt is empty.", 2)


def run(args: argparse.Namespace) -> int:
    from models.checkpoint import CheckpointError
    from models.engine import Engine, GenerationSettings, ModelLoadError
    from models.images import ImageError, check_image_count, load_image_file
    from models.prompt import ChatMessage
    from models.store import ModelNotFound, resolve_model

    _check_args(args)
    try:
        check_image_count(len(args.image))
        images = tuple(load_image_file(path) for path in args.image)
    except ImageError as exc:
        raise CommandError(str(exc)) from None
    try:
        engine = Engine.load(resolve_model(args.model))
    except (ModelNotFound, CheckpointError, ModelLoadError) as exc:
        raise CommandError(str(exc)) from None

    messages = []
    if args.system:
        messages.append(ChatMessage("system", args.system))
    messages.append(ChatMessage("user", args.prompt, images))
    settings = GenerationSettings(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        context_length=args.context_length,
    )
    cancel = threading.Event()
    parts: list[str] = []
    final = None
    try:
        for step in engine.generate(messages, settings, cancel):
            parts.append(step.text)
            if not args.json and step.text:
                sys.stdout.write(step.text)
                sys.stdout.flush()
            if step.finish_reason:
                final = step
    except KeyboardInterrupt:
        cancel.set()
        raise
    if final is None:  # the engine always ends with a finish_reason; guard anyway
        raise CommandError("the engine stopped without an answer.")
    if args.json:
        print(json.dumps({
            "text": "".join(parts),
            "token_ids": list(final.token_ids),
            "prompt_token_ids": list(final.prompt_token_ids),
            "prompt_tokens": final.prompt_tokens,
            "generation_tokens": final.generation_tokens,
            "ttft_s": round(final.ttft_s, 6),
            "prompt_tps": round(final.prompt_tps, 3),
            "generation_tps": round(final.generation_tps, 3),
            "peak_memory_gb": round(final.peak_memory_gb, 6),
            "finish_reason": final.finish_reason,
        }, ensure_ascii=False))
    else:
        sys.stdout.write("\n")
    if final.finish_reason == "error":
        raise CommandError(final.error or "generation failed.")
    return 0
