"""A tokenizer panic while the server answers is an OpenAI-shaped error in one line, and the
server answers the next request."""

from __future__ import annotations

import httpx


class _FakePanic(BaseException):
    """What tokenizers' Rust panics arrive as (pyo3_runtime.PanicException): a BaseException."""


def _panic(*_args, **_kwargs):
    raise _FakePanic("called `Option::unwrap()` on a `None` value")


def _ask(live):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}
    return httpx.post(f"{live[1].url}/chat/completions", json=body, timeout=120)


def test_a_tokenizer_panic_is_a_one_line_api_error(live, checkpoints, monkeypatch):
    from models.inference.checkpoint import read_checkpoint
    from models.inference.engine import load_tokenizer

    detokenizer = load_tokenizer(read_checkpoint(checkpoints["4bit"])).detokenizer  # the server's kind
    monkeypatch.setattr(type(detokenizer), "add_token", _panic)
    response = _ask(live)
    assert response.status_code == 500
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].startswith("Generation failed: The model's tokenizer failed while decoding")
    assert "\n" not in error["message"]
    monkeypatch.undo()
    assert _ask(live).status_code == 200


def test_a_tokenizer_panic_while_encoding_is_a_server_error_not_the_clients(live, checkpoints, monkeypatch):
    """The model's tokenizer failing is the server's fault (500), not a prompt too long (it was a
    400 ``context_length_exceeded``)."""
    from models.inference.checkpoint import read_checkpoint
    from models.inference.engine import load_tokenizer

    monkeypatch.setattr(
        type(load_tokenizer(read_checkpoint(checkpoints["4bit"]))._tokenizer), "encode", _panic
    )
    response = _ask(live)
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "tokenizer failed while encoding" in error["message"]
    monkeypatch.undo()
    assert _ask(live).status_code == 200


def test_messages_the_chat_template_refuses_are_the_clients_400(live, monkeypatch):
    from models.inference.chat_template import ChatTemplate, ChatTemplateError

    def refuse(*_args, **_kwargs):
        raise ChatTemplateError("The model's chat template is too expensive to render")

    monkeypatch.setattr(ChatTemplate, "render", refuse)
    response = _ask(live)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_prompt" and error["param"] == "messages"
    assert "too expensive to render" in error["message"]
