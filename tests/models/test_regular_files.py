"""Input files: devices and FIFOs refused before they are read, reads bounded, one-line reasons."""

import os

import pytest

from models.regular_files import (
    InputFileError,
    check_regular_file,
    open_regular_file,
    read_regular_file,
)
from tests.support.hostile_files import device_or_fifo, make_fifo, memory_cap, needs_posix_devices

pytestmark = needs_posix_devices


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100) == b"x" * 100


def test_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 101)
    with pytest.raises(InputFileError, match="larger than 100 bytes"):
        read_regular_file(path, 100)


def test_symlink_to_a_regular_file_is_followed(tmp_path):
    (tmp_path / "real.bin").write_bytes(b"abc")
    (tmp_path / "link.bin").symlink_to(tmp_path / "real.bin")
    assert read_regular_file(tmp_path / "link.bin", 10) == b"abc"


def test_dev_zero_is_refused():
    with memory_cap(), pytest.raises(InputFileError) as exc:
        read_regular_file("/dev/zero", 1024)
    assert one_line(exc) == "/dev/zero is a character device, not a regular file."


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_symlinks_to_devices_and_fifos_are_refused(tmp_path, kind):
    link = device_or_fifo(kind, tmp_path, "input.bin")
    with memory_cap(), pytest.raises(InputFileError, match="input.bin is .*, not a regular file"):
        read_regular_file(link, 1024, "input.bin")
    with pytest.raises(InputFileError):
        open_regular_file(link)


@pytest.mark.timeout(30)
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = make_fifo(tmp_path / "pipe")
    with pytest.raises(InputFileError) as exc:
        check_regular_file(fifo, "pipe")
    assert one_line(exc) == "pipe is a named pipe (FIFO), not a regular file."


def test_a_path_swapped_after_the_check_is_refused_on_the_open_descriptor(tmp_path, monkeypatch):
    """The stat said "regular file"; the opened descriptor is a FIFO: refused, and not blocked."""
    fifo = make_fifo(tmp_path / "pipe")
    real_stat = os.stat
    regular = real_stat(__file__)

    def stat(path, *args, **kwargs):
        return regular if str(path) == str(fifo) else real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    with pytest.raises(InputFileError, match="not a regular file"):
        open_regular_file(fifo)


def test_missing_folder_and_unreadable(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_regular_file(tmp_path / "nope", 10)
    with pytest.raises(InputFileError, match="is a folder"):
        read_regular_file(tmp_path, 10)
