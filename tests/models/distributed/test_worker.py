"""A rank brings its caches to rank 0's, and refuses to continue a cache rank 0 does not hold."""

import pytest

from models.distributed.wire import Command, Header
from models.distributed.worker import sync_cache


class TwoLayers:
    def make_cache(self):
        from mlx_vlm.models.cache import KVCache

        return [KVCache(), KVCache()]


def _filled(positions: int) -> list:
    import mlx.core as mx

    cache = TwoLayers().make_cache()
    for c in cache:
        c.update_and_fetch(mx.zeros((1, 2, positions, 8)), mx.zeros((1, 2, positions, 8)))
    return cache


def test_offset_zero_starts_fresh_caches_whatever_was_held():
    synced = sync_cache(TwoLayers(), _filled(10), 3, Header(Command.RUN, 4, 0, cache=4))
    assert [c.offset for c in synced] == [0, 0]


def test_the_same_cache_is_trimmed_to_rank_0s_offset():
    cache = _filled(10)
    synced = sync_cache(TwoLayers(), cache, 3, Header(Command.RUN, 1, 6, cache=3))
    assert synced is cache and [c.offset for c in synced] == [6, 6]


@pytest.mark.parametrize("held", [2, -1])
def test_another_cache_is_refused_not_trimmed(held):
    """Rank 0 replaced its cache (another conversation's restored, or reset): this rank's cache,
    however long, is not the one rank 0 continues."""
    cache = _filled(10)
    with pytest.raises(RuntimeError, match="out of step"):
        sync_cache(TwoLayers(), cache, held, Header(Command.RUN, 1, 6, cache=3))
    assert [c.offset for c in cache] == [10, 10]
    with pytest.raises(RuntimeError, match="out of step"):
        sync_cache(TwoLayers(), None, held, Header(Command.RUN, 1, 6, cache=3))


def test_a_shorter_cache_is_out_of_step():
    with pytest.raises(RuntimeError, match="holds 4 positions, rank 0 6"):
        sync_cache(TwoLayers(), _filled(4), 3, Header(Command.RUN, 1, 6, cache=3))


def test_a_rank_of_another_protocol_refuses_before_joining(capsys):
    from models.distributed.wire import PROTOCOL
    from models.distributed.worker import main

    assert main(["--model", "/nowhere", "--protocol", str(PROTOCOL + 1)]) == 2  # no ring joined
    assert "run the same version of Llama Desk on every Mac" in capsys.readouterr().err
