"""models.hub.store against a fake Hub: download, resume, checksums, errors, cancel, list, delete, offline."""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
from pathlib import Path

import keyring
import pytest

from models.hub import store
from tests.support.hub_server import HubServer, MemoryKeyring, point_huggingface_hub_at

REPO = "mlx-community/Llama-4-Tiny-Test-4bit"
WEIGHTS = "model-00001-of-00002.safetensors"  # the first weight shard
NO_RETRY = store.RetryPolicy(attempts=0)


@pytest.fixture
def memory_keyring():
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def hub(checkpoints, tmp_path, monkeypatch, memory_keyring):
    """A running fake Hub serving the tiny 4-bit checkpoint as REPO, with this process pointed at it."""
    server = HubServer()
    server.start()
    # Files a Llama Desk download must never fetch: remote code and pickled weights.
    server.add_repo(
        REPO,
        checkpoints["4bit"],
        files={"modeling_llama4.py": b"import os\n", "pytorch_model.bin": b"\x80\x02" * 64, "empty.txt": b""},
    )
    point_huggingface_hub_at(monkeypatch, server.url, tmp_path / "hf")
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(tmp_path / "data"))
    yield server
    server.stop()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_size(hub: HubServer) -> int:
    return len(hub.repos[REPO].files[WEIGHTS].data)


def _assert_snapshot_matches(path: Path, checkpoint: Path) -> None:
    for name in ("config.json", WEIGHTS, "tokenizer.json", "model.safetensors.index.json"):
        assert _sha256(path / name) == _sha256(checkpoint / name), name


def _partial_files() -> list[Path]:
    return list(store.repo_cache_dir(REPO).glob("blobs/*.incomplete"))


def test_download_reports_progress_and_fills_the_shared_cache(hub, checkpoints):
    events: list[store.DownloadProgress] = []
    path = store.download_model(REPO, progress=events.append, progress_interval_s=0)

    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert not (path / "modeling_llama4.py").exists() and not (path / "pytorch_model.bin").exists()
    assert not any(r.path.endswith((".py", ".bin")) for r in hub.requests)
    total = sum(
        len(f.data)
        for name, f in hub.repos[REPO].files.items()
        if not name.endswith((".py", ".bin")) and name != ".gitattributes"
    )
    assert events and all(e.repo_id == REPO and e.bytes_total == total for e in events)
    done = [e.bytes_done for e in events]
    assert done == sorted(done) and done[-1] == total
    files = len(list(checkpoints["4bit"].iterdir())) + 1  # and empty.txt
    assert events[-1].files_done == events[-1].files_total == files
    assert (path / "empty.txt").read_bytes() == b""
    assert any(e.file == WEIGHTS and 0 < e.file_bytes_done < e.file_bytes_total for e in events)
    with pytest.raises(AttributeError):
        events[0].bytes_done = 0  # frozen

    # The layout is huggingface_hub's own: it resolves offline, and an online snapshot_download
    # of the same files finds everything in place and fetches no file bytes.
    assert store.resolve_model(REPO) == path
    from huggingface_hub import snapshot_download

    hub.reset_counters()
    again = snapshot_download(
        REPO, allow_patterns=list(store.ALLOW_PATTERNS), ignore_patterns=list(store.IGNORE_PATTERNS)
    )
    assert Path(again) == path
    assert hub.total_bytes_served() == 0


def test_a_dropped_connection_is_retried_and_resumed_within_the_pull(hub, checkpoints):
    hub.drop_connection(REPO, WEIGHTS, after_bytes=100_000)
    delays: list[float] = []
    path = store.download_model(REPO, sleep=delays.append)

    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert delays == [1.0]
    ranges = [r.range for r in hub.requests if r.path.endswith(WEIGHTS) and r.range]
    assert ranges and ranges[0].startswith("bytes=") and int(ranges[0][6:].rstrip("-")) > 0
    # The retry continued from where the cut happened instead of starting over.
    assert hub.bytes_served(REPO, WEIGHTS) == _weights_size(hub)


def test_a_stalled_transfer_times_out_and_resumes(hub, checkpoints, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.5)
    hub.stall(REPO, WEIGHTS, after_bytes=150_000)  # held until the server stops
    delays: list[float] = []
    path = store.download_model(REPO, sleep=delays.append)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert delays == [1.0]
    resumed = [r.range for r in hub.requests if r.path.endswith(WEIGHTS) and r.status == 206]
    assert resumed == ["bytes=150000-"]
    assert hub.bytes_served(REPO, WEIGHTS) == _weights_size(hub)


def test_an_interrupted_pull_resumes_on_the_next_pull(hub, checkpoints):
    hub.drop_connection(REPO, WEIGHTS, after_bytes=300_000)
    with pytest.raises(store.NetworkError, match="pull again to resume"):
        store.download_model(REPO, retry=NO_RETRY)
    assert [p.stat().st_size for p in _partial_files()] == [300_000]
    partial = store.downloaded_model(REPO)
    assert partial is not None and not partial.complete and partial.partial_bytes == 300_000
    with pytest.raises(store.ModelNotFound, match="not downloaded"):
        store.resolve_model(REPO)

    hub.reset_counters()
    path = store.download_model(REPO, retry=NO_RETRY)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    size = _weights_size(hub)
    assert hub.bytes_served(REPO, WEIGHTS) == size - 300_000 < size / 2
    assert _partial_files() == []


