"""Checkpoints as users download them: an mlx-community Llama 4 repo's files and Meta's config.

The synthesized checkpoints must carry every file and config key of the real ones, so what
loads here loads on a Mac; a config that transformers' strict validation rejects (the real
Scout config does) still loads, and any failure while loading is one line with MLX's buffer
cache freed.
"""

import json
import shutil
from pathlib import Path

import mlx.core as mx
import pytest

from models.inference.engine import Engine, GenerationSettings, ModelLoadError
from models.inference.images import load_image_bytes
from models.inference.prompt import ChatMessage
from tests.conftest import image_bytes
from tests.support.synthetic_checkpoints import INSTRUCT_TEXT_CONFIG, SCOUT_CONFIG, scout_config

GREEDY = GenerationSettings(max_tokens=6, temperature=0.0)
SHARED_SCOUT_CONFIG = (
    Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "llama4-scout-config.json"
)

# The files of mlx-community/Llama-4-Scout-17B-16E-Instruct-4bit (with two weight shards).
REPO_FILES = {
    "README.md",
    "chat_template.json",
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "processor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}
# Config values that are sizes (shrunk) or token ids (moved with the shrunk vocabulary).
SIZES = {
    "text_config": {
        "hidden_size",
        "intermediate_size",
        "intermediate_size_mlp",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "num_local_experts",
        "moe_layers",
        "no_rope_layers",
        "attention_chunk_size",
        "vocab_size",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    },
    "vision_config": {
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "projector_input_dim",
        "projector_output_dim",
        "vision_output_dim",
    },
    "": {"boi_token_index", "eoi_token_index", "image_token_index"},
}


def _assert_same_shape(ours, real, where: str) -> None:
    """Same keys and value types all the way down; equal values except the sizes."""
    assert type(ours) is type(real), f"{where}: {type(ours).__name__} vs {type(real).__name__}"
    if isinstance(real, dict):
        assert set(ours) == set(real), f"{where}: keys differ by {set(ours) ^ set(real)}"
        sizes = SIZES.get(where.rsplit(".", 1)[-1] if where else "", set())
        for key, value in real.items():
            path = f"{where}.{key}" if where else key
            if key in sizes:
                assert type(ours[key]) is type(value), path
                if isinstance(value, list):
                    assert {type(v) for v in ours[key]} == {type(v) for v in value}, path
            else:
                _assert_same_shape(ours[key], value, path)
    else:
        assert ours == real, f"{where}: {ours!r} vs {real!r}"


def test_the_in_repo_scout_config_is_the_shared_fixture_verbatim():
    if not SHARED_SCOUT_CONFIG.exists():
        pytest.skip("../shared/fixtures is not next to this checkout")
    assert SCOUT_CONFIG.read_bytes() == SHARED_SCOUT_CONFIG.read_bytes()


def test_checkpoint_mirrors_an_mlx_community_repo(checkpoints):
    folder = checkpoints["scout"]
    assert {p.name for p in folder.iterdir()} == REPO_FILES
    config = json.loads((folder / "config.json").read_text())
    assert config.pop("quantization") == config.pop("quantization_config") == {"group_size": 64, "bits": 4}
    instruct = scout_config()
    instruct["text_config"].update(INSTRUCT_TEXT_CONFIG)  # mlx-community converts the Instruct release
    _assert_same_shape(config, instruct, "")
    assert config["text_config"]["attn_temperature_tuning"] == 4  # an int, as Meta ships it
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p for p in REPO_FILES if p.endswith(".safetensors")}
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert set(json.loads((folder / "special_tokens_map.json").read_text())) == {
        "bos_token",
        "eos_token",
        "pad_token",
    }
    assert "chat_template" in json.loads((folder / "chat_template.json").read_text())
    # The bf16 source is Meta's layout: the same files but the MLX README, sharded weights.
    assert {p.name for p in checkpoints["bf16"].iterdir()} == REPO_FILES - {"README.md"}


