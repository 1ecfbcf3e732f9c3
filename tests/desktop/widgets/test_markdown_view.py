"""Message documents: long unbroken words stay inside the card, code lines are never wrapped
(the transcript scrolls a wide code block sideways), and the text is spaced and marked so that
it reads well (paragraphs, lists, code, quotes)."""

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
    """The right edge of the document's widest laid-out line outside its code blocks."""
    code = {n for group in code_block_groups(document) for n in range(group.first, group.last + 1)}
    widest = 0.0
    block = document.begin()
    while block.isValid():
        layout = block.layout()
        for n in range(layout.lineCount() if block.blockNumber() not in code else 0):
            line = layout.lineAt(n)
            widest = max(widest, layout.position().x() + line.x() + line.naturalTextWidth())
        block = block.next()
    return widest


@pytest.mark.parametrize("markdown", [True, False], ids=["answer", "question"])
def test_long_words_never_overflow_the_card(qapp, markdown):
    assert len(WIDE) >= 300
    text = f"Here:\n\n```python\n{WIDE}\n```\n\n{WORD}\n\n| a | b |\n|---|---|\n| {WORD} | 1 |\n"
    document = untrusted_document(text, markdown=markdown, font=_font())
    document.setTextWidth(600)
    assert _widest_line(document) <= 600
    if not markdown:  # a question is plain text: its "code" wraps like the rest
        assert document.idealWidth() <= 600 and document.size().width() <= 600


def test_a_code_line_is_never_wrapped_and_a_leading_block_has_room_for_its_header(qapp):
    document = untrusted_document(f"```\n{WIDE}\nshort\n```\n", markdown=True, font=_font())
    document.setTextWidth(400)
    document.size()  # laid out
    (group,) = code_block_groups(document)
    wide = document.findBlockByNumber(group.first)
    assert wide.layout().lineCount() == 1
    assert wide.layout().lineAt(0).naturalTextWidth() > 400  # whole: the transcript scrolls it
    assert group.text(document) == f"{WIDE}\nshort"
    assert document.documentLayout().blockBoundingRect(wide).top() >= CODE_HEADER  # nothing above


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
