"""Three conversations whose KV caches are kept on disk, answered greedily on 1..N ranks.

Run as ``python -m tests.models.distributed.run_cached_conversations --model PATH --ranks N
--folder DIR --phase switch|reopen`` (a process joins one MLX ring, so the tests run it in a
subprocess; ``converse`` also runs in-process on one machine for the reference answers).
``switch``: answer in conversation A, then in B (longer; cancelled after 3 tokens), then in C,
then in A again (its saved cache is restored while every rank last answered C). ``reopen``: a
fresh engine (a restarted cluster) answers A's third question, B's and C's second, from their
saved caches (the test removes one rank's file of C first). Prints one JSON line per answer; the
answers are kept in ``DIR/history.json`` for the next phase.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
from pathlib import Path

A, B, C = 1, 2, 3
A_QUESTIONS = ("What is in this picture?", "And its colour?", "Say it once more.")
B_QUESTIONS = ("Tell me a long story about a lighthouse keeper, a storm, and a lost ship.", "Go on.")
C_QUESTIONS = ("Name three rivers.", "And three lakes?")
CANCEL_AFTER = 3  # tokens of B's first answer


def _image():
    from PIL import Image

    from models.inference.images import load_image_bytes

    buffer = io.BytesIO()
    Image.new("RGB", (112, 56), (200, 40, 40)).save(buffer, "PNG")
    return load_image_bytes(buffer.getvalue(), "red.png")


def _messages(conversation: int, answers: list[list[int]]) -> list:
    """A conversation up to its next question, after ``answers`` (token ids); A has an image."""
    from models.inference.prompt import ChatMessage

    questions = {A: A_QUESTIONS, B: B_QUESTIONS, C: C_QUESTIONS}[conversation]
    messages = []
    for i, question in enumerate(questions[: len(answers) + 1]):
        image = (_image(),) if i == 0 and conversation == A else ()
        messages.append(ChatMessage("user", question, image))
        if i < len(answers):
            messages.append(ChatMessage("assistant", "", token_ids=tuple(answers[i])))
    return messages


PHASES = {"switch": "ABCA", "reopen": "ABC", "turns": "AA", "resume": "A"}  # answers in order
FIRST = ("switch", "turns")  # the phases that start the conversations (no history yet)


def converse(engine, folder: Path, phase: str, kv_bits: int | None = None) -> list[dict]:
    """Run ``phase`` (see the module docstring) with the caches kept in ``folder``."""
    from models.inference.conversation_caches import ConversationCaches
    from models.inference.engine import GenerationSettings
    from models.inference.prompt_cache_keeper import PromptCacheKeeper

    settings = GenerationSettings(max_tokens=8, temperature=0.0, kv_bits=kv_bits)
    caches = ConversationCaches(PromptCacheKeeper(folder / "kv-caches"))
    history = folder / "history.json"
    answers: dict[str, list] = json.loads(history.read_text("utf-8")) if phase not in FIRST else {}
    records: list[dict] = []

    def answer(conversation: int, cancel_after: int | None = None) -> None:
        done = answers.setdefault(str(conversation), [])
        outcome = caches.open(engine, conversation, settings)
        cancel = threading.Event()
        tokens = 0
        for step in engine.generate(_messages(conversation, done), settings, cancel):
            tokens += step.token is not None
            if tokens == cancel_after:
                cancel.set()
            final = step
        caches.keep(engine, conversation, final)
        caches.keeper.wait()
        done.append(list(final.token_ids))
        records.append(
            {
                "answer": f"{'?ABC'[conversation]}{len(done)}",
                "restored": outcome.value if outcome is not None else None,
                "tokens": list(final.token_ids),
                "cached_tokens": final.cached_tokens,
                "finish_reason": final.finish_reason,
                "error": final.error,
            }
        )

    for name in PHASES[phase]:
        conversation = "?ABC".index(name)
        first = phase == "switch" and conversation == B
        answer(conversation, cancel_after=CANCEL_AFTER if first else None)
    history.write_text(json.dumps(answers), encoding="utf-8")
    caches.keeper.close()
    return records


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--phase", choices=tuple(PHASES), required=True)
    parser.add_argument("--kv-bits", type=int)
    args = parser.parse_args()

    from models.distributed.load import cluster_hosts, load_engine

    engine = load_engine(args.model, cluster_hosts(args.ranks))
    try:
        for record in converse(engine, Path(args.folder), args.phase, args.kv_bits):
            print(json.dumps(record), flush=True)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
