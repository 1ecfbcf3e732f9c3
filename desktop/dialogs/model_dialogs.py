"""The questions the window asks about models: which folder to open, whether to load a model
that won't fit, and the About box."""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


def choose_model_folder(parent: QWidget) -> str | None:
    """A checkpoint folder the person picked, or None."""
    folder = QFileDialog.getExistingDirectory(parent, "Open an MLX Llama 4 checkpoint folder")
    return folder or None


def confirm_load_anyway(parent: QWidget, name: str, detail: str) -> bool:
    """Ask before loading a model the planner says won't fit (the OS could kill the app)."""
    box = QMessageBox(
        QMessageBox.Icon.Warning,
        "This model won't fit",
        f"{name} needs more memory than this machine can give it.",
        parent=parent,
    )
    box.setInformativeText(
        f"{detail}\n\nLoading it anyway may make the system swap heavily or "
        "end Llama Desk. A smaller context length or KV-cache precision "
        "(File ▸ Settings…) may make it fit."
    )
    load = box.addButton("Load Anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is load


def show_about(parent: QWidget) -> None:
    QMessageBox.about(
        parent,
        "About Llama Desk",
        "<b>Llama Desk</b><br>Offline multimodal chat with Llama 4 through MLX.<br><br>"
        "Built with Llama.<br>Llama 4 is licensed under the Llama 4 Community License, "
        "Copyright © Meta Platforms, Inc. All Rights Reserved.",
    )
