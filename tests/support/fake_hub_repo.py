"""The repo the Hub tests download: the tiny 4-bit checkpoint served by ``tests.support.hub_server``."""

from __future__ import annotations

from pathlib import Path

from models.hub import store

REPO = "mlx-community/Llama-4-Tiny-Test-4bit"
WEIGHTS = "model-00001-of-00002.safetensors"  # the first weight shard


def partial_files() -> list[Path]:
    """The interrupted downloads (``blobs/*.incomplete``) of REPO in the cache."""
    return list(store.repo_cache_dir(REPO).glob("blobs/*.incomplete"))
