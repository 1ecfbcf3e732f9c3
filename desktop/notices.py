"""The window's notices as values: a ``Notice`` and the sources that show them.

Every notice names its source, the problem or event it is about. The notice line
(``desktop.widgets.notice_bar.NoticeBar``) shows one notice per source: a later one from the
same source replaces it, notices from different sources are stacked. A source withdraws its
notice once what it said no longer holds (what withdraws each is said below).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HUB = "hub"  # the Hub could not be reached; gone once a download moves or a model is ready
LOAD = "load"  # a model did not load; gone when another load starts or one is ready
FIT = "fit"  # a chosen model won't fit memory, so it was not loaded; gone likewise
SEND = "send"  # a question could not go now; gone when one goes, a model is ready, a chat opens
ANSWER = "answer"  # the last answer failed; gone when the next starts or another chat opens
COMPOSER = "composer"  # attached files were refused; gone when the attachments change or go
PAGES = "pages"  # a question's PDF pages went as text to fit memory; gone when the next goes, a chat opens
EDIT = "edit"  # a question is being edited (× cancels the edit); gone when the edit ends
COMMAND = "command"  # a command could not run now, and why; gone when the answer ends, a chat opens
STORE = "store"  # the conversation database failed or is damaged (with its way out)
SEARCH = "search"  # the sidebar's search failed
EXPORT = "export"  # a conversation was exported, or not
IMPORT = "import"  # a conversation file could not be imported
DELETED = "deleted"  # a conversation was deleted (with Undo)
SERVER = "server"  # Serve API did not start; gone once it starts


def download(repo_id: str) -> str:
    """The source of a download's notices (paused, cancelled, failed, finished): one per model;
    gone when that download moves again."""
    return f"download:{repo_id}"


@dataclass(frozen=True)
class Notice:
    """A one-line message from ``source``, optionally with one action button."""

    source: str
    text: str
    action_label: str | None = None
    action: Callable[[], object] | None = None
