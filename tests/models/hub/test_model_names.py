"""A model is named by its catalog name, repo id or folder name, never by a snapshot's commit."""

from __future__ import annotations

from models.hub.model_names import model_name, shown_model_name
from models.inference.checkpoint import read_checkpoint
from tests.support.fake_hub_repo import COMMIT, REPO, SCOUT_NAME, cache_snapshot


def test_a_downloaded_catalog_model_is_named_by_the_catalog(checkpoints):
    snapshot = cache_snapshot(checkpoints["4bit"])
    assert model_name(snapshot) == SCOUT_NAME
    assert read_checkpoint(snapshot).name == SCOUT_NAME  # what the engine and the window show


def test_a_downloaded_repo_outside_the_catalog_is_named_by_its_repo_id(checkpoints):
    snapshot = cache_snapshot(checkpoints["4bit"], REPO)
    assert read_checkpoint(snapshot).name == REPO


def test_a_folder_model_is_named_by_its_folder(checkpoints):
    assert read_checkpoint(checkpoints["4bit"]).name == "tiny-llama4-4bit"
    assert model_name(checkpoints["4bit"]) == "tiny-llama4-4bit"


def test_a_stored_commit_shows_as_the_name_of_the_repo_the_cache_holds_it_under(checkpoints):
    cache_snapshot(checkpoints["4bit"], REPO)
    assert shown_model_name(COMMIT) == REPO
    assert shown_model_name("f" * 40) == "f" * 40  # not in the cache: left as it is
    assert shown_model_name("tiny-4bit") == "tiny-4bit"


def test_a_snapshot_folder_added_by_hand_is_listed_by_its_repo_name(checkpoints):
    from models.hub.catalog import add_user_model, user_models

    snapshot = cache_snapshot(checkpoints["4bit"], REPO)
    assert add_user_model(str(snapshot)).display_name == REPO
    assert [entry.display_name for entry in user_models()] == [REPO]
