"""Which conversation the engine's KV cache belongs to, and its saved copy on disk.

The engine holds one KV cache, that of the last conversation it answered. ``ConversationCaches``
is the small piece of bookkeeping both the window's worker and ``llama-desk ask --chat`` use:

- ``open(engine, conversation_id, settings)`` before answering in a conversation (or as soon as
  it is opened): unless the engine's cache is already that conversation's, its saved cache (if
  it fits this model's layers and KV precision and is intact) becomes the engine's, so only new
  tokens are prefilled; a file that does not is deleted and the turn prefilled in full;
- ``keep(engine, conversation_id, final_step)`` when an answer ends (stop, length, cancelled):
  a snapshot of the cache is written in the background.

An engine split across a cluster (``models.distributed.driver.PipelineEngine``) holds only its
own layers' cache on this machine: told the conversation's id (``adopt_cache``,
``save_rank_caches``; no-ops on one machine), the other ranks save and restore their shares
themselves, and ``adopt_cache`` succeeds only when every rank restored.
"""

from __future__ import annotations

import logging
import weakref
from concurrent.futures import Future
from typing import Any

from models.inference.prompt_cache_files import LoadOutcome
from models.inference.prompt_cache_keeper import PromptCacheKeeper

KEPT_AFTER = ("stop", "length", "cancelled")

_log = logging.getLogger(__name__)


def kv_of(settings) -> tuple[int, int] | None:
    """The KV quantization ``(bits, group size)`` of ``GenerationSettings``, or None."""
    bits = getattr(settings, "kv_bits", None)
    return (int(bits), int(settings.kv_group_size)) if bits else None


class ConversationCaches:
    def __init__(self, keeper: PromptCacheKeeper):
        self.keeper = keeper
        self._engine: weakref.ref[Any] | None = (
            None  # weak reference to the engine whose cache ``_owner`` names
        )
        self._owner: str | None = None

    def _holds(self, engine, conversation_id) -> bool:
        return self._engine is not None and self._engine() is engine and self._owner == str(conversation_id)

    def open(self, engine, conversation_id: int | str, settings) -> LoadOutcome | None:
        """Give ``engine`` the conversation's saved cache; None when it already holds it (or
        when anything fails: a saved cache only ever saves time, it never stops an answer)."""
        if self._holds(engine, conversation_id):
            return None
        try:
            return self._open(engine, conversation_id, settings)
        except Exception:  # noqa: BLE001 - the question is then prefilled in full, as without it
            _log.warning("Could not restore the KV cache of conversation %s", conversation_id, exc_info=True)
            self._engine, self._owner = None, None
            return None

    def _open(self, engine, conversation_id, settings) -> LoadOutcome:
        result = self.keeper.load(conversation_id, engine.identity, kv_of(settings), engine.cache_layout)
        if result.snapshot is not None and not engine.adopt_cache(result.snapshot, conversation_id):
            # It does not fit this model's layers (or another rank lacks its share).
            self.keeper.delete(conversation_id)
            outcome = LoadOutcome.OTHER_MODEL
        else:
            outcome = result.outcome
        # Whatever the engine holds now is what this conversation's next answer builds on.
        self._engine, self._owner = weakref.ref(engine), str(conversation_id)
        return outcome

    def keep(self, engine, conversation_id: int | str, final_step) -> Future | None:
        """Save the conversation's cache in the background after an answer that ended well."""
        if final_step is None or final_step.finish_reason not in KEPT_AFTER:
            return None
        self._engine, self._owner = weakref.ref(engine), str(conversation_id)
        try:
            snapshot = engine.snapshot_cache()
            if snapshot is None:
                return None
            engine.save_rank_caches(conversation_id, snapshot, self.keeper.budget_bytes)  # a cluster's
            return self.keeper.save_in_background(conversation_id, snapshot, engine.identity)
        except Exception:  # noqa: BLE001 - not saving costs a prefill later, nothing more
            _log.warning("Could not save the KV cache of conversation %s", conversation_id, exc_info=True)
            return None

    def release(self) -> None:
        """The engine's cache now holds something else (another caller's prompt): the next
        answer in any conversation restores that conversation's saved cache."""
        self._engine, self._owner = None, None

    def forget(self, conversation_id: int | str) -> None:
        """The conversation is gone: delete its saved cache."""
        if self._owner == str(conversation_id):
            self._engine, self._owner = None, None
        self.keeper.delete(conversation_id)
