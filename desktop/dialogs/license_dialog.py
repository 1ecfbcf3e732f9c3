"""Asks a person to accept the Llama 4 Community License before the first Llama 4 download."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QVBoxLayout

from models.hub.license import LICENSE_SUMMARY, accept_license, license_accepted


class LicenseDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Llama 4 Community License")
        self.resize(640, 520)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "Llama 4's weights come under Meta's license. Please read this summary; "
            "the full texts at the links govern."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.text = QPlainTextEdit(LICENSE_SUMMARY)
        self.text.setReadOnly(True)
        layout.addWidget(self.text, 1)
        self.accept_box = QCheckBox("I accept the Llama 4 Community License and Acceptable Use Policy")
        layout.addWidget(self.accept_box)
        buttons = QDialogButtonBox.StandardButton
        self.buttons = QDialogButtonBox(buttons.Ok | buttons.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Accept and Download")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        self.accept_box.toggled.connect(self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

    def accept(self) -> None:  # noqa: D102 - records the acceptance
        from PySide6.QtWidgets import QMessageBox

        from models.app_folders import UserDataError

        if not self.accept_box.isChecked():
            return
        try:
            accept_license()
        except (UserDataError, OSError) as exc:
            QMessageBox.warning(self, "Could not record the acceptance", str(exc))
            return
        super().accept()


def ensure_license_accepted(parent=None) -> bool:
    """True if the license was accepted before, or is accepted now in the dialog."""
    if license_accepted():
        return True
    return LicenseDialog(parent).exec() == QDialog.DialogCode.Accepted
