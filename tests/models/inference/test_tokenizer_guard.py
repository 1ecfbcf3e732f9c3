"""A tokenizer panic (pyo3's PanicException derives from BaseException) is one line, wherever
the engine calls the tokenizer."""

from __future__ import annotations

import pytest

from models.inference.engine import Engine, GenerationSettings, ModelLoadError, PromptError
from models.inference.prompt import ChatMessage
from models.inference.tokenizer_guard import TokenizerFailure, is_library_panic, tokenizer_call


class FakePanic(BaseException):
    """What tokenizers' Rust panics arrive as: a BaseException, not an Exception."""


def panic(*_args, **_kwargs):
    raise FakePanic("called `Option::unwrap()` on a `None` value\nat src/tokenizer/mod.rs")


def test_only_panics_are_converted():
    assert is_library_panic(FakePanic()) and not is_library_panic(ValueError())
    for passes in (KeyboardInterrupt(), SystemExit(1), GeneratorExit(), ValueError("x")):
        with pytest.raises(type(passes)), tokenizer_call("testing"):
            raise passes
    with pytest.raises(TokenizerFailure) as failure, tokenizer_call("testing"):
        panic()
    assert str(failure.value) == (
        "The model's tokenizer failed while testing (called `Option::unwrap()` on a `None` value "
        "at src/tokenizer/mod.rs)."
    )


def test_a_panic_while_encoding_fails_the_prompt_in_one_line(engine_4bit, monkeypatch):
    monkeypatch.setattr(engine_4bit.encoder.tokenizer, "encode", panic)
    with pytest.raises(PromptError) as failure:
        engine_4bit.prepare([ChatMessage("user", "Hello")])
    assert str(failure.value).startswith(
        "Could not build the prompt: The model's tokenizer failed while encoding"
    )
    steps = list(engine_4bit.generate([ChatMessage("user", "Hello")], GenerationSettings(max_tokens=2)))
    assert steps[-1].finish_reason == "error" and "tokenizer failed" in steps[-1].error


def test_a_panic_while_decoding_ends_the_answer_in_one_line(engine_4bit, monkeypatch):
    monkeypatch.setattr(type(engine_4bit.tokenizer.detokenizer), "add_token", panic)  # a copy per answer
    steps = list(engine_4bit.generate([ChatMessage("user", "Hello")], GenerationSettings(max_tokens=4)))
    final = steps[-1]
    assert final.finish_reason == "error"
    assert final.error.startswith("Generation failed: The model's tokenizer failed while decoding the answer")
    assert "\n" not in final.error
    # The engine answers again once the tokenizer behaves.
    monkeypatch.undo()
    again = list(engine_4bit.generate([ChatMessage("user", "Hello")], GenerationSettings(max_tokens=2)))
    assert again[-1].finish_reason in ("length", "stop")


def test_a_panic_while_loading_the_tokenizer_is_a_load_error(checkpoints, monkeypatch):
    import mlx_lm.tokenizer_utils

    monkeypatch.setattr(mlx_lm.tokenizer_utils, "load", panic)
    with pytest.raises(ModelLoadError) as failure:
        Engine.load(checkpoints["4bit"])
    assert str(failure.value).startswith(
        "Could not load tiny-llama4-4bit: The model's tokenizer failed while loading"
    )
