"""``llama-desk ask --file``: PDFs (page by page, as images or as text) and images, in a child
process on the tiny checkpoint as a person runs it; hostile files refused in one line."""

from __future__ import annotations

import json

import pytest

from tests.conftest import image_bytes
from tests.support import cli_process, pdf_files
from tests.support.hostile_files import device_or_fifo, needs_posix_devices
from tests.support.pdf_files import (
    STORY_BY_HAND,
    Page,
    pdf_bytes,
    scanned_pdf,
    story_pdf,
    text_pdf,
)

GREEDY = ["--temperature", "0", "--max-tokens", "2", "--seed", "1"]


def run_cli(*args, timeout=180):
    return cli_process.run_cli(*args, timeout=timeout, memory_cap=True)


def ask_json(model, *args):
    result = run_cli("ask", "--model", model, "--json", *GREEDY, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def patch_count(folder, ids) -> int:
    from tests.desktop.cli.test_ask_cli import tokenizer_of

    return list(ids).count(tokenizer_of(folder).convert_tokens_to_ids("<|patch|>"))


def page_png(data: bytes, index: int, folder) -> bytes:
    """Page ``index`` rendered by the test itself, at the size the checkpoint's tiler wants."""
    from models.inference.checkpoint import read_checkpoint

    return pdf_files.page_png(data, index, read_checkpoint(folder).processor)


def test_chosen_pages_go_as_images_and_are_listed(checkpoints, tmp_path):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(story_pdf())
    out = ask_json(checkpoints["4bit"], "--file", pdf, "--pages", "1-2", "What is this?")
    assert out["attachments"] == [
        {
            "name": "a.pdf",
            "kind": "pdf",
            "page_count": 3,
            "pages_as_images": [1, 2],
            "pages_as_text": [],
            "left_out": [],
        }
    ]
    assert patch_count(checkpoints["4bit"], out["prompt_token_ids"]) > 0
    from tests.desktop.cli.test_ask_cli import tokenizer_of

    prompt = tokenizer_of(checkpoints["4bit"]).decode(out["prompt_token_ids"])
    assert "The cat sat on the mat." in prompt and "3 apples" in prompt and "The end." not in prompt


def test_a_png_given_with_file_is_an_image(checkpoints, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(112, 56))
    as_file = ask_json(checkpoints["4bit"], "--file", photo, "What do you see?")
    as_image = ask_json(checkpoints["4bit"], "--image", photo, "What do you see?")
    assert as_file["prompt_token_ids"] == as_image["prompt_token_ids"]
    assert patch_count(checkpoints["4bit"], as_file["prompt_token_ids"]) == 12
    assert as_file["attachments"] == [{"name": "photo.png", "kind": "image"}]
    assert as_image["attachments"] == [{"name": "photo.png", "kind": "image"}]
    misnamed = tmp_path / "photo.pdf"  # by content, not by name
    misnamed.write_bytes(photo.read_bytes())
    as_pdf_name = ask_json(checkpoints["4bit"], "--file", misnamed, "What do you see?")
    assert as_pdf_name["prompt_token_ids"] == as_image["prompt_token_ids"]
    assert as_pdf_name["attachments"] == [{"name": "photo.pdf", "kind": "image"}]


def test_five_images_a_message_counts_the_pages_and_the_questions_own_images(checkpoints, tmp_path):
    pdf = tmp_path / "seven.pdf"
    pdf.write_bytes(text_pdf([f"Page {n} says {n * 11}" for n in range(1, 8)]))
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(112, 56))
    out = ask_json(checkpoints["4bit"], "--image", photo, "--file", pdf, "--file", photo, "Compare.")
    assert out["attachments"] == [
        {"name": "photo.png", "kind": "image"},
        {
            "name": "seven.pdf",
            "kind": "pdf",
            "page_count": 7,
            "pages_as_images": [1, 2, 3],
            "pages_as_text": [4, 5, 6, 7],
            "left_out": [],
        },
        {"name": "photo.png", "kind": "image"},
    ]


