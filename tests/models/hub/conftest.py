"""The fake Hub the store tests download from, and a keychain in memory."""

from __future__ import annotations

import keyring
import pytest

from tests.support.fake_hub_repo import REPO
from tests.support.hub_server import HubServer, MemoryKeyring, point_huggingface_hub_at


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
