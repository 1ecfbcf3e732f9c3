"""A rank other than 0: ``python -m models.distributed.worker --model PATH --start S --end E``.

Started by ``models.distributed.launcher`` (or by hand under ``mlx.launch``); joins the ring,
loads only its layers (``models.distributed.stage``), then serves: it receives a header and
hidden states from the previous rank, runs its layers with its own KV caches, and passes the
result on (the last rank: the logits, to rank 0), until rank 0 says stop. It also saves and
restores its own layers' share of a conversation's KV cache when rank 0 asks
(``models.distributed.rank_caches``). When a neighbour goes away it exits with
``PEER_LOST_EXIT``, so rank 0 can tell the rank that failed first.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

from models.distributed.launcher import PEER_LOST_EXIT, READY_LINE
from models.distributed.wire import (
    PROTOCOL,
    Command,
    Header,
    dtype_name,
    payload_value,
    recv,
    recv_header,
    send,
)

if TYPE_CHECKING:
    from models.distributed.rank_caches import RankCaches


def sync_cache(stage, cache: list | None, held: int, header: Header) -> list:
    """Bring this rank's caches (those of rank 0's cache ``held``) to the header's: fresh ones
    at offset 0, else trimmed to its ``offset`` (see ``models.distributed.wire``)."""
    if header.offset == 0:
        return stage.make_cache()
    if cache is None or held != header.cache:
        raise RuntimeError(
            f"KV cache out of step: rank 0 continues cache {header.cache}, this rank holds "
            f"{'none' if cache is None else held}"
        )
    from models.inference.kv_reuse import cut_to

    offset = header.offset
    if cache[0].offset > offset:
        cut_to(cache, offset)  # as rank 0 cut its own (to a chunk's start when it had to)
    if cache[0].offset != offset:
        raise RuntimeError(f"KV cache out of step: holds {cache[0].offset} positions, rank 0 {offset}")
    return cache


def serve(stage, group, hidden: int, saved: RankCaches | None = None) -> None:
    """Answer rank 0's commands until STOP; ``saved``: this rank's saved caches (None: SAVE is
    ignored and RESTORE fails, so rank 0 prefills)."""
    import mlx.core as mx
    from mlx_lm.generate import maybe_quantize_kv_cache

    rank, size = group.rank(), group.size()
    last = rank == size - 1
    nxt = (rank + 1) % size
    cache: list | None = None
    held = -1  # which of rank 0's caches ``cache`` is (Header.cache)

    def forward(header: Header, *arrays) -> None:
        if not last:
            send(header.to_array(), nxt, group)
            for array in arrays:
                send(array, nxt, group)

    while True:
        header = recv_header(rank - 1, group)
        if header.command == Command.STOP:
            forward(header)
            return
        if header.command == Command.STATS:
            peaks = recv((size,), mx.float32, rank - 1, group)
            peaks[rank] = mx.get_peak_memory()
            forward(header)
            send(peaks, nxt, group)
            continue
        if header.command == Command.SAVE:
            payload = recv((header.tokens,), mx.uint8, rank - 1, group)
            forward(header, payload)
            _save(saved, stage, cache, held, header, payload)
            continue
        if header.command == Command.RESTORE:
            payload = recv((header.tokens,), mx.uint8, rank - 1, group)
            flags = recv((size,), mx.float32, rank - 1, group)
            cache = _restore(saved, header, payload)
            held = header.cache if cache is not None else -1
            flags[rank] = 1.0 if cache is not None else 0.0
            forward(header, payload)
            send(flags, nxt, group)
            continue
        h = recv((1, header.tokens, hidden), header.dtype, rank - 1, group)
        cache = sync_cache(stage, cache, held, header)
        held = header.cache
        out = stage.forward(h, cache)
        if header.kv_bits:
            maybe_quantize_kv_cache(cache, 0, header.kv_group, header.kv_bits)
        if last:
            out = stage.head(out)
            mx.eval(out)
        else:
            mx.eval(out)
            forward(replace(header, dtype=dtype_name(out.dtype)))
        send(out, nxt, group)


def _save(saved: RankCaches | None, stage, cache: list | None, held: int, header: Header, payload) -> None:
    """SAVE: this rank's caches, trimmed to rank 0's, to this rank's folder (never raises)."""
    if saved is None:
        return
    try:
        synced = sync_cache(stage, cache, held, header)
        saved.save(payload_value(payload), synced, header.kv)
    except Exception as exc:  # noqa: BLE001 - not saving only costs a prefill after a restore
        print(f"Warning: rank could not save its KV cache: {exc}", file=sys.stderr, flush=True)


def _restore(saved: RankCaches | None, header: Header, payload) -> list | None:
    """RESTORE: this rank's saved caches of the payload's conversation, or None."""
    if saved is None:
        return None
    try:
        return saved.restore(payload_value(payload), header.offset, header.kv)
    except Exception as exc:  # noqa: BLE001 - rank 0 then prefills on every rank
        print(f"Warning: rank could not restore its KV cache: {exc}", file=sys.stderr, flush=True)
        return None


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
    parser.add_argument("--protocol", type=int, help="the wire protocol rank 0 speaks (checked)")
    args = parser.parse_args(argv)
    if args.protocol is not None and args.protocol != PROTOCOL:  # before joining: rank 0 names us
        print(
            f"Error: this Mac runs pipeline protocol {PROTOCOL} and rank 0 speaks {args.protocol}; "
            "run the same version of Llama Desk on every Mac",
            file=sys.stderr,
            flush=True,
        )
        return 2

    import mlx.core as mx

    from models.distributed.stage import load_stage

    _exit_with_parent()
    from models.inference.checkpoint import read_checkpoint

    print(READY_LINE, flush=True)  # rank 0 joins once every rank said so
    group = mx.distributed.init(strict=True, backend="ring")
    last = group.rank() == group.size() - 1
    text = read_checkpoint(args.model).config["text_config"]
    start, end = args.start, args.end
    if start is None or end is None:  # started by mlx.launch: every rank splits alike
        from models.memory.cluster_plan import split_layers

        start, end = split_layers(int(text["num_hidden_layers"]), [1.0] * group.size())[group.rank()]
    stage = load_stage(args.model, start, end, first=False, last=last)
    hidden = int(text["hidden_size"])
    from models.distributed.rank_caches import RankCaches

    saved = RankCaches(stage, args.model)
    try:
        serve(stage, group, hidden, saved)
    except RuntimeError as exc:
        if "connection" in str(exc) or "peer" in str(exc):
            print(f"Error: rank {group.rank()}: {exc}", file=sys.stderr, flush=True)
            return PEER_LOST_EXIT
        raise
    finally:
        saved.close()  # the saves under way are written
    return 0


if __name__ == "__main__":
    sys.exit(main())
