"""A hostile Hub (models.hub.repo_plan's checks, through the store): nothing lands outside the
repo's cache folder, nothing unverified is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.hub import store
from tests.support.fake_hub_repo import REPO, WEIGHTS, partial_files
from tests.support.hub_server import HubServer


def _tree_outside_cache(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ``root`` outside REPO's cache folder and lock folder, with its content (files),
    link target (links) or None (folders): a snapshot to compare before and after a download."""
    import os

    cache = store.repo_cache_dir(REPO)
    locks = store.hub_cache_dir() / ".locks" / cache.name
    found: dict[str, bytes | str | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            if path.is_relative_to(cache) or path.is_relative_to(locks):
                continue
            if not path.is_symlink() and (cache.is_relative_to(path) or locks.is_relative_to(path)):
                continue  # a folder on the way to the cache (hf/hub, hub/.locks)
            if path.is_symlink():
                found[str(path)] = os.readlink(path)
            else:
                found[str(path)] = path.read_bytes() if path.is_file() else None
    return found


@pytest.fixture
def outside_file(tmp_path) -> Path:
    """A file outside the cache that a hostile server aims at (a stand-in for /etc/hostname)."""
    target = tmp_path / "etc" / "hostname"
    target.parent.mkdir()
    target.write_text("the-users-machine\n")
    return target


def _refused(hub: HubServer, tmp_path: Path, message: str) -> None:
    before = _tree_outside_cache(tmp_path)
    with pytest.raises(store.StoreError, match=message) as caught:
        store.download_model(REPO)
    assert "\n" not in str(caught.value)
    assert _tree_outside_cache(tmp_path) == before
    assert store.downloaded_model(REPO) is None or store.downloaded_model(REPO).commit is None


@pytest.mark.parametrize(
    "sha",
    [
        "../../../../LaunchAgents/com.evil",
        "{tmp}/evil",
        "a" * 40 + "\n",
        "A" * 40,
        "abc123",
        12345,
    ],
)
def test_a_commit_id_that_is_not_a_commit_is_refused(hub, tmp_path, sha):
    hub.lie_about_commit(REPO, sha.replace("{tmp}", str(tmp_path)) if isinstance(sha, str) else sha)
    _refused(hub, tmp_path, "The server sent an invalid commit id for .*; download refused")
    assert hub.total_bytes_served() == 0
    assert not (tmp_path / "LaunchAgents").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize(
    ("file", "fields", "message"),
    [
        (WEIGHTS, {"lfs": {"sha256": "../../../../evil"}}, "invalid sha256"),
        (WEIGHTS, {"lfs": {"sha256": "{outside}"}}, "invalid sha256"),
        (WEIGHTS, {"lfs": {"sha256": "../" + "0" * 61}}, "invalid sha256"),
        ("config.json", {"blobId": "../../../../evil"}, "invalid blob id"),
        ("config.json", {"blobId": "{outside}"}, "invalid blob id"),
        ("config.json", {"blobId": "0" * 39 + "/"}, "invalid blob id"),
        ("config.json", {"size": -1}, "invalid size"),
        ("config.json", {"size": "12"}, "invalid size"),
        ("config.json", {"size": 10**15}, "invalid size"),
        ("config.json", {"size": None}, "invalid size"),
    ],
)
def test_checksums_and_sizes_the_hub_never_sends_are_refused(
    hub, tmp_path, outside_file, file, fields, message
):
    fields = {
        k: (
            {"sha256": str(outside_file)}
            if v == {"sha256": "{outside}"}
            else str(outside_file)
            if v == "{outside}"
            else v
        )
        for k, v in fields.items()
    }
    hub.lie_about_file(REPO, file, **fields)
    _refused(hub, tmp_path, f"The server sent an {message} for {file} of {REPO}; download refused")
    assert hub.total_bytes_served() == 0
    assert outside_file.read_text() == "the-users-machine\n"


@pytest.mark.parametrize("absolute", [False, True])
def test_a_hash_naming_a_file_outside_the_cache_never_becomes_a_snapshot_link(
    hub, tmp_path, outside_file, absolute
):
    import os

    blobs = store.repo_cache_dir(REPO) / "blobs"
    aim = str(outside_file) if absolute else os.path.relpath(outside_file, blobs)
    hub.lie_about_file(REPO, WEIGHTS, lfs={"sha256": aim})
    _refused(hub, tmp_path, "invalid sha256")
    for path in store.hub_cache_dir().rglob("*"):
        assert path.resolve() != outside_file.resolve(), path


def test_a_file_without_any_checksum_is_refused(hub, tmp_path):
    hub.lie_about_file(REPO, "config.json", blobId=None)
    _refused(
        hub,
        tmp_path,
        f"The server sent no checksum for config.json of {REPO}, so it cannot be verified; download refused",
    )
    assert hub.total_bytes_served() == 0


def test_an_lfs_entry_without_a_sha256_is_refused(hub, tmp_path):
    hub.lie_about_file(REPO, WEIGHTS, lfs={"sha256": None})
    _refused(hub, tmp_path, f"malformed file listing for {REPO}; download refused")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, f"config.json of {REPO} did not match the Hub's checksum twice"),  # held before too: a guard
        ({"size": None}, f"sent an invalid size for config.json of {REPO}"),  # unverified before
    ],
)
def test_a_small_file_whose_git_oid_does_not_match_is_not_kept(hub, tmp_path, fields, message):
    hub.lie_about_file(REPO, "config.json", blobId="0" * 40, **fields)
    _refused(hub, tmp_path, message)
    blobs = store.repo_cache_dir(REPO) / "blobs"
    assert not (blobs / ("0" * 40)).exists() and partial_files() == []
    assert not (store.repo_cache_dir(REPO) / "snapshots" / hub.repos[REPO].commit / "config.json").exists()


@pytest.mark.parametrize("where", ["blob", "partial", "snapshot file", "snapshot folder", "refs"])
def test_links_already_in_the_cache_that_lead_outside_are_not_followed(hub, tmp_path, outside_file, where):
    repo = hub.repos[REPO]
    repo_dir = store.repo_cache_dir(REPO)
    sha = repo.files[WEIGHTS].sha256
    planted = {
        "blob": repo_dir / "blobs" / sha,
        "partial": repo_dir / "blobs" / f"{sha}.incomplete",
        "snapshot file": repo_dir / "snapshots" / repo.commit / WEIGHTS,
        "snapshot folder": repo_dir / "snapshots" / repo.commit,
        "refs": repo_dir / "refs" / "main",
    }[where]
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.symlink_to(outside_file.parent if where == "snapshot folder" else outside_file)
    before = _tree_outside_cache(tmp_path)
    with pytest.raises(store.StoreError, match=f"leads outside {repo_dir}; download refused") as caught:
        store.download_model(REPO)
    assert "\n" not in str(caught.value)
    assert _tree_outside_cache(tmp_path) == before
    assert outside_file.read_text() == "the-users-machine\n"


@pytest.mark.parametrize("name", ["bad\nname.json", "sub//x.json", "./config2.json", "nul\x00.json"])
def test_file_names_the_hub_never_sends_are_refused(hub, name):
    hub.add_repo("someone/Llama-4-Odd", files={"model.safetensors": b"x", name: b"{}"})
    with pytest.raises(store.StoreError, match="lists a file with an invalid name"):
        store.download_model("someone/Llama-4-Odd")
    assert hub.total_bytes_served() == 0 and not store.repo_cache_dir("someone/Llama-4-Odd").exists()
