"""A pipeline rank's own saved KV caches: its layers' share of each kept conversation's cache.

Rank 0 keeps its layers' cache with the window's (or ``ask``'s) ``PromptCacheKeeper``, as one
machine does. Every other rank keeps its own layers' caches on its own disk, with a keeper of its
own (same file format, atomic writes, LRU eviction under the disk budget rank 0 sends) in
``kv-caches/ranks/<model hash>/layers-<start>-<end>/`` of its data folder, so a cache is only ever
read back by the same model cut at the same layers, and checked as on one machine (its header
against these layers' shapes, then its checksum; a share that fails is deleted). Each file also
holds the conversation's keys (token ids, image hashes), and a restore must name the same keys'
hash as rank 0's own file, so the ranks never combine caches of different states of a
conversation. File names are the
conversation ids, checked by the keeper (letters, digits, ``-`` and ``_`` only).
"""

from __future__ import annotations

import logging
from pathlib import Path

from models.inference.cache_layout import cache_layout
from models.inference.cache_snapshot import CacheSnapshot, fitting_caches, keys_digest, portable_layers
from models.inference.model_identity import ModelIdentity, model_identity
from models.inference.prompt_cache_keeper import FOLDER_NAME, RANKS_FOLDER, PromptCacheKeeper

_log = logging.getLogger(__name__)


def rank_folder(root: Path, identity: ModelIdentity, start: int, end: int) -> Path:
    """Where the rank holding layers ``[start, end)`` of ``identity`` keeps its caches."""
    return Path(root) / FOLDER_NAME / RANKS_FOLDER / identity.digest[:16] / f"layers-{int(start)}-{int(end)}"


def save_payload(conversation_id: int | str, snapshot: CacheSnapshot, budget_bytes: int) -> dict:
    """What rank 0 sends with SAVE: the conversation, its keys and the disk budget."""
    return {"id": str(conversation_id), "keys": list(snapshot.keys), "budget": int(budget_bytes)}


def restore_payload(conversation_id: int | str, snapshot: CacheSnapshot) -> dict:
    """What rank 0 sends with RESTORE: the conversation and the hash of the keys it restores."""
    return {"id": str(conversation_id), "digest": keys_digest(snapshot.keys)}


class RankCaches:
    """The saved caches of one rank's layers (``stage``) of the model at ``model_path``."""

    def __init__(self, stage, model_path: str | Path, root: Path | None = None):
        from models.app_folders import data_dir

        self.stage = stage
        self.identity = model_identity(model_path)
        root = root if root is not None else data_dir()
        self.folder = rank_folder(root, self.identity, stage.start, stage.end)
        self._budget_root = Path(root) / FOLDER_NAME  # one disk budget for every share on this Mac
        self._keeper: PromptCacheKeeper | None = None

    @property
    def keeper(self) -> PromptCacheKeeper:
        if self._keeper is None:
            self._keeper = PromptCacheKeeper(self.folder, budget_root=self._budget_root)
        return self._keeper

    def save(self, payload: dict, cache: list, kv: tuple[int, int] | None) -> bool:
        """Write ``cache`` (this rank's layers, holding the payload's keys) in the background;
        False when there is nothing consistent to save."""
        keys = tuple(payload["keys"])
        if not keys or any(c.offset != len(keys) for c in cache):
            return False
        try:
            self.keeper.path_for(payload["id"])
        except ValueError:
            _log.warning("Not saving a KV cache under the name %r", payload["id"])
            return False
        self.keeper.budget_bytes = max(0, int(payload["budget"]))
        snapshot = CacheSnapshot(portable_layers(cache), keys, kv)
        self.keeper.save_in_background(payload["id"], snapshot, self.identity)
        return True

    def restore(self, payload: dict, tokens: int, kv: tuple[int, int] | None) -> list | None:
        """This rank's caches of the payload's conversation, holding ``tokens`` positions with
        the payload's keys and KV precision ``kv``; None when missing or not those."""
        try:
            layout = cache_layout(self.stage.make_cache(), self.stage.layers)
            result = self.keeper.load(payload["id"], self.identity, kv, layout)
        except ValueError:
            return None
        snapshot = result.snapshot
        if snapshot is None or snapshot.tokens != tokens or keys_digest(snapshot.keys) != payload["digest"]:
            return None
        return fitting_caches(snapshot, self.stage.make_cache())

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
