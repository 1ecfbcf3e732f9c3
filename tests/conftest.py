"""Shared fixtures: synthesized Llama 4 checkpoints, offline Hub settings, offscreen Qt."""

from __future__ import annotations

import io
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory):
    """Tiny Llama 4 checkpoints with the files and keys of a real one: HF-format bf16, and 4-
    and 8-bit MLX copies (dense and MoE layers interleaved, as in Maverick); "scout" is a 4-bit
    copy of the Scout config with only its sizes shrunk (every layer MoE)."""
    from tests.support.synthetic_checkpoints import TinyShape, quantize_checkpoint, write_checkpoint

    root = tmp_path_factory.mktemp("checkpoints")
    bf16 = write_checkpoint(root / "tiny-llama4-bf16", seed=0)
    scout_bf16 = write_checkpoint(root / "tiny-scout-bf16", TinyShape(moe_step=1), seed=2)
    return {
        "bf16": bf16,
        "4bit": quantize_checkpoint(bf16, root / "tiny-llama4-4bit", bits=4, group_size=64),
        "8bit": quantize_checkpoint(bf16, root / "tiny-llama4-8bit", bits=8, group_size=64),
        "scout": quantize_checkpoint(scout_bf16, root / "Llama-4-Scout-tiny-4bit", bits=4, group_size=64),
    }


@pytest.fixture(scope="session")
def engine_4bit(checkpoints):
    from models.inference.engine import Engine

    return Engine.load(checkpoints["4bit"])


def image_bytes(width: int, height: int, fmt: str = "PNG", color=(200, 40, 40), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


@pytest.fixture
def png_file(tmp_path):
    def make(name="photo.png", width=112, height=56, color=(200, 40, 40)):
        path = tmp_path / name
        path.write_bytes(image_bytes(width, height, "PNG", color))
        return path

    return make


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own Llama Desk data folder (conversations, settings, licence) and its
    own empty Hugging Face cache, so nothing on the machine leaks in or out."""
    from huggingface_hub import constants

    folder = tmp_path_factory.mktemp("llama-desk-data")
    monkeypatch.setenv("LLAMA_DESK_DATA_DIR", str(folder))
    hf_home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setattr(constants, "HF_HOME", str(hf_home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    return folder
