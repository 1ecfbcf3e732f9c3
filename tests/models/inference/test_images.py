"""Attachments: every accepted format, orientation, transparency, and every way to be bad."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from models.inference import images as images_module
from models.inference.images import (
    MAX_IMAGES_PER_MESSAGE,
    ImageError,
    check_image_count,
    load_image_bytes,
    load_image_file,
)
from models.inference.preprocess import ProcessorConfig, preprocess_image
from tests.conftest import image_bytes
from tests.support.hostile_files import device_or_fifo, memory_cap, needs_posix_devices


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
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="megapixel|too large"):
        load_image_bytes(data, "bomb.png")


def test_image_count_limit():
    check_image_count(MAX_IMAGES_PER_MESSAGE)
    with pytest.raises(ImageError, match="at most 5 images"):
        check_image_count(MAX_IMAGES_PER_MESSAGE + 1)


# -- input files that are not regular files (issue 9, item 2) ------------------------------------


@needs_posix_devices
@pytest.mark.timeout(30)  # a FIFO read by the old code blocked forever
@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_devices_and_fifos_are_refused_promptly(tmp_path, kind):
    link = device_or_fifo(kind, tmp_path, "photo.png")
    with memory_cap(), pytest.raises(ImageError) as exc:
        load_image_file(link)
    assert str(exc.value).startswith("photo.png is a ") and "not a regular file" in str(exc.value)
    assert "\n" not in str(exc.value)


@needs_posix_devices
def test_dev_zero_itself_is_refused():
    with memory_cap(), pytest.raises(ImageError, match="zero is a character device, not a regular file"):
        load_image_file("/dev/zero")


def test_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.png"
    path.write_bytes(image_bytes(200, 200, "PNG") + b"\0" * 2000)
    with pytest.raises(ImageError, match="larger than"):
        load_image_file(path)


# -- high bit depth (issue 9, item 7) --------------------------------------------------------------


def _png_16bit(width: int, height: int, colour_type: int, samples: tuple[int, ...]) -> bytes:
    """A 16-bit PNG of one colour, written by hand (Pillow cannot save 16-bit RGB)."""
    import struct
    import zlib

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
        )

    pixel = struct.pack(f">{len(samples)}H", *samples)
    raw = b"".join(b"\0" + pixel * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _saved(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # saving "I" as PNG (Pillow 12)
        image.save(buffer, fmt)
    return buffer.getvalue()


def _grey_128_8bit() -> np.ndarray:
    return np.asarray(load_image_bytes(image_bytes(40, 30, "PNG", color=128, mode="L"), "g.png").image)


MID_GREY_HIGH_DEPTH = {
    "I;16 PNG": lambda: _saved(Image.new("I;16", (40, 30), 32768), "PNG"),
    "16-bit grey PNG": lambda: _png_16bit(40, 30, 0, (32768,)),
    "I PNG": lambda: _saved(Image.new("I", (40, 30), 32768), "PNG"),
    "I;16B TIFF": lambda: _saved(Image.new("I;16B", (40, 30), 32768), "TIFF"),
    "I 32-bit TIFF": lambda: _saved(Image.new("I", (40, 30), 32768), "TIFF"),
    "F TIFF 0..1": lambda: _saved(Image.new("F", (40, 30), 0.502), "TIFF"),
    "16-bit RGB PNG": lambda: _png_16bit(40, 30, 2, (32768, 32768, 32768)),
    "16-bit RGBA PNG": lambda: _png_16bit(40, 30, 6, (32768, 32768, 32768, 65535)),
    "16-bit grey+alpha PNG": lambda: _png_16bit(40, 30, 4, (32768, 65535)),
}


@pytest.mark.parametrize("kind", MID_GREY_HIGH_DEPTH)
def test_high_bit_depth_mid_grey_stays_mid_grey(kind):
    """Mid-grey at 16 bits (32768 of 65535) must reach the model as 8-bit 128, not clipped white.

    The reference is the same picture saved as 8-bit grey 128 and run through the same
    pipeline. transformers' ``Llama4ImageProcessor`` (the reference processor) needs torch and
    torchvision, which this environment does not have; ``tests/models/inference/test_preprocess.py`` checks
    our pipeline against its algorithm, and its own ``convert("RGB")`` clips 16-bit images the
    same way Pillow does, so the 8-bit picture is the right reference for these pixels.
    """
    image = load_image_bytes(MID_GREY_HIGH_DEPTH[kind](), "grey")
    pixels = np.asarray(image.image)
    assert image.image.mode == "RGB"
    np.testing.assert_array_equal(pixels, _grey_128_8bit())


def test_sixteen_bit_grey_reaches_the_model_as_the_8bit_picture_does():
    config = ProcessorConfig()
    sixteen = load_image_bytes(_saved(Image.new("I;16", (500, 300), 32768), "PNG"), "grey16.png")
    eight = load_image_bytes(image_bytes(500, 300, "PNG", color=128, mode="L"), "grey8.png")
    pixels16, plan16 = preprocess_image(sixteen.image, config)
    pixels8, plan8 = preprocess_image(eight.image, config)
    assert plan16 == plan8
    np.testing.assert_array_equal(pixels16, pixels8)
    # A Pillow image handed straight to the preprocessor is scaled the same way.
    direct, _ = preprocess_image(Image.new("I;16", (500, 300), 32768), config)
    np.testing.assert_array_equal(direct, pixels8)


def test_sixteen_bit_ramp_scales_by_257():
    values = np.arange(0, 65536, 257, dtype=np.uint16).reshape(16, 16)  # 0, 257, ..., 65535
    image = load_image_bytes(_saved(Image.fromarray(values), "PNG"), "ramp.png")
    grey = np.asarray(image.image)[..., 0]
    np.testing.assert_array_equal(grey, np.arange(256).reshape(16, 16))


def test_float_images_above_one_are_clipped_not_wrapped():
    image = load_image_bytes(_saved(Image.new("F", (8, 8), 1000.0), "TIFF"), "bright.tif")
    assert image.image.getpixel((0, 0)) == (255, 255, 255)


# -- bombs and retained pixels (issue 23) ----------------------------------------------------------


@pytest.mark.parametrize("animated", [False, True], ids=["still", "animated"])
def test_a_38_byte_webp_over_the_limit_is_refused_before_pillow_opens_it(monkeypatch, animated):
    """Pillow's WebP decoder allocates the declared canvas as it opens the file, before any size
    check: the canvas is read from the header first."""
    from PIL import WebPImagePlugin

    from tests.support.image_bombs import webp_bomb

    bomb = webp_bomb(8001, 8000, animated)
    assert len(bomb) < 200
    made = []
    decoder = WebPImagePlugin._webp.WebPAnimDecoder
    spy = lambda data: made.append(1) or decoder(data)  # noqa: E731
    monkeypatch.setattr(WebPImagePlugin._webp, "WebPAnimDecoder", spy)
    with pytest.raises(ImageError, match="8001x8000 pixels, more than the 64 megapixel limit"):
        load_image_bytes(bomb, "bomb.webp")
    assert made == []
    with pytest.raises(ImageError, match="more than the 64 megapixel limit"):
        load_image_bytes(bomb, "bomb.webp", verify=False)
    assert made == []


def test_images_at_the_limit_are_not_decoded_without_verify(monkeypatch):
    from tests.support.image_bombs import no_decoding, png_bomb, webp_bomb

    with no_decoding(monkeypatch) as decoded:
        images = [
            load_image_bytes(webp_bomb(8000, 8000), "a.webp", verify=False),
            load_image_bytes(webp_bomb(8000, 8000, animated=True), "b.webp", verify=False),
            load_image_bytes(png_bomb(8000, 8000), "c.png", verify=False),
        ]
    assert decoded == []
    assert [image.size for image in images] == [(8000, 8000)] * 3


def test_a_chat_image_keeps_its_bytes_not_its_pixels():
    import gc
    import weakref

    image = load_image_bytes(image_bytes(40, 30, "PNG"), "x.png")
    assert not any(isinstance(value, Image.Image) for value in vars(image).values())
    decoded = image.image
    assert decoded.size == image.size == (40, 30)
    gone = weakref.ref(decoded)
    del decoded
    gc.collect()
    assert gone() is None


def test_the_size_without_decoding_has_the_orientation_applied():
    original = Image.new("RGB", (60, 20), (10, 200, 10))
    exif = original.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    original.save(buffer, "JPEG", exif=exif.tobytes())
    assert load_image_bytes(buffer.getvalue(), "rotated.jpg", verify=False).size == (20, 60)


def test_an_image_budget_bounds_count_and_pixels():
    from models.inference.images import ImageBudget

    small = load_image_bytes(image_bytes(10, 10), "small.png")
    budget = ImageBudget(max_images=3, max_pixels=250)
    budget.take(small)
    budget.take(small)
    with pytest.raises(ImageError, match="over 0 megapixels in all"):
        budget.take(small)
    budget = ImageBudget(max_images=2, max_pixels=10_000)
    budget.take(small)
    budget.take(small)
    with pytest.raises(ImageError, match="at most 2 images"):
        budget.check_count("third")
