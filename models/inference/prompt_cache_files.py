"""One conversation's KV cache in one file: written atomically, read back only when it is true.

The file is mlx-lm's prompt-cache format (a safetensors file, see ``cache_file_format``) holding
the portable layers of a ``CacheSnapshot``, with metadata: the format version, the model's
identity (folder and content hash), the KV quantization, the keys the engine compares (token
ids, image hashes at image positions) as JSON, and a checksum (xxh3-64) of all of it and of
every tensor's bytes.

Writing goes to a temporary name in the same folder, is flushed to disk (fsync), then renamed
over the old file (``os.replace``), so a kill at any moment leaves the old file or the new one.
Reading checks everything before the cache is used: the header first, against the model's
``CacheLayout``, before any tensor is read (``cache_file_checks``), then the checksum of the
tensors as they are read (hashed in place, on a second thread, while the next ones are read).
A file that is missing, unreadable, truncated, lying about its shapes, damaged (checksum), of an
older version without checksum, another format version, another model or another KV precision
is reported as such (``LoadOutcome``, with a reason) and, but for a missing one, removed: the
turn is then prefilled in full.
"""

from __future__ import annotations

import concurrent.futures
import enum
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.inference.cache_file_checks import CacheFileError, CheckedFile, LoadOutcome, check_file
from models.inference.cache_file_format import (
    CHECKSUM_FIELD,
    Checksum,
    layer_tensor_names,
    safetensors_dtype,
    structure_metadata,
    tensor_digest,
)
from models.inference.cache_layout import CacheLayout
from models.inference.cache_snapshot import CacheSnapshot
from models.inference.model_identity import ModelIdentity
from models.regular_files import InputFileError, open_regular_file

FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
TEMP_MARK = ".partial"  # in the names of files being written
HASH_BATCH_BYTES = 256 * 1024 * 1024  # read as one (parallel reads), hashed while the next is read

_log = logging.getLogger(__name__)


class SaveOutcome(enum.Enum):
    SAVED = "saved"
    FAILED = "failed"  # disk full, permissions...: the old file, if any, is kept


@dataclass(frozen=True)
class LoadResult:
    outcome: LoadOutcome
    snapshot: CacheSnapshot | None = None
    seconds: float = 0.0
    reason: str | None = None  # why a file was not used


@dataclass(frozen=True)
class SaveResult:
    outcome: SaveOutcome
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


def _kv_text(kv: tuple[int, int] | None) -> str:
    return "none" if not kv else f"{int(kv[0])}:{int(kv[1])}"


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


def _flatten(layers) -> tuple[tuple[str, ...], dict]:
    """The layers' classes and their tensors under the names ``cache_file_format`` gives."""
    import mlx.core as mx
    from mlx_lm.models import cache as lm

    classes = []
    arrays = {}
    for index, layer in enumerate(layers):
        if type(layer) not in (lm.KVCache, lm.ChunkedKVCache, lm.QuantizedKVCache):
            raise TypeError(f"Cannot save a {type(layer).__name__}")
        name = type(layer).__name__
        state = layer.state
        array_names, scalar_names = layer_tensor_names(index, name)
        for full in array_names:
            value = state
            for part in full.split(".")[1:]:
                value = value[int(part)]
            arrays[full] = value
        for full in scalar_names:
            arrays[full] = mx.array(int(state[int(full.split(".")[1])]), dtype=mx.int32)
        classes.append(name)
    mx.eval(list(arrays.values()))
    return tuple(classes), arrays


def save_cache_file(path: Path, snapshot: CacheSnapshot, identity: ModelIdentity) -> SaveResult:
    """Write ``snapshot`` to ``path`` atomically; never raises for a failed write."""
    import mlx.core as mx

    start = time.perf_counter()
    path = Path(path)
    temp = path.with_name(f"{path.stem}{TEMP_MARK}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}")
    try:
        classes, arrays = _flatten(snapshot.layers)
        metadata = {
            "0.format_version": FORMAT_VERSION,
            "0.model_name": identity.name,
            "0.model_digest": identity.digest,
            "0.kv": _kv_text(snapshot.kv),
            "0.tokens": str(snapshot.tokens),
            "0.keys": json.dumps(list(snapshot.keys), separators=(",", ":")),
            **structure_metadata(classes),
        }
        checksum = Checksum(metadata)
        for name in sorted(arrays):
            array = arrays[name]
            checksum.add(name, safetensors_dtype(array.dtype), array.shape, array)
        metadata[CHECKSUM_FIELD] = checksum.text()
        path.parent.mkdir(parents=True, exist_ok=True)
        mx.save_safetensors(str(temp), arrays, metadata)
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


