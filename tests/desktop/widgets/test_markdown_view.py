"""Message documents: wide code and long unbroken words stay inside the card, and the text is
spaced and marked so that it reads well (paragraphs, lists, code, quotes)."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor, QFont

from desktop.widgets.markdown_view import CODE_HEADER, code_block_groups, quote_blocks, untrusted_document

WIDE = "numbers = [" + ", ".join(str(n) for n in range(80)) + "]"  # one ~300-character code line
WORD = "x" * 500


def _font() -> QFont:
    font = QFont()
    font.setPixelSize(14)
    return font


def _widest_line(document) -> float:
    """The right edge of the document's widest laid-out line."""
    widest = 0.0
    block = document.begin()
    while block.isValid():
        layout = block.layout()
        for n in range(layout.lineCount()):
            line = layout.lineAt(n)
            widest = max(widest, layout.position().x() + line.x() + line.naturalTextWidth())
        block = block.next()
    return widest


@pytest.mark.parametrize("markdown", [True, False], ids=["answer", "question"])
def test_wide_code_and_long_words_never_overflow_the_card(qapp, markdown):
    assert len(WIDE) >= 300
    text = f"Here:\n\n```python\n{WIDE}\n```\n\n{WORD}\n\n| a | b |\n|---|---|\n| {WORD} | 1 |\n"
    document = untrusted_document(text, markdown=markdown, font=_font())
    document.setTextWidth(600)
    assert document.idealWidth() <= 600
    assert document.size().width() <= 600
    assert _widest_line(document) <= 600


def test_code_lines_wrap_with_a_hanging_indent_that_marks_the_continuation(qapp):
    document = untrusted_document(f"```\n{WIDE}\nshort\n```\n", markdown=True, font=_font())
    document.setTextWidth(400)
    document.size()  # laid out
    (group,) = code_block_groups(document)
    wide = document.findBlockByNumber(group.first)
    layout = wide.layout()
    assert layout.lineCount() > 1
    assert all(layout.lineAt(n).x() > layout.lineAt(0).x() for n in range(1, layout.lineCount()))
    assert group.text(document) == f"{WIDE}\nshort"


def _gap_above(document, number: int) -> float:
    layout = document.documentLayout()
    above = layout.blockBoundingRect(document.findBlockByNumber(number - 1))
    return layout.blockBoundingRect(document.findBlockByNumber(number)).top() - above.bottom()


def test_paragraphs_lists_code_and_quotes_are_spaced_and_a_quote_is_marked(qapp):
    text = "One.\n\nTwo.\n\n- a\n- b\n\nAfter.\n\n> quoted\n\nPlain.\n\n```\ncode\n```\n\nEnd.\n"
    muted = QColor("#777777")
    document = untrusted_document(text, markdown=True, font=_font(), quote_colour=muted)
    document.setTextWidth(500)
    document.size()
    texts = []
    block = document.begin()
    while block.isValid():
        texts.append(block.text())
        block = block.next()
    number = texts.index
    assert _gap_above(document, number("Two.")) >= 6  # between paragraphs
    assert _gap_above(document, number("b")) < _gap_above(document, number("After."))  # a list ends
    assert _gap_above(document, number("After.")) >= 6
    quote = document.findBlockByNumber(number("quoted"))
    assert quote.blockFormat().leftMargin() >= 12  # indented, and muted
    assert quote.begin().fragment().charFormat().foreground().color() == muted
    assert quote_blocks(document) == [(number("quoted"), 1)]
    (group,) = code_block_groups(document)
    assert _gap_above(document, number("code")) >= 6 + CODE_HEADER  # room for its language and Copy
    assert _gap_above(document, number("End.")) >= 6
