"""Two conversations whose KV caches are kept on disk, answered greedily on 1..N ranks.

Run as ``python -m tests.models.distributed.run_cached_conversations --model PATH --ranks N
--folder DIR --phase switch|reopen`` (a process joins one MLX ring, so the tests run it in a
subprocess; ``converse`` also runs in-process on one machine for the reference answers).
``switch``: answer in conversation A, then in B (longer), then in A again (its saved cache is
restored while every rank last answered B). ``reopen``: a fresh engine (a restarted cluster)
answers A's third question from A's saved caches. Prints one JSON line per answer; A's answers
are kept in ``DIR/history.json`` for the next phase.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

A, B = 1, 2
A_QUESTIONS = ("What is in this picture?", "And its colour?", "Say it once more.")
B_QUESTION = "Tell me a long story about a lighthouse keeper, a storm, and a lost ship at sea."


def _image():
    from PIL import Image

    from models.inference.images import load_image_bytes

    buffer = io.BytesIO()
    Image.new("RGB", (112, 56), (200, 40, 40)).save(buffer, "PNG")
    return load_image_bytes(buffer.getvalue(), "red.png")


def _a_messages(answers: list[list[int]]) -> list:
    """Conversation A up to its next question, after ``answers`` (token ids)."""
    from models.inference.prompt import ChatMessage

    messages = []
    for i, question in enumerate(A_QUESTIONS[: len(answers) + 1]):
        messages.append(ChatMessage("user", question, (_image(),) if i == 0 else ()))
        if i < len(answers):
            messages.append(ChatMessage("assistant", "", token_ids=tuple(answers[i])))
    return messages


def converse(engine, folder: Path, phase: str) -> list[dict]:
    """Run ``phase`` (see the module docstring) with the caches kept in ``folder``."""
    from models.inference.conversation_caches import ConversationCaches
    from models.inference.engine import GenerationSettings
    from models.inference.prompt import ChatMessage
    from models.inference.prompt_cache_keeper import PromptCacheKeeper

    settings = GenerationSettings(max_tokens=8, temperature=0.0)
    caches = ConversationCaches(PromptCacheKeeper(folder / "kv-caches"))
    history = folder / "history.json"
    records: list[dict] = []

    def answer(conversation: int, messages: list) -> list[int]:
        outcome = caches.open(engine, conversation, settings)
        final = list(engine.generate(messages, settings))[-1]
        caches.keep(engine, conversation, final)
        caches.keeper.wait()
        records.append(
            {
                "conversation": conversation,
                "restored": outcome.value if outcome is not None else None,
                "tokens": list(final.token_ids),
                "cached_tokens": final.cached_tokens,
                "finish_reason": final.finish_reason,
                "error": final.error,
            }
        )
        return list(final.token_ids)

    if phase == "switch":
        first = answer(A, _a_messages([]))
        answer(B, [ChatMessage("user", B_QUESTION)])
        second = answer(A, _a_messages([first]))
        history.write_text(json.dumps([first, second]), encoding="utf-8")
    else:
        answer(A, _a_messages(json.loads(history.read_text(encoding="utf-8"))))
    caches.keeper.close()
    return records


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--folder", required=True)
    parser.add_argument("--phase", choices=("switch", "reopen"), required=True)
    args = parser.parse_args()

    from models.distributed.load import cluster_hosts, load_engine

    engine = load_engine(args.model, cluster_hosts(args.ranks))
    try:
        for record in converse(engine, Path(args.folder), args.phase):
            print(json.dumps(record), flush=True)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
