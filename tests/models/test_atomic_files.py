"""Replacing a file all at once: the new bytes, or the old file untouched and no leftovers."""

import errno

import pytest

from models import atomic_files
from models.atomic_files import replace_file


def test_the_file_is_replaced_and_nothing_is_left_beside_it(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b"old")
    replace_file(path, b"new" * 1_000_000)
    assert path.read_bytes() == b"new" * 1_000_000
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_bytes(b"old")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_files.os, "fsync", disk_full)
    with pytest.raises(OSError) as raised:
        replace_file(path, b"new", prefix=".incoming-")
    assert raised.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
