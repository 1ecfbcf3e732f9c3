"""Checking chat-completion requests: content parts, images as data: URLs, limits, settings."""

import base64

import pytest

from models.serving.openai_api import (
    AnswerMemory,
    ApiError,
    Limits,
    StopStrings,
    decode_image_url,
    parse_chat_request,
)
from tests.conftest import image_bytes


def data_url(data: bytes, mime="image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def user(*parts):
    return {"role": "user", "content": list(parts)}


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def rejected(body, limits=None) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_chat_request(body, limits)
    assert info.value.status == 400
    shape = info.value.body()["error"]
    assert set(shape) == {"message", "type", "param", "code"} and shape["type"] == "invalid_request_error"
    return info.value


def test_text_and_images_become_one_user_message_images_first():
    png = image_bytes(40, 30)
    body = {
        "model": "anything",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            user(
                {"type": "text", "text": "What is"},
                image_part(data_url(png)),
                {"type": "text", "text": "this?"},
            ),
        ],
        "max_completion_tokens": 7,
        "temperature": 0,
        "top_p": 0.5,
        "seed": 3,
        "stop": "END",
        "stream": True,
    }
    request = parse_chat_request(body)
    system, question = request.messages
    assert (system.role, system.text) == ("system", "Be brief.")
    assert question.role == "user" and question.text == "What is\nthis?"
    assert len(question.images) == 1 and question.images[0].size == (40, 30)
    s = request.settings
    assert (s.max_tokens, s.temperature, s.top_p, s.seed) == (7, 0.0, 0.5, 3)
    assert request.stream and request.stop == ("END",)


def test_defaults():
    body = {"messages": [{"role": "user", "content": "Hi"}]}
    request = parse_chat_request(body, Limits(default_max_tokens=99))
    assert request.settings.max_tokens == 99 and not request.stream and request.stop == ()


@pytest.mark.parametrize(
    "url, code, words",
    [
        ("https://example.com/cat.png", "remote_image_url", "offline"),
        ("http://127.0.0.1/cat.png", "remote_image_url", "offline"),
        ("file:///etc/passwd", "unsupported_image_url", "file paths"),
        ("/home/me/cat.png", "unsupported_image_url", "file paths"),
        ("data:image/png;base64,@@@", "invalid_image", "base64"),
        ("data:image/png," + "x" * 10, "invalid_image", "base64"),
        (data_url(b"not an image at all"), "invalid_image", "not an image"),
        (data_url(b""), "invalid_image", "empty"),
    ],
)
def test_bad_images_are_refused_with_the_reason(url, code, words):
    error = rejected({"messages": [user({"type": "text", "text": "Hi"}, image_part(url))]})
    assert error.code == code and words in error.message
    assert error.param == "messages[0].content[1]"


def test_at_most_five_images_a_message():
    url = data_url(image_bytes(8, 8))
    error = rejected({"messages": [user(*[image_part(url)] * 6)]})
    assert error.code == "too_many_images" and "at most 5 images" in error.message
    assert len(parse_chat_request({"messages": [user(*[image_part(url)] * 5)]}).messages[0].images) == 5


@pytest.mark.parametrize(
    "change, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"seed": 1.5}, "seed"),
        ({"n": 2}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": float("nan")}, "top_p"),
        ({"temperature": float("inf")}, "temperature"),
        ({"max_tokens": 10**12}, "max_tokens"),
        ({"max_completion_tokens": 32768}, "max_completion_tokens"),
    ],
)
def test_bad_fields_name_the_parameter(change, param):
    body = {"messages": [{"role": "user", "content": "Hi"}], **change}
    assert rejected(body).param == param


def test_max_tokens_is_bounded_by_the_context_length():
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100}
    assert parse_chat_request(body, Limits(context_length=101)).settings.max_tokens == 100
    error = rejected(body, Limits(context_length=100))
    assert error.param == "max_tokens" and "at most 99" in error.message
    assert parse_chat_request(body, Limits(context_length=None)).settings.max_tokens == 100
    assert parse_chat_request({"messages": body["messages"]}).settings.context_length == 32768


