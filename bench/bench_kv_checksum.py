"""Loading a saved KV cache of about 1 GB: as before the checks, and with them (header, checksum).

The cache has Scout's layout (48 layers, 8 key/value heads of 128, bf16; three chunked layers
in four) and 5,120 tokens: 1.0 GB. It is written once by ``save_cache_file`` (whose files
mlx-lm's ``load_prompt_cache`` still reads), then loaded in turns, alternating:

- **before**: what loading did before the checks, mlx-lm's ``load_prompt_cache`` and the
  evaluation of every layer's keys and values;
- **checked**: ``load_cache_file``: the header parsed and checked against the layout, then the
  tensors read in batches, each tensor hashed (xxh3-64) in place on a pool of threads (one per
  core, at most 8) while the next batch is read, and compared with the checksum.

It prints the median and best of each, their ratios (the goal is at most 1.10), and how fast
xxh3-64 alone hashes the file's bytes here, from the page cache (just written, where hashing
weighs most) and from disk. On a 16-core machine the medians' ratios were 1.01-1.04 from the
page cache and 1.04-1.07 from disk; on the 2-core build machine 1.19-1.24 and 0.90-1.15, since
there MLX's read already keeps both cores busy (docs/benchmarks.md).
Figures, not pass/fail: ``uv run python bench/bench_kv_checksum.py [--tokens N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS, HEADS, HEAD_DIM, CHUNK = 48, 8, 128, 8192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=5120, help="positions per layer (default 5120)")
    parser.add_argument("--rounds", type=int, default=7, help="loads of each kind (default 7)")
    parser.add_argument("--folder", default=None, help="where to write the file (default: the temp folder)")
    args = parser.parse_args()

    import mlx.core as mx
    import xxhash
    from mlx_lm.models import cache as lm

    from models.inference.cache_layout import CacheLayout, LayerLayout
    from models.inference.cache_snapshot import CacheSnapshot
    from models.inference.model_identity import ModelIdentity
    from models.inference.prompt_cache_files import LoadOutcome, load_cache_file, save_cache_file

    tokens = args.tokens
    chunked = [(i + 1) % 4 != 0 for i in range(LAYERS)]
    layout = CacheLayout(tuple(LayerLayout(HEADS, HEAD_DIM, CHUNK if c else None, not c) for c in chunked))
    layers = []
    for c in chunked:
        keys, values = (mx.random.normal((1, HEADS, tokens, HEAD_DIM)).astype(mx.bfloat16) for _ in "kv")
        layer = (lm.ChunkedKVCache if c else lm.KVCache).__new__(lm.ChunkedKVCache if c else lm.KVCache)
        layer.state = (keys, values, tokens, CHUNK, 0) if c else (keys, values, tokens)
        mx.eval(keys, values)
        layers.append(layer)
    snapshot = CacheSnapshot(tuple(layers), tuple(range(tokens)), None)
    identity = ModelIdentity("/models/bench", "bench")
    del layers

    def evict(path: Path) -> None:
        """Drop the file's pages from the page cache (as after a restart): the next read is from disk."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def before(path: Path, cold: bool) -> float:
        if cold:
            evict(path)
        start = time.perf_counter()
        loaded = lm.load_prompt_cache(str(path))
        mx.eval([layer.state[:2] for layer in loaded])
        return time.perf_counter() - start

    def checked(path: Path, cold: bool) -> float:
        if cold:
            evict(path)
        start = time.perf_counter()
        result = load_cache_file(path, identity, None, layout)
        seconds = time.perf_counter() - start
        assert result.outcome is LoadOutcome.LOADED, result.reason
        return seconds

    times: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        path = Path(folder) / "1.safetensors"
        saved = save_cache_file(path, snapshot, identity)
        del snapshot
        size = saved.bytes
        print(f"cache file {size / 1e9:.2f} GB ({tokens} tokens, {LAYERS} layers)")
        before(path, False), checked(path, False)  # warm up MLX's allocator
        for _ in range(args.rounds):
            for cold in (False, True):
                for kind, load in (("before", before), ("checked", checked)):
                    times.setdefault((kind, cold), []).append(load(path, cold))
        data = memoryview(path.read_bytes())
        start = time.perf_counter()
        xxhash.xxh3_64(data).hexdigest()
        hash_s = time.perf_counter() - start

    for cold, where in ((False, "in the page cache"), (True, "from disk (page cache dropped)")):
        print(f"file {where}:")
        for kind, label in (("before", "load before the checks"), ("checked", "load with the checks  ")):
            runs = times[(kind, cold)]
            median, best = statistics.median(runs), min(runs)
            print(f"  {label}  median {median * 1000:7.1f} ms  best {best * 1000:7.1f} ms")
        ratio = statistics.median(times[("checked", cold)]) / statistics.median(times[("before", cold)])
        best = min(times[("checked", cold)]) / min(times[("before", cold)])
        print(f"  ratio                   {ratio:.3f} of the medians, {best:.3f} of the best  (goal <= 1.10)")
    print(f"xxh3-64 alone on this CPU: {hash_s * 1000:.1f} ms for the file ({size / hash_s / 1e9:.1f} GB/s)")


if __name__ == "__main__":
    main()
