"""Speed of constrained decoding (structured output) against free decoding, in one run.

For a synthesized Llama 4 checkpoint (the benchmarks' shape; bf16 weights by default, since
MLX's CPU backend multiplies a 4-bit 202,048-row output layer some ten times slower than bf16, a
step then taking longer than the real model's on a GPU; ``--bits 4`` for 4-bit) with a
vocabulary the size of the real one (a byte-level BPE of 200,000 tokens with as many merges,
built here, then the 2,048 special tokens: llguidance's mask walks all of it; the tests'
tokenizer has 320), the same prompt is answered greedily:

- **free**: ``Engine.sequence`` in a ``Batch`` with no constraint;
- **constrained**: the same under a JSON schema (a list of at least 64 records with a bounded
  string, an integer range and an enum, so the answer lasts past ``--tokens``).

The two alternate ``--runs`` times (free, constrained, free, ...) so a machine that speeds up or
slows down affects both alike; the medians of the decoding tokens/s are printed with the ratio
constrained/free (the goal: at least 0.8), then where the constrained answer's time goes: the
mask (llguidance's computation and its conversion to an ``mx.array``) and feeding the token to
the matcher, per token, against a decoding step. ``--batch N`` answers N prompts at once in each
run (all free, or all constrained). Figures, not pass/fail:
``uv run python bench/bench_structured.py [--runs N] [--tokens N] [--batch N] [--vocab N] [--bits N]``.
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

RECORDS = {
    "type": "array",
    "minItems": 64,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "colour": {"enum": ["red", "green", "blue", "amber"]},
        },
        "required": ["name", "age", "colour"],
        "additionalProperties": False,
    },
}


class TimedMatcher:
    """A ``Matcher`` that adds up the time spent in it."""

    def __init__(self, matcher, clock: dict):
        self._matcher = matcher
        self._clock = clock

    def mask(self):
        start = time.perf_counter()
        try:
            return self._matcher.mask()
        finally:
            self._clock["mask"] += time.perf_counter() - start
            self._clock["masks"] += 1

    def advance(self, token: int) -> None:
        start = time.perf_counter()
        try:
            self._matcher.advance(token)
        finally:
            self._clock["advance"] += time.perf_counter() - start

    @property
    def done(self) -> bool:
        return self._matcher.done


def big_tokenizer(base_vocab: int):
    """A byte-level BPE tokenizer of ``base_vocab`` tokens (each merge joins two earlier tokens,
    short ones oftener, as BPE's do), Llama 4's split pattern and special tokens after them: what
    ``synthetic_checkpoints`` trains on its small corpus, at a real model's size."""
    import random

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from tests.support import synthetic_checkpoints as synthetic

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: i for i, symbol in enumerate(alphabet)}
    tokens, merges = list(alphabet), []
    rng = random.Random(0)
    letters = [vocab[c] for c in "etaoinshrdlucmfwypvbgkqjxzETAOINS\u0120" if c in vocab]
    while len(tokens) < base_vocab:
        first = rng.choice(letters) if rng.random() < 0.5 else int(rng.random() ** 3 * len(tokens))
        a = tokens[first]
        b = tokens[int(rng.random() ** 2 * len(tokens))]
        if a + b in vocab or len(a + b) > 16:
            continue
        vocab[a + b] = len(tokens)
        tokens.append(a + b)
        merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(synthetic._SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.add_special_tokens(synthetic.LLAMA4_SPECIAL_TOKENS)
    return tok


def _run(engine, prompts, max_tokens: int, constraint, clock: dict | None = None) -> float:
    """Decode ``prompts`` together; the median decoding tokens/s of the answers."""
    from models.inference.batch_generation import LiveCache
    from models.inference.engine import GenerationSettings

    settings = GenerationSettings(max_tokens=max_tokens, temperature=0.0)
    batch = engine.new_batch()
    for prompt in prompts:
        seq = engine.sequence(prompt, settings, threading.Event(), LiveCache([]), constraint=constraint)
        if clock is not None and seq.constraint is not None:
            seq.constraint = TimedMatcher(seq.constraint, clock)
        batch.add(seq)
    finals = []
    while batch.active:
        for _seq, step in batch.step():
            if step.finish_reason is not None:
                if step.finish_reason != "length":
                    raise RuntimeError(f"an answer ended early: {step.finish_reason} {step.error}")
                finals.append(step)
    return statistics.median(f.generation_tps for f in finals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="alternating runs of each (default 7)")
    parser.add_argument("--tokens", type=int, default=96, help="tokens per answer (default 96)")
    parser.add_argument("--batch", type=int, default=1, help="answers at once (default 1)")
    parser.add_argument("--vocab", type=int, default=200_000, help="base vocabulary (default 200,000)")
    parser.add_argument("--bits", type=int, default=0, help="quantize the weights (4, 8; default bf16)")
    args = parser.parse_args()
    runs, tokens, size = max(1, args.runs), max(8, args.tokens), max(1, args.batch)
    from models.inference.engine import Engine
    from models.inference.output_constraint import OutputConstraint
    from models.inference.prompt import ChatMessage
    from tests.support import synthetic_checkpoints
    from tests.support.synthetic_checkpoints import bench_shape, quantize_checkpoint, write_checkpoint

    shape = bench_shape(base_vocab=args.vocab)
    synthetic_checkpoints._build_tokenizer = big_tokenizer  # the real size, not a padded small one
    with tempfile.TemporaryDirectory() as folder:
        path = write_checkpoint(Path(folder) / "bf16", shape)
        if args.bits:
            path = quantize_checkpoint(path, Path(folder) / "quantized", bits=args.bits, group_size=64)
        engine = Engine.load(path)
        prompts = [
            engine.prepare([ChatMessage("user", f"List the people you met on the walk, #{i}. " * 6)])
            for i in range(size)
        ]
        constraint = OutputConstraint("json_schema", schema=RECORDS, name="records")
        start = time.perf_counter()
        engine.sequence(prompts[0], engine_settings(), threading.Event(), _live(), constraint=constraint)
        compile_s = time.perf_counter() - start  # llguidance's tokenizer, then the grammar
        _run(engine, prompts, 8, None)  # warm up both paths
        _run(engine, prompts, 8, constraint)
        free, constrained = [], []
        clock = {"mask": 0.0, "masks": 0, "advance": 0.0}
        for _ in range(runs):
            free.append(_run(engine, prompts, tokens, None))
            constrained.append(_run(engine, prompts, tokens, constraint, clock))
        vocab = int(engine.checkpoint.config["text_config"]["vocab_size"])
        print(
            f"vocabulary {vocab:,}, {'bf16' if not args.bits else f'{args.bits}-bit'} weights, "
            f"{size} answer(s) at once, {tokens} tokens each, "
            f"median of {runs} alternating runs (first constrained request: {compile_s:.2f} s to compile)"
        )
        f, c = statistics.median(free), statistics.median(constrained)
        print(
            f"decode tok/s   free {f:8.1f} ({min(free):.0f}-{max(free):.0f})   "
            f"constrained {c:8.1f} ({min(constrained):.0f}-{max(constrained):.0f})   ratio {c / f:.3f}"
        )
        masks = max(1, clock["masks"])
        print(
            f"per constrained token: mask {clock['mask'] / masks * 1000:.3f} ms, "
            f"advance {clock['advance'] / masks * 1000:.3f} ms; a decoding step {1000 / c:.1f} ms "
            f"(free {1000 / f:.1f} ms); the masks are computed while the device runs the step"
        )


def engine_settings():
    from models.inference.engine import GenerationSettings

    return GenerationSettings(max_tokens=1, temperature=0.0)


def _live():
    from models.inference.batch_generation import LiveCache

    return LiveCache([])


if __name__ == "__main__":
    main()
