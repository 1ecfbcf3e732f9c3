"""PDFs the tests write, byte by byte: text pages, scanned pages, rotated pages and hostile files.

No PDF library writes them (the tests must not depend on the reader they test): each object is
written out, the cross-reference table is computed, and the result is a valid PDF 1.7 file that
any reader opens. ``Page`` says what one page holds; ``pdf_bytes`` lays them out.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """One page: its size in points, lines of text (Helvetica, top down), and optionally a
    'scanned' picture covering it (an RGB raster, drawn under the text), a /Rotate angle."""

    width: float = 612
    height: float = 792
    lines: tuple[str, ...] = ()
    scan: tuple[int, int, tuple[int, int, int]] | None = None  # (pixels wide, high, colour)
    rotate: int = 0
    font_size: float = 18


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _scan_pixels(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """A raster with a pattern (stripes and a dark box) so that it is not one flat colour."""
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            if width // 4 <= x < width // 2 and height // 4 <= y < height // 2:
                row += bytes((20, 20, 20))
            elif (x // 8 + y // 8) % 2:
                row += bytes(colour)
            else:
                row += bytes(255 - c for c in colour)
        rows.append(bytes(row))
    return b"".join(rows)


def pdf_bytes(
    pages: list[Page],
    *,
    extra_catalog: str = "",
    extra_objects: tuple[str, ...] = (),
    encrypt: bool = False,
) -> bytes:
    """A PDF of ``pages``. ``extra_catalog`` is added to the catalogue dictionary (e.g. an
    /OpenAction); ``extra_objects`` are appended as objects numbered after the pages' (the
    catalogue can refer to them); ``encrypt`` adds a standard security handler whose user
    password is not empty (a reader must ask for it)."""
    objects: list[bytes] = []

    def add(body: bytes | str) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("")  # filled in below
    tree = add("")
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for page in pages:
        content = []
        resources = [f"/Font << /F1 {font} 0 R >>"]
        if page.scan is not None:
            w, h, colour = page.scan
            raw = zlib.compress(_scan_pixels(w, h, colour))
            head = (
                f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceRGB "
                f"/BitsPerComponent 8 /Filter /FlateDecode /Length {len(raw)} >>\nstream\n"
            )
            image = add(head.encode("latin-1") + raw + b"\nendstream")
            resources.append(f"/XObject << /Im1 {image} 0 R >>")
            content.append(f"q {page.width:g} 0 0 {page.height:g} 0 0 cm /Im1 Do Q")
        y = page.height - 2 * page.font_size
        for line in page.lines:
            content.append(
                f"BT /F1 {page.font_size:g} Tf {page.font_size * 2:g} {y:g} Td ({_escape(line)}) Tj ET"
            )
            y -= page.font_size * 1.5
        stream = "\n".join(content).encode("latin-1")
        contents = add(f"<< /Length {len(stream)} >>\nstream\n".encode("latin-1") + stream + b"\nendstream")
        rotate = f" /Rotate {page.rotate}" if page.rotate else ""
        kids.append(
            add(
                f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 {page.width:g} {page.height:g}]"
                f"{rotate} /Resources << {' '.join(resources)} >> /Contents {contents} 0 R >>"
            )
        )
    first_extra = len(objects) + 1

    def numbered(text: str) -> str:  # "{x0}", "{x1}", ...: the extra objects' numbers
        for n in range(len(extra_objects)):
            text = text.replace(f"{{x{n}}}", str(first_extra + n))
        return text

    for body in extra_objects:
        add(numbered(body))
    encrypt_ref = ""
    if encrypt:
        # RC4 40-bit with a user password: the O and U entries are 32 bytes each; these do not
        # match the empty password, so a reader has to ask for one.
        o_entry = "<" + "5a" * 32 + ">"
        u_entry = "<" + "a7" * 32 + ">"
        encrypt_obj = add(f"<< /Filter /Standard /V 1 /R 2 /Length 40 /O {o_entry} /U {u_entry} /P -44 >>")
        encrypt_ref = f" /Encrypt {encrypt_obj} 0 R /ID [<{'11' * 16}> <{'11' * 16}>]"
    objects[tree - 1] = (
        f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>".encode(
            "latin-1"
        )
    )
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R {numbered(extra_catalog)}>>".encode(
        "latin-1"
    )

    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode("latin-1") + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("latin-1")
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode("latin-1")
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root {catalog} 0 R{encrypt_ref} >>\n"
        f"startxref\n{xref}\n%%EOF\n"
    ).encode("latin-1")
    return bytes(out)


def text_pdf(texts: list[str], **page_options) -> bytes:
    """One page per text, each line of it a line on the page."""
    return pdf_bytes([Page(lines=tuple(text.splitlines()), **page_options) for text in texts])


def scanned_pdf(pages: int = 2) -> bytes:
    """Pages that are pictures only: no text layer."""
    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200)]
    return pdf_bytes([Page(scan=(96, 128, colours[n % 3])) for n in range(pages)])


def javascript_pdf() -> bytes:
    """A PDF that asks to run JavaScript when opened and carries an embedded file."""
    js = "<< /S /JavaScript /JS (app.alert\\('pwned'\\); this.exportDataObject\\({cName: 'x'}\\);) >>"
    embedded = "<< /Type /EmbeddedFile /Length 5 >>\nstream\nhello\nendstream"
    spec = "<< /Type /Filespec /F (x.txt) /EF << /F {x2} 0 R >> >>"
    return pdf_bytes(
        [Page(lines=("A page with a script",))],
        extra_catalog="/OpenAction {x0} 0 R /Names << /EmbeddedFiles << /Names [(x.txt) {x1} 0 R] >> >> ",
        extra_objects=(js, spec, embedded),
    )


def page_png(data: bytes, index: int, processor) -> bytes:
    """Page ``index`` (from 0) of ``data`` rendered by the test itself, with bare pypdfium2 at
    the size ``processor``'s tiler wants, on white, PNG-encoded as the app encodes page images:
    what a PDF's page image must be, byte for byte."""
    import io

    import pypdfium2

    from models.documents.pdf_reading import PNG_COMPRESS_LEVEL, render_size

    page = pypdfium2.PdfDocument(data)[index]
    width_pt, height_pt = page.get_size()
    width, height = render_size(width_pt, height_pt, processor)
    scale = min(width / width_pt, height / height_pt)
    bitmap = page.render(scale=scale, may_draw_forms=False, fill_color=(255, 255, 255, 255))
    buffer = io.BytesIO()
    bitmap.to_pil().convert("RGB").save(buffer, "PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


THREE_PAGES = ["The cat sat on the mat.", "Figures: 3 apples, 4 pears.", "The end."]
# What a question "What is on page 2?" with story.pdf attached must read as, written by hand.
STORY_BY_HAND = (
    "[Document: story.pdf, 3 pages]\n"
    "[Pages 1-3: images 1-3 of this message, in order]\n\n"
    "[Page 1]\nThe cat sat on the mat.\n\n"
    "[Page 2]\nFigures: 3 apples, 4 pears.\n\n"
    "[Page 3]\nThe end.\n"
    "[End of story.pdf]\n\n"
    "What is on page 2?"
)


def story_pdf() -> bytes:
    """The prompt-equality tests' PDF: THREE_PAGES, the last page rotated."""
    return pdf_bytes(
        [Page(lines=(text,)) for text in THREE_PAGES[:2]] + [Page(lines=(THREE_PAGES[2],), rotate=90)]
    )
