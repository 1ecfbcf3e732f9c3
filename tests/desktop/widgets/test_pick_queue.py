"""The one line that says what a batch of picks refused."""

from __future__ import annotations

from desktop.widgets.pick_queue import TOO_MANY, refusal_line


def test_one_refusal_is_its_own_sentence():
    assert refusal_line([("a.png", "a.png is damaged or truncated (bad header).")]) == (
        "a.png is damaged or truncated (bad header)."
    )
    assert refusal_line([("b.png", TOO_MANY)]).startswith("A message can carry at most 5 images")


def test_several_refusals_are_one_line_naming_each():
    line = refusal_line([("a.txt", "a.txt is not an image Llama Desk can read."), ("b.png", TOO_MANY)])
    assert line == (
        "2 files were not attached: a.txt (not an image Llama Desk can read), "
        "b.png (too many: 5 images a message)."
    )


def test_a_long_list_of_refusals_stays_one_short_line():
    line = refusal_line([(f"p{i}.png", TOO_MANY) for i in range(200)])
    assert line.startswith("200 files were not attached: p0.png (too many: 5 images a message), p1.png")
    assert line.endswith("and 197 more.") and len(line) < 300
