"""Memory of a KV cache loaded from disk (a conversation's saved cache, see
``models.inference.prompt_cache_keeper``), for the planner.

A loaded cache occupies memory like a prefilled one: the global layers hold every token, the
chunked layers at most one chunk (plus the token last added). Its arrays are read at their
exact length, without the 256-token allocation steps of a cache grown by prefilling, and its
first growth copies them into a larger buffer, which ``conversation_budget_check`` already
counts for a cache of that many tokens. While it is read, the cache it replaces is still held.
"""

from __future__ import annotations

from models.memory.planner import MemoryPlan, TurnCheck, conversation_budget_check


def loaded_cache_bytes(plan: MemoryPlan, tokens: int) -> int:
    """Bytes of a saved cache of ``tokens`` tokens once loaded (before it grows)."""
    if tokens <= 0:
        return 0
    s = plan.layout
    per_token_layer = 2 * s.kv_dim
    glob = tokens * per_token_layer * plan._global_kv_element * s.global_layers
    chunked = min(tokens, s.chunk + 1) * per_token_layer * plan.activation_bytes * s.chunked_layers
    return int(glob + chunked)


def restore_peak_bytes(plan: MemoryPlan, loaded_tokens: int, held_tokens: int = 0) -> int:
    """Peak while a saved cache is read: the weights, the cache still held (``held_tokens``,
    grown by prefilling) and the one being loaded."""
    held = plan.kv_cache_bytes(held_tokens) if held_tokens > 0 else 0
    return plan._scaled(plan.weights.total + held + loaded_cache_bytes(plan, loaded_tokens))


def restored_turn_check(
    plan: MemoryPlan,
    loaded_tokens: int,
    next_turn_tokens: int,
    budget_bytes: int,
    prefill_step: int = 512,
    image_tiles: int = 0,
) -> TurnCheck:
    """``conversation_budget_check`` for a turn that starts from a loaded cache: its tokens are
    counted as already cached, as for a conversation that never left memory."""
    return conversation_budget_check(
        plan, loaded_tokens, next_turn_tokens, budget_bytes, prefill_step, image_tiles
    )
