"""Export and import: JSON round trips, damaged imports store nothing, Markdown with images beside it."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import unquote

import pytest

from models.chats.export import ChatImportError, export_json, export_markdown, import_json
from models.chats.store import (
    ConversationSettings,
    ConversationStore,
)
from tests.support.stored_chats import (
    picture,
)


def rich_conversation(store):
    conversation = store.create(
        settings=ConversationSettings(system_prompt="Be exact.", temperature=0.0, seed=3, max_tokens=99)
    )
    red, jpeg = picture(), picture((0, 90, 200), (60, 90), "tall shot.jpg", "JPEG")
    store.add_message(conversation.id, "user", "Compare these", [red, jpeg])
    store.add_message(
        conversation.id,
        "assistant",
        "Red is wide, blue is tall.",
        model="tiny-4bit",
        stats={"generation_tokens": 6.0, "ttft_s": 0.5},
        finish_reason="stop",
        token_ids=[1, 2, 200000, 3],
    )
    store.add_message(conversation.id, "user", "Only the red one", [red])
    store.add_message(conversation.id, "assistant", "It is wi", interrupted=True)
    return store.conversation(conversation.id), (red, jpeg)


def comparable(store, conversation_id):
    conversation = store.conversation(conversation_id)
    messages = [
        (
            m.role,
            m.text,
            m.created,
            m.model,
            m.stats,
            m.finish_reason,
            m.error,
            m.interrupted,
            m.token_ids,
            [(i.name, i.sha256, i.path.read_bytes()) for i in m.images],
        )
        for m in store.messages(conversation_id)
    ]
    return conversation.title, conversation.created, conversation.updated, conversation.settings, messages


def test_json_export_and_import_give_back_the_same_conversation(store, tmp_path):
    conversation, (red, jpeg) = rich_conversation(store)
    document = json.loads(json.dumps(export_json(store, conversation.id)))
    assert len(document["images"]) == 2  # each image once
    assert {base64.b64decode(i["data"]) for i in document["images"]} == {red.data, jpeg.data}

    with ConversationStore(tmp_path / "elsewhere") as other:
        new_id = import_json(other, document)
        assert comparable(other, new_id) == comparable(store, conversation.id)
        imported_images = [i.path.read_bytes() for m in other.messages(new_id) for i in m.images]
        assert imported_images == [red.data, jpeg.data, red.data]
        assert other.search("wide")[0].conversation_id == new_id


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["images"][0].update(data=base64.b64encode(b"other").decode()), "does not match"),
        (lambda d: d["images"][0].update(data="%%%"), "base64"),
        (lambda d: d["images"].pop(), "does not hold"),
        (lambda d: d["messages"][0].update(role="robot"), "unknown role"),
        (lambda d: d["messages"][1].update(token_ids=["a"]), "token_ids"),
        (lambda d: d.update(format="something else"), "not a Llama Desk"),
        (lambda d: d.update(version=99), "version 99"),
    ],
)
def test_a_damaged_import_stores_nothing(store, tmp_path, damage, message):
    conversation, _ = rich_conversation(store)
    document = export_json(store, conversation.id)
    damage(document)
    with ConversationStore(tmp_path / "elsewhere") as other:
        with pytest.raises(ChatImportError, match=message):
            import_json(other, document)
        assert other.list_conversations() == []


def test_markdown_export_writes_images_beside_it(store, tmp_path):
    conversation, (red, jpeg) = rich_conversation(store)
    path = export_markdown(store, conversation.id, tmp_path / "out" / "chat.md")
    text = path.read_text()
    assert text.startswith("# Compare these\n")
    assert "## System\n\nBe exact." in text and "## Llama (tiny-4bit)" in text
    assert "*(answer interrupted)*" in text
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert [name for name, _ in links] == ["photo.png", "tall shot.jpg", "photo.png"]
    files = [path.parent / unquote(target) for _, target in links]
    assert [f.read_bytes() for f in files] == [red.data, jpeg.data, red.data]
    assert all(f.parent == tmp_path / "out" / "chat_images" for f in files)
    assert len(list((tmp_path / "out" / "chat_images").iterdir())) == 2
