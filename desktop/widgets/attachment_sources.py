"""What a drop or a paste offers the composer: files, or raw image or PDF data; and the picks made
of them (``desktop.widgets.pick_queue``).

``images_in_mime`` reads a ``QMimeData`` into file paths and (bytes, name) pairs; a dropped file
not named like an image or a PDF is refused in one line before it is read (``file_pick``).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QIODevice, QMimeData
from PySide6.QtGui import QImage

from desktop.widgets.pick_queue import Pick
from models.documents import pdf_reading
from models.inference.images import FILE_SUFFIXES

_RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff")
_PDF_TYPE = "application/pdf"


def images_in_mime(mime: QMimeData) -> tuple[list[str], list[tuple[bytes, str]]]:
    """The files and raw image (or PDF) data a drop or paste carries."""
    paths: list[str] = []
    datas: list[tuple[bytes, str]] = []
    if mime.hasUrls():
        for url in mime.urls():
            if url.isLocalFile():
                paths.append(url.toLocalFile())
    if not paths and mime.hasFormat(_PDF_TYPE):
        datas.append((bytes(mime.data(_PDF_TYPE).data()), "pasted PDF.pdf"))
    elif not paths:
        for kind in _RAW_IMAGE_TYPES:
            if mime.hasFormat(kind):
                datas.append((bytes(mime.data(kind).data()), f"pasted {kind.split('/')[1].upper()}"))
                break
        else:
            if mime.hasImage():
                image = mime.imageData()
                if isinstance(image, QImage) and not image.isNull():
                    buffer = QBuffer()
                    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
                    image.save(buffer, "PNG")  # type: ignore[call-overload]  # PySide takes str
                    datas.append((bytes(buffer.data().data()), "pasted image"))
    return paths, datas


def mime_has_images(mime: QMimeData) -> bool:
    """Whether a drop or paste carries something to attach (files, image or PDF data)."""
    if mime.hasImage() or any(mime.hasFormat(kind) for kind in (*_RAW_IMAGE_TYPES, _PDF_TYPE)):
        return True
    return mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())


def file_pick(path: str, check_suffix: bool = False) -> Pick:
    """A file to attach; with ``check_suffix`` (a drop), one not named like an image is refused."""
    name = Path(path).name
    if check_suffix and not path.lower().endswith(FILE_SUFFIXES):
        return Pick(
            name, error=f"{name} is not a supported image or PDF (PNG, JPEG, WebP, GIF, BMP, TIFF, PDF)."
        )
    return Pick(name, path=path)


def is_pdf_name(path: str) -> bool:
    """Whether ``path`` is named like a PDF (its bytes decide later: ``looks_like_pdf``)."""
    return str(path).lower().endswith(pdf_reading.FILE_SUFFIXES)
