"""The repo the Hub tests download: the tiny 4-bit checkpoint served by ``tests.support.hub_server``."""

from __future__ import annotations

from pathlib import Path

from models.hub import store

REPO = "mlx-community/Llama-4-Tiny-Test-4bit"
WEIGHTS = "model-00001-of-00002.safetensors"  # the first weight shard


def partial_files() -> list[Path]:
    """The interrupted downloads (``blobs/*.incomplete``) of REPO in the cache."""
    return list(store.repo_cache_dir(REPO).glob("blobs/*.incomplete"))


SCOUT_REPO = "mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit"  # in the shipped catalog
SCOUT_NAME = "Llama 4 Scout 17B-16E Instruct (4-bit)"  # its catalog name
COMMIT = "062b5580d9e6c4f0f1a3b2c4d5e6f708192a3b4c"


def cache_snapshot(checkpoint: Path, repo_id: str = SCOUT_REPO, commit: str = COMMIT) -> Path:
    """Copy ``checkpoint`` into the hub cache as ``repo_id``'s snapshot ``commit`` (the layout a
    download leaves: ``models--owner--name/snapshots/<commit>``, ``refs/main``); return its folder."""
    import shutil

    repo_dir = store.repo_cache_dir(repo_id)
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(checkpoint, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
