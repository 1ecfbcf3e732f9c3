"""What passes between ranks: a small int32 header, then the hidden states (or logits).

Every message down the pipeline is ``Header`` then, for ``RUN``, hidden states of shape
(1, tokens, hidden) in the header's dtype. The last rank sends rank 0 the logits of the last
position as float32 (1, 1, vocab). ``offset`` is how many positions rank 0's caches held before
this step: a rank whose caches hold more trims them (rank 0 trimmed its own for a new turn), and
offset 0 means fresh caches. Transport is MLX's: ``mx.distributed.send``/``recv`` on the ring.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Command(enum.IntEnum):
    RUN = 1  # hidden states follow
    STATS = 2  # a float32 array of per-rank peak memory follows; fill your slot
    STOP = 3  # exit


DTYPES = ("float32", "float16", "bfloat16")
HEADER_LEN = 6


@dataclass(frozen=True)
class Header:
    command: Command
    tokens: int = 0
    offset: int = 0
    dtype: str = "float32"
    kv_bits: int = 0  # 0: the KV cache is not quantized
    kv_group: int = 64

    def to_array(self):
        import mlx.core as mx

        values = [int(self.command), self.tokens, self.offset, DTYPES.index(self.dtype)]
        return mx.array(values + [self.kv_bits, self.kv_group], dtype=mx.int32)

    @classmethod
    def from_array(cls, array) -> Header:
        c, tokens, offset, dtype, bits, group = (int(v) for v in array.tolist())
        return cls(Command(c), tokens, offset, DTYPES[dtype], bits, group)


def dtype_name(dtype) -> str:
    return str(dtype).removeprefix("mlx.core.")


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
