"""Markdown from the model rendered into documents that cannot load anything.

``untrusted_document`` builds the ``QTextDocument`` the transcript paints for one message
(``message_delegate.py``). Model text is untrusted: raw HTML in it is shown as text
(``MarkdownNoHTML``) and links do nothing (a painted document has nothing to click). Images
are never loaded: returning nothing from ``loadResource`` is not enough (QTextDocument then
reads local paths itself, and ``file:///dev/zero`` would exhaust memory), so every image the
Markdown names is given a blank 1x1 resource before layout, and the document's own
``loadResource`` returns nothing else. Code blocks get a tinted background and a monospace font.
``SelectableMessage`` shows such a document for selecting text, under the same rules.
``plain_text`` is what such a document says without its formatting (for screen readers).
"""

from __future__ import annotations

from functools import lru_cache

from PySide6.QtCore import QByteArray, QObject, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QImage,
    QTextBlockFormat,
    QTextCursor,
    QTextDocument,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

MARKDOWN_FEATURES = (
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
)


_BLANK = None


def _blank_image() -> QImage:
    global _BLANK
    if _BLANK is None:
        _BLANK = QImage(1, 1, QImage.Format.Format_ARGB32)
        _BLANK.fill(0)
    return _BLANK


def render_markdown(document: QTextDocument, text: str, code_background: QColor) -> None:
    """Fill ``document`` from untrusted Markdown ``text``; HTML stays literal text and no image
    is ever loaded."""
    document.setMarkdown(text, MARKDOWN_FEATURES)
    mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    block = document.begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            char_format = fragments.fragment().charFormat()
            if char_format.isImageFormat():
                document.addResource(
                    QTextDocument.ResourceType.ImageResource,
                    QUrl(char_format.toImageFormat().name()),
                    _blank_image(),
                )
            fragments += 1
        fmt = block.blockFormat()
        if fmt.hasProperty(QTextBlockFormat.Property.BlockCodeFence) or fmt.hasProperty(
            QTextBlockFormat.Property.BlockCodeLanguage
        ):
            cursor = QTextCursor(block)
            fmt.setBackground(code_background)
            cursor.setBlockFormat(fmt)
            cursor.select(QTextCursor.SelectionType.BlockUnderCursor)
            char = cursor.charFormat()
            char.setFont(mono)
            cursor.mergeCharFormat(char)
        block = block.next()


class UntrustedTextDocument(QTextDocument):
    """A document that never loads a resource by itself: images are blank, the rest empty."""

    def loadResource(self, kind: int, url: QUrl):  # noqa: N802 - Qt override
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _blank_image()
        return QByteArray()


def untrusted_document(
    text: str, *, markdown: bool, code_background: QColor, font: QFont, parent: QObject | None = None
) -> QTextDocument:
    """A document showing ``text`` as Markdown (answers) or as plain text (questions)."""
    document = UntrustedTextDocument(parent)
    document.setDefaultFont(font)
    document.setDocumentMargin(2)
    document.setUndoRedoEnabled(False)
    if markdown:
        render_markdown(document, text, code_background)
    else:
        document.setPlainText(text)
    return document


@lru_cache(maxsize=256)
def plain_text(markdown: str) -> str:
    """The words of untrusted Markdown ``markdown`` without its marks (no ``##``, ``**``, table
    bars or fences), one line per block; nothing is loaded."""
    document = UntrustedTextDocument()
    document.setMarkdown(markdown, MARKDOWN_FEATURES)
    lines = (line.replace("\ufffc", "").strip() for line in document.toPlainText().splitlines())
    return "\n".join(line for line in lines if line)


class SelectableMessage(QTextBrowser):
    """One message's text, selectable with the mouse and keyboard (the transcript opens it over
    a message on double-click). Read-only; it loads nothing and follows no link.
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageSelection")
        self.setReadOnly(True)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QTextBrowser.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")

    def loadResource(self, kind: int, url: QUrl):  # noqa: N802 - Qt override
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _blank_image()
        return QByteArray()
