"""The folder of saved KV caches, one file per conversation, kept under a disk budget.

``PromptCacheKeeper`` saves a conversation's ``CacheSnapshot`` (in the background when asked,
one save at a time, so the model thread goes on answering), loads it back for the model that
wrote it, deletes it with its conversation, and evicts the least recently used files (by
modification time; loading a file touches it) when the folder grows past its budget (kept in
``budget.json`` in the folder, so the window's Settings and ``llama-desk ask`` share it). Files
left half-written by a killed process are removed when a keeper opens the folder (at once when
the process named in the file name is gone, else after an hour).

No link is followed (``models.contained_paths``, from the folder above ``kv-caches`` down): a
link is never counted, evicted or cleared, and nothing is saved, loaded or deleted through a
linked folder (``kv-caches`` itself, ``ranks/`` or a rank's share folder).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from models import contained_paths
from models.app_folders import data_dir
from models.inference.cache_layout import CacheLayout
from models.inference.cache_snapshot import CacheSnapshot
from models.inference.model_identity import ModelIdentity
from models.inference.prompt_cache_files import (
    SUFFIX,
    TEMP_MARK,
    LoadOutcome,
    LoadResult,
    SaveOutcome,
    SaveResult,
    load_cache_file,
    save_cache_file,
)

DEFAULT_BUDGET_BYTES = 20 * 1024**3
FOLDER_NAME = "kv-caches"
RANKS_FOLDER = "ranks"  # pipeline ranks' own shares: ranks/<model>/layers-<start>-<end>/
BUDGET_FILE = "budget.json"
_STALE_TEMP_S = 3600  # a temporary file this old belongs to no running save

_log = logging.getLogger(__name__)


def default_folder() -> Path:
    return data_dir() / FOLDER_NAME


def remove_saved_cache(folder: Path, conversation_id: int | str) -> None:
    """Delete one conversation's saved cache from ``folder`` (for the conversation store), and
    the shares that pipeline ranks on this machine saved (``models.distributed.rank_caches``;
    a rank on another Mac drops its share when its disk budget needs the room)."""
    try:
        name = f"{int(conversation_id)}{SUFFIX}"
        folder = Path(folder)
        shares = contained_paths.regular_files(folder.parent, folder / RANKS_FOLDER, depth=2)
        for path in [folder / name, *(path for path, _ in shares if path.name == name)]:
            contained_paths.remove_file(folder.parent, path)
    except (OSError, ValueError):
        _log.debug("Could not remove the KV cache of %s", conversation_id, exc_info=True)


def stored_budget(folder: Path) -> int:
    """The disk budget kept in ``folder`` (the window's Settings), or the default."""
    try:
        value = json.loads((Path(folder) / BUDGET_FILE).read_text(encoding="utf-8"))["budget_bytes"]
        return max(0, int(value))
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_BUDGET_BYTES


@dataclass(frozen=True)
class CacheFile:
    conversation_id: str
    path: Path
    bytes: int
    used_at: float


def _writer_alive(temp: Path) -> bool:
    """Whether the process named in a temporary file's name (``<id>.partial-<pid>-...``) runs."""
    try:
        pid = int(temp.name.split(TEMP_MARK + "-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class PromptCacheKeeper:
    """Saved KV caches in ``folder`` (default: ``kv-caches`` in the data folder)."""

    def __init__(
        self,
        folder: str | Path | None = None,
        budget_bytes: int | None = None,
        budget_root: str | Path | None = None,
    ):
        """``budget_bytes`` None: the budget stored in the folder (``set_budget``), else the default.
        ``budget_root``: the ``kv-caches`` folder whose files share the budget (default: this
        folder): its own and the pipeline ranks' shares under ``ranks/`` are counted, evicted and
        cleared together, whichever keeper saves."""
        self.folder = Path(folder) if folder is not None else default_folder()
        self.budget_root = Path(budget_root) if budget_root is not None else self.folder
        # The trusted root, above kv-caches (in the app, the data folder): no link below it is followed.
        self._root = Path(os.path.commonpath([self.folder.absolute(), self.budget_root.absolute().parent]))
        self.budget_bytes = int(budget_bytes) if budget_bytes is not None else stored_budget(self.folder)
        self._saver: concurrent.futures.ThreadPoolExecutor | None = None
        self._remove_stale_temps()

    def path_for(self, conversation_id: int | str) -> Path:
        name = str(conversation_id)
        if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
            raise ValueError(f"Not a conversation id: {conversation_id!r}")
        return self.folder / f"{name}{SUFFIX}"

    # -- saving ---------------------------------------------------------------------------------

    def save(
        self, conversation_id: int | str, snapshot: CacheSnapshot, identity: ModelIdentity
    ) -> SaveResult:
        """Write the conversation's cache now, then evict down to the budget."""
        path = self.path_for(conversation_id)
        try:
            if snapshot.nbytes > self.budget_bytes:
                self._remove(path)  # the old one is stale and the new one does not fit
                return SaveResult(SaveOutcome.FAILED, error="larger than the disk budget")
            contained_paths.make_folders(self._root, self.folder)  # never a linked folder
        except contained_paths.LinkRefused as exc:
            _log.warning("Not saving the KV cache of %s: %s", conversation_id, exc)
            return SaveResult(SaveOutcome.FAILED, error=str(exc))
        result = save_cache_file(path, snapshot, identity)
        if result.outcome is SaveOutcome.SAVED:
            self.evict(keep=path)
        return result

    def save_in_background(
        self, conversation_id: int | str, snapshot: CacheSnapshot, identity: ModelIdentity
    ) -> concurrent.futures.Future:
        """``save`` on the keeper's own thread (saves run one at a time, in order). Call it from
        the thread that owns the model: the snapshot's arrays are evaluated here first, as MLX
        streams belong to the thread that made them."""
        import mlx.core as mx

        mx.eval([layer.state for layer in snapshot.layers])
        if self._saver is None:
            self._saver = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kv-cache-save")
        return self._saver.submit(self.save, conversation_id, snapshot, identity)

    def wait(self) -> None:
        """Block until the background saves submitted so far are written."""
        if self._saver is not None:
            self._saver.submit(lambda: None).result()

    def close(self) -> None:
        if self._saver is not None:
            self._saver.shutdown(wait=True)
            self._saver = None

    # -- loading and removing -------------------------------------------------------------------

    def load(
        self,
        conversation_id: int | str,
        identity: ModelIdentity,
        kv: tuple[int, int] | None,
        layout: CacheLayout,
    ) -> LoadResult:
        """The conversation's saved cache if it fits ``identity``, ``kv`` and the model's cache
        ``layout`` and is intact (else removed)."""
        self.wait()  # a save of this conversation may be on its way
        path = self.path_for(conversation_id)
        try:
            contained_paths.check_no_links(self._root, self.folder)
        except contained_paths.LinkRefused as exc:
            _log.warning("Not loading the KV cache of %s: %s", conversation_id, exc)
            return LoadResult(LoadOutcome.MISSING)
        result = load_cache_file(path, identity, kv, layout)
        if result.snapshot is not None:
            try:
                contained_paths.touch(self._root, path)  # most recently used
            except OSError:
                pass
        return result

    def delete(self, conversation_id: int | str) -> None:
        """Remove the conversation's saved cache, if any."""
        self.wait()
        self._remove(self.path_for(conversation_id))

    def clear(self) -> int:
        """Remove every saved cache; return the bytes freed."""
        self.wait()
        freed = 0
        for entry in self.files():
            if self._remove(entry.path):
                freed += entry.bytes
        return freed

    def _remove(self, path: Path) -> bool:
        """Remove one cache file (a link at its name as a link); never through a linked folder."""
        try:
            return contained_paths.remove_file(self._root, path)
        except OSError as exc:
            _log.warning("Could not remove the KV cache %s: %s", path.name, exc)
            return False

    # -- accounting -----------------------------------------------------------------------------

    def files(self) -> list[CacheFile]:
        """The saved caches under the budget (``budget_root``), least recently used first."""
        out = []
        found = contained_paths.regular_files(self._root, self.budget_root)
        found += contained_paths.regular_files(self._root, self.budget_root / RANKS_FOLDER, depth=2)
        for path, stat in found:  # links are skipped there: never counted, never evicted
            if TEMP_MARK in path.name or not path.name.endswith(SUFFIX):
                continue
            out.append(CacheFile(path.name[: -len(SUFFIX)], path, stat.st_size, stat.st_mtime))
        return sorted(out, key=lambda f: (f.used_at, f.path.name))

    def set_budget(self, budget_bytes: int) -> list[str]:
        """Keep ``budget_bytes`` as the folder's budget (for every keeper), evicting down to it."""
        self.budget_bytes = max(0, int(budget_bytes))
        data = json.dumps({"budget_bytes": self.budget_bytes}).encode("utf-8")
        prefix = f"{BUDGET_FILE}{TEMP_MARK}-{os.getpid()}-"  # a stale one is found like a cache's
        contained_paths.replace_file(self._root, self.folder / BUDGET_FILE, data, prefix=prefix)
        self.wait()
        return self.evict()

    def evict(self, keep: Path | None = None) -> list[str]:
        """Remove least recently used caches until the folder fits the budget; ``keep`` goes last."""
        entries = self.files()
        total = sum(f.bytes for f in entries)
        entries.sort(key=lambda f: f.path == keep)  # stable: LRU order, ``keep`` at the end
        evicted = []
        for entry in entries:
            if total <= self.budget_bytes:
                break
            self._remove(entry.path)
            total -= entry.bytes
            evicted.append(entry.conversation_id)
        return evicted

    def _remove_stale_temps(self) -> None:
        now = time.time()
        for temp, stat in contained_paths.regular_files(self._root, self.folder):
            if TEMP_MARK not in temp.name:
                continue
            if not _writer_alive(temp) or now - stat.st_mtime > _STALE_TEMP_S:
                self._remove(temp)
