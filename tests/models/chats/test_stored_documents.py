"""Stored documents: a question's PDFs kept once by hash, their pages (text, page images) read
back into ``Turn.documents``, kept by the purge while referenced, searched, and a schema 2
database upgraded to hold them."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from models.chats.conversation_session import stored_turns
from models.chats.database import MIGRATIONS, SCHEMA_VERSION, StoreError
from models.chats.store import ConversationStore
from models.chats.turns import Turn
from models.documents.chat_documents import read_document
from models.inference.preprocess import ProcessorConfig
from tests.support.pdf_files import scanned_pdf, text_pdf

# Small renderings: the tests are about storage, not the tiler.
SMALL = ProcessorConfig(tile=56, max_patches=2)


def report_document(image_pages: int = 2):
    """report.pdf: three pages with text layers, the first ``image_pages`` also as images."""
    data = text_pdf(["Pangolin scales\npage one", "Keratin armour\npage two", "Quokka smiles\npage three"])
    return read_document(data, "report.pdf", image_pages=image_pages, processor=SMALL)


def scan_document():
    return read_document(scanned_pdf(2), "scan.pdf", image_pages=1, processor=SMALL)


def stored_files(folder, kind: str) -> list[str]:
    root = folder / kind
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_conversation_with_a_pdf_survives_close_and_reopen(tmp_path, tiny_image):
    folder = tmp_path / "data"
    report, scan = report_document(), scan_document()
    question = Turn("user", "Summarise both.", (tiny_image,), documents=(report, scan))
    with ConversationStore(folder) as store:
        conversation = store.create()
        stored = store.add_message(
            conversation.id, "user", question.text, [tiny_image], documents=[report, scan]
        )
        store.add_message(conversation.id, "assistant", "Scales and smiles.", finish_reason="stop")
        assert [d.name for d in stored.documents] == ["report.pdf", "scan.pdf"]
    with ConversationStore(folder) as store:
        turn, answer = stored_turns(store, conversation.id)
        assert turn.documents == (report, scan)
        assert [d.data for d in turn.documents] == [report.data, scan.data]
        assert [i.sha256 for d in turn.documents for i in d.images] == [
            i.sha256 for d in (report, scan) for i in d.images
        ]
        assert [p.text for p in turn.documents[0].pages] == [p.text for p in report.pages]
        assert turn.documents[0].image_pages == (1, 2) and turn.documents[0].text_pages == (3,)
        assert turn.images == (tiny_image,)
        assert turn.chat_message() == question.chat_message()
        assert answer.documents == ()
        (message, _) = store.messages(conversation.id)
        (first, second) = message.documents
        assert (first.sha256, first.page_count, first.size) == (report.sha256, 3, len(report.data))
        assert [page.number for page in first.pages] == [1, 2, 3]
        assert first.path.read_bytes() == report.data
        assert first.path == folder / "documents" / report.sha256[:2] / f"{report.sha256}.pdf"


def test_a_pdf_is_stored_once_however_many_messages_attach_it(store):
    report = report_document()
    conversation = store.create()
    store.add_message(conversation.id, "user", "One", documents=[report])
    store.add_message(conversation.id, "user", "Two", documents=[report.with_image_pages(0)])
    assert stored_files(store.folder, "documents") == [f"{report.sha256}.pdf"]
    assert store.db.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
    second = stored_turns(store, conversation.id)[1].documents[0]
    assert second.image_pages == () and second.text_pages == (1, 2, 3)


def test_a_document_whose_bytes_do_not_match_its_hash_is_not_stored(store):
    from dataclasses import replace

    report = report_document()
    conversation = store.create()
    with pytest.raises(StoreError, match="does not match"):
        store.add_message(conversation.id, "user", "Hm", documents=[replace(report, data=b"%PDF-1.7 other")])
    assert store.messages(conversation.id) == [] and stored_files(store.folder, "documents") == []


def test_left_out_pages_are_kept(store):
    data = text_pdf(["a" * 50, "b" * 50, "c" * 50])
    document = read_document(data, "long.pdf", image_pages=0, max_text_chars=60, processor=SMALL)
    assert document.left_out == (3,)
    conversation = store.create()
    store.add_message(conversation.id, "user", "Read", documents=[document])
    (turn,) = stored_turns(store, conversation.id)
    assert turn.documents == (document,) and turn.documents[0].left_out == (3,)


def test_the_purge_keeps_referenced_page_images_and_pdfs_and_clears_them_after(store, clock):
    report = report_document()
    keep, gone = store.create(), store.create()
    store.add_message(keep.id, "user", "Kept", documents=[scan_document()])
    store.add_message(gone.id, "user", "Gone", documents=[report])
    page_images = [f"{i.sha256}.png" for i in report.images]
    store.delete(gone.id)
    clock.advance(60)
    assert store.purge_deleted(older_than_s=3600) == 0  # not yet old enough: nothing goes
    assert set(page_images) <= set(stored_files(store.folder, "images"))
    assert f"{report.sha256}.pdf" in stored_files(store.folder, "documents")
    store.restore(gone.id)
    assert store.purge_deleted(older_than_s=0) == 0  # referenced: the orphan sweep keeps them too
    assert set(page_images) <= set(stored_files(store.folder, "images"))
    assert f"{report.sha256}.pdf" in stored_files(store.folder, "documents")
    store.delete(gone.id)
    clock.advance(10)
    assert store.purge_deleted(older_than_s=0) == 1
    assert not set(page_images) & set(stored_files(store.folder, "images"))
    assert stored_files(store.folder, "documents") == [f"{scan_document().sha256}.pdf"]
    assert store.db.execute("SELECT count(*) FROM document_pages").fetchone()[0] == 2  # the scan's
    assert [d.name for d in stored_turns(store, keep.id)[0].documents] == ["scan.pdf"]


def test_an_orphaned_pdf_file_is_swept(store):
    import os

    stray = store.folder / "documents" / "ab" / ("ab" + "0" * 62 + ".pdf")
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"%PDF-1.7 left over by a crash")
    os.utime(stray, (0, 0))
    store.purge_deleted()
    assert not stray.exists()


def test_search_finds_a_word_only_in_a_pages_text_layer(store):
    report = report_document()
    conversation = store.create()
    question = store.add_message(conversation.id, "user", "What does it say?", documents=[report])
    store.add_message(conversation.id, "assistant", "Something about animals.")
    other = store.create()
    store.add_message(other.id, "user", "No documents here")
    (hit,) = store.search("quokka")
    assert (hit.conversation_id, hit.message_id, hit.role) == (conversation.id, question.id, "user")
    assert (hit.document, hit.page) == ("report.pdf", 3)
    assert "[Quokka]" in hit.snippet and hit.snippet.startswith("report.pdf, page 3: ")
    assert [h.message_id for h in store.search("keratin armour")] == [question.id]
    assert store.search("quokka animals") == []  # every word in one text: the page or the message
    store.delete(conversation.id)
    assert store.search("quokka") == []


def test_a_message_and_its_page_both_matching_give_one_hit(store):
    conversation = store.create()
    question = store.add_message(
        conversation.id, "user", "Tell me about pangolin", documents=[report_document()]
    )
    assert [h.message_id for h in store.search("pangolin")] == [question.id]


def test_deleting_a_message_drops_its_pages_from_search(store):
    conversation = store.create()
    question = store.add_message(conversation.id, "user", "Read", documents=[report_document()])
    store.truncate_after(question.id, inclusive=True)
    assert store.search("quokka") == []
    assert store.db.execute("SELECT count(*) FROM document_pages").fetchone()[0] == 0
    assert store.db.execute("SELECT count(*) FROM message_documents").fetchone()[0] == 0


def test_damaged_document_rows_do_not_stop_reading(store):
    conversation = store.create()
    store.add_message(conversation.id, "user", "Read", documents=[report_document()])
    store.db.execute("UPDATE document_pages SET number = 'x', text = X'00ff' WHERE number = 2")
    store.db.execute("UPDATE message_documents SET name = 7, left_out = 'not pages'")
    store.db.execute("UPDATE documents SET page_count = -4")
    (message,) = store.messages(conversation.id)
    (document,) = message.documents
    assert [p.number for p in document.pages] == [1, 3]  # the unreadable page is left out
    assert document.left_out == () and document.page_count >= 3
    (turn,) = stored_turns(store, conversation.id)
    assert turn.documents[0].name == "7"


def test_a_missing_pdf_file_keeps_the_conversation_and_its_pages(store, caplog):
    report = report_document()
    conversation = store.create()
    store.add_message(conversation.id, "user", "Read", documents=[report])
    (store.folder / "documents" / report.sha256[:2] / f"{report.sha256}.pdf").unlink()
    (question,) = stored_turns(store, conversation.id)  # the conversation still opens
    (document,) = question.documents
    assert document.data == b"" and document.pages == report.pages  # what the prompt needs
    assert question.chat_message() == Turn("user", "Read", documents=(report,)).chat_message()
    assert "report.pdf cannot be read (missing)" in caplog.text
    store.add_message(conversation.id, "user", "Again", documents=[report])  # attaching it repairs it
    assert stored_turns(store, conversation.id)[0].documents[0].data == report.data


def test_one_pdf_on_many_questions_is_read_once(store, monkeypatch):
    report = report_document()
    conversation = store.create()
    for n in range(3):
        store.add_message(conversation.id, "user", f"Question {n}", documents=[report])
    reads = []
    read = store.documents.read
    monkeypatch.setattr(store.documents, "read", lambda sha: reads.append(sha) or read(sha))
    turns = stored_turns(store, conversation.id)
    assert reads == [report.sha256]
    assert turns[0].documents[0].data is turns[2].documents[0].data


# -- a schema 2 database (written before documents) ------------------------------------------------


def write_schema_2_database(folder) -> None:
    """A database as schema 2 left it, with a question about a stored image."""
    from tests.conftest import image_bytes

    data = image_bytes(12, 8)
    sha = hashlib.sha256(data).hexdigest()
    (folder / "images" / sha[:2]).mkdir(parents=True)
    (folder / "images" / sha[:2] / f"{sha}.png").write_bytes(data)
    conn = sqlite3.connect(folder / "conversations.sqlite3", isolation_level=None)
    for migration in MIGRATIONS[:2]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO conversations (id, title, created, updated) VALUES (1, 'Old', 1.6e9, 1.6e9)")
    conn.execute(
        "INSERT INTO messages (id, conversation_id, role, text, created)"
        " VALUES (1, 1, 'user', 'wombat', 1.6e9)"
    )
    conn.execute(
        "INSERT INTO images (sha256, media_type, size, width, height, created, original_sha256,"
        " original_size) VALUES (?, 'image/png', ?, 12, 8, 1.6e9, ?, ?)",
        (sha, len(data), sha, len(data)),
    )
    conn.execute("INSERT INTO message_images VALUES (1, 0, ?, 'old.png')", (sha,))
    conn.close()


def test_a_schema_2_database_opens_and_upgrades_to_hold_documents(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_schema_2_database(folder)
    with ConversationStore(folder) as store:
        assert store.db.user_version == SCHEMA_VERSION == 3
        assert store.db.integrity_check() == "ok"
        (old,) = stored_turns(store, 1)
        assert (old.text, old.documents, [i.name for i in old.images]) == ("wombat", (), ["old.png"])
        assert store.search("wombat")[0].message_id == 1
        report = report_document()
        store.add_message(1, "user", "And this?", documents=[report])
        store.purge_deleted(older_than_s=0)
        assert stored_turns(store, 1)[1].documents == (report,)
        assert stored_turns(store, 1)[0].images[0].name == "old.png"  # kept by the purge
        assert store.search("quokka")[0].conversation_id == 1
    with ConversationStore(folder) as again:
        assert again.db.user_version == SCHEMA_VERSION
        assert len(again.messages(1)) == 2


def test_a_read_only_schema_2_database_is_read_without_documents(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    folder.mkdir()
    write_schema_2_database(folder)
    monkeypatch.setattr("models.chats.database._writable", lambda path: False, raising=False)
    with ConversationStore(folder) as store:
        assert store.db.read_only and store.db.user_version == 2
        (old,) = stored_turns(store, 1)
        assert (old.text, old.documents) == ("wombat", ())
        assert [h.message_id for h in store.search("wombat")] == [1]


def test_a_pdf_is_not_written_through_a_linked_documents_subfolder(store, tmp_path):
    import os

    report = report_document()
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.folder / "documents").mkdir()
    os.symlink(outside, store.folder / "documents" / report.sha256[:2])
    conversation = store.create()
    with pytest.raises(StoreError, match="link") as info:
        store.add_message(conversation.id, "user", "Read", documents=[report])
    assert "\n" not in str(info.value)
    assert list(outside.iterdir()) == [] and store.messages(conversation.id) == []
