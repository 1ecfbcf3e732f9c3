"""Saved KV cache files: every broken or foreign file is ignored and removed, never trusted.

Snapshots here are built directly from mlx-lm cache layers (no model needed); the engine-level
round trip is in ``test_cache_restore.py``.
"""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import pytest

from models.inference import prompt_cache_files
from models.inference.cache_layout import CacheLayout, LayerLayout
from models.inference.cache_snapshot import CacheSnapshot
from models.inference.model_identity import ModelIdentity
from models.inference.prompt_cache_files import (
    LoadOutcome,
    SaveOutcome,
    load_cache_file,
    save_cache_file,
)
from models.inference.prompt_cache_keeper import PromptCacheKeeper

IDENTITY = ModelIdentity("/models/tiny", "abc123")
ROOT = Path(__file__).resolve().parents[3]


def layout(kv=None) -> CacheLayout:
    """The layers ``snapshot`` makes: a chunked one (2 heads of 16, chunks of 64), then a global
    one (2 heads of 64 when quantized, else of 16)."""
    return CacheLayout(
        (LayerLayout(2, 16, chunk=64, quantizable=False), LayerLayout(2, 64 if kv else 16, None, True))
    )


def snapshot(tokens=80, seed=0, kv=None):
    from mlx_lm.models.cache import ChunkedKVCache, KVCache, QuantizedKVCache

    mx.random.seed(seed)
    chunked = ChunkedKVCache.__new__(ChunkedKVCache)
    start = max(0, tokens - 64)
    live = tokens - start
    live_keys, live_values = mx.random.normal((1, 2, live, 16)), mx.random.normal((1, 2, live, 16))
    chunked.state = (live_keys, live_values, tokens, 64, start)
    if kv:
        full = QuantizedKVCache.__new__(QuantizedKVCache)
        k = mx.quantize(mx.random.normal((1, 2, tokens, 64)), group_size=kv[1], bits=kv[0])
        v = mx.quantize(mx.random.normal((1, 2, tokens, 64)), group_size=kv[1], bits=kv[0])
        full.state = (tuple(k), tuple(v), tokens, kv[1], kv[0])
    else:
        full = KVCache.__new__(KVCache)
        full.state = (mx.random.normal((1, 2, tokens, 16)), mx.random.normal((1, 2, tokens, 16)), tokens)
    keys = tuple([1, 2] + [(7, "sha-of-image", j) for j in range(4)] + list(range(10, 10 + tokens - 6)))
    return CacheSnapshot((chunked, full), keys, kv)


def same_layers(a: CacheSnapshot, b: CacheSnapshot) -> bool:
    from mlx.utils import tree_flatten

    for x, y in zip(a.layers, b.layers, strict=True):
        if type(x) is not type(y):
            return False
        fx, fy = tree_flatten(x.state), tree_flatten(y.state)
        for (_, u), (_, w) in zip(fx, fy, strict=True):
            if isinstance(u, mx.array) != isinstance(w, mx.array):
                return False
            if isinstance(u, mx.array) and not mx.array_equal(u, w):
                return False
            if not isinstance(u, mx.array) and int(u) != int(w):
                return False
    return True


@pytest.mark.parametrize("kv", [None, (8, 64), (4, 64)])
def test_round_trip_is_exact(tmp_path, kv):
    snap = snapshot(kv=kv)
    path = tmp_path / "1.safetensors"
    saved = save_cache_file(path, snap, IDENTITY)
    assert saved.outcome is SaveOutcome.SAVED and saved.bytes == path.stat().st_size
    loaded = load_cache_file(path, IDENTITY, kv, layout(kv))
    assert loaded.outcome is LoadOutcome.LOADED
    assert loaded.snapshot.keys == snap.keys  # image keys come back as tuples
    assert loaded.snapshot.kv == kv
    assert same_layers(loaded.snapshot, snap)
    assert [p.name for p in tmp_path.iterdir()] == ["1.safetensors"]  # no temporary left


@pytest.mark.parametrize(
    "identity, kv, outcome",
    [
        (ModelIdentity("/models/tiny", "other"), None, LoadOutcome.OTHER_MODEL),
        (ModelIdentity("/models/other", "abc123"), None, LoadOutcome.OTHER_MODEL),
        (IDENTITY, (8, 64), LoadOutcome.OTHER_PRECISION),
    ],
)
def test_a_foreign_cache_is_removed(tmp_path, identity, kv, outcome):
    path = tmp_path / "1.safetensors"
    save_cache_file(path, snapshot(), IDENTITY)
    result = load_cache_file(path, identity, kv, layout(kv))
    assert result.outcome is outcome and result.snapshot is None
    assert not path.exists()


def test_another_format_version_is_removed(tmp_path, monkeypatch):
    path = tmp_path / "1.safetensors"
    monkeypatch.setattr(prompt_cache_files, "FORMAT_VERSION", "0")
    save_cache_file(path, snapshot(), IDENTITY)
    monkeypatch.undo()
    assert load_cache_file(path, IDENTITY, None, layout()).outcome is LoadOutcome.OTHER_VERSION
    assert not path.exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped header", "empty", "keys mismatch"])
def test_a_damaged_file_is_removed(tmp_path, damage):
    path = tmp_path / "1.safetensors"
    save_cache_file(path, snapshot(), IDENTITY)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    elif damage == "flipped header":
        path.write_bytes(data[:8] + b"}" + data[9:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        short = CacheSnapshot(snapshot().layers, snapshot().keys[:-3], None)
        save_cache_file(path, short, IDENTITY)
    result = load_cache_file(path, IDENTITY, None, layout())
    assert result.outcome is LoadOutcome.UNREADABLE
    assert not path.exists()


def test_a_missing_file_is_missing(tmp_path):
    assert (
        load_cache_file(tmp_path / "none.safetensors", IDENTITY, None, layout()).outcome
        is LoadOutcome.MISSING
    )


def test_disk_full_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "1.safetensors"
    old = snapshot(seed=1)
    save_cache_file(path, old, IDENTITY)
    before = path.read_bytes()

    def full_disk(file, arrays, metadata=None):
        Path(file).write_bytes(b"\0" * 100)  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mx, "save_safetensors", full_disk)
    result = save_cache_file(path, snapshot(seed=2), IDENTITY)
    monkeypatch.undo()
    assert result.outcome is SaveOutcome.FAILED and "space" in result.error
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["1.safetensors"]
    assert same_layers(load_cache_file(path, IDENTITY, None, layout()).snapshot, old)


SAVER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from tests.models.inference.test_prompt_cache_files import IDENTITY, snapshot
    from models.inference.prompt_cache_files import save_cache_file

    big = snapshot(tokens=60000, seed=5)  # about 15 MB
    path = Path({path!r})
    save_cache_file(path, big, IDENTITY)
    print("saved", flush=True)
    while True:
        save_cache_file(path, big, IDENTITY)
    """
)


def test_kill_during_save_leaves_a_whole_file(tmp_path):
    path = tmp_path / "1.safetensors"
    script = SAVER.format(root=str(ROOT), path=str(path))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "saved"
        # Kill it while a temporary file is being written (the next save is under way).
        for _ in range(100_000):
            if any(".partial" in p.name for p in tmp_path.iterdir()):
                break
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    keeper = PromptCacheKeeper(tmp_path)  # removes what the dead process left half-written
    assert [p.name for p in tmp_path.iterdir()] == ["1.safetensors"]
    loaded = keeper.load(1, IDENTITY, None, layout())
    assert loaded.outcome is LoadOutcome.LOADED and loaded.snapshot.tokens == 60000
