"""``llama-desk models list|pull|rm|path|add`` and ``ask --model REPO`` against a fake Hub."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from desktop.cli.main import main
from models.hub import license, store
from tests.support.hub_server import HubServer, child_env, running_hub

REPO = "mlx-community/Llama-4-Tiny-Test-4bit"
WEIGHTS = "model-00001-of-00002.safetensors"  # the first weight shard
SCOUT_4BIT = "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit"


@pytest.fixture
def hub(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(tmp_path / "data"))
    with running_hub(monkeypatch, tmp_path / "hf", {REPO: checkpoints["4bit"]}) as server:
        yield server


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def child(hub: HubServer, tmp_path, *args: str, **popen) -> subprocess.Popen:
    env = child_env(hub.url, tmp_path / "hf", tmp_path / "data")
    return subprocess.Popen(
        [sys.executable, "-m", "desktop.cli", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def test_list_shows_the_catalog_with_estimated_sizes(hub, capsys):
    code, out, _ = cli(capsys, "models", "list", "--json")
    assert code == 0
    rows = {row["key"]: row for row in json.loads(out)}
    assert len(rows) == 7
    scout = rows[SCOUT_4BIT]
    assert [scout[k] for k in ("status", "size_bytes", "size_estimated")] == [
        "available",
        62_365_125_632,  # the planner's estimate of its weights: the size `models fit` gives too
        True,
    ]
    assert [scout[k] for k in ("family", "total_params", "active_params", "experts", "bits")] == [
        "scout",
        109_000_000_000,
        17_000_000_000,
        16,
        4,
    ]
    maverick = rows["mlx-community/Llama-4-Maverick-17B-128E-Instruct-8bit"]
    assert [maverick[k] for k in ("family", "experts", "size_bytes")] == ["maverick", 128, 427_500_669_952]

    code, out, _ = cli(capsys, "models", "list")
    assert code == 0 and "~62.4 GB  " + SCOUT_4BIT in out
    code, out, _ = cli(capsys, "models", "fit", SCOUT_4BIT, "--json", "--backend", "metal")
    assert code == 0 and json.loads(out)["weights_bytes"] == scout["size_bytes"]  # one size everywhere
    # MLX's CPU backend runs the float tensors (scales, biases, norms) in float32: more resident.
    code, out, _ = cli(capsys, "models", "fit", SCOUT_4BIT, "--json", "--backend", "cpu")
    assert code == 0 and json.loads(out)["weights_bytes"] > scout["size_bytes"]

    code, out, _ = cli(capsys, "models", "list", "--online", "--json")
    online = {row["key"]: row for row in json.loads(out)}
    assert online[SCOUT_4BIT]["status"] == "unavailable"  # the fake Hub does not serve it


def test_pull_needs_the_license_then_downloads_lists_resolves_and_deletes(hub, capsys, checkpoints):
    code, out, err = cli(capsys, "models", "pull", REPO)
    assert code == 1
    assert license.EU_MULTIMODAL_NOTICE in " ".join(out.split()) and license.LICENSE_URL in out
    assert err.count("\n") == 1 and f"llama-desk models pull {REPO} --accept-license" in err
    assert hub.total_bytes_served() == 0

    code, out, err = cli(capsys, "models", "pull", REPO, "--accept-license")
    assert code == 0, err
    path = out.strip()
    assert path == str(store.resolve_model(REPO))
    files = len(list(checkpoints["4bit"].iterdir()))
    assert f"[{files}/{files}]" in err and f"Downloaded {REPO}" in err
    assert license.license_accepted()

    code, out, _ = cli(capsys, "models", "list", "--json")
    [row] = [r for r in json.loads(out) if r["key"] == REPO]
    assert (row["status"], row["path"], row["source"]) == ("downloaded", path, "cache")
    assert row["size_bytes"] == row["bytes_on_disk"] == store.downloaded_model(REPO).size_on_disk

    hub.reset_counters()
    code, out, _ = cli(capsys, "models", "pull", REPO)  # accepted once: no flag needed; nothing to fetch
    assert code == 0 and out.strip() == path and hub.total_bytes_served() == 0

    assert cli(capsys, "models", "path", REPO)[1].strip() == path
    code, _, err = cli(capsys, "models", "rm", REPO)
    assert code == 0 and f"Deleted {REPO}" in err
    code, out, err = cli(capsys, "models", "path", REPO)
    assert code == 1 and out == ""
    assert err == f"llama-desk: {REPO} is not downloaded; run `llama-desk models pull {REPO}` first.\n"
    code, _, err = cli(capsys, "models", "rm", REPO)
    assert code == 1 and "is not downloaded" in err


@pytest.mark.parametrize(
    ("setup", "repo", "message"),
    [
        (lambda hub: None, "mlx-community/nope", "mlx-community/nope was not found on the Hub (404)"),
        (lambda hub: hub.fail(REPO, 403), REPO, "accept the Llama 4 license on the repo's Hub page"),
        (lambda hub: hub.stop(), REPO, "Cannot reach the Hub at http://127.0.0.1:"),
        (lambda hub: None, "./some/folder", "is not a Hub repo id"),
        (
            lambda hub: hub.lie_about_file(REPO, "config.json", blobId=None),
            REPO,
            f"The server sent no checksum for config.json of {REPO}, so it cannot be verified; "
            "download refused.",
        ),
        (
            lambda hub: hub.lie_about_file(REPO, WEIGHTS, lfs={"sha256": "/etc/hostname"}),
            REPO,
            f"The server sent an invalid sha256 for {WEIGHTS} of {REPO}; download refused.",
        ),
    ],
)
def test_pull_failures_are_one_line(hub, capsys, setup, repo, message):
    license.accept_license()
    setup(hub)
    code, _, err = cli(capsys, "models", "pull", repo)
    assert code in (1, 2)
    assert message in err and err.count("\n") == 1 and err.startswith("llama-desk: ")


def test_a_hostile_hub_gets_one_line_and_writes_nothing_outside_the_cache(hub, tmp_path):
    """The listing names a commit that climbs out of the cache into a LaunchAgents folder."""
    license.accept_license()
    hub.lie_about_commit(REPO, "../../../../LaunchAgents/com.evil")
    process = child(hub, tmp_path, "models", "pull", REPO)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and out == ""
    assert err == f"llama-desk: The server sent an invalid commit id for {REPO}; download refused.\n"
    assert not (tmp_path / "LaunchAgents").exists() and hub.total_bytes_served() == 0


def test_add_a_folder_and_forget_it(hub, capsys, checkpoints, tmp_path):
    code, _, err = cli(capsys, "models", "add", str(checkpoints["4bit"]), "--name", "Tiny local")
    assert code == 0 and "Added Tiny local" in err
    rows = {r["key"]: r for r in json.loads(cli(capsys, "models", "list", "--json")[1])}
    local = rows[str(checkpoints["4bit"])]
    assert (local["status"], local["source"], local["bits"], local["path"]) == (
        "local",
        "user",
        4,
        str(checkpoints["4bit"]),
    )

    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "models", "add", str(tmp_path / "empty"))
    assert code == 1 and "has no config.json" in err and err.count("\n") == 1

    code, _, err = cli(capsys, "models", "rm", str(checkpoints["4bit"]))
    assert code == 0 and "Removed" in err and checkpoints["4bit"].exists()


def test_ctrl_c_cancels_a_pull_cleanly_and_the_next_pull_resumes(hub, tmp_path, capsys):
    """Ctrl+C while the server holds tokenizer.json back (files come one after another, so the
    weights before it are complete): exit 130, one line, and the next pull fetches only the rest."""
    license.accept_license()
    tokenizer = "tokenizer.json"
    stall = hub.stall(REPO, tokenizer, after_bytes=100_000)
    process = child(hub, tmp_path, "models", "pull", REPO)
    try:
        assert stall.reached.wait(60), "the child never reached the stall"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == (
        f"llama-desk: download of {REPO} cancelled; what was fetched is kept: "
        "run the same command again to resume."
    )
    assert "Traceback" not in err
    kept = sum(p.stat().st_size for p in store.repo_cache_dir(REPO).glob("blobs/*.incomplete"))
    assert kept <= 100_000

    hub.clear_faults()
    hub.reset_counters()
    code, _, err = cli(capsys, "models", "pull", REPO)
    assert code == 0, err
    assert hub.bytes_served(REPO, WEIGHTS) == 0
    assert hub.bytes_served(REPO, tokenizer) == len(hub.repos[REPO].files[tokenizer].data) - kept


@pytest.mark.slow
def test_ask_answers_with_a_downloaded_repo_id_while_the_hub_is_down(hub, tmp_path, capsys):
    license.accept_license()
    assert cli(capsys, "models", "pull", REPO)[0] == 0
    hub.stop()
    process = child(
        hub, tmp_path, "ask", "--model", REPO, "--json", "--temperature", "0", "--max-tokens", "3", "Hello"
    )
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    answer = json.loads(out)
    assert answer["finish_reason"] == "length" and answer["generation_tokens"] == 3