def test_a_pdf_through_ask_prompts_as_its_pages_as_images_plus_their_text(checkpoints, tmp_path):
    data = story_pdf()
    (tmp_path / "story.pdf").write_bytes(data)
    images = []
    for n in range(3):
        path = tmp_path / f"page{n + 1}.png"
        path.write_bytes(page_png(data, n, checkpoints["4bit"]))
        images += ["--image", path]
    from_pdf = ask_json(checkpoints["4bit"], "--file", tmp_path / "story.pdf", "What is on page 2?")
    by_hand = ask_json(checkpoints["4bit"], *images, STORY_BY_HAND)
    assert from_pdf["prompt_token_ids"] == by_hand["prompt_token_ids"]
    assert patch_count(checkpoints["4bit"], from_pdf["prompt_token_ids"]) > 0


def test_image_pages_that_do_not_fit_the_context_go_as_text(checkpoints, tmp_path):
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(pdf_bytes([Page(lines=(f"Page {n}",), scan=(96, 128, (200, 40, 40))) for n in (1, 2, 3)]))
    roomy = ask_json(checkpoints["4bit"], "--file", pdf, "Hi")
    assert roomy["attachments"][0]["pages_as_images"] == [1, 2, 3]
    tight = ask_json(
        checkpoints["4bit"], "--context-length", str(roomy["prompt_tokens"]), "--file", pdf, "Hi"
    )
    (listed,) = tight["attachments"]
    assert (
        listed["pages_as_text"] and listed["pages_as_images"] == [1, 2, 3][: 3 - len(listed["pages_as_text"])]
    )
    assert tight["prompt_tokens"] < roomy["prompt_tokens"] and tight["finish_reason"] in ("length", "stop")
    # Text only does not fit either: the usual one line.
    result = run_cli("ask", "--model", checkpoints["4bit"], "--context-length", "16", "--file", pdf, "Hi")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "more than the context length of 16" in line


def _hostile(kind: str, folder):
    if kind in ("dev-zero", "fifo"):
        return device_or_fifo(kind, folder, "report.pdf")
    path = folder / "report.pdf"
    data = {
        "encrypted": lambda: pdf_bytes([Page(lines=("secret",))], encrypt=True),
        "truncated": lambda: text_pdf(["one", "two"])[:60],
        "zip": lambda: b"PK\x03\x04" + b"\x00" * 100,
        "empty": lambda: b"",
    }[kind]()
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("encrypted", "password-protected"),
        ("truncated", "damaged"),
        ("zip", "ZIP archive"),
        ("empty", "empty"),
        pytest.param("dev-zero", "not a regular file", marks=needs_posix_devices),
        pytest.param("fifo", "not a regular file", marks=needs_posix_devices),
    ],
)
def test_hostile_files_are_refused_in_one_line(checkpoints, tmp_path, kind, words):
    path = _hostile(kind, tmp_path)
    result = run_cli("ask", "--model", checkpoints["4bit"], "--file", path, "Hi", timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "report.pdf" in line and words in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--pages", "4"], "there is no page 4"),
        (["--pages", "1-x"], "is not a page or a range"),
    ],
)
def test_bad_page_lists_are_one_line(checkpoints, tmp_path, args, words):
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(scanned_pdf(3))
    result = run_cli("ask", "--model", checkpoints["4bit"], "--file", pdf, *args, "Hi", timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert words in line


def test_pages_without_a_pdf_is_a_usage_error(checkpoints, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(image_bytes(16, 16))
    result = run_cli("ask", "--model", checkpoints["4bit"], "--file", photo, "--pages", "1", "Hi", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "--pages" in line and "PDF" in line


def test_when_every_page_image_must_go_the_person_is_told(checkpoints, tmp_path):
    pdf = tmp_path / "three.pdf"
    pdf.write_bytes(text_pdf(["One.", "Two.", "Three."]))
    text_only = ask_json(checkpoints["4bit"], "--file", pdf, "--pages", "1-3", "Hi", "--max-tokens", "1")
    assert text_only["attachments"][0]["pages_as_images"] == [1, 2, 3]
    # Room for the pages' text but for no page image.
    images = patch_count(checkpoints["4bit"], text_only["prompt_token_ids"])
    room = str(text_only["prompt_tokens"] - images + 8)
    result = run_cli(
        "ask", "--model", checkpoints["4bit"], "--json", "--context-length", room, "--file", pdf, "Hi"
    )
    assert result.returncode == 0, result.stderr
    (listed,) = json.loads(result.stdout)["attachments"]
    assert listed["pages_as_images"] == [] and listed["pages_as_text"] == [1, 2, 3]
    assert "some pages of three.pdf go as text" in result.stderr
