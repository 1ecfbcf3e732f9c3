"""One conversation's KV cache in one file: written atomically, read back only when it fits.

The file is mlx-lm's prompt-cache format (``save_prompt_cache`` / ``load_prompt_cache``, a
safetensors file) holding the portable layers of a ``CacheSnapshot``, with metadata: the format
version, the model's identity (folder and content hash), the KV quantization and the keys the
engine compares (token ids, image hashes at image positions), as JSON.

Writing goes to a temporary name in the same folder, is flushed to disk (fsync), then renamed
over the old file (``os.replace``), so a kill at any moment leaves the old file or the new one.
Reading checks everything before the cache is used: a file that is missing, unreadable,
truncated, of another format version, another model or another KV precision is reported as
such (``LoadOutcome``) and, but for a missing one, removed.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from models.inference.cache_snapshot import CacheSnapshot
from models.inference.model_identity import ModelIdentity

FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
TEMP_MARK = ".partial"  # in the names of files being written

_log = logging.getLogger(__name__)


class LoadOutcome(enum.Enum):
    LOADED = "loaded"
    MISSING = "missing"
    UNREADABLE = "unreadable"  # corrupt or truncated
    OTHER_VERSION = "other format version"
    OTHER_MODEL = "other model"
    OTHER_PRECISION = "other KV precision"


class SaveOutcome(enum.Enum):
    SAVED = "saved"
    FAILED = "failed"  # disk full, permissions...: the old file, if any, is kept


@dataclass(frozen=True)
class LoadResult:
    outcome: LoadOutcome
    snapshot: CacheSnapshot | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class SaveResult:
    outcome: SaveOutcome
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


def _kv_text(kv: tuple[int, int] | None) -> str:
    return "none" if not kv else f"{int(kv[0])}:{int(kv[1])}"


def _key_from_json(value):
    return tuple(value) if isinstance(value, list) else value


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_cache_file(path: Path, snapshot: CacheSnapshot, identity: ModelIdentity) -> SaveResult:
    """Write ``snapshot`` to ``path`` atomically; never raises for a failed write."""
    from mlx_lm.models.cache import save_prompt_cache

    start = time.perf_counter()
    path = Path(path)
    temp = path.with_name(f"{path.stem}{TEMP_MARK}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}")
    metadata = {
        "format_version": FORMAT_VERSION,
        "model_name": identity.name,
        "model_digest": identity.digest,
        "kv": _kv_text(snapshot.kv),
        "tokens": str(snapshot.tokens),
        "keys": json.dumps(list(snapshot.keys), separators=(",", ":")),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_prompt_cache(str(temp), list(snapshot.layers), metadata)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_folder(path.parent)
        size = path.stat().st_size
    except Exception as exc:  # noqa: BLE001 - disk full or any write failure: keep the old file
        _log.warning("Could not save the KV cache to %s: %s", path.name, exc)
        temp.unlink(missing_ok=True)
        return SaveResult(SaveOutcome.FAILED, seconds=time.perf_counter() - start, error=str(exc))
    return SaveResult(SaveOutcome.SAVED, size, time.perf_counter() - start)


def _read(path: Path, identity: ModelIdentity, kv: tuple[int, int] | None) -> LoadResult:
    import mlx.core as mx
    from mlx_lm.models.cache import load_prompt_cache

    try:
        layers, metadata = load_prompt_cache(str(path), return_metadata=True)
        if metadata.get("format_version") != FORMAT_VERSION:
            return LoadResult(LoadOutcome.OTHER_VERSION)
        if (metadata.get("model_name"), metadata.get("model_digest")) != (identity.name, identity.digest):
            return LoadResult(LoadOutcome.OTHER_MODEL)
        if metadata.get("kv") != _kv_text(kv):
            return LoadResult(LoadOutcome.OTHER_PRECISION)
        keys = tuple(_key_from_json(k) for k in json.loads(metadata["keys"]))
        if not keys or len(keys) != int(metadata["tokens"]):
            return LoadResult(LoadOutcome.UNREADABLE)
        for layer in layers:
            state = layer.state
            if int(state[2]) != len(keys):
                return LoadResult(LoadOutcome.UNREADABLE)
        mx.eval([layer.state[:2] for layer in layers])
    except Exception:  # noqa: BLE001 - truncated, corrupt, or not ours: the file is useless
        _log.debug("Unreadable KV cache file %s", path.name, exc_info=True)
        return LoadResult(LoadOutcome.UNREADABLE)
    return LoadResult(LoadOutcome.LOADED, CacheSnapshot(tuple(layers), keys, kv or None))


def load_cache_file(path: Path, identity: ModelIdentity, kv: tuple[int, int] | None) -> LoadResult:
    """Read the cache at ``path`` if it was saved for ``identity`` with KV quantization ``kv``;
    a file that is not usable is removed. Never raises."""
    start = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        return LoadResult(LoadOutcome.MISSING)
    result = _read(path, identity, (kv[0], kv[1]) if kv else None)
    if result.outcome is not LoadOutcome.LOADED:
        _log.info("Removing KV cache file %s: %s", path.name, result.outcome.value)
        path.unlink(missing_ok=True)
    return LoadResult(result.outcome, result.snapshot, time.perf_counter() - start)