def _batches(names: list[str], tensors: dict) -> list[list[str]]:
    """``names`` in order, cut into runs of about ``HASH_BATCH_BYTES``."""
    out: list[list[str]] = [[]]
    size = 0
    for name in names:
        if size >= HASH_BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(name)
        size += tensors[name].end - tensors[name].start
    return out


def _load_tensors(path: Path, checked: CheckedFile) -> tuple:
    """The checked file's layers: tensors read (MLX) in batches of ``HASH_BATCH_BYTES``, each
    tensor hashed in place (no copy) on a pool of threads (one per core, at most 8) while the
    next batch is read, and the whole compared with the checksum before anything is built."""
    import mlx.core as mx
    from mlx_lm.models import cache as lm

    loaded = mx.load(str(path))  # lazy: the header again (checked), no data yet
    if not isinstance(loaded, dict) or set(loaded) != set(checked.tensors):
        raise CacheFileError("it changed while it was read")
    arrays: dict[str, Any] = loaded
    for name, tensor in checked.tensors.items():
        array = arrays[name]
        if tuple(array.shape) != tensor.shape or safetensors_dtype(array.dtype) != tensor.dtype:
            raise CacheFileError("it changed while it was read")
    checksum = Checksum(checked.metadata)
    workers = max(2, min(8, os.cpu_count() or 2))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="kv-cache-hash") as hasher:
        digests: dict[str, concurrent.futures.Future] = {}
        for batch in _batches(sorted(arrays), checked.tensors):
            mx.eval([arrays[name] for name in batch])  # here: MLX's stream is this thread's
            for name in batch:  # hashed on the other cores while the next batch is read
                tensor = checked.tensors[name]
                digests[name] = hasher.submit(tensor_digest, name, tensor.dtype, tensor.shape, arrays[name])
        for name, digest in digests.items():
            checksum.add_digest(name, digest.result())
    if checksum.text() != checked.checksum:
        raise CacheFileError("checksum mismatch: damaged on disk")
    if any(arrays[name].item() != value for name, value in checked.scalars.items()):
        raise CacheFileError("it changed while it was read")
    layers: list[Any] = []
    for index, name in enumerate(checked.classes):
        array_names, scalar_names = layer_tensor_names(index, name)
        scalars = tuple(checked.scalars[s] for s in scalar_names)
        if name == "QuantizedKVCache":
            keys = tuple(arrays[f"{index}.0.{k}"] for k in "012")
            values = tuple(arrays[f"{index}.1.{k}"] for k in "012")
        else:
            keys, values = (arrays[a] for a in array_names)
        cls = getattr(lm, name)
        layer = cls.__new__(cls)
        layer.state = (keys, values, *scalars)
        layers.append(layer)
    return tuple(layers)


def _read_ahead(fd: int) -> None:
    """Ask the system to start reading the whole (checked) file now: the batches read one
    after the other then find it on its way into memory (Linux; elsewhere nothing to do)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        try:
            advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass


def _read(path: Path, identity: ModelIdentity, kv: tuple[int, int] | None, layout: CacheLayout) -> LoadResult:
    try:
        with open_regular_file(path, path.name) as handle:
            checked = check_file(handle, FORMAT_VERSION, identity, kv, layout)
            _read_ahead(handle.fileno())
        layers = _load_tensors(path, checked)
    except CacheFileError as exc:
        return LoadResult(exc.outcome, reason=str(exc))
    except InputFileError as exc:
        return LoadResult(LoadOutcome.UNREADABLE, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - unreadable or not ours: the file is useless
        _log.debug("Unreadable KV cache file %s", path.name, exc_info=True)
        return LoadResult(LoadOutcome.UNREADABLE, reason=f"{type(exc).__name__}: {str(exc)[:200]}")
    return LoadResult(LoadOutcome.LOADED, CacheSnapshot(layers, checked.keys, kv or None))


def load_cache_file(
    path: Path, identity: ModelIdentity, kv: tuple[int, int] | None, layout: CacheLayout
) -> LoadResult:
    """Read the cache at ``path`` if it was saved for ``identity`` with KV quantization ``kv``
    and holds what a cache of ``layout`` (the model's layers) holds; a file that is not usable
    is removed (one log line says why). Never raises."""
    start = time.perf_counter()
    path = Path(path)
    if not path.is_file():
        return LoadResult(LoadOutcome.MISSING)
    result = _read(path, identity, (kv[0], kv[1]) if kv else None, layout)
    if result.outcome is not LoadOutcome.LOADED:
        _log.warning("Removing KV cache file %s: %s (%s)", path.name, result.outcome.value, result.reason)
        path.unlink(missing_ok=True)
    return LoadResult(result.outcome, result.snapshot, time.perf_counter() - start, result.reason)
