"""PDF pages: render time per page and prompt tokens per page, by kind of page, in one run.

For each kind of page (a letter page of text, a scanned page, a page with both, a 16:9 slide, a
poster of 14,400 points square, the largest MediaBox PDF allows), a PDF of ``--pages`` such
pages is written (``tests/support/pdf_files.py``) and every page is rendered two ways, alternating
page by page so a machine that speeds up or slows down affects both alike:

- **ours**: ``PdfFile.render_page`` (PDFium under our lock, at the tiler's size, RGB, PNG-encoded:
  what a message holds);
- **bare**: pypdfium2's ``page.render`` at the same scale to a PIL image (no PNG).

Printed per kind: the rendered size, Llama 4's tiles for it, the median milliseconds per page of
both and their ratio (the PNG encoding is most of the difference), the PNG's bytes, the prompt
tokens the page image takes (``image_token_string``: tiles x 144 patches plus the layout
tokens) and its text layer's characters and tokens as the memory planner estimates them (the
real tokenizer is not on this machine: an estimate that errs large). Then a bounded-work check:
``read_document`` of pages 1-5 of a 3,000-page PDF, against reading all 3,000 pages' text.

Figures, not pass/fail: ``uv run python bench/bench_documents.py [--pages N]``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LINES = tuple(f"Line {n}: the quarterly figures rose by {n * 3} percent against the plan." for n in range(40))


def kinds():
    from tests.support.pdf_files import Page

    return {
        "text (letter)": Page(lines=LINES, font_size=11),
        "scan (letter)": Page(scan=(425, 550, (210, 200, 180))),
        "scan + text": Page(scan=(425, 550, (210, 200, 180)), lines=LINES[:20], font_size=11),
        "slide (16:9)": Page(width=960, height=540, lines=LINES[:8], font_size=28),
        "poster 14400 pt": Page(width=14400, height=14400, lines=LINES[:5], font_size=200),
    }


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--pages", type=int, default=12, help="pages of each kind (default 12)")
    args = parser.parse_args()

    import pypdfium2

    from models.documents.chat_documents import read_document
    from models.documents.pdf_reading import open_pdf, render_size
    from models.inference.preprocess import ProcessorConfig, image_token_string, plan_tiles
    from models.memory.turn_size import estimated_text_tokens
    from tests.support.pdf_files import pdf_bytes, text_pdf

    processor = ProcessorConfig()
    per_tile = (processor.tile // processor.patch_size) ** 2 * processor.pixel_shuffle_ratio**2
    versions = f"pypdfium2 {pypdfium2.version.PYPDFIUM_INFO}, PDFium {pypdfium2.version.PDFIUM_INFO}"
    print(f"{versions}; {args.pages} pages a kind")
    header = f"{'kind':<17}{'pixels':>11}{'tiles':>7}{'ours ms':>9}{'bare ms':>9}{'ratio':>7}{'PNG KB':>8}"
    print(header + f"{'img tok':>9}{'chars':>7}{'text tok':>9}")
    for label, page in kinds().items():
        data = pdf_bytes([page] * args.pages)
        bare_doc = pypdfium2.PdfDocument(data)
        ours_ms, bare_ms = [], []
        with open_pdf(data, "bench.pdf") as pdf:
            for number in range(1, args.pages + 1):
                start = time.perf_counter()
                image = pdf.render_page(number, processor)
                ours_ms.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                bare_page = bare_doc[number - 1]
                width_pt, height_pt = bare_page.get_size()
                width, height = render_size(width_pt, height_pt, processor)
                scale = min(width / width_pt, height / height_pt)
                bare_page.render(scale=scale, may_draw_forms=False).to_pil()
                bare_ms.append((time.perf_counter() - start) * 1000)
            text = pdf.page_text(1)
        bare_doc.close()
        plan = plan_tiles(*image.size, processor)
        image_tokens = len(re.findall(r"<\|[a-z_]+\|>", image_token_string(plan, int(per_tile))))
        ours, bare = statistics.median(ours_ms), statistics.median(bare_ms)
        print(
            f"{label:<17}{f'{image.size[0]}x{image.size[1]}':>11}{plan.tiles:>7}{ours:>9.1f}{bare:>9.1f}"
            f"{ours / bare:>7.2f}{len(image.data) / 1024:>8.0f}{image_tokens:>9}{len(text):>7}"
            f"{estimated_text_tokens(text) if text else 0:>9}"
        )

    long_pdf = text_pdf([f"Page {n}: " + " ".join(LINES[:10]) for n in range(1, 3001)])
    start = time.perf_counter()
    first = read_document(long_pdf, "long.pdf", pages="1-5")
    bounded = time.perf_counter() - start
    start = time.perf_counter()
    every = read_document(long_pdf, "long.pdf", image_pages=0)
    everything = time.perf_counter() - start
    print(
        f"\n3,000-page PDF ({len(long_pdf) / 1e6:.1f} MB): pages 1-5 ({first.summary().split(': ', 1)[1]}) "
        f"in {bounded * 1000:.0f} ms; all pages' text ({len(every.text_pages)} in, "
        f"{len(every.left_out)} left out past the text budget) in {everything * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
