"""Hostile model folders: every file read under the regular-file rules with a cap per kind, and
the config checked against the weights before anything is built."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from models.inference.checkpoint import CheckpointError, read_checkpoint
from tests.support.hostile_files import device_or_fifo, memory_cap, needs_posix_devices


def folder_copy(source, target):
    """A copy of the checkpoint ``source``: its small files copied, its weights linked."""
    target.mkdir()
    for item in source.iterdir():
        if item.suffix == ".safetensors":
            (target / item.name).symlink_to(item)
        else:
            shutil.copy(item, target / item.name)
    return target


def edit_json(path, change):
    value = json.loads(path.read_text(encoding="utf-8"))
    change(value)
    path.write_text(json.dumps(value), encoding="utf-8")


def refused(folder, match):
    with memory_cap(), pytest.raises(CheckpointError, match=match) as failure:
        read_checkpoint(folder)
    message = str(failure.value)
    assert "\n" not in message and len(message) < 300
    return message


def test_the_tiny_checkpoints_pass(checkpoints):
    for folder in checkpoints.values():
        assert read_checkpoint(folder).path == folder


@pytest.mark.parametrize("tower", ["text_config", "vision_config"])
def test_a_billion_layers_is_refused_before_anything_is_built(checkpoints, tmp_path, monkeypatch, tower):
    import mlx_vlm.utils

    from models.inference.engine import Engine

    built = []
    monkeypatch.setattr(mlx_vlm.utils, "load_model", lambda *a, **k: built.append(a) or 1 / 0)
    folder = folder_copy(checkpoints["4bit"], tmp_path / "layers")
    edit_json(folder / "config.json", lambda c: c[tower].update(num_hidden_layers=10**9))
    with pytest.raises(CheckpointError) as failure:
        Engine.load(folder)
    kind = "" if tower == "text_config" else "vision "
    have = 4 if tower == "text_config" else 2
    assert str(failure.value) == (
        f"layers's config.json says 1000000000 {kind}layers; the weights have {have}."
    )
    assert built == []


@pytest.mark.parametrize(
    ("tower", "key", "value", "match"),
    [
        ("text_config", "hidden_size", 4096, "hidden size 4096; the weights have 64"),
        ("vision_config", "hidden_size", 512, "vision hidden size 512; the weights have 32"),
        ("text_config", "vocab_size", 10**9, "vocabulary of 1000000000 tokens; the weights have"),
        ("text_config", "num_hidden_layers", "4", "num_hidden_layers in config.json is not a whole"),
        ("text_config", "num_attention_heads", 10**6, "16000000 for the attention heads times head_dim"),
        ("text_config", "num_local_experts", 10**6, "1000000 experts; the weights have 4"),
        ("text_config", "intermediate_size_mlp", 10**9, "dense intermediate size of 1000000000"),
        ("vision_config", "intermediate_size", 10**9, "vision intermediate size of 1000000000"),
    ],
)
def test_sizes_are_checked_against_the_weights(checkpoints, tmp_path, tower, key, value, match):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "sizes")
    edit_json(folder / "config.json", lambda c: c[tower].update({key: value}))
    refused(folder, match)


@needs_posix_devices
@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
@pytest.mark.parametrize(
    "name",
    [
        "generation_config.json",
        "special_tokens_map.json",
        "chat_template.json",
        "tokenizer.json",
        "model.safetensors.index.json",
    ],
)
def test_a_device_or_fifo_in_the_folder_is_refused(checkpoints, tmp_path, kind, name):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "devices")
    (folder / name).unlink()
    device_or_fifo(kind, tmp_path, "target")
    (folder / name).symlink_to(tmp_path / "target")
    message = refused(folder, name)
    assert "not a regular file" in message


@needs_posix_devices
@pytest.mark.timeout(60)
def test_a_fifo_the_libraries_would_open_is_refused(checkpoints, tmp_path):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "extra")
    device_or_fifo("fifo", folder, "added_tokens.json")
    refused(folder, "added_tokens.json is a named pipe")


@pytest.mark.parametrize(
    ("name", "size", "match"),
    [
        ("tokenizer.json", 1024**3, "tokenizer.json is larger than 64 MB"),
        ("generation_config.json", 50 * 1024**2, "generation_config.json is larger than 1 MB"),
        ("config.json", 500 * 1024**2, "config.json is larger than"),
        ("chat_template.jinja", 50 * 1024**2, "chat_template.jinja is larger than 1 MB"),
    ],
)
def test_an_oversized_file_is_refused_without_reading_it(checkpoints, tmp_path, name, size, match):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "big")
    path = folder / name
    with open(path, "ab") as handle:
        handle.truncate(size)  # sparse: cheap to make, and nothing reads it
    refused(folder, match)


def test_an_oversized_template_inside_the_tokenizer_config_is_refused(checkpoints, tmp_path):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "template")
    edit_json(folder / "tokenizer_config.json", lambda c: c.update(chat_template="{{ 'x' }}" * 200_000))
    refused(folder, "chat template in tokenizer_config.json is longer than 1,000,000 characters")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/dev/zero", "sub/model.safetensors"])
def test_an_index_naming_a_file_outside_the_folder_is_refused(checkpoints, tmp_path, shard):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "index")
    (tmp_path / "outside.safetensors").write_bytes(b"")
    (folder / "sub").mkdir()

    def point_elsewhere(index):
        first = next(iter(index["weight_map"]))
        index["weight_map"][first] = shard

    edit_json(folder / "model.safetensors.index.json", point_elsewhere)
    refused(folder, f"names weight file {shard!r}, which is not a file in the model folder")


def test_a_safetensors_header_too_large_is_refused(checkpoints, tmp_path):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "header")
    shard = folder / "model-00002-of-00002.safetensors"
    shard.unlink()
    with open(shard, "wb") as handle:
        handle.write((10**12).to_bytes(8, "little"))
    refused(folder, "model-00002-of-00002.safetensors")


def test_a_weight_symlinked_to_a_device_is_refused(checkpoints, tmp_path):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "weights")
    shard = folder / "model-00002-of-00002.safetensors"
    shard.unlink()
    os.symlink("/dev/zero", shard)
    refused(folder, "not a regular file")


def test_folders_and_dangling_links_nothing_reads_are_left_alone(checkpoints, tmp_path):
    folder = folder_copy(checkpoints["4bit"], tmp_path / "extras")
    (folder / "original").mkdir()
    (folder / "README.md").unlink()
    (folder / "README.md").symlink_to(tmp_path / "gone.md")
    assert read_checkpoint(folder).path == folder
    (folder / "generation_config.json").unlink()
    (folder / "generation_config.json").symlink_to(tmp_path / "gone.json")
    refused(folder, "generation_config.json does not exist")
