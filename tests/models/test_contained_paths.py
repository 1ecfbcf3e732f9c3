"""Paths inside a folder we own: a link anywhere below the root is refused or skipped, never
followed; files are created without following a link planted at their name."""

from __future__ import annotations

import os

import pytest

from models import contained_paths as contained
from models.contained_paths import LinkRefused


@pytest.fixture
def layout(tmp_path):
    """``root`` with ``a/b/file``, a linked folder ``a/link -> outside`` and a linked file."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_bytes(b"ours")
    outside.mkdir()
    (outside / "file").write_bytes(b"theirs")
    (root / "a" / "link").symlink_to(outside, target_is_directory=True)
    (root / "a" / "b" / "linked-file").symlink_to(outside / "file")
    return root, outside


def test_a_path_outside_the_root_is_refused(tmp_path):
    with pytest.raises(ValueError):
        contained.parts_below(tmp_path / "root", tmp_path / "elsewhere" / "x")
    with pytest.raises(ValueError):
        contained.parts_below(tmp_path / "root", tmp_path / "root" / ".." / "x")
    assert contained.parts_below(tmp_path / "root", tmp_path / "root" / "a" / "b") == ("a", "b")


def test_files_below_are_listed_without_entering_links(layout):
    root, outside = layout
    found = contained.regular_files(root, root / "a", depth=1)
    assert [(p.relative_to(root).as_posix(), info.st_size) for p, info in found] == [("a/b/file", 4)]
    assert contained.regular_files(root, root / "a" / "link") == []  # the folder itself is a link
    assert contained.regular_files(root, root / "missing") == []


def test_removal_takes_the_name_never_what_a_link_points_at(layout):
    root, outside = layout
    assert contained.remove_file(root, root / "a" / "b" / "linked-file")  # the link itself goes
    assert (outside / "file").read_bytes() == b"theirs"
    with pytest.raises(LinkRefused, match="link is a link"):
        contained.remove_file(root, root / "a" / "link" / "file")
    assert (outside / "file").exists()
    assert not contained.remove_file(root, root / "a" / "b" / "missing")


def test_writes_never_go_through_a_linked_folder_or_name(layout):
    root, outside = layout
    with pytest.raises(LinkRefused) as raised:
        contained.replace_file(root, root / "a" / "link" / "new", b"x")
    assert "\n" not in str(raised.value) and str(root / "a" / "link") in str(raised.value)
    contained.replace_file(root, root / "a" / "b" / "linked-file", b"new")  # replaces the link
    assert (root / "a" / "b" / "linked-file").read_bytes() == b"new"
    assert (outside / "file").read_bytes() == b"theirs"
    contained.replace_file(root, root / "c" / "d" / "made", b"made")  # folders made on the way
    assert (root / "c" / "d" / "made").read_bytes() == b"made"
    assert sorted(p.name for p in outside.iterdir()) == ["file"]


def test_opening_a_dangling_link_creates_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "x.lock").symlink_to(tmp_path / "created")
    with pytest.raises(LinkRefused):
        contained.open_file(root, root / "x.lock", os.O_RDWR | os.O_CREAT)
    assert not (tmp_path / "created").exists()
    fd = contained.open_file(root, root / "locks" / "y.lock", os.O_RDWR | os.O_CREAT)
    os.close(fd)
    assert (root / "locks" / "y.lock").is_file()


def test_a_root_that_is_itself_a_link_is_trusted(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    root = tmp_path / "root"
    root.symlink_to(real, target_is_directory=True)  # e.g. a data folder moved to another disk
    contained.replace_file(root, root / "f", b"ok")
    assert (real / "f").read_bytes() == b"ok"
    assert [p.name for p, _ in contained.regular_files(root, root)] == ["f"]
    contained.check_no_links(root, root / "f")
    with pytest.raises(LinkRefused):
        os.symlink(tmp_path, real / "g")
        contained.check_no_links(root, root / "g" / "h")


def test_touch_does_not_follow_a_link(layout):
    root, outside = layout
    os.utime(outside / "file", (1, 1))
    with pytest.raises(LinkRefused):
        contained.touch(root, root / "a" / "b" / "linked-file")
    with pytest.raises(LinkRefused):
        contained.touch(root, root / "a" / "link" / "file")
    assert os.path.getmtime(outside / "file") == 1
    os.utime(root / "a" / "b" / "file", (1, 1))
    contained.touch(root, root / "a" / "b" / "file")
    assert os.path.getmtime(root / "a" / "b" / "file") > 1
