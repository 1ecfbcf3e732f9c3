"""Full-text search helpers: the FTS5 query for what a person typed (``fts_query``) and a snippet
built around the first match (``build_snippet``) whose cost does not grow with a message's length."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


def fts_query(text: str) -> str:
    """An FTS5 query matching messages that hold every word of ``text`` (as a word prefix)."""
    terms = re.findall(r"\w+", text)
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


SNIPPET_WINDOW_CHARS = 2000  # of text on each side of the first match that a snippet is built from
SNIPPET_TOKEN_CHARS = 80  # a longer "word" is cut in a snippet


def fold(word: str) -> str:
    """A word as FTS5's ``unicode61 remove_diacritics 2`` compares it: lower case, no accents."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _matches(token: str, terms: Sequence[str]) -> bool:
    folded = fold(token)
    return any(folded.startswith(term) for term in terms)


def text_window(text: str, terms: Sequence[str]) -> tuple[str, bool, bool]:
    """At most ``2 * SNIPPET_WINDOW_CHARS`` characters of ``text`` around its first matching word,
    cut at word boundaries; and whether it starts at the text's start / ends at its end."""
    position = 0
    if terms and len(text) > 2 * SNIPPET_WINDOW_CHARS:
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in terms) + ")", re.IGNORECASE)
        found = pattern.search(text)
        if found is not None:
            position = found.start()
        else:  # accents differ: compare word by word, as FTS5 does
            for word in re.finditer(r"\w+", text):
                if _matches(word.group(), terms):
                    position = word.start()
                    break
    first = max(0, position - SNIPPET_WINDOW_CHARS)
    last = min(len(text), position + SNIPPET_WINDOW_CHARS)
    window = text[first:last]
    at_start, at_end = first == 0, last == len(text)
    if not at_start:  # drop a word cut in two by the window's edge
        window = re.sub(r"^\w+", "", window)
    if not at_end:
        window = re.sub(r"\w+$", "", window)
    return window, at_start, at_end


def build_snippet(
    window: str,
    terms: Sequence[str],
    *,
    start: str = "[",
    end: str = "]",
    context_tokens: int = 12,
    at_start: bool = True,
    at_end: bool = True,
) -> str:
    """About ``context_tokens`` words of ``window`` from a little before its first word that
    starts with one of ``terms`` (folded), every such word between ``start`` and ``end``, and
    "…" where text was left out (like FTS5's ``snippet()``). ``at_start``/``at_end``: whether
    ``window`` begins/ends the message."""
    words = list(re.finditer(r"\w+", window))
    if not words:
        return window.strip()[:SNIPPET_TOKEN_CHARS]
    first_hit = next((i for i, w in enumerate(words) if _matches(w.group(), terms)), 0)
    begin = max(0, first_hit - context_tokens // 4)
    finish = min(len(words), begin + context_tokens)
    begin = max(0, finish - context_tokens)
    parts: list[str] = []
    if begin > 0 or not at_start:
        parts.append("…")
    else:
        parts.append(window[: words[0].start()])
    for i in range(begin, finish):
        word = words[i].group()
        shown = word if len(word) <= SNIPPET_TOKEN_CHARS else word[:SNIPPET_TOKEN_CHARS] + "…"
        parts.append(f"{start}{shown}{end}" if _matches(word, terms) else shown)
        if i + 1 < finish:
            parts.append(window[words[i].end() : words[i + 1].start()][:SNIPPET_TOKEN_CHARS])
    if finish < len(words) or not at_end:
        parts.append("…")
    else:
        parts.append(window[words[-1].end() :][:SNIPPET_TOKEN_CHARS])
    return "".join(parts)
