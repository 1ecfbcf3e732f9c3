"""ConversationCaches: a conversation's saved cache becomes the engine's when it is opened."""

from models.inference.conversation_caches import ConversationCaches
from models.inference.engine import GenerationSettings
from models.inference.prompt import ChatMessage
from models.inference.prompt_cache_files import LoadOutcome
from models.inference.prompt_cache_keeper import PromptCacheKeeper

GREEDY = GenerationSettings(max_tokens=6, temperature=0.0)


def turn(engine, messages):
    return list(engine.generate(messages, GREEDY))[-1]


def test_switching_conversations_restores_each_cache(engine_4bit, tmp_path):
    caches = ConversationCaches(PromptCacheKeeper(tmp_path))
    engine_4bit.reset_cache()
    a = [ChatMessage("user", "First conversation, about the sea and the sky.")]
    b = [ChatMessage("user", "Second one: mountains, lakes and trees.")]
    assert caches.open(engine_4bit, 1, GREEDY) is LoadOutcome.MISSING
    fa = turn(engine_4bit, a)
    caches.keep(engine_4bit, 1, fa).result()
    assert caches.open(engine_4bit, 1, GREEDY) is None  # the engine holds it already
    caches.open(engine_4bit, 2, GREEDY)
    fb = turn(engine_4bit, b)
    caches.keep(engine_4bit, 2, fb).result()

    a2 = a + [ChatMessage("assistant", "", token_ids=fa.token_ids), ChatMessage("user", "More?")]
    assert caches.open(engine_4bit, 1, GREEDY) is LoadOutcome.LOADED
    final = turn(engine_4bit, a2)
    assert final.cached_tokens == len(fa.prompt_token_ids) + len(fa.token_ids)

    caches.forget(2)
    assert caches.open(engine_4bit, 2, GREEDY) is LoadOutcome.MISSING


def test_errors_are_not_kept(engine_4bit, tmp_path):
    caches = ConversationCaches(PromptCacheKeeper(tmp_path))
    final = turn(engine_4bit, [ChatMessage("user", "hello")])
    from dataclasses import replace

    assert caches.keep(engine_4bit, 3, replace(final, finish_reason="error")) is None
    assert caches.keep(engine_4bit, 3, None) is None
    assert PromptCacheKeeper(tmp_path).files() == []


def test_an_engine_without_the_cache_seams_is_left_alone(tmp_path):
    class Bare:
        pass

    caches = ConversationCaches(PromptCacheKeeper(tmp_path))
    assert caches.open(Bare(), 1, GREEDY) is None
    final = type("Final", (), {"finish_reason": "stop"})()
    assert caches.keep(Bare(), 1, final) is None
