"""Time to first token after a restart, with and without the conversation's saved KV cache.

On a synthesized Llama 4 checkpoint (4-bit), a long conversation with two images is built turn
by turn; its KV cache is saved as the app saves it (``PromptCacheKeeper``), the model is loaded
again (a restart), and the next question is answered:

- **cold**: the whole conversation is prefilled;
- **restored**: the saved cache is loaded (``ConversationCaches.open``) and only the new question
  is prefilled. Its time to first token includes loading the file.

It prints both, their ratio (the goal is at most 0.05), the save and load times, the file size
per token, and whether the two greedy answers agree token for token.
Figures, not pass/fail: ``uv run python bench/bench_prompt_cache.py [--turns N]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARAGRAPH = (
    "Tell me more about the coast: the cliffs, the tides, the birds that nest there, the boats "
    "in the harbour and the light in the evening. "
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=6, help="turns before the timed one (default 6)")
    parser.add_argument("--answer-tokens", type=int, default=24, help="tokens per earlier answer")
    args = parser.parse_args()

    from models.inference.conversation_caches import ConversationCaches
    from models.inference.engine import Engine, GenerationSettings
    from models.inference.images import load_image_bytes
    from models.inference.prompt import ChatMessage
    from models.inference.prompt_cache_keeper import PromptCacheKeeper
    from tests.conftest import image_bytes
    from tests.support.synthetic_checkpoints import bench_shape, quantize_checkpoint, write_checkpoint

    shape = bench_shape(chunk=256, vision_hidden=64, vision_layers=2, tile=112)
    photos = [
        load_image_bytes(image_bytes(224, 112, "PNG", (200, 40, 40)), "wide.png"),
        load_image_bytes(image_bytes(112, 224, "PNG", (20, 40, 220)), "tall.png"),
    ]
    with tempfile.TemporaryDirectory() as folder:
        source = write_checkpoint(Path(folder) / "bf16", shape)
        path = quantize_checkpoint(source, Path(folder) / "4bit", bits=4, group_size=64)
        keeper = PromptCacheKeeper(Path(folder) / "kv-caches")
        earlier = GenerationSettings(max_tokens=args.answer_tokens, temperature=0.0)
        engine = Engine.load(path)
        history: list[ChatMessage] = []
        for turn in range(args.turns):
            images = (photos[turn],) if turn < len(photos) else ()
            history.append(ChatMessage("user", PARAGRAPH * 2, images))
            final = list(engine.generate(history, earlier))[-1]
            history.append(ChatMessage("assistant", "", token_ids=final.token_ids))
        snapshot = engine.snapshot_cache()
        saved = keeper.save(1, snapshot, engine.identity)
        engine.close()

        question = history + [ChatMessage("user", "So which picture is wider?")]
        timed = GenerationSettings(max_tokens=8, temperature=0.0)

        cold_engine = Engine.load(path)
        cold = list(cold_engine.generate(question, timed))[-1]
        cold_engine.close()

        restarted = Engine.load(path)
        caches = ConversationCaches(PromptCacheKeeper(Path(folder) / "kv-caches"))
        start = time.perf_counter()
        caches.open(restarted, 1, timed)
        load_s = time.perf_counter() - start
        warm = list(restarted.generate(question, timed))[-1]
        warm_ttft = load_s + warm.ttft_s

        tokens = snapshot.tokens
        print(f"conversation {len(cold.prompt_token_ids)} prompt tokens, 2 images, {args.turns} turns")
        cold_ms = cold.ttft_s * 1000
        print(f"cold TTFT                  {cold_ms:9.1f} ms  ({cold.prompt_tokens} tokens prefilled)")
        print(
            f"TTFT after restart, cached {warm_ttft * 1000:9.1f} ms  (load {load_s * 1000:.1f} ms + "
            f"{warm.prompt_tokens} tokens prefilled; {warm.cached_tokens} from the file)"
        )
        print(f"ratio                      {warm_ttft / cold.ttft_s:9.3f}  (goal <= 0.05)")
        print(
            f"save {saved.seconds * 1000:.1f} ms, {saved.bytes / 1e6:.2f} MB for {tokens} tokens "
            f"= {saved.bytes / tokens:,.0f} bytes/token"
        )
        print(f"same greedy answer: {warm.token_ids == cold.token_ids}")


if __name__ == "__main__":
    main()
