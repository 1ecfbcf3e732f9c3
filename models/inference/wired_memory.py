"""Keep a model's memory wired on Apple silicon while it generates, as mlx-lm does.

mlx-lm's ``stream_generate`` and server wrap generation in ``mlx_lm.generate.wired_limit``: on
Metal they raise MLX's wired limit to the device's ``max_recommended_working_set_size``, so a
60 GB model is not paged out between turns, warn when the model takes more than 90 % of it,
and synchronize and restore the previous limit afterwards. ``wired_limit`` here does the same,
with two differences: it acts only when Metal is available (a no-op on the CPU and CUDA
backends), and its warning goes to the log, not to stdout (where ``llama-desk ask --json``
prints its answer).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

_log = logging.getLogger(__name__)

# Above this share of the recommended working set, generation may stall on paging.
_WARN_SHARE = 0.9


def _device_info(mx) -> dict:
    query = getattr(mx, "device_info", None) or mx.metal.device_info
    return dict(query())


def recommended_wired_bytes() -> int | None:
    """The Metal device's recommended working set in bytes, or None off Metal."""
    import mlx.core as mx

    if not mx.metal.is_available():
        return None
    size = _device_info(mx).get("max_recommended_working_set_size")
    return int(size) if size else None


def model_bytes(model) -> int:
    """Bytes held by the arrays of ``model`` (an ``mlx.nn.Module`` or a tree of arrays)."""
    import mlx.core as mx
    from mlx.utils import tree_reduce

    return tree_reduce(lambda total, x: total + x.nbytes if isinstance(x, mx.array) else total, model, 0)


@contextlib.contextmanager
def wired_limit(model, streams: Sequence | None = None) -> Iterator[None]:
    """Wire up to the recommended working set while the block runs (Metal only), then
    synchronize ``streams`` (or the default stream) and restore the previous limit."""
    import mlx.core as mx

    limit = recommended_wired_bytes()
    if limit is None:
        yield
        return
    previous = mx.set_wired_limit(limit)
    try:
        size = model_bytes(model)
        if size > _WARN_SHARE * limit:
            _log.warning(
                "The model takes %d MB, close to the %d MB this Mac recommends keeping in GPU "
                "memory; generation may be slow.",
                size // 2**20,
                limit // 2**20,
            )
        yield
    finally:
        if streams:
            for stream in streams:
                mx.synchronize(stream)
        else:
            mx.synchronize()
        mx.set_wired_limit(previous)
