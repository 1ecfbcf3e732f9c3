"""What passes between ranks: a small int32 header, then the hidden states (or logits).

Every message down the pipeline is ``Header`` then, for ``RUN``, hidden states of shape
(1, tokens, hidden) in the header's dtype. The last rank sends rank 0 the logits of the last
position as float32 (1, 1, vocab). ``offset`` is how many positions rank 0's caches held before
this step: a rank whose caches hold more trims them (rank 0 trimmed its own for a new turn), and
offset 0 means fresh caches. ``cache`` names which cache rank 0 continues: it changes whenever
rank 0's cache is replaced (a saved cache adopted, or the cache reset), and a rank whose caches
are not that one refuses to run rather than mix two conversations' caches.

``SAVE`` and ``RESTORE`` carry a JSON payload (``tokens`` bytes of uint8) naming a conversation's
saved cache (``models.distributed.rank_caches``): ``SAVE`` asks each rank to write its own layers'
cache (no reply); ``RESTORE`` to load it, each rank filling its slot of a float32 array of flags
(1: restored) that the last rank sends back to rank 0, as ``STATS`` does with peak memory.
Transport is MLX's: ``mx.distributed.send``/``recv`` on the ring.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass


class Command(enum.IntEnum):
    RUN = 1  # hidden states follow
    STATS = 2  # a float32 array of per-rank peak memory follows; fill your slot
    STOP = 3  # exit
    SAVE = 4  # a payload follows: save your layers' cache (trimmed to ``offset`` positions)
    RESTORE = 5  # a payload, then a float32 array of per-rank flags: restore, fill your slot


PROTOCOL = 2  # bump whenever a header or payload changes (1: the six-number header, no SAVE/RESTORE)
DTYPES = ("float32", "float16", "bfloat16")
HEADER_LEN = 7


@dataclass(frozen=True)
class Header:
    command: Command
    tokens: int = 0  # RUN: positions of hidden states; SAVE/RESTORE: payload bytes
    offset: int = 0
    dtype: str = "float32"
    kv_bits: int = 0  # 0: the KV cache is not quantized
    kv_group: int = 64
    cache: int = 0  # which of rank 0's caches this continues (see the module docstring)

    def to_array(self):
        import mlx.core as mx

        values = [int(self.command), self.tokens, self.offset, DTYPES.index(self.dtype)]
        return mx.array(values + [self.kv_bits, self.kv_group, self.cache], dtype=mx.int32)

    @classmethod
    def from_array(cls, array) -> Header:
        c, tokens, offset, dtype, bits, group, cache = (int(v) for v in array.tolist())
        return cls(Command(c), tokens, offset, DTYPES[dtype], bits, group, cache)

    @property
    def kv(self) -> tuple[int, int] | None:
        return (self.kv_bits, self.kv_group) if self.kv_bits else None


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("mlx.core.")


def payload_array(value: dict):
    """``value`` as JSON in a uint8 array, to follow a SAVE or RESTORE header."""
    import mlx.core as mx
    import numpy as np

    data = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return mx.array(np.frombuffer(data, dtype=np.uint8))


def payload_value(array) -> dict:
    import numpy as np

    value = json.loads(np.array(array).tobytes().decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("Not a payload")
    return value


def send(array, dst: int, group) -> None:
    import mlx.core as mx

    mx.eval(mx.distributed.send(array, dst, group=group))


def recv(shape: tuple, dtype, src: int, group):
    import mlx.core as mx

    if isinstance(dtype, str):
        dtype = getattr(mx, dtype)
    out = mx.distributed.recv(shape, dtype, src, group=group)
    mx.eval(out)
    return out


def recv_header(src: int, group) -> Header:
    import mlx.core as mx

    return Header.from_array(recv((HEADER_LEN,), mx.int32, src, group))
