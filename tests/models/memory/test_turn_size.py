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


@dataclass
class Question(Entry):
    documents: tuple = ()


def _document(image_pages: int = 2, pages: int = 3):
    from models.documents.chat_documents import read_document
    from tests.support.pdf_files import text_pdf

    data = text_pdf([f"Page {n} of the report." for n in range(1, pages + 1)])
    return read_document(data, "report.pdf", image_pages=image_pages)


def test_a_questions_documents_count_their_text_and_page_images():
    from models.documents.chat_documents import message_parts

    document = _document(image_pages=2)
    with_document = conversation_tokens([Question("user", "Summarize.", documents=(document,))])
    text, images = message_parts("Summarize.", (), [document])
    assert len(images) == 2
    assert with_document == estimated_text_tokens(text) + 2 * MAX_IMAGE_TOKENS
    assert with_document > conversation_tokens([Question("user", "Summarize.")]) + 2 * MAX_IMAGE_TOKENS


def test_the_next_turn_counts_its_documents_text_and_page_tiles():
    from models.inference.preprocess import plan_tiles
    from models.memory.turn_size import question_tiles

    document = _document(image_pages=2)
    processor = ProcessorConfig()
    photo = SimpleNamespace(size=(112, 56))
    tiles = question_tiles([photo], [document], processor)
    expected = plan_tiles(112, 56, processor).tiles + sum(
        plan_tiles(*i.size, processor).tiles for i in document.images
    )
    assert tiles == expected and tiles > plan_tiles(112, 56, processor).tiles
    plain = turn_tokens("Summarize.", tiles, 144, 10)
    assert turn_tokens("Summarize.", tiles, 144, 10, documents=(document,)) > plain + 5


def test_page_images_that_do_not_fit_are_demoted_from_the_last():
    from models.memory.turn_size import demoted_to_fit, image_tiles

    processor = ProcessorConfig()
    first, second = _document(image_pages=2), _document(image_pages=3, pages=4)
    cost = image_tiles(second.images[-1].size, processor) * processor.patches_per_tile
    assert demoted_to_fit([first, second], 0, processor) == (first, second)
    one = demoted_to_fit([first, second], cost, processor)
    assert one[0].image_pages == (1, 2) and one[1].image_pages == (1, 2) and one[1].text_pages == (3, 4)
    four = demoted_to_fit([first, second], 3 * cost + 1, processor)
    assert four[0].image_pages == (1,) and four[1].image_pages == ()
    every = demoted_to_fit([first, second], 10**9, processor)
    assert [d.image_pages for d in every] == [(), ()] and every[0].text_pages == (1, 2, 3)