def test_corrupted_bytes_are_detected_and_fetched_again(hub, checkpoints):
    hub.corrupt(REPO, WEIGHTS, times=1)
    path = store.download_model(REPO)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert hub.bytes_served(REPO, WEIGHTS) == 2 * _weights_size(hub)


def test_bytes_corrupted_twice_fail_with_a_checksum_error(hub):
    hub.corrupt(REPO, WEIGHTS, times=2)
    with pytest.raises(store.ChecksumError, match=f"{WEIGHTS} of {REPO} did not match"):
        store.download_model(REPO)
    blobs = store.repo_cache_dir(REPO) / "blobs"
    sha = hub.repos[REPO].files[WEIGHTS].sha256
    assert not (blobs / sha).exists() and _partial_files() == []


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (401, store.GatedRepoError, "accept the Llama 4 license on the repo's Hub page"),
        (403, store.GatedRepoError, "sign in with a Hugging Face access token"),
        (404, store.RepoNotFound, "was not found on the Hub"),
        (503, store.NetworkError, "kept failing"),
    ],
)
def test_access_and_server_errors_have_clear_messages(hub, status, error, message):
    hub.fail(REPO, status)
    delays: list[float] = []
    with pytest.raises(error, match=message) as caught:
        store.download_model(REPO, sleep=delays.append, retry=store.RetryPolicy(attempts=2))
    assert "\n" not in str(caught.value)
    assert delays == ([1.0, 2.0] if status == 503 else [])
    assert not store.repo_cache_dir(REPO).exists()


def test_a_brief_server_error_is_retried(hub, checkpoints):
    hub.fail(REPO, 502, times=2)
    delays: list[float] = []
    path = store.download_model(REPO, sleep=delays.append)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert delays == [1.0, 2.0]


def test_gated_repo_needs_a_token_with_access(hub, checkpoints):
    gated = "meta-llama/Llama-4-Tiny-Gated"
    hub.add_repo(gated, checkpoints["4bit"], gated=True, allowed_tokens=("hf_granted",))
    plan = store.fetch_plan(gated)
    assert plan.gated

    with pytest.raises(store.GatedRepoError, match=r"\(401\).*/meta-llama/Llama-4-Tiny-Gated\)"):
        store.download_model(gated)
    store.set_token("hf_not_granted")
    with pytest.raises(store.GatedRepoError, match=r"\(403\)"):
        store.probe_access(plan)
    store.set_token("hf_granted")  # read from the keychain by every Hub call
    store.probe_access(plan)
    path = store.download_model(gated)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert all(r.authorization == "Bearer hf_granted" for r in hub.requests[-3:] if "/resolve/" in r.path)


def test_unknown_repo_and_unreachable_server(hub, tmp_path, monkeypatch):
    with pytest.raises(store.RepoNotFound, match="mlx-community/nope was not found on the Hub"):
        store.download_model("mlx-community/nope")
    hub.stop()
    delays: list[float] = []
    with pytest.raises(store.NetworkError, match="Cannot reach the Hub at http://127.0.0.1:.*server is down"):
        store.download_model(REPO, sleep=delays.append)
    assert delays == []  # an unreachable server fails at once


def test_offline_mode_is_reported(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(store.NetworkError, match="offline mode is on"):
        store.download_model(REPO)


def test_disk_space_is_checked_before_downloading(hub, monkeypatch):
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage._replace(free=1000))
    with pytest.raises(store.DiskFullError, match=r"still to download, 1\.0 KB free"):
        store.download_model(REPO)
    assert hub.total_bytes_served() == 0


def test_a_disk_filling_up_keeps_the_bytes_for_a_resume(hub, checkpoints, monkeypatch):
    class FullDisk:
        """Writes fine until 200 kB are in the file, then fails like a full disk."""

        def __init__(self, path):
            self.inner = open(path, "ab")  # noqa: SIM115

        def write(self, data):
            room = 200_000 - self.inner.tell()
            if room < len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.inner.write(data)

        def close(self):
            self.inner.close()

    real_open = store._open_partial
    weights_blob = hub.repos[REPO].files[WEIGHTS].sha256

    def open_partial(path):
        return FullDisk(path) if path.name.startswith(weights_blob) else real_open(path)

    monkeypatch.setattr(store, "_open_partial", open_partial)
    with pytest.raises(store.DiskFullError, match="The disk is full"):
        store.download_model(REPO)
    kept = sum(p.stat().st_size for p in _partial_files())
    assert 0 < kept <= 200_000

    monkeypatch.setattr(store, "_open_partial", real_open)
    hub.reset_counters()
    path = store.download_model(REPO)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert hub.bytes_served(REPO, WEIGHTS) == _weights_size(hub) - kept


