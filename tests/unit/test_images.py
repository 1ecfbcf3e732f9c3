"""Attachments: every accepted format, orientation, transparency, and every way to be bad."""

import io

import pytest
from PIL import Image

from models import images as images_module
from models.images import (
    MAX_IMAGES_PER_MESSAGE,
    ImageError,
    check_image_count,
    load_image_bytes,
    load_image_file,
)
from tests.conftest import image_bytes


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_accepted_formats_decode_to_rgb(fmt):
    image = load_image_bytes(image_bytes(40, 30, fmt), f"x.{fmt.lower()}")
    assert image.image.mode == "RGB"
    assert image.size == (40, 30)
    assert len(image.sha256) == 64


def test_gif_uses_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = load_image_bytes(buffer.getvalue(), "anim.gif")
    r, g, b = image.image.getpixel((4, 4))
    assert r > 200 and b < 50


def test_exif_orientation_applied():
    original = Image.new("RGB", (60, 20), (10, 200, 10))
    exif = original.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when shown
    buffer = io.BytesIO()
    original.save(buffer, "JPEG", exif=exif.tobytes())
    image = load_image_bytes(buffer.getvalue(), "rotated.jpg")
    assert image.size == (20, 60)


def test_transparency_goes_onto_white():
    data = image_bytes(10, 10, "PNG", color=(0, 0, 0, 0), mode="RGBA")
    image = load_image_bytes(data, "clear.png")
    assert image.image.getpixel((5, 5)) == (255, 255, 255)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image_file(path)


def test_truncated_file():
    data = image_bytes(200, 200, "PNG", color=(1, 2, 3))
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image_bytes(data[: len(data) // 2], "half.png")


def test_corrupt_bytes():
    with pytest.raises(ImageError, match="not an image"):
        load_image_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png" * 10, "bad.png")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("just some text")
    with pytest.raises(ImageError, match="not an image"):
        load_image_file(path)


def test_wrong_type_known_to_pillow():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PPM")
    with pytest.raises(ImageError, match="PPM"):
        load_image_bytes(buffer.getvalue(), "x.ppm")


def test_missing_and_folder(tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image_file(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="folder"):
        load_image_file(tmp_path)


def test_decompression_bomb(monkeypatch):
    monkeypatch.setattr(images_module, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="megapixel|too large"):
        load_image_bytes(image_bytes(200, 200), "huge.png")


def test_real_bomb_header_is_refused_without_decoding():
    # A PNG whose header claims 30000 x 30000 pixels: refused from the header alone.
    import struct
    import zlib

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="megapixel|too large"):
        load_image_bytes(data, "bomb.png")


def test_image_count_limit():
    check_image_count(MAX_IMAGES_PER_MESSAGE)
    with pytest.raises(ImageError, match="at most 5 images"):
        check_image_count(MAX_IMAGES_PER_MESSAGE + 1)