def test_remembered_answers_are_fed_back_as_their_token_ids():
    memory = AnswerMemory()
    memory.remember("Hello there.", (5, 6, 7))
    body = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello there."},
            {"role": "assistant", "content": "Something else."},
            {"role": "user", "content": "And?"},
        ]
    }
    messages = parse_chat_request(body, memory=memory).messages
    assert messages[1].token_ids == (5, 6, 7) and messages[2].token_ids is None


def test_decode_image_url_accepts_uppercase_scheme():
    payload = data_url(image_bytes(4, 4)).split(",")[1]
    assert decode_image_url("DATA:image/png;base64," + payload, "p").size == (4, 4)


def test_stop_strings_cut_across_pieces_and_hold_back_prefixes():
    stops = StopStrings(("END", "##"))
    sent = [stops.feed(piece) for piece in ["Hello E", "N", "x #", "#tail"]]
    assert sent == ["Hello ", "", "ENx ", ""]
    assert stops.hit and stops.feed("more") == "" and stops.flush() == ""
    plain = StopStrings(("END",))
    assert plain.feed("abc EN") == "abc " and plain.flush() == "EN"


# -- bombs and huge texts are refused before anything is decoded or tokenized (issue 23) -------


def test_images_are_not_decoded_while_a_request_is_parsed(monkeypatch):
    """Five 38-byte WebPs (and PNGs) declaring 64 megapixels each: today's limit per image,
    read from the headers; the pixels wait for the job."""
    from tests.support.image_bombs import no_decoding, png_bomb, webp_bomb

    bombs = [webp_bomb(8000, 8000), webp_bomb(8000, 8000, animated=True), png_bomb(8000, 8000)]
    parts = [image_part(data_url(bombs[i % 3], "image/webp")) for i in range(5)]
    with no_decoding(monkeypatch) as decoded:
        request = parse_chat_request({"messages": [user(*parts, {"type": "text", "text": "Hi"})]})
    assert decoded == []
    assert [image.size for image in request.messages[0].images] == [(8000, 8000)] * 5


def test_a_request_over_the_pixel_budget_is_refused_at_the_image_that_goes_over(monkeypatch):
    from tests.support.image_bombs import no_decoding, webp_bomb

    bomb = image_part(data_url(webp_bomb(8000, 8000), "image/webp"))
    body = {
        "messages": [
            user(*[bomb] * 5),
            {"role": "assistant", "content": "Five big ones."},
            user({"type": "text", "text": "And one more"}, bomb),
        ]
    }
    with no_decoding(monkeypatch) as decoded:
        error = rejected(body)
    assert decoded == []
    assert error.param == "messages[2].content[1]" and error.code == "too_many_pixels"
    assert "over 320 megapixels in all" in error.message


def test_a_request_over_the_image_count_is_refused():
    part = image_part(data_url(image_bytes(8, 8)))
    error = rejected({"messages": [user(*[part] * 5) for _ in range(5)]})
    assert error.param == "messages[4].content[0]" and error.code == "too_many_images"
    assert "at most 20 images" in error.message


def test_a_message_longer_than_the_limit_is_refused():
    error = rejected({"messages": [{"role": "user", "content": "x" * 2_000_001}]})
    assert error.param == "messages[0].content" and error.code == "string_above_max_length"
    assert "more than the 2,000,000 a message may hold" in error.message
    parts = [{"type": "text", "text": "y" * 600}] * 2  # parts are joined: 1,201 characters
    error = rejected({"messages": [user(*parts)]}, Limits(max_message_chars=1200))
    assert error.param == "messages[0].content"


def test_messages_longer_in_all_than_the_context_could_take_are_refused():
    limits = Limits(context_length=100)  # at most 3,200 characters in all
    assert limits.text_chars == 3200
    long = {"role": "user", "content": "z" * 1500}
    assert parse_chat_request({"messages": [long, long]}, limits)
    error = rejected({"messages": [long, {"role": "assistant", "content": "ok"}, long, long]}, limits)
    assert error.param == "messages[3].content" and error.code == "string_above_max_length"
    assert "3,200 a request may hold" in error.message
    assert Limits().text_chars == 32768 * 32  # the default context length (Settings' default)
    assert Limits(context_length=None).text_chars == 4_000_000  # without one: a fixed bound