def test_cancel_mid_download_then_resume(hub, checkpoints):
    """A GUI-like thread cancels while the server holds the file back after 150 kB."""
    stall = hub.stall(REPO, WEIGHTS, after_bytes=150_000)
    written = threading.Event()
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def on_progress(p: store.DownloadProgress) -> None:
        if p.file == WEIGHTS and p.file_bytes_done >= 150_000:
            written.set()

    def pull():
        try:
            store.download_model(REPO, cancel=cancel, progress=on_progress, progress_interval_s=0)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=pull)
    worker.start()
    assert written.wait(30), "the download never got the first 150 kB"
    cancel.set()
    stall.release()  # more bytes arrive; the download must see the cancel before writing them
    worker.join(30)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], store.DownloadCancelled)
    assert "cancelled" in str(outcome[0]) and "pull again to resume" in str(outcome[0])
    kept = sum(p.stat().st_size for p in _partial_files())
    assert kept == 150_000

    hub.clear_faults()
    hub.reset_counters()
    path = store.download_model(REPO)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    assert hub.bytes_served(REPO, WEIGHTS) == _weights_size(hub) - 150_000


def test_list_and_delete(hub, checkpoints):
    assert store.list_downloaded() == []
    path = store.download_model(REPO)
    [model] = store.list_downloaded()
    on_disk = sum(f.stat().st_size for f in path.iterdir())
    assert (model.repo_id, model.path, model.complete, model.model_type) == (REPO, path, True, "llama4")
    files = len(list(checkpoints["4bit"].iterdir())) + 1  # and empty.txt
    assert model.size_on_disk == on_disk and model.nb_files == files and model.partial_bytes == 0

    from models.hub.catalog import list_models

    [row] = [r for r in list_models() if r.key == REPO]
    assert (row.status, row.size_bytes, row.path, row.entry.source) == ("downloaded", on_disk, path, "cache")

    assert store.delete_model(REPO) == on_disk
    assert store.downloaded_model(REPO) is None and store.list_downloaded() == []
    with pytest.raises(store.ModelNotFound, match="is not downloaded"):
        store.resolve_model(REPO)
    with pytest.raises(store.ModelNotFound, match="is not downloaded"):
        store.delete_model(REPO)


@pytest.mark.slow
def test_a_downloaded_model_loads_and_answers_with_the_server_gone(hub):
    from models.inference.engine import Engine, GenerationSettings
    from models.inference.prompt import ChatMessage

    store.download_model(REPO)
    hub.stop()
    engine = Engine.load(store.resolve_model(REPO))
    steps = list(
        engine.generate([ChatMessage("user", "Hello")], GenerationSettings(max_tokens=4, temperature=0.0))
    )
    assert steps[-1].finish_reason == "length" and steps[-1].generation_tokens == 4
    assert "".join(s.text for s in steps)


def test_check_online_reports_size_gating_and_absence(hub, checkpoints):
    from models.hub.catalog import CatalogEntry, check_online, find_entry

    plan = store.fetch_plan(REPO)
    entry = CatalogEntry(key=REPO, display_name="tiny", family="other", repo_id=REPO)
    status = check_online(entry)
    assert (status.state, status.size_bytes, status.commit) == ("available", plan.total_bytes, plan.commit)

    hub.add_repo("meta-llama/Llama-4-Tiny-Gated", checkpoints["4bit"], gated=True)
    gated = CatalogEntry(key="g", display_name="g", family="other", repo_id="meta-llama/Llama-4-Tiny-Gated")
    assert check_online(gated).state == "gated"

    scout = find_entry("mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit")
    missing = check_online(scout)  # the fake Hub does not serve the catalog's repos
    assert missing.state == "unavailable" and "was not found on the Hub" in missing.message

    folder = CatalogEntry(
        key=str(checkpoints["4bit"]),
        display_name="local",
        family="other",
        path=checkpoints["4bit"],
        source="user",
    )
    assert check_online(folder).state == "available"

    hub.stop()
    offline = check_online(entry)
    assert offline.state == "offline" and "Cannot reach the Hub" in offline.message


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": b"{}", "pytorch_model.bin": b"\x80\x02"}, "has no .safetensors weights"),
        ({"model.safetensors": b"x", "../escape.json": b"{}"}, "lists a file outside the repo"),
    ],
)
def test_unsafe_repos_are_refused_before_any_download(hub, files, message):
    hub.add_repo("someone/Llama-4-Odd", files=files)
    with pytest.raises(store.StoreError, match=message):
        store.download_model("someone/Llama-4-Odd")
    assert hub.total_bytes_served() == 0 and not store.repo_cache_dir("someone/Llama-4-Odd").exists()


# -- a hostile Hub: nothing lands outside the repo's cache folder, nothing unverified is kept -------


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
    assert not (blobs / ("0" * 40)).exists() and _partial_files() == []
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
