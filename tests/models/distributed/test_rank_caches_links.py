"""Links planted under ``kv-caches/ranks/``: a rank's share folder linked to a model folder is
never evicted, cleared, deleted from or written into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from models.distributed.rank_caches import RankCaches, rank_folder, restore_payload, save_payload
from models.distributed.stage import load_stage
from models.inference.cache_snapshot import CacheSnapshot
from models.inference.model_identity import model_identity
from models.inference.prompt_cache_keeper import FOLDER_NAME, PromptCacheKeeper, remove_saved_cache
from tests.models.inference.test_prompt_cache_files import IDENTITY, snapshot
from tests.support.synthetic_checkpoints import TinyShape, write_checkpoint

KEYS = (200, 201, 202, 203, 204)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("rank-links") / "tiny", TinyShape(layers=4), seed=1)


def fake_weights(tmp_path: Path) -> Path:
    """A model folder's shards, old, one named like conversation 7's cache."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("model-00001-of-00001.safetensors", "7.safetensors"):
        (folder / name).write_bytes(b"weights" * 100)
        os.utime(folder / name, (1, 1))
    return folder


def test_a_share_folder_linked_to_a_model_survives_eviction_clear_and_delete(tmp_path):
    weights = fake_weights(tmp_path)
    caches = tmp_path / FOLDER_NAME
    share = rank_folder(tmp_path, IDENTITY, 0, 2)
    share.parent.mkdir(parents=True)
    share.symlink_to(weights, target_is_directory=True)
    main = PromptCacheKeeper(caches, budget_bytes=10)  # too small for anything: evicts all it sees
    main.save(1, snapshot(), IDENTITY)
    main.set_budget(0)
    remove_saved_cache(caches, 7)  # what deleting conversation 7 does
    assert main.clear() == 0
    linked = PromptCacheKeeper(share, budget_root=caches)
    linked.delete(7)
    assert sorted(p.name for p in weights.iterdir()) == ["7.safetensors", "model-00001-of-00001.safetensors"]


def test_a_rank_does_not_save_into_a_linked_model_folder(model, tmp_path):
    import mlx.core as mx

    stage = load_stage(model, 2, 4, first=False, last=True)
    weights = fake_weights(tmp_path)
    model_share = rank_folder(tmp_path, model_identity(model), 2, 4).parent
    model_share.parent.mkdir(parents=True)
    model_share.symlink_to(weights, target_is_directory=True)
    cache = stage.make_cache()
    mx.eval(stage.forward(mx.random.normal((1, len(KEYS), 64)), cache))
    ranks = RankCaches(stage, model, root=tmp_path)
    ranks.save(save_payload(7, CacheSnapshot((), KEYS, None), 10**9), cache, None)
    ranks.keeper.wait()
    assert ranks.restore(restore_payload(7, CacheSnapshot((), KEYS, None)), len(KEYS), None) is None
    ranks.close()
    assert sorted(p.name for p in weights.iterdir()) == ["7.safetensors", "model-00001-of-00001.safetensors"]
    assert (weights / "7.safetensors").read_bytes() == b"weights" * 100
