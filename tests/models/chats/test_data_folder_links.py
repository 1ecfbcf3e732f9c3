"""Links planted in the conversation store's folders (images, locks), in an export's images
folder and beside a damaged database: nothing is deleted or written through them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import models.chats.database as chat_database
from models.chats.conversation_lock import ConversationLock
from models.chats.database import StoreError
from models.chats.export import export_markdown, write_json
from tests.support.stored_chats import picture


def outside_folder(tmp_path: Path, names=("a.png", "b.png"), age_s: float = 7200) -> Path:
    """A folder outside the data folder with files old enough for any purge."""
    folder = tmp_path / "outside"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"not yours")
        os.utime(folder / name, (os.path.getmtime(folder / name) - age_s,) * 2)
    return folder


def test_the_start_up_purge_does_not_follow_a_linked_images_subfolder(store, tmp_path):
    outside = outside_folder(tmp_path)
    images = store.folder / "images"
    images.mkdir(exist_ok=True)
    (images / "zz").symlink_to(outside, target_is_directory=True)
    (images / "ab").mkdir()
    (images / "ab" / "ab12.png").symlink_to(outside / "a.png")  # a linked file: skipped too
    orphans = [images / "ab" / "ab34.png", images / "ab" / ".incoming-ab56.png.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"left over")
        os.utime(orphan, (1, 1))
    store.purge_deleted()  # what the window runs at start-up
    assert sorted(p.name for p in outside.iterdir()) == ["a.png", "b.png"]
    assert (images / "zz").is_symlink()  # skipped, not removed: it was not ours to judge
    assert [p.name for p in (images / "ab").iterdir()] == ["ab12.png"]  # real orphans still go


def test_an_image_is_not_written_through_a_linked_images_subfolder(store, tmp_path):
    outside = outside_folder(tmp_path, names=())
    image = picture()
    record, _ = store.images.prepare(image)
    images = store.folder / "images"
    images.mkdir(exist_ok=True)
    (images / record.sha256[:2]).symlink_to(outside, target_is_directory=True)
    conversation = store.create()
    with pytest.raises(StoreError, match="is a link") as raised:
        store.add_message(conversation.id, "user", "look", [image])
    assert "\n" not in str(raised.value)
    assert list(outside.iterdir()) == []
    assert store.messages(conversation.id) == []  # nothing half-stored


def test_a_dangling_lock_link_creates_nothing_outside_and_fails_in_one_line(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    locks = store.folder / "locks"
    locks.mkdir()
    (locks / "1.lock").symlink_to(outside / "created.lock")
    lock = ConversationLock(store.folder, 1)
    with pytest.raises(StoreError, match=r"Cannot lock conversation 1: .*1\.lock is a link") as raised:
        lock.acquire()
    assert "\n" not in str(raised.value)
    assert list(outside.iterdir()) == []
    other = ConversationLock(store.folder, 2)  # other conversations still lock
    other.acquire()
    assert other.held and (locks / "2.lock").is_file()
    other.release()


def test_a_linked_locks_folder_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.folder / "locks").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="is a link"):
        ConversationLock(store.folder, 3).acquire()
    assert list(outside.iterdir()) == []


def test_markdown_export_does_not_write_into_a_planted_images_link(store, tmp_path):
    outside = outside_folder(tmp_path, names=())
    conversation = store.create()
    store.add_message(conversation.id, "user", "look", [picture()])
    target = tmp_path / "export" / "chat.md"
    target.parent.mkdir()
    (target.parent / "chat_images").symlink_to(outside, target_is_directory=True)
    with pytest.raises(StoreError, match="chat_images is a link") as raised:
        export_markdown(store, conversation.id, target)
    assert "\n" not in str(raised.value)
    assert list(outside.iterdir()) == []
    assert not target.exists()


def test_an_export_never_writes_through_a_link_at_its_temporary_name(store, tmp_path, monkeypatch):
    import models.atomic_files as atomic_files

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    target = tmp_path / "chat.json"
    planted = tmp_path / ".chat.json.planted.tmp"
    planted.symlink_to(outside)
    names = iter(["planted", "fresh"])
    monkeypatch.setattr(atomic_files, "_random_part", lambda: next(names))
    write_json(store, store.create().id, target)
    assert outside.read_text() == "keep me"
    assert planted.is_symlink() and target.is_file() and not target.is_symlink()


def test_move_aside_never_replaces_a_link_at_the_damaged_name(tmp_path, monkeypatch):
    monkeypatch.setattr(chat_database.time, "strftime", lambda _format: "20260101-000000")
    path = tmp_path / "conversations.sqlite3"
    path.write_bytes(b"damaged")
    planted = tmp_path / "conversations.damaged-20260101-000000.sqlite3"
    planted.symlink_to(tmp_path / "nowhere")
    moved = chat_database.move_aside(path)
    assert moved != planted and moved.read_bytes() == b"damaged"
    assert planted.is_symlink()  # nothing is deleted, a dangling link neither


@pytest.mark.parametrize("name", ["conversations.sqlite3", "conversations.sqlite3-wal"])
def test_a_link_at_the_database_or_its_log_is_refused_in_one_line(tmp_path, name):
    from models.chats.store import ConversationStore

    folder = tmp_path / "data"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (folder / name).symlink_to(outside / "planted")  # dangling: SQLite would create it there
    with pytest.raises(StoreError, match=f"{name} is a link") as raised:
        ConversationStore(folder)
    assert "\n" not in str(raised.value)
    assert list(outside.iterdir()) == []
    moved = chat_database.move_aside(folder / "conversations.sqlite3")  # what `chats repair` does
    assert Path(f"{moved}{name.removeprefix('conversations.sqlite3')}").is_symlink()
    with ConversationStore(folder) as store:
        store.create()
    assert list(outside.iterdir()) == []
