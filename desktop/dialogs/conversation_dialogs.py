"""The questions the window asks about conversations: a new title, where to export, what to
import, which images and PDFs to attach, and whether to go on in a new conversation when memory runs out."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox, QWidget

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff)"
PDF_FILTER = "PDFs (*.pdf)"
ATTACH_FILTER = (
    "Images and PDFs (*.png *.jpg *.jpeg *.webp *.gif *.bmp *.tif *.tiff *.pdf)"
    f";;{IMAGE_FILTER};;{PDF_FILTER}"
)


def ask_title(parent: QWidget, current: str) -> str | None:
    """A new, non-empty title (stripped), or None if the person cancelled."""
    title, ok = QInputDialog.getText(parent, "Rename conversation", "Title:", text=current)
    return title.strip() if ok and title.strip() else None


def export_file_name(title: str, fmt: str) -> str:
    """A file name from a conversation title: letters, digits, spaces, '-' and '_' kept."""
    safe = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip() or "conversation"
    return f"{safe}.{fmt}"


def choose_export_path(parent: QWidget, title: str, fmt: str) -> str | None:
    kind = "Markdown (*.md)" if fmt == "md" else "JSON (*.json)"
    path, _ = QFileDialog.getSaveFileName(parent, "Export conversation", export_file_name(title, fmt), kind)
    return path or None


def choose_import_file(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getOpenFileName(
        parent, "Import a conversation", "", "Conversations (*.json *.md);;JSON (*.json);;Markdown (*.md)"
    )
    return path or None


def choose_images(parent: QWidget) -> list[str]:
    paths, _ = QFileDialog.getOpenFileNames(parent, "Attach images or PDFs", "", ATTACH_FILTER)
    return list(paths)


def ask_fresh_start(parent: QWidget, reason: str) -> bool:
    """The conversation outgrew memory: True to go on in a new one with the last exchange."""
    box = QMessageBox(
        QMessageBox.Icon.Warning, "This conversation is too long for memory", reason, parent=parent
    )
    box.setInformativeText(
        "Continue in a new conversation that keeps the last question and "
        "answer? Your question stays in the composer."
    )
    fresh = box.addButton("Continue in New Conversation", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is fresh
