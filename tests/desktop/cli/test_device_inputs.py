"""Device files and FIFOs given as input (issue 9, item 2): refused at once, in one line.

``--image``, ``chats import`` and a model folder whose weights are a symlink to ``/dev/zero`` or
to a FIFO. Before the fix ``/dev/zero`` was read until memory ran out and a FIFO blocked for
ever, so every child runs with a timeout (a hang fails the test) and a memory cap (an unbounded
read fails it with ``MemoryError`` instead of exhausting the machine).
"""

from __future__ import annotations

import pytest

from tests.support import cli_process
from tests.support.hostile_files import device_or_fifo, needs_posix_devices

pytestmark = needs_posix_devices

KINDS = ["dev-zero", "fifo"]


def run_cli(data_dir, *args, timeout=120):
    return cli_process.run_cli(*args, timeout=timeout, data_dir=data_dir, memory_cap=True)


def assert_one_line_refusal(result, name):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert name in lines[0] and "not a regular file" in lines[0]


@pytest.fixture
def weights_folder(checkpoints, tmp_path):
    """A copy (by symlinks) of the 4-bit checkpoint whose weights file is replaced by a link."""

    def make(kind):
        folder = tmp_path / "tiny-llama4-hostile"
        folder.mkdir()
        for item in checkpoints["4bit"].iterdir():
            if item.name != "model.safetensors":
                (folder / item.name).symlink_to(item)
        device_or_fifo(kind, tmp_path, "model.safetensors")
        (folder / "model.safetensors").symlink_to(tmp_path / "model.safetensors")
        return folder

    return make


@pytest.mark.parametrize("kind", KINDS)
def test_ask_image_that_is_a_device_or_fifo(checkpoints, tmp_path, kind):
    image = device_or_fifo(kind, tmp_path, "photo.png")
    result = run_cli(tmp_path / "data", "ask", "--model", checkpoints["4bit"], "--image", image, "Hi")
    assert_one_line_refusal(result, "photo.png")


def test_ask_image_dev_zero_named_directly(checkpoints, tmp_path):
    result = run_cli(tmp_path / "data", "ask", "--model", checkpoints["4bit"], "--image", "/dev/zero", "Hi")
    assert_one_line_refusal(result, "zero")


@pytest.mark.parametrize("kind", KINDS)
def test_chats_import_of_a_device_or_fifo(tmp_path, kind):
    source = device_or_fifo(kind, tmp_path, "chat.json")
    result = run_cli(tmp_path / "data", "chats", "import", source)
    assert_one_line_refusal(result, "chat.json")
    listing = run_cli(tmp_path / "data", "chats", "list")
    assert listing.returncode == 0 and "chat.json" not in listing.stdout


@pytest.mark.parametrize("kind", KINDS)
def test_model_whose_weights_are_a_device_or_fifo(weights_folder, tmp_path, kind):
    folder = weights_folder(kind)
    result = run_cli(tmp_path / "data", "ask", "--model", folder, "Hi")
    assert_one_line_refusal(result, "model.safetensors")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_and_memory_plan_refuse_such_weights(weights_folder, kind):
    """What the window runs before a load: the folder check and the memory plan."""
    from models.inference.checkpoint import CheckpointError, read_checkpoint
    from models.memory.planner import PlanError, read_layout
    from tests.support.hostile_files import memory_cap

    folder = weights_folder(kind)
    with memory_cap(), pytest.raises(CheckpointError, match="model.safetensors is .*, not a regular file"):
        read_checkpoint(folder)
    with memory_cap(), pytest.raises(PlanError, match="model.safetensors is .*, not a regular file"):
        read_layout(folder)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_config_that_is_a_device_or_fifo(checkpoints, tmp_path, kind):
    from models.inference.checkpoint import CheckpointError, read_checkpoint
    from tests.support.hostile_files import memory_cap

    folder = tmp_path / "model"
    folder.mkdir()
    for item in checkpoints["4bit"].iterdir():
        if item.name != "config.json":
            (folder / item.name).symlink_to(item)
    (folder / "config.json").symlink_to(device_or_fifo(kind, tmp_path, "config.json"))
    with memory_cap(), pytest.raises(CheckpointError, match="config.json is .*, not a regular file"):
        read_checkpoint(folder)
