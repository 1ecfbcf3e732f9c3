"""Links planted in the saved KV caches' folder: eviction, clearing, deletion and the budget file
never reach through them, and a link is never counted against the disk budget."""

from __future__ import annotations

import os
from pathlib import Path

from models.inference.prompt_cache_files import LoadOutcome, SaveOutcome
from models.inference.prompt_cache_keeper import BUDGET_FILE, TEMP_MARK, PromptCacheKeeper, remove_saved_cache
from tests.models.inference.test_prompt_cache_files import IDENTITY, snapshot
from tests.models.inference.test_prompt_cache_keeper import used_bytes


def model_folder(tmp_path: Path) -> Path:
    """A model folder outside the data folder: weight shards named like cache files, old."""
    folder = tmp_path / "some-model"
    folder.mkdir()
    for name in ("model-00001-of-00002.safetensors", "7.safetensors"):
        (folder / name).write_bytes(b"weights" * 100)
        os.utime(folder / name, (1, 1))
    return folder


def shards(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_linked_kv_caches_folder_is_never_cleared_or_evicted(tmp_path):
    weights = model_folder(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    (data / "kv-caches").symlink_to(weights, target_is_directory=True)
    keeper = PromptCacheKeeper(data / "kv-caches", budget_bytes=0)
    assert keeper.files() == [] and used_bytes(keeper) == 0
    assert keeper.evict() == [] and keeper.clear() == 0
    keeper.delete(7)
    remove_saved_cache(data / "kv-caches", 7)
    result = PromptCacheKeeper(data / "kv-caches", budget_bytes=10**9).save(1, snapshot(), IDENTITY)
    assert result.outcome is SaveOutcome.FAILED and "kv-caches is a link" in (result.error or "")
    assert shards(weights) == ["7.safetensors", "model-00001-of-00002.safetensors"]


def test_a_linked_file_is_not_a_cache_nor_counted_against_the_budget(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        handle.truncate(10**12)  # sparse: a terabyte on paper
    root = tmp_path / "kv-caches"
    keeper = PromptCacheKeeper(root, budget_bytes=10**9)
    older = keeper.save(2, snapshot(), IDENTITY)
    stamp = os.path.getmtime(keeper.path_for(2))
    os.utime(keeper.path_for(2), (stamp - 100, stamp - 100))
    (root / "9.safetensors").symlink_to(big)
    result = keeper.save(1, snapshot(), IDENTITY)
    assert result.outcome is SaveOutcome.SAVED
    assert sorted(f.conversation_id for f in keeper.files()) == ["1", "2"]  # the link evicted nothing
    assert used_bytes(keeper) == older.bytes + result.bytes
    assert keeper.clear() == older.bytes + result.bytes
    assert (root / "9.safetensors").is_symlink() and big.stat().st_size == 10**12


def test_the_budget_is_not_written_through_a_link_at_its_temporary_name(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    root = tmp_path / "kv-caches"
    root.mkdir()
    (root / f"{BUDGET_FILE}{TEMP_MARK}-{os.getpid()}").symlink_to(precious)
    keeper = PromptCacheKeeper(root)
    keeper.set_budget(12345)
    assert precious.read_text() == "keep me"
    assert PromptCacheKeeper(root).budget_bytes == 12345


def test_a_load_through_a_linked_folder_touches_nothing(tmp_path):
    weights = model_folder(tmp_path)
    root = tmp_path / "kv-caches"
    root.mkdir()
    share = root / "ranks" / "abc"
    share.mkdir(parents=True)
    (share / "layers-0-2").symlink_to(weights, target_is_directory=True)
    keeper = PromptCacheKeeper(share / "layers-0-2", budget_root=root)
    assert keeper.load(7, IDENTITY, None, layout=None).outcome is LoadOutcome.MISSING  # refused first
    assert shards(weights) == ["7.safetensors", "model-00001-of-00002.safetensors"]
    assert os.path.getmtime(weights / "7.safetensors") == 1
