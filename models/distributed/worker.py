"""A rank other than 0: ``python -m models.distributed.worker --model PATH --start S --end E``.

Started by ``models.distributed.launcher`` (or by hand under ``mlx.launch``); joins the ring,
loads only its layers (``models.distributed.stage``), then serves: it receives a header and
hidden states from the previous rank, runs its layers with its own KV caches, and passes the
result on (the last rank: the logits, to rank 0), until rank 0 says stop. When a neighbour
goes away it exits with ``PEER_LOST_EXIT``, so rank 0 can tell the rank that failed first.
"""

from __future__ import annotations

import argparse
import sys

from models.distributed.launcher import PEER_LOST_EXIT
from models.distributed.wire import Command, Header, dtype_name, recv, recv_header, send


def sync_cache(stage, cache: list | None, offset: int) -> list:
    """Bring this rank's caches to rank 0's ``offset`` (see ``models.distributed.wire``)."""
    if cache is None or offset == 0:
        return stage.make_cache()
    held = cache[0].offset
    if held > offset:
        for c in cache:
            c.trim(held - offset)
    if cache[0].offset != offset:
        raise RuntimeError(f"KV cache out of step: holds {cache[0].offset} positions, rank 0 {offset}")
    return cache


def serve(stage, group, hidden: int) -> None:
    import mlx.core as mx
    from mlx_lm.generate import maybe_quantize_kv_cache

    rank, size = group.rank(), group.size()
    last = rank == size - 1
    nxt = (rank + 1) % size
    cache = None
    while True:
        header = recv_header(rank - 1, group)
        if header.command == Command.STOP:
            if not last:
                send(header.to_array(), nxt, group)
            return
        if header.command == Command.STATS:
            peaks = recv((size,), mx.float32, rank - 1, group)
            peaks[rank] = mx.get_peak_memory()
            if not last:
                send(header.to_array(), nxt, group)
            send(peaks, nxt, group)
            continue
        h = recv((1, header.tokens, hidden), header.dtype, rank - 1, group)
        cache = sync_cache(stage, cache, header.offset)
        out = stage.forward(h, cache)
        if header.kv_bits:
            maybe_quantize_kv_cache(cache, 0, header.kv_group, header.kv_bits)
        if last:
            out = stage.head(out)
            mx.eval(out)
        else:
            mx.eval(out)
            send(
                Header(
                    Command.RUN,
                    header.tokens,
                    header.offset,
                    dtype_name(out.dtype),
                    header.kv_bits,
                    header.kv_group,
                ).to_array(),
                nxt,
                group,
            )
        send(out, nxt, group)


def _exit_with_parent() -> None:
    """A rank started by rank 0 on this machine ends when rank 0 does, even before the ring is
    up (MLX would otherwise keep trying to connect)."""
    import os
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(PEER_LOST_EXIT)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="models.distributed.worker")
    parser.add_argument("--model", required=True)
    parser.add_argument("--start", type=int, help="first layer (default: an equal split)")
    parser.add_argument("--end", type=int, help="one past the last layer")
    args = parser.parse_args(argv)

    import mlx.core as mx

    from models.distributed.stage import load_stage

    _exit_with_parent()
    from models.inference.checkpoint import read_checkpoint

    group = mx.distributed.init(strict=True, backend="ring")
    last = group.rank() == group.size() - 1
    text = read_checkpoint(args.model).config["text_config"]
    start, end = args.start, args.end
    if start is None or end is None:  # started by mlx.launch: every rank splits alike
        from models.memory.cluster_plan import split_layers

        start, end = split_layers(int(text["num_hidden_layers"]), [1.0] * group.size())[group.rank()]
    stage = load_stage(args.model, start, end, first=False, last=last)
    hidden = int(text["hidden_size"])
    try:
        serve(stage, group, hidden)
    except RuntimeError as exc:
        if "connection" in str(exc) or "peer" in str(exc):
            print(f"Error: rank {group.rank()}: {exc}", file=sys.stderr, flush=True)
            return PEER_LOST_EXIT
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
