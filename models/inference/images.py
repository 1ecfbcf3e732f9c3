"""Loading the images a person attaches: checked, oriented, RGB, hashed.

Every way an image arrives (a dropped or picked file, pasted or dragged image data, an API
request's ``data:`` URL) ends here. A bad image raises ``ImageError`` with a one-line reason a
person can act on; nothing else is touched. Accepted: PNG, JPEG, WebP, GIF (first frame), BMP,
TIFF.

Bombs are refused from the header, before anything is decoded: the pixel size Pillow's lazy
open reads (a WebP's canvas is read by hand first: Pillow's WebP decoder allocates its canvas
when it opens the file), at most ``MAX_PIXELS`` an image, and ``ImageBudget`` bounds a whole
request (count and pixels). A ``ChatImage`` keeps the file's bytes, never the pixels: ``image``
decodes on each use, so whoever asks (the prompt encoder, a thumbnail) holds the pixels only
as long as it needs them.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.regular_files import InputFileError, read_regular_file

MAX_IMAGES_PER_MESSAGE = 5  # Meta tested Llama 4 with up to five images per prompt
MAX_PIXELS = 64_000_000  # above this, treat as a decompression bomb
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_IMAGES_PER_REQUEST = 4 * MAX_IMAGES_PER_MESSAGE  # a whole conversation sent at once (API)
MAX_PIXELS_PER_REQUEST = MAX_IMAGES_PER_MESSAGE * MAX_PIXELS  # five images at the limit
ACCEPTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that turn the picture a quarter


class ImageError(ValueError):
    """An attachment that cannot be used, with a reason fit to show as is; ``source`` names
    the image (its file name, or where it sits in an API request)."""

    def __init__(self, message: str, source: str | None = None):
        super().__init__(message)
        self.source = source


@dataclass(frozen=True)
class ChatImage:
    """An attached image: its bytes, its content hash (for caches and storage) and its size as
    shown (EXIF orientation applied). The pixels are not kept: ``image`` decodes them."""

    sha256: str
    name: str
    data: bytes = field(compare=False, repr=False)  # the original bytes, for storage/export
    size: tuple[int, int] = field(compare=False)

    @property
    def image(self) -> Image.Image:
        """The decoded RGB picture, decoded anew on each call (the caller holds it, or not)."""
        return decode_image(self.data, self.name)

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


class ImageBudget:
    """How many images, and pixels, one request may still bring; ``take`` refuses the image
    that goes over (before it is decoded: the size comes from its header)."""

    def __init__(self, max_images: int = MAX_IMAGES_PER_REQUEST, max_pixels: int = MAX_PIXELS_PER_REQUEST):
        self.max_images = max_images
        self.max_pixels = max_pixels
        self.images = 0
        self.pixels = 0

    def check_count(self, name: str) -> None:
        """Raise ``ImageError`` if one more image would be more than ``max_images``."""
        if self.images >= self.max_images:
            raise ImageError(f"{name}: a request can carry at most {self.max_images} images.", name)

    def take(self, image: ChatImage) -> None:
        """Count ``image``, or raise ``ImageError`` when the request would go over."""
        self.check_count(image.name)
        if self.pixels + image.pixels > self.max_pixels:
            raise ImageError(
                f"{image.name} ({image.size[0]}x{image.size[1]}) would bring the request's images "
                f"over {self.max_pixels // 1_000_000} megapixels in all.",
                image.name,
            )
        self.images += 1
        self.pixels += image.pixels


_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _high_bit_depth_to_grey(image: Image.Image) -> Image.Image:
    """An 8-bit grey ("L") copy of a 16-bit, 32-bit integer or float single-channel image.

    Pillow's own ``convert`` clips these at 255 (so 16-bit mid-grey turns white); here they are
    scaled instead: 16-bit by 65535 -> 255, 32-bit integers by the range their values use (8, 16
    bits, or their own maximum), floats as 0..1 when they fit it, else clipped to 0..255.
    """
    values = np.asarray(image)
    if image.mode == "F":
        values = values.astype(np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        finite_max = float(values.max()) if values.size else 0.0
        scaled = values * 255.0 if finite_max <= 1.0 else values
    else:
        values = values.astype(np.float64)
        top = float(values.max()) if values.size else 0.0
        if image.mode.startswith("I;16") or image.format == "PNG" or 255 < top <= 65535:
            scaled = values / 257.0  # 16-bit samples (a PNG's "I" is always 16-bit grey)
        elif top <= 255:
            scaled = values
        else:
            scaled = values * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB: alpha composited onto white, high bit depths scaled, not clipped."""
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _high_bit_depth_to_grey(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _high_bit_depth_to_grey(image)  # before transposing: that forgets the format
    return to_rgb(ImageOps.exif_transpose(image))


def _webp_canvas(data: bytes) -> tuple[int, int] | None:
    """A WebP's declared width and height, read from its first chunk (None: not a WebP, or a
    header too short to say)."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _check_pixels(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name} is {width}x{height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixel limit.",
            name,
        )


def _shown_size(probe: Image.Image) -> tuple[int, int]:
    """The size once EXIF orientation is applied, from what the header holds (a PNG's EXIF
    after its pixels is not looked for: Pillow would decode to find it)."""
    width, height = probe.size
    if probe.format == "PNG" and "exif" not in probe.info:
        return width, height
    orientation = probe.getexif().get(0x0112, 1)
    return (height, width) if orientation in _SWAPS_SIDES else (width, height)


def _opened(data: bytes, name: str):
    """Pillow's lazy open of ``data``, checked: an accepted format, within ``MAX_PIXELS``."""
    if not data:
        raise ImageError(f"{name} is empty.", name)
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.", name)
    canvas = _webp_canvas(data)
    if canvas is not None:
        _check_pixels(*canvas, name)
    probe = Image.open(io.BytesIO(data))
    fmt = probe.format or "?"
    if fmt not in ACCEPTED_FORMATS:
        probe.close()
        raise ImageError(f"{name} is a {fmt} image; use PNG, JPEG, WebP, GIF, BMP or TIFF.", name)
    try:
        _check_pixels(*probe.size, name)
    except ImageError:
        probe.close()
        raise
    return probe


@contextmanager
def _refusals(name: str) -> Iterator[None]:
    """Pillow's failures on hostile bytes, as ``ImageError``s naming the image."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name} is too large to open safely.", name) from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image Llama Desk can read.", name) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise ImageError(f"{name} is damaged or truncated ({exc}).", name) from None


def probe_image_bytes(data: bytes, name: str = "image") -> tuple[int, int]:
    """The size ``data`` shows at (orientation applied), read from its header alone; raise
    ``ImageError`` for what is not an accepted image or is over ``MAX_PIXELS``."""
    with _refusals(name), _opened(data, name) as probe:
        return _shown_size(probe)


def decode_image(data: bytes, name: str = "image") -> Image.Image:
    """Decode ``data`` (its first frame) to oriented 8-bit RGB, or raise ``ImageError``; the
    header is checked before any pixel is decoded."""
    with _refusals(name), _opened(data, name) as probe:
        probe.seek(0)  # first frame of a GIF/animated WebP
        probe.load()
        image = _to_rgb(probe)
        image.load()
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name} has no pixels.", name)
    return image


def load_image_bytes(data: bytes, name: str = "image", *, verify: bool = True) -> ChatImage:
    """``data`` as a ``ChatImage``, or ``ImageError`` saying why not.

    The header is always checked first (format, pixel size). With ``verify`` the pixels are
    decoded once, to refuse a damaged or truncated image now, and let go; without it (an API
    request: the job decodes it once, when it runs) nothing is decoded here."""
    if verify:
        size = decode_image(data, name).size
    else:
        size = probe_image_bytes(data, name)
        if size[0] < 1 or size[1] < 1:
            raise ImageError(f"{name} has no pixels.", name)
    return ChatImage(hashlib.sha256(data).hexdigest(), name, data, size)


def load_image_file(path: str | Path) -> ChatImage:
    """Read and decode an image file; unreadable paths raise ``ImageError`` too.

    Only regular files are read (a device or a FIFO is refused before it is opened), and never
    more than ``MAX_FILE_BYTES``.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path.name} is a folder, not an image.", path.name)
        data = read_regular_file(path, MAX_FILE_BYTES, path.name)
    except InputFileError as exc:
        raise ImageError(str(exc)) from None
    return load_image_bytes(data, path.name)


def check_image_count(count: int) -> None:
    """Raise ``ImageError`` when a message would carry more images than Llama 4 supports."""
    if count > MAX_IMAGES_PER_MESSAGE:
        raise ImageError(
            f"A message can carry at most {MAX_IMAGES_PER_MESSAGE} images "
            f"(Llama 4 was tested with up to {MAX_IMAGES_PER_MESSAGE})."
        )
