"""The engine host's KV caches in memory: one per conversation, and the API's recent ones.

Every answer runs on a cache it is given (``LiveCache``, a value) and hands it back when it ends.
``LiveCaches.take`` chooses the cache a new answer continues from:

- a stored conversation's answer (``conversation`` set) gets that conversation's cache: the one in
  memory, else its saved copy on disk (``PromptCacheKeeper``: when it fits this model's layers and
  KV precision and is intact), else an empty one;
- any other request (the API) gets the cache, not in use, that shares the longest prefix with its
  prompt: an API client resending the conversation so far prefills only the new turn. It may take
  a conversation's cache only when its prompt holds all of it (it continues that conversation), so
  a request that merely shares a system prompt never cuts a conversation's cache short.

A cache in use is never given to a second answer. Caches handed back are kept, least recently
used first out, up to ``keep`` of them. Everything runs on the host's thread.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from models.inference.batch_generation import LiveCache
from models.inference.kv_reuse import common_prefix

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Taken:
    """The cache an answer runs on, under ``key``; ``restored`` how its saved copy was read
    (a ``LoadOutcome``), or None when none was looked for."""

    key: tuple
    live: LiveCache
    restored: object = None


class LiveCaches:
    def __init__(self, keep: int = 6):
        self.keep = max(1, int(keep))
        self._idle: OrderedDict[tuple, LiveCache] = OrderedDict()
        self._busy: set[tuple] = set()

    def __len__(self) -> int:
        return len(self._idle)

    @staticmethod
    def conversation_key(conversation_id: int | str) -> tuple:
        return ("conversation", str(conversation_id))

    def take(self, prompt_keys: list, conversation_id=None, number: int = 0, restore=None) -> Taken:
        """The cache for an answer to a prompt with ``prompt_keys``. ``restore(conversation_id)``
        gives ``(LiveCache or None, outcome)`` from disk for a conversation not in memory."""
        if conversation_id is not None:
            key = self.conversation_key(conversation_id)
            if key in self._busy:  # answered twice at once: the second starts afresh
                return self._taken(("request", number), LiveCache([]))
            live = self._idle.pop(key, None)
            if live is not None:
                return self._taken(key, live)
            restored, outcome = (None, None) if restore is None else restore(conversation_id)
            return Taken(self._mark(key), restored or LiveCache([]), outcome)
        best, best_len = None, 0
        for key, live in self._idle.items():
            shared = common_prefix(live.keys, prompt_keys)
            if key[0] == "conversation" and shared < live.tokens:
                continue
            if shared > best_len:
                best, best_len = key, shared
        if best is not None:
            return self._taken(best, self._idle.pop(best))
        return self._taken(("request", number), LiveCache([]))

    def _mark(self, key: tuple) -> tuple:
        self._busy.add(key)
        return key

    def _taken(self, key: tuple, live: LiveCache) -> Taken:
        return Taken(self._mark(key), live)

    def give_back(self, key: tuple, live: LiveCache) -> None:
        """An answer ended: keep its cache (dropping the least recently used past ``keep``)."""
        self._busy.discard(key)
        if not live.caches or not live.keys:
            self._idle.pop(key, None)
            return
        self._idle[key] = live
        self._idle.move_to_end(key)
        while len(self._idle) > self.keep:
            self._idle.popitem(last=False)

    def get(self, conversation_id) -> LiveCache | None:
        return self._idle.get(self.conversation_key(conversation_id))

    def forget(self, conversation_id) -> None:
        self._idle.pop(self.conversation_key(conversation_id), None)

    def clear(self) -> None:
        self._idle.clear()
