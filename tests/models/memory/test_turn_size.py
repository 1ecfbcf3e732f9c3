from dataclasses import dataclass, field
from types import SimpleNamespace

from models.inference.preprocess import ProcessorConfig
from models.memory.turn_size import (
    FEATURES_PER_TILE,
    MAX_IMAGE_TOKENS,
    conversation_tokens,
    estimated_text_tokens,
    turn_tokens,
)


@dataclass
class Entry:
    role: str
    text: str = ""
    images: list = field(default_factory=list)
    token_ids: list | None = None
    stats: object | None = None


def test_text_is_estimated_at_three_characters_a_token_plus_framing():
    assert estimated_text_tokens("") == 8
    assert estimated_text_tokens("Hello") == 5 // 3 + 8
    assert estimated_text_tokens("x" * 300) == 108


def test_a_turn_adds_question_tiles_and_the_answers_room():
    assert turn_tokens("Hello", image_tiles=2, features_per_tile=144, max_tokens=100) == 9 + 288 + 100


def test_the_image_estimate_is_llama4s_largest_tiling():
    config = ProcessorConfig()
    assert FEATURES_PER_TILE == config.patches_per_tile
    assert MAX_IMAGE_TOKENS == (config.max_patches + 1) * config.patches_per_tile


def test_the_last_answers_numbers_win_over_estimates():
    stats = SimpleNamespace(prompt_token_ids=[1] * 40, generation_tokens=7)
    entries = [Entry("user", "x" * 3000), Entry("assistant", "y", stats=stats), Entry("user", "z" * 300)]
    assert conversation_tokens(entries) == 47


def test_prompt_counts_and_cached_tokens_are_used_without_ids():
    stats = SimpleNamespace(prompt_tokens=30, cached_tokens=100, generation_tokens=5)
    assert conversation_tokens([Entry("user", "q"), Entry("assistant", "a", stats=stats)]) == 135


def test_without_numbers_token_ids_text_and_images_are_summed():
    entries = [Entry("user", "x" * 30, images=["a", "b"]), Entry("assistant", "ignored", token_ids=[1, 2, 3])]
    assert conversation_tokens(entries) == (10 + 8 + 2 * MAX_IMAGE_TOKENS) + 3
    assert conversation_tokens([]) == 0


def test_an_answer_without_numbers_does_not_stop_the_search():
    entries = [Entry("user", "q"), Entry("assistant", "a", stats=SimpleNamespace())]
    assert conversation_tokens(entries) == 2 * 8
