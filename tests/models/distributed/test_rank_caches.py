"""A rank's own saved caches: written to its own folder, read back only for the same keys, the
same layers and the same model; conversation ids that are not plain names are refused."""

import pytest

from models.distributed.rank_caches import RankCaches, restore_payload, save_payload
from models.distributed.stage import load_stage
from models.inference.cache_snapshot import CacheSnapshot
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint

KEYS = (200, 201, (99, "ab12", 3), 202, 203)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("rank") / "tiny", TinyShape(layers=4), seed=1)


@pytest.fixture(scope="module")
def stage(model):
    return load_stage(model, 2, 4, first=False, last=True)


def _cache(stage, positions: int) -> list:
    import mlx.core as mx

    cache = stage.make_cache()
    mx.eval(stage.forward(mx.random.normal((1, positions, 64)), cache))
    return cache


def _snapshot(keys=KEYS) -> CacheSnapshot:
    return CacheSnapshot((), keys, None)  # rank 0's: only its keys go into the payloads


def test_a_saved_cache_is_restored_for_the_same_keys_only(model, stage, tmp_path):
    saved = RankCaches(stage, model, root=tmp_path)
    assert saved.save(save_payload(7, _snapshot(), 10**9), _cache(stage, len(KEYS)), None)
    saved.close()
    (path,) = tmp_path.rglob("*.safetensors")
    assert path.name == "7.safetensors" and path.parent.name == "layers-2-4"
    assert path.is_relative_to(saved.folder)

    restored = RankCaches(stage, model, root=tmp_path).restore(restore_payload(7, _snapshot()), 5, None)
    assert restored is not None and [c.offset for c in restored] == [5, 5]
    again = RankCaches(stage, model, root=tmp_path)
    other_keys = _snapshot(KEYS[:-1] + (204,))
    assert again.restore(restore_payload(7, other_keys), 5, None) is None
    assert again.restore(restore_payload(7, _snapshot()), 4, None) is None
    assert again.restore(restore_payload(8, _snapshot()), 5, None) is None
    assert again.restore(restore_payload(7, _snapshot()), 5, (8, 64)) is None  # another KV precision


def test_other_layers_do_not_see_the_file(model, stage, tmp_path):
    saved = RankCaches(stage, model, root=tmp_path)
    assert saved.save(save_payload(7, _snapshot(), 10**9), _cache(stage, 5), None)
    saved.close()
    assert RankCaches(stage, model, root=tmp_path).restore(restore_payload(7, _snapshot()), 5, None)
    wider = load_stage(model, 1, 4, first=False, last=True)
    assert RankCaches(wider, model, root=tmp_path).restore(restore_payload(7, _snapshot()), 5, None) is None


@pytest.mark.parametrize("name", ["../7", "a/b", "", "x.y"])
def test_a_name_that_is_not_a_plain_id_is_refused(model, stage, tmp_path, name):
    saved = RankCaches(stage, model, root=tmp_path)
    assert not saved.save(save_payload(name, _snapshot(), 10**9), _cache(stage, 5), None)
    assert saved.restore(restore_payload(name, _snapshot()), 5, None) is None
    saved.close()
    assert list(tmp_path.rglob("*.safetensors")) == []


def test_a_cache_that_does_not_hold_the_keys_is_not_saved(model, stage, tmp_path):
    saved = RankCaches(stage, model, root=tmp_path)
    assert not saved.save(save_payload(7, _snapshot(), 10**9), _cache(stage, 3), None)


@pytest.mark.parametrize("damage", ["flipped bit", "other data"])
def test_a_share_that_lies_is_refused_and_deleted(model, stage, tmp_path, damage):
    from tests.support.tampered_caches import flip_a_bit, replace_tensor_data

    saved = RankCaches(stage, model, root=tmp_path)
    assert saved.save(save_payload(7, _snapshot(), 10**9), _cache(stage, len(KEYS)), None)
    saved.close()
    (path,) = tmp_path.rglob("7.safetensors")
    flip_a_bit(path) if damage == "flipped bit" else replace_tensor_data(path)
    assert RankCaches(stage, model, root=tmp_path).restore(restore_payload(7, _snapshot()), 5, None) is None
    assert not path.exists()
