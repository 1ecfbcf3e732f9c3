"""Image bombs for the tests: tiny files whose headers declare a huge picture.

Each is written with Pillow at a few pixels, then its header is rewritten to declare
``width`` x ``height``: the file stays a few dozen bytes, and whatever reads its header (Pillow's
lazy open included) sees the huge size. Decoding one would allocate the declared pixels (or
fail on the short data), so the code under test must refuse or defer it from the header alone.
``no_decoding`` records every Pillow decode, to show that none happened; ``images_made``
keeps a weak reference to every Pillow image made, to show that none outlives a job.
"""

from __future__ import annotations

import contextlib
import io
import struct
import weakref
import zlib
from collections.abc import Iterator

from PIL import Image, ImageFile, WebPImagePlugin


def webp_bomb(width: int, height: int, animated: bool = False) -> bytes:
    """A lossless WebP of a few bytes declaring ``width`` x ``height`` (at most 16384 a side
    for a still image: VP8L's 14 bits); ``animated``: two frames on a canvas of that size."""
    buffer = io.BytesIO()
    if animated:
        frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
        frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
        data = bytearray(buffer.getvalue())
        assert data[12:16] == b"VP8X"
        data[24:27] = (width - 1).to_bytes(3, "little")
        data[27:30] = (height - 1).to_bytes(3, "little")
        return bytes(data)
    Image.new("RGB", (4, 4), (200, 40, 40)).save(buffer, "WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack("<I", data[21:25])[0] & ~0x0FFFFFFF
    data[21:25] = struct.pack("<I", bits | (width - 1) | ((height - 1) << 14))
    return bytes(data)


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` RGB, with one row of pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\0" * (1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


@contextlib.contextmanager
def no_decoding(monkeypatch) -> Iterator[list[str]]:
    """Record (by format) every Pillow pixel decode and WebP decoder made while it is open."""
    decoded: list[str] = []
    file_load = ImageFile.ImageFile.load
    webp_load = WebPImagePlugin.WebPImageFile.load

    def spy_file_load(self):
        decoded.append(self.format or "?")
        return file_load(self)

    def spy_webp_load(self):
        decoded.append("WEBP")
        return webp_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_file_load)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", spy_webp_load)
    yield decoded
    monkeypatch.undo()


@contextlib.contextmanager
def images_made(monkeypatch) -> Iterator[list[weakref.ref]]:
    """Weak references to every Pillow image made (decoded, converted, resized) while open."""
    made: list[weakref.ref] = []
    init = Image.Image.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Image.Image, "__init__", spy)
    yield made
    monkeypatch.undo()
