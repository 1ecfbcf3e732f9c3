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

from PIL import Image, ImageOps, UnidentifiedImageError

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


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


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
    """Read and decode an image file; unreadable paths raise ``ImageError`` too."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path.name} is a folder, not an image.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{path.name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path.name} does not exist.") from None
    except PermissionError:
        raise ImageError(f"{path.name} cannot be read (permission denied).") from None
    except OSError as exc:
        raise ImageError(f"{path.name} cannot be read ({exc.strerror or exc}).") from None
    return load_image_bytes(data, path.name)


def check_image_count(count: int) -> None:
    """Raise ``ImageError`` when a message would carry more images than Llama 4 supports."""
    if count > MAX_IMAGES_PER_MESSAGE:
        raise ImageError(
            f"A message can carry at most {MAX_IMAGES_PER_MESSAGE} images "
            f"(Llama 4 was tested with up to {MAX_IMAGES_PER_MESSAGE})."
        )