def test_transformers_rejects_the_real_config(checkpoints):
    """The premise of the next tests: transformers' strict config validation fails on it."""
    from transformers import AutoConfig

    with pytest.raises(Exception, match="attn_temperature_tuning"):
        AutoConfig.from_pretrained(checkpoints["scout"])


def test_the_real_scout_config_loads_and_answers_about_an_image(checkpoints):
    engine = Engine.load(checkpoints["scout"])
    picture = load_image_bytes(image_bytes(112, 56), "wide.png")
    steps = list(engine.generate([ChatMessage("user", "What is this?", (picture,))], GREEDY))
    final = steps[-1]
    assert final.finish_reason in ("length", "stop") and final.error is None
    assert final.generation_tokens >= 1
    assert engine.tokenizer.chat_template  # the template came with the checkpoint


def test_a_config_with_keys_transformers_rejects_still_loads(checkpoints, tmp_path):
    copy = tmp_path / "odd-config"
    shutil.copytree(checkpoints["4bit"], copy)
    config = json.loads((copy / "config.json").read_text())
    config["text_config"].update(
        output_router_logits="sometimes",  # a bool in transformers' dataclass
        router_jitter_noise=[0.0],
        a_future_key={"nested": [1, "two", None]},
    )
    (copy / "config.json").write_text(json.dumps(config))
    engine = Engine.load(copy)
    final = list(engine.generate([ChatMessage("user", "Hello")], GREEDY))[-1]
    assert final.finish_reason in ("length", "stop") and final.error is None


def test_the_chat_template_is_found_in_chat_template_files(checkpoints, tmp_path):
    """A repo may keep its template only in chat_template.jinja or chat_template.json."""
    for kept in ("chat_template.jinja", "chat_template.json"):
        copy = tmp_path / kept.replace(".", "-")
        shutil.copytree(checkpoints["4bit"], copy)
        tokenizer_config = json.loads((copy / "tokenizer_config.json").read_text())
        template = tokenizer_config.pop("chat_template")
        (copy / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        if kept.endswith(".jinja"):
            (copy / "chat_template.json").unlink()
            (copy / kept).write_text(template)
        engine = Engine.load(copy)
        assert engine.tokenizer.chat_template == template, kept


class _OddLibraryError(Exception):
    """An exception type no loader anticipates."""


def test_any_load_failure_is_one_line_and_frees_the_cache(checkpoints, monkeypatch):
    import mlx_vlm.utils

    def broken_load_model(*_args, **_kwargs):
        raise _OddLibraryError("shape mismatch\n  in layer 3:\n    expected (4, 64)")

    cleared = []
    monkeypatch.setattr(mlx_vlm.utils, "load_model", broken_load_model)
    monkeypatch.setattr(mx, "clear_cache", lambda: cleared.append(True))
    with pytest.raises(ModelLoadError) as failure:
        Engine.load(checkpoints["scout"])
    message = str(failure.value)
    assert "\n" not in message
    assert (
        message == f"Could not load {checkpoints['scout'].name}: shape mismatch in layer 3: expected (4, 64)"
    )
    assert cleared


def test_a_progress_callback_exception_passes_through(checkpoints, monkeypatch):
    """The window cancels a load by raising from its progress callback; the half-loaded model
    is released either way."""

    class Cancelled(Exception):
        pass

    stages = []

    def progress(stage):
        stages.append(stage)
        if stage == "Loading tokenizer":  # after the weights were read
            raise Cancelled

    cleared = []
    monkeypatch.setattr(mx, "clear_cache", lambda: cleared.append(True))
    with pytest.raises(Cancelled):
        Engine.load(checkpoints["4bit"], progress=progress)
    assert stages == ["Reading weights", "Loading tokenizer"] and cleared


def test_closing_an_engine_frees_the_cache(checkpoints, monkeypatch):
    engine = Engine.load(checkpoints["4bit"])
    cleared = []
    monkeypatch.setattr(mx, "clear_cache", lambda: cleared.append(True))
    engine.close()
    assert cleared and engine.model is None
