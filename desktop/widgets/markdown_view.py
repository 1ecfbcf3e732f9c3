"""Markdown from the model rendered into documents that cannot load anything, shaped to read well.

``untrusted_document`` builds the ``QTextDocument`` the transcript paints for one message
(``message_delegate.py``). Model text is untrusted: raw HTML in it is shown as text
(``MarkdownNoHTML``) and links do nothing (a painted document has nothing to click). Images
are never loaded: returning nothing from ``loadResource`` is not enough (QTextDocument then
reads local paths itself, and ``file:///dev/zero`` would exhaust memory), so every image the
Markdown names is given a blank 1x1 resource before layout, and the document's own
``loadResource`` returns nothing else.

Nothing but code overflows the card: lines wrap at word boundaries, or anywhere inside a word
too long for a line. A code line never wraps: it is laid out whole, however wide, and the
delegate clips each code block to its box and scrolls it sideways (``message_decorations``).
Paragraphs, list ends, headings, code blocks and quotes get space around them; code blocks get
a monospace font, room for a header above (the delegate paints their background, language and
Copy from ``code_groups``) and for a sideways scroll bar below; quotes are indented and muted
(``quote_blocks``: the delegate paints their bar). ``SelectableMessage`` shows such a document
for selecting text, under the same rules.
``plain_text`` is what such a document says without its formatting (for screen readers).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from PySide6.QtCore import QByteArray, QObject, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QImage,
    QTextBlock,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextFormat,
    QTextOption,
)
from PySide6.QtWidgets import QTextBrowser, QWidget

MARKDOWN_FEATURES = (
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub | QTextDocument.MarkdownFeature.MarkdownNoHTML
)
PARAGRAPH_SPACING = 8  # below a paragraph, a list, a quote; above and below a code block
LIST_ITEM_SPACING = 3  # between the items of a list
HEADING_SPACING = 10  # above a heading (below it: LIST_ITEM_SPACING)
CODE_PAD_X = 10  # inside a code block's background
CODE_HEADER = 22  # the strip above a code block's first line: its language and Copy
CODE_FOOTER = 14  # the strip below its last line: where its sideways scroll bar goes
QUOTE_INDENT = 16  # per quote level; the bar sits in it


@dataclass(frozen=True)
class CodeGroup:
    """One code block of a document: its first and last ``QTextBlock`` numbers and language."""

    first: int
    last: int
    language: str

    def text(self, document: QTextDocument) -> str:
        """The code as written (its lines joined by newlines)."""
        return "\n".join(document.findBlockByNumber(n).text() for n in range(self.first, self.last + 1))


_BLANK = None


def _blank_image() -> QImage:
    global _BLANK
    if _BLANK is None:
        _BLANK = QImage(1, 1, QImage.Format.Format_ARGB32)
        _BLANK.fill(0)
    return _BLANK


def _is_code(fmt: QTextBlockFormat) -> bool:
    return fmt.hasProperty(QTextFormat.Property.BlockCodeFence) or fmt.hasProperty(
        QTextFormat.Property.BlockCodeLanguage
    )


def _quote_level(fmt: QTextBlockFormat) -> int:
    level = fmt.property(QTextFormat.Property.BlockQuoteLevel)
    return int(level) if isinstance(level, int) else 0


def _blank_images(document: QTextDocument, block: QTextBlock) -> None:
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


def _set_block(block: QTextBlock, fmt: QTextBlockFormat, char: QTextCharFormat | None = None) -> None:
    cursor = QTextCursor(block)
    cursor.setBlockFormat(fmt)
    if char is not None:
        cursor.mergeBlockCharFormat(char)
        cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
        cursor.mergeCharFormat(char)


def render_markdown(document: QTextDocument, text: str, quote_colour: QColor | None = None) -> None:
    """Fill ``document`` from untrusted Markdown ``text``, spaced and marked to read well; HTML
    stays literal text and no image is ever loaded. Sets ``document.code_groups`` and
    ``document.quote_blocks`` (block number, level) for the delegate to paint."""
    document.setMarkdown(text, MARKDOWN_FEATURES)
    mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    mono_char = QTextCharFormat()
    mono_char.setFont(mono)
    quote_char = QTextCharFormat()
    if quote_colour is not None:
        quote_char.setForeground(quote_colour)
    groups: list[CodeGroup] = []
    quotes: list[tuple[int, int]] = []
    code_start: int | None = None
    images = "![" in text  # Markdown names an image only so (HTML is text)
    block = document.begin()
    while block.isValid():
        if images:
            _blank_images(document, block)
        following = block.next()
        fmt = block.blockFormat()
        number = block.blockNumber()
        in_table = QTextCursor(block).currentTable() is not None
        if _is_code(fmt):
            if code_start is None:
                code_start = number
            last = not (following.isValid() and _is_code(following.blockFormat()))
            fmt.setNonBreakableLines(True)  # whole, however wide: the block scrolls sideways
            fmt.setLeftMargin(CODE_PAD_X)
            fmt.setTextIndent(0)
            fmt.setRightMargin(CODE_PAD_X)
            fmt.setTopMargin(
                (PARAGRAPH_SPACING if number > 0 else 0) + CODE_HEADER if number == code_start else 0
            )
            fmt.setBottomMargin(CODE_FOOTER + PARAGRAPH_SPACING if last else 0)
            fmt.clearBackground()
            _set_block(block, fmt, mono_char)
            if last:
                language = fmt.property(QTextFormat.Property.BlockCodeLanguage)
                groups.append(CodeGroup(code_start, number, language if isinstance(language, str) else ""))
                code_start = None
        elif not in_table:
            level = _quote_level(fmt)
            if fmt.headingLevel() > 0:
                fmt.setTopMargin(HEADING_SPACING if number > 0 else 0)
                fmt.setBottomMargin(LIST_ITEM_SPACING)
            elif block.textList() is not None:
                next_is_item = following.isValid() and following.textList() is not None
                fmt.setBottomMargin(LIST_ITEM_SPACING if next_is_item else PARAGRAPH_SPACING)
            else:
                fmt.setBottomMargin(PARAGRAPH_SPACING)
            if level:
                fmt.setLeftMargin(QUOTE_INDENT * level)
                fmt.setRightMargin(0)
                quotes.append((number, level))
            _set_block(block, fmt, quote_char if level and quote_colour is not None else None)
        block = following
    if groups and groups[0].first == 0:  # Qt drops the first block's top margin: make its room
        frame = document.rootFrame().frameFormat()
        frame.setTopMargin(document.documentMargin() + CODE_HEADER)
        document.rootFrame().setFrameFormat(frame)
    document.code_groups = groups  # type: ignore[attr-defined]
    document.quote_blocks = quotes  # type: ignore[attr-defined]


def code_block_groups(document: QTextDocument) -> list[CodeGroup]:
    """The code blocks of a document ``untrusted_document`` made (none for plain text)."""
    return list(getattr(document, "code_groups", ()))


def quote_blocks(document: QTextDocument) -> list[tuple[int, int]]:
    """(block number, quote level) of each quoted block of such a document."""
    return list(getattr(document, "quote_blocks", ()))


def document_height(document: QTextDocument) -> float:
    """The laid-out height a card gives ``document``: its size, and the footer of a code block
    that ends it (Qt drops the last block's bottom margin)."""
    height = document.size().height()
    groups = code_block_groups(document)
    if groups and groups[-1].last == document.blockCount() - 1:
        height += CODE_FOOTER
    return height


class UntrustedTextDocument(QTextDocument):
    """A document that never loads a resource by itself: images are blank, the rest empty."""

    def loadResource(self, kind: int, url: QUrl | str):  # noqa: N802 - Qt override
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _blank_image()
        return QByteArray()


def untrusted_document(
    text: str,
    *,
    markdown: bool,
    font: QFont,
    quote_colour: QColor | None = None,
    parent: QObject | None = None,
) -> QTextDocument:
    """A document showing ``text`` as Markdown (answers) or as plain text (questions), wrapping
    at word boundaries, or anywhere in a word too long for a line (code lines never wrap)."""
    document = UntrustedTextDocument(parent)
    document.setDefaultFont(font)
    document.setDocumentMargin(2)
    document.setUndoRedoEnabled(False)
    option = QTextOption(document.defaultTextOption())
    option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    document.setDefaultTextOption(option)
    if markdown:
        render_markdown(document, text, quote_colour)
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
        # Transparent through the app's style sheet (QTextEdit#messageSelection): a widget's own
        # sheet makes Qt keep a style for it that a later change of the app's sheet can leave
        # dangling (a crash in QWidget::style() while the appearance changes).

    def loadResource(self, kind: int, url: QUrl | str):  # noqa: N802 - Qt override
        if kind == QTextDocument.ResourceType.ImageResource.value:
            return _blank_image()
        return QByteArray()
