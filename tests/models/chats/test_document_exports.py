"""Conversations with documents out of and into the store: JSON with the PDF inside, Markdown
with the PDF beside it, both imported back; hostile imports refused in one line, nothing written."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
from urllib.parse import unquote

import pytest

from models.chats.conversation_session import stored_turns
from models.chats.export import (
    ChatImportError,
    export_json,
    export_markdown,
    import_json,
    read_export,
    read_markdown,
)
from models.chats.store import ConversationStore
from tests.conftest import image_bytes
from tests.models.chats.test_export import rich_conversation
from tests.models.chats.test_stored_documents import report_document, scan_document
from tests.support.pdf_files import text_pdf


def documented_conversation(store, tiny_image):
    """Two questions with documents (one PDF attached twice, with other pages as images), an answer."""
    report, scan = report_document(), scan_document()
    conversation = store.create()
    store.add_message(conversation.id, "user", "Summarise both.", [tiny_image], documents=[report, scan])
    store.add_message(conversation.id, "assistant", "Scales and smiles.", model="tiny", finish_reason="stop")
    store.add_message(
        conversation.id, "user", "Only page one as a picture", documents=[report.with_image_pages(1)]
    )
    return conversation.id, (report, scan)


def turns_of(store, conversation_id):
    return [(t.role, t.text.rstrip(), t.images, t.documents) for t in stored_turns(store, conversation_id)]


def prompts_of(store, conversation_id):
    return [t.chat_message() for t in stored_turns(store, conversation_id)]


def stored_file_count(folder) -> int:
    return sum(1 for kind in ("images", "documents") for p in (folder / kind).rglob("*") if p.is_file())


# -- JSON ------------------------------------------------------------------------------------------


def test_json_export_holds_the_pdf_and_imports_back_the_same_documents(store, tmp_path, tiny_image):
    conversation_id, (report, scan) = documented_conversation(store, tiny_image)
    document = json.loads(json.dumps(export_json(store, conversation_id)))
    assert document["version"] == 2
    pdfs = {entry["sha256"]: base64.b64decode(entry["data"]) for entry in document["documents"]}
    assert pdfs == {report.sha256: report.data, scan.sha256: scan.data}  # each once, inside
    pages = document["messages"][0]["documents"][0]["pages"]
    assert [(p["number"], p["image"] is not None) for p in pages] == [(1, True), (2, True), (3, False)]
    with ConversationStore(tmp_path / "elsewhere") as other:
        new_id = import_json(other, document)
        assert turns_of(other, new_id) == turns_of(store, conversation_id)
        assert prompts_of(other, new_id) == prompts_of(store, conversation_id)
        assert other.search("quokka")[0].conversation_id == new_id


def test_an_export_without_documents_stays_version_1(store):
    conversation, _ = rich_conversation(store)
    document = export_json(store, conversation.id)
    assert document["version"] == 1 and "documents" not in document
    assert all("documents" not in m for m in document["messages"])


def exported(store, tiny_image) -> dict:
    conversation_id, _ = documented_conversation(store, tiny_image)
    return json.loads(json.dumps(export_json(store, conversation_id)))


def first_page(d):
    return d["messages"][0]["documents"][0]["pages"][0]


def add_entry(d, key, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    d[key].append({"sha256": sha, "media_type": "x", "data": base64.b64encode(data).decode()})
    return sha


def zip_bytes() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", "<w:document/>" * 50)
    return buffer.getvalue()


def _zip_as_document(d):
    d["messages"][0]["documents"][0]["sha256"] = add_entry(d, "documents", zip_bytes())


def _pdf_as_page_image(d):
    first_page(d)["image"]["sha256"] = add_entry(d, "images", text_pdf(["not a picture"]))


def _six_images(d):
    d["messages"][0]["images"] = [d["messages"][0]["images"][0]] * 4  # 4 + 2 page images


HOSTILE = [
    (lambda d: d["documents"][0].update(data=base64.b64encode(b"%PDF-1.7 other").decode()), "does not match"),
    (lambda d: d["documents"][0].update(data="%%%"), "base64"),
    (lambda d: d["documents"][0].update(sha256="../../etc/passwd"), "sha256"),
    (lambda d: first_page(d).update(number=-1), r"messages\[0\]\.documents\[0\]\.pages\[0\]\.number"),
    (lambda d: first_page(d).update(number=True), "number"),
    (lambda d: first_page(d).update(number=99), "page 99"),
    (lambda d: d["messages"][0]["documents"][0]["pages"].__setitem__(1, first_page(d)), "order"),
    (lambda d: d["messages"][0]["documents"][0].update(pages=[]), "no pages"),
    (lambda d: d["messages"][0]["documents"][0].update(left_out=[1]), "left_out"),
    (lambda d: d["messages"][0]["documents"][0].update(left_out=[-3]), "left_out"),
    (lambda d: first_page(d).update(text=7), "text"),
    (lambda d: first_page(d).update(text="x" * 30_000), "longer than"),
    (lambda d: first_page(d).update(image={"sha256": "0" * 64}), "does not hold"),
    (lambda d: d["messages"][0]["documents"][0].update(sha256="0" * 64), "does not hold"),
    (lambda d: d["messages"][0].update(documents="report.pdf"), "not a list"),
    (lambda d: d["messages"][1].update(documents=d["messages"][0]["documents"]), "only a question"),
    (lambda d: d.update(documents=[{"sha256": 5}]), "sha256"),
    (_zip_as_document, "ZIP"),
    (_pdf_as_page_image, "image"),
    (_six_images, "at most 5"),
]


@pytest.mark.parametrize("damage, reason", HOSTILE)
def test_a_hostile_json_import_is_refused_in_one_line_with_nothing_written(
    store, tmp_path, tiny_image, damage, reason
):
    document = exported(store, tiny_image)
    damage(document)
    with ConversationStore(tmp_path / "elsewhere") as other:
        with pytest.raises(ChatImportError, match=reason) as info:
            import_json(other, document)
        assert "\n" not in str(info.value) and len(str(info.value)) < 300
        assert other.list_conversations() == [] and stored_file_count(other.folder) == 0


def test_huge_base64_is_refused_before_it_is_decoded(store, tmp_path, tiny_image, monkeypatch):
    document = exported(store, tiny_image)
    monkeypatch.setattr("models.chats.export_format.MAX_DOCUMENT_BYTES", 1000)
    decoded, real = [], base64.b64decode

    def spy(text, **options):
        decoded.append(len(text))
        return real(text, **options)

    monkeypatch.setattr("models.chats.export_format.base64.b64decode", spy)
    document["documents"][0]["data"] = "A" * 4000
    with ConversationStore(tmp_path / "elsewhere") as other:
        with pytest.raises(ChatImportError, match="larger than") as info:
            import_json(other, document)
        assert "\n" not in str(info.value) and 4000 not in decoded
        assert other.list_conversations() == []


def test_a_json_file_with_documents_is_read_back_by_read_export(store, tmp_path, tiny_image):
    from models.chats.export import write_json

    conversation_id, _ = documented_conversation(store, tiny_image)
    path = write_json(store, conversation_id, tmp_path / "chat.json")
    with ConversationStore(tmp_path / "elsewhere") as other:
        assert turns_of(other, read_export(other, path)) == turns_of(store, conversation_id)


# -- Markdown --------------------------------------------------------------------------------------


def test_markdown_export_puts_the_pdf_beside_it_with_its_page_list(store, tmp_path, tiny_image):
    conversation_id, (report, scan) = documented_conversation(store, tiny_image)
    path = export_markdown(store, conversation_id, tmp_path / "out" / "chat.md")
    text = path.read_text()
    documents = re.findall(r"^\*Document:\* \[([^\]]*)\]\(([^)]+)\) (.*)$", text, re.MULTILINE)
    assert [(name, line) for name, _, line in documents] == [
        ("report.pdf", "(3 pages): pages 1-2 as images; page 3 as text"),
        ("scan.pdf", "(2 pages): page 1 as images; page 2 as text"),
        ("report.pdf", "(3 pages): page 1 as images; pages 2-3 as text"),
    ]
    files = [path.parent / unquote(target) for _, target, _ in documents]
    assert [f.read_bytes() for f in files] == [report.data, scan.data, report.data]
    assert all(f.parent == tmp_path / "out" / "chat_documents" for f in files)
    assert len(list((tmp_path / "out" / "chat_documents").iterdir())) == 2
    page_images = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert [name for name, _ in page_images][:3] == [
        "report, page 1.png",
        "report, page 2.png",
        "scan, page 1.png",
    ]
    assert (path.parent / unquote(page_images[0][1])).read_bytes() == report.images[0].data


def test_markdown_export_imports_back_the_same_turns(store, tmp_path, tiny_image):
    conversation_id, _ = documented_conversation(store, tiny_image)
    path = export_markdown(store, conversation_id, tmp_path / "out" / "chat.md")
    with ConversationStore(tmp_path / "elsewhere") as other:
        new_id = read_markdown(other, path)
        assert turns_of(other, new_id) == turns_of(store, conversation_id)
        assert prompts_of(other, new_id) == prompts_of(store, conversation_id)
        assert other.messages(new_id)[1].model == "tiny"
        assert read_export(other, path) != new_id  # read_export reads Markdown too, as a new one


def test_markdown_import_keeps_the_title_system_prompt_images_and_notes(store, tmp_path):
    conversation, (red, jpeg) = rich_conversation(store)
    path = export_markdown(store, conversation.id, tmp_path / "out" / "chat.md")
    with ConversationStore(tmp_path / "elsewhere") as other:
        new_id = read_markdown(other, path)
        imported = other.conversation(new_id)
        assert imported.title == "Compare these"
        assert imported.settings.system_prompt == "Be exact."

        def shown(s, cid):
            return [
                (m.role, m.text, m.model, m.interrupted, [i.path.read_bytes() for i in m.images])
                for m in s.messages(cid)
            ]

        assert shown(other, new_id) == shown(store, conversation.id)


def markdown_export(store, tmp_path, tiny_image):
    conversation_id, _ = documented_conversation(store, tiny_image)
    return export_markdown(store, conversation_id, tmp_path / "out" / "chat.md")


def _rewrite(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _first_pdf(path):
    return next((path.parent / "chat_documents").iterdir())


def _first_png(path):
    return sorted((path.parent / "chat_images").glob("*report*page-1*"))[0]


def _zip_pdf(path):
    _first_pdf(path).write_bytes(zip_bytes())


def _pdf_png(path):
    _first_png(path).write_bytes(text_pdf(["not a picture"]))


def _escape_link(path):
    (path.parent.parent / "secret.pdf").write_bytes(text_pdf(["secret"]))
    _rewrite(path, "](chat_documents/", "](../secret.pdf?")


def _linked_pdf(path):
    pdf = _first_pdf(path)
    target = path.parent.parent / "elsewhere.pdf"
    target.write_bytes(pdf.read_bytes())
    pdf.unlink()
    os.symlink(target, pdf)


def _too_many_pages(path):
    _rewrite(
        path,
        "(3 pages): pages 1-2 as images; page 3 as text",
        "(3 pages): pages 1-2 as images; page 9 as text",
    )


def _negative_pages(path):
    _rewrite(
        path,
        "(3 pages): pages 1-2 as images; page 3 as text",
        "(3 pages): pages 1-2 as images; page -3 as text",
    )


def _missing_page_image(path):
    _rewrite(path, "![report, page 2.png]", "![report, page two]")
    text = path.read_text()
    path.write_text(re.sub(r"!\[report, page two\]\([^)]*\)\n", "", text, count=1))


def _not_an_export(path):
    path.write_text("Just some notes\n\n## You\n\nHello\n")


MARKDOWN_HOSTILE = [
    (_zip_pdf, "ZIP"),
    (_pdf_png, "image"),
    (_escape_link, "beside"),
    (_linked_pdf, "link"),
    (_too_many_pages, "page 9"),
    (_negative_pages, "page"),
    (_missing_page_image, "page image"),
    (_not_an_export, "not a Llama Desk"),
]


@pytest.mark.parametrize("damage, reason", MARKDOWN_HOSTILE)
def test_a_hostile_markdown_import_is_refused_in_one_line_with_nothing_written(
    store, tmp_path, tiny_image, damage, reason
):
    path = markdown_export(store, tmp_path, tiny_image)
    damage(path)
    with ConversationStore(tmp_path / "elsewhere") as other:
        with pytest.raises(ChatImportError, match=reason) as info:
            read_markdown(other, path)
        assert "\n" not in str(info.value) and len(str(info.value)) < 400
        assert other.list_conversations() == [] and stored_file_count(other.folder) == 0


def test_a_huge_markdown_file_is_refused_before_it_is_read(store, tmp_path, monkeypatch):
    path = tmp_path / "chat.md"
    path.write_text("# Title\n\n## You\n\n" + "x" * 5000)
    monkeypatch.setattr("models.chats.export_format.MAX_IMPORT_BYTES", 1000)
    with pytest.raises(ChatImportError, match="larger than"):
        read_markdown(store, path)
    assert store.list_conversations() == []


def test_a_markdown_image_that_is_not_beside_it_is_refused(store, tmp_path):
    (tmp_path / "pic.png").write_bytes(image_bytes(4, 4))
    path = tmp_path / "out" / "chat.md"
    path.parent.mkdir()
    path.write_text("# T\n\n## You\n\n![pic.png](/" + str(tmp_path / "pic.png").lstrip("/") + ")\n\nHi\n")
    with pytest.raises(ChatImportError, match="beside"):
        read_markdown(store, path)
    assert store.list_conversations() == []


def test_markdown_of_a_document_keeps_a_copy_independent_of_the_store(store, tmp_path, tiny_image):
    path = markdown_export(store, tmp_path, tiny_image)
    before = copy.deepcopy(turns_of(store, 1))
    _first_pdf(path).write_bytes(b"changed")  # the export is a copy, not a link into the data folder
    assert turns_of(store, 1) == before


def test_a_pdf_linked_from_many_questions_is_read_and_counted_once(store, tmp_path, monkeypatch):
    from models.chats import markdown_import

    report = report_document(image_pages=0)
    conversation = store.create()
    for n in range(3):
        store.add_message(conversation.id, "user", f"Question {n}", documents=[report])
    path = export_markdown(store, conversation.id, tmp_path / "out" / "chat.md")
    # A budget that holds the PDF once (and the Markdown), not three times.
    monkeypatch.setattr(markdown_import.export_format, "MAX_IMPORT_BYTES", 2 * len(report.data))
    with ConversationStore(tmp_path / "elsewhere") as other:
        new_id = read_markdown(other, path)
        assert [t.documents[0].data for t in stored_turns(other, new_id)] == [report.data] * 3
