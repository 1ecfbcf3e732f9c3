"""Loading the images a person attaches: checked, oriented, RGB, hashed.

Every way an image arrives (a dropped or picked file, pasted or dragged image data) ends
here. A bad image raises ``ImageError`` with a one-line reason a person can act on; nothing
else is touched. Accepted: PNG, JPEG, WebP, GIF (first frame), BMP, TIFF.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.regular_files import InputFileError, read_regular_file

MAX_IMAGES_PER_MESSAGE = 5  # Meta tested Llama 4 with up to five images per prompt
MAX_PIXELS = 64_000_000  # above this, treat as a decompression bomb
MAX_FILE_BYTES = 200 * 1024 * 1024
ACCEPTED_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


class ImageError(ValueError):
    """An attachment that cannot be used, with a reason fit to show as is."""


@dataclass(frozen=True)
class ChatImage:
    """A decoded RGB image and the content hash that identifies it (for caches and storage)."""

    sha256: str
    name: str
    image: Image.Image = field(compare=False, repr=False)
    data: bytes = field(compare=False, repr=False)  # the original bytes, for storage/export

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


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


def load_image_bytes(data: bytes, name: str = "image") -> ChatImage:
    """Decode ``data`` into a ``ChatImage`` or raise ``ImageError`` saying why not."""
    if not data:
        raise ImageError(f"{name} is empty.")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or "?"
                width, height = probe.size
                if fmt not in ACCEPTED_FORMATS:
                    raise ImageError(f"{name} is a {fmt} image; use PNG, JPEG, WebP, GIF, BMP or TIFF.")
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"{name} is {width}x{height} pixels, more than the "
                        f"{MAX_PIXELS // 1_000_000} megapixel limit."
                    )
                probe.seek(0)  # first frame of a GIF/animated WebP
                probe.load()
                image = _to_rgb(probe)
                image.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{name} is too large to open safely.") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name} is not an image Llama Desk can read.") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{name} is damaged or truncated ({exc}).") from None
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{name} has no pixels.")
    return ChatImage(hashlib.sha256(data).hexdigest(), name, image, data)


def load_image_file(path: str | Path) -> ChatImage:
    """Read and decode an image file; unreadable paths raise ``ImageError`` too.

    Only regular files are read (a device or a FIFO is refused before it is opened), and never
    more than ``MAX_FILE_BYTES``.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path.name} is a folder, not an image.")
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
