"""``llama-desk ask`` end to end, in a child process as a person runs it."""

import json
import shutil

import pytest

from tests.conftest import image_bytes
from tests.support import cli_process

JSON_FIELDS = {
    "text": str,
    "token_ids": list,
    "prompt_token_ids": list,
    "prompt_tokens": int,
    "generation_tokens": int,
    "ttft_s": float,
    "prompt_tps": float,
    "generation_tps": float,
    "peak_memory_gb": float,
    "finish_reason": str,
}


def tokenizer_of(folder):
    """The checkpoint's tokenizer as the engine loads it (AutoTokenizer would validate the real
    config, and reject it)."""
    from models.inference.checkpoint import read_checkpoint
    from models.inference.engine import load_tokenizer

    return load_tokenizer(read_checkpoint(folder))  # mlx-lm's wrapper forwards the rest


def run_cli(*args, timeout=180):
    return cli_process.run_cli(*args, timeout=timeout)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-images")
    a, b = root / "wide.png", root / "tall.jpg"
    a.write_bytes(image_bytes(112, 56, "PNG"))
    b.write_bytes(image_bytes(60, 180, "JPEG", (0, 90, 200)))
    return a, b


@pytest.mark.parametrize("n_images", [0, 1, 2])
def test_ask_json_with_images(checkpoints, images, n_images):
    args = [
        "ask",
        "--model",
        checkpoints["4bit"],
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "6",
        "--seed",
        "1",
    ]
    for path in images[:n_images]:
        args += ["--image", path]
    result = run_cli(*args, "What do you see?")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for name, kind in JSON_FIELDS.items():
        assert isinstance(out[name], kind), name
    assert out["finish_reason"] == "length"
    assert out["generation_tokens"] == len(out["token_ids"]) == 6
    assert out["prompt_tokens"] == len(out["prompt_token_ids"])
    # Each image adds its <|patch|> run, 4 per tile: 112x56 -> 1x2 grid + global = 3 tiles;
    # 60x180 -> 4x2 grid (the smallest upscale) + global = 9 tiles.
    tok = tokenizer_of(checkpoints["4bit"])
    patches = out["prompt_token_ids"].count(tok.convert_tokens_to_ids("<|patch|>"))
    assert patches == [0, 12, 12 + 36][n_images]


def test_greedy_is_deterministic_and_streams_text(checkpoints):
    args = ["ask", "--model", checkpoints["8bit"], "--temperature", "0", "--max-tokens", "5", "Hello"]
    first, second = run_cli(*args), run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.strip()
    as_json = run_cli(*args[:-1], "--json", "Hello")
    assert json.loads(as_json.stdout)["text"] + "\n" == first.stdout


def test_system_prompt_goes_first(checkpoints):
    result = run_cli(
        "ask",
        "--model",
        checkpoints["4bit"],
        "--json",
        "--max-tokens",
        "1",
        "--system",
        "You are terse.",
        "Hi",
    )
    out = json.loads(result.stdout)
    tok = tokenizer_of(checkpoints["4bit"])
    text = tok.decode(out["prompt_token_ids"])
    assert text.startswith("<|begin_of_text|><|header_start|>system<|header_end|>\n\nYou are terse.<|eot|>")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "{missing}"], "does not exist"),
        (["--image", "{notimage}"], "not an image"),
        (["--image", "{empty}"], "empty"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--top-p", "2"], "--top-p"),
        (["--context-length", "16"], "context length of 16"),
        (["--temperature", "5"], "--temperature must be a number from 0 to 2"),  # was accepted
        (["--temperature", "nan"], "--temperature must be a number from 0 to 2"),
        (["--seed", "-1"], "--seed must be a whole number"),
    ],
)
def test_bad_input_is_one_line(checkpoints, tmp_path, args, message):
    (tmp_path / "notimage.png").write_text("hello")
    (tmp_path / "empty.png").write_bytes(b"")
    args = [
        a.format(
            missing=tmp_path / "missing.png", notimage=tmp_path / "notimage.png", empty=tmp_path / "empty.png"
        )
        for a in args
    ]
    result = run_cli("ask", "--model", checkpoints["4bit"], *args, "Hi")
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_too_many_images(checkpoints, images):
    args = []
    for _ in range(6):
        args += ["--image", images[0]]
    result = run_cli("ask", "--model", checkpoints["4bit"], *args, "Hi")
    assert result.returncode == 1 and "at most 5 images" in result.stderr


@pytest.mark.parametrize("model", ["/no/such/folder", "{not_llama}", "nobody/not-downloaded"])
def test_bad_model(tmp_path, model):
    not_llama = tmp_path / "other"
    not_llama.mkdir()
    (not_llama / "config.json").write_text('{"model_type": "bert"}')
    result = run_cli("ask", "--model", model.format(not_llama=not_llama), "Hi")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert any(w in result.stderr for w in ("does not exist", "not Llama 4", "not downloaded"))


def test_the_real_scout_config_answers(checkpoints, images):
    """Meta's Scout config (sizes shrunk only), which transformers' validation rejects."""
    result = run_cli(
        "ask",
        "--model",
        checkpoints["scout"],
        "--json",
        "--temperature",
        "0",
        "--max-tokens",
        "4",
        "--image",
        images[0],
        "What do you see?",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["finish_reason"] in ("length", "stop") and out["generation_tokens"] >= 1
    assert "Traceback" not in result.stderr


def test_a_load_failure_is_one_line(checkpoints, tmp_path):
    broken = tmp_path / "broken-tokenizer"
    shutil.copytree(checkpoints["scout"], broken)
    (broken / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    result = run_cli("ask", "--model", broken, "--max-tokens", "2", "Hi")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("llama-desk: Could not load broken-tokenizer: ")


def test_json_when_the_answer_fails_before_any_text(checkpoints):
    """A prompt longer than the context fails the answer at once: ``--json`` still prints its
    object (finish_reason "error" and the reason), the reason is one line, the exit non-zero."""
    result = run_cli("ask", "--model", checkpoints["4bit"], "--json", "--context-length", "16", "Hi there")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    out = json.loads(result.stdout)
    assert out["finish_reason"] == "error" and out["text"] == "" and out["token_ids"] == []
    assert "context length of 16" in out["error"]
    assert len(result.stderr.strip().splitlines()) == 1 and "context length of 16" in result.stderr


def test_without_model_ask_uses_the_model_the_window_opened_last(checkpoints):
    from desktop.preferences import open_settings

    result = run_cli("ask", "--max-tokens", "2", "Hi")  # nothing opened yet: one line
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "no model given and none opened before; use --model PATH|REPO." in line
    settings = open_settings()
    settings.setValue("last_model", str(checkpoints["4bit"]))
    settings.sync()
    result = run_cli("ask", "--max-tokens", "2", "--temperature", "0", "--json", "Hi")
    assert result.returncode == 0, result.stderr  # was a usage error: --model was required
    assert json.loads(result.stdout)["generation_tokens"] == 2


class _FakePanic(BaseException):
    """What tokenizers' Rust panics arrive as (pyo3_runtime.PanicException): a BaseException."""


def test_a_tokenizer_panic_is_one_line(checkpoints, monkeypatch, capsys):
    from desktop.cli.main import main

    def panic(*_args, **_kwargs):
        raise _FakePanic("called `Result::unwrap()` on an `Err` value")

    monkeypatch.setattr(type(tokenizer_of(checkpoints["4bit"])._tokenizer), "encode", panic)
    assert main(["ask", "--model", str(checkpoints["4bit"]), "--max-tokens", "2", "Hi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "llama-desk: Could not build the prompt: The model's tokenizer failed while encoding"
    )
