"""models.hub.store against a fake Hub: download, resume, checksums, errors, cancel, list, delete, offline."""

from __future__ import annotations

import errno
import hashlib
import shutil
import threading
from pathlib import Path

import pytest

from models.hub import downloader, store
from tests.support.fake_hub_repo import REPO, WEIGHTS, partial_files
from tests.support.hub_server import HubServer

NO_RETRY = store.RetryPolicy(attempts=0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _weights_size(hub: HubServer) -> int:
    return len(hub.repos[REPO].files[WEIGHTS].data)


def _assert_snapshot_matches(path: Path, checkpoint: Path) -> None:
    for name in ("config.json", WEIGHTS, "tokenizer.json", "model.safetensors.index.json"):
        assert _sha256(path / name) == _sha256(checkpoint / name), name


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
    assert [p.stat().st_size for p in partial_files()] == [300_000]
    partial = store.downloaded_model(REPO)
    assert partial is not None and not partial.complete and partial.partial_bytes == 300_000
    with pytest.raises(store.ModelNotFound, match="not downloaded"):
        store.resolve_model(REPO)

    hub.reset_counters()
    path = store.download_model(REPO, retry=NO_RETRY)
    _assert_snapshot_matches(path, checkpoints["4bit"])
    size = _weights_size(hub)
    assert hub.bytes_served(REPO, WEIGHTS) == size - 300_000 < size / 2
    assert partial_files() == []


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
    assert not (blobs / sha).exists() and partial_files() == []


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

    real_open = downloader.open_partial
    weights_blob = hub.repos[REPO].files[WEIGHTS].sha256

    def open_partial(path):
        return FullDisk(path) if path.name.startswith(weights_blob) else real_open(path)

    monkeypatch.setattr(downloader, "open_partial", open_partial)
    with pytest.raises(store.DiskFullError, match="The disk is full"):
        store.download_model(REPO)
    kept = sum(p.stat().st_size for p in partial_files())
    assert 0 < kept <= 200_000

    monkeypatch.setattr(downloader, "open_partial", real_open)
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
    kept = sum(p.stat().st_size for p in partial_files())
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
    from models.hub.catalog import CatalogEntry, check_online, describe_repo

    plan = store.fetch_plan(REPO)
    entry = CatalogEntry(key=REPO, display_name="tiny", family="other", repo_id=REPO)
    status = check_online(entry)
    assert (status.state, status.size_bytes, status.commit) == ("available", plan.total_bytes, plan.commit)

    hub.add_repo("meta-llama/Llama-4-Tiny-Gated", checkpoints["4bit"], gated=True)
    gated = CatalogEntry(key="g", display_name="g", family="other", repo_id="meta-llama/Llama-4-Tiny-Gated")
    assert check_online(gated).state == "gated"

    scout = describe_repo("mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit")
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
