"""The folder of saved KV caches: budget, least-recently-used eviction, deletion, clearing."""

import os

import pytest

from models.inference.prompt_cache_files import LoadOutcome, SaveOutcome
from models.inference.prompt_cache_keeper import PromptCacheKeeper, default_folder
from tests.models.inference.test_prompt_cache_files import IDENTITY, layout, snapshot


def used_bytes(keeper) -> int:
    """What Settings' KV cache storage shows as used: the sizes of the files the keeper lists."""
    return sum(f.bytes for f in keeper.files())


def size_of_one(tmp_path):
    probe = PromptCacheKeeper(tmp_path / "probe")
    return probe.save(0, snapshot(), IDENTITY).bytes


def age(keeper, conversation_id, seconds_ago):
    path = keeper.path_for(conversation_id)
    stamp = path.stat().st_mtime - seconds_ago
    os.utime(path, (stamp, stamp))


def test_default_folder_is_in_the_data_folder(private_data_dir):
    assert PromptCacheKeeper().folder == default_folder() == private_data_dir / "kv-caches"


def test_least_recently_used_is_evicted_first(tmp_path):
    one = size_of_one(tmp_path)
    keeper = PromptCacheKeeper(tmp_path / "caches", budget_bytes=int(one * 2.5))
    keeper.save(1, snapshot(), IDENTITY)
    keeper.save(2, snapshot(), IDENTITY)
    age(keeper, 1, 100)
    age(keeper, 2, 50)
    assert keeper.load(1, IDENTITY, None, layout()).outcome is LoadOutcome.LOADED  # 1 is now the newest
    result = keeper.save(3, snapshot(), IDENTITY)
    assert result.outcome is SaveOutcome.SAVED
    assert sorted(f.conversation_id for f in keeper.files()) == ["1", "3"]
    assert used_bytes(keeper) <= keeper.budget_bytes


def test_the_cache_just_saved_is_kept_over_older_ones(tmp_path):
    one = size_of_one(tmp_path)
    keeper = PromptCacheKeeper(tmp_path / "caches", budget_bytes=int(one * 1.5))
    keeper.save(1, snapshot(), IDENTITY)
    age(keeper, 1, -100)  # even when an older one looks more recent (clock skew)
    keeper.save(2, snapshot(), IDENTITY)
    assert [f.conversation_id for f in keeper.files()] == ["2"]


def test_a_cache_larger_than_the_budget_is_not_kept(tmp_path):
    keeper = PromptCacheKeeper(tmp_path, budget_bytes=1000)
    keeper.path_for(1).write_bytes(b"stale")
    result = keeper.save(1, snapshot(), IDENTITY)
    assert result.outcome is SaveOutcome.FAILED
    assert keeper.files() == []


def test_delete_clear_and_the_bytes_used(tmp_path):
    keeper = PromptCacheKeeper(tmp_path)
    sizes = [keeper.save(i, snapshot(), IDENTITY).bytes for i in (1, 2, 3)]
    assert used_bytes(keeper) == sum(sizes)
    keeper.delete(2)
    keeper.delete(99)  # nothing saved: nothing to do
    assert sorted(f.conversation_id for f in keeper.files()) == ["1", "3"]
    assert keeper.clear() == sizes[0] + sizes[2]
    assert used_bytes(keeper) == 0


def test_background_saves_are_written_before_a_load(tmp_path):
    keeper = PromptCacheKeeper(tmp_path)
    future = keeper.save_in_background(5, snapshot(tokens=300), IDENTITY)
    loaded = keeper.load(5, IDENTITY, None, layout())  # waits for the save
    assert future.result().outcome is SaveOutcome.SAVED
    assert loaded.outcome is LoadOutcome.LOADED and loaded.snapshot.tokens == 300
    keeper.close()


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "1.2"])
def test_conversation_ids_cannot_escape_the_folder(tmp_path, bad):
    with pytest.raises(ValueError):
        PromptCacheKeeper(tmp_path).path_for(bad)


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / "4.partial-999999999-abcd.safetensors"
    mine = tmp_path / f"5.partial-{os.getpid()}-abcd.safetensors"
    dead.write_bytes(b"half")
    mine.write_bytes(b"being written")
    PromptCacheKeeper(tmp_path)
    assert not dead.exists() and mine.exists()


def test_the_budget_is_kept_in_the_folder_and_shared(tmp_path):
    keeper = PromptCacheKeeper(tmp_path)
    assert keeper.budget_bytes == 20 * 1024**3
    for i in (1, 2, 3):
        keeper.save(i, snapshot(), IDENTITY)
        age(keeper, i, 100 - i)
    one = keeper.files()[0].bytes
    assert keeper.set_budget(int(one * 1.5)) == ["1", "2"]
    assert PromptCacheKeeper(tmp_path).budget_bytes == int(one * 1.5)
    (tmp_path / "budget.json").write_text("{not json")
    assert PromptCacheKeeper(tmp_path).budget_bytes == 20 * 1024**3


def test_pipeline_ranks_shares_count_against_the_same_budget(tmp_path):
    from models.inference.prompt_cache_keeper import RANKS_FOLDER

    one = size_of_one(tmp_path)
    root = tmp_path / "kv-caches"
    main = PromptCacheKeeper(root, budget_bytes=int(one * 2.5))
    share = PromptCacheKeeper(root / RANKS_FOLDER / "model" / "layers-2-4", int(one * 2.5), budget_root=root)
    main.save(1, snapshot(), IDENTITY)
    age(main, 1, 100)
    share.save(1, snapshot(), IDENTITY)
    age(share, 1, 50)
    assert used_bytes(main) == used_bytes(share) == 2 * one  # each sees both
    share.save(2, snapshot(), IDENTITY)  # a third file: the least recently used (rank 0's) goes
    assert sorted(f.path.parent.name for f in share.files()) == ["layers-2-4", "layers-2-4"]
    assert main.clear() == 2 * one and share.files() == []  # Settings' Clear removes the shares too
