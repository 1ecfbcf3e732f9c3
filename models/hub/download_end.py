"""How a download ended, as a typed value rather than a message to parse.

The download thread and the library (``desktop.controllers.model_library``) report every end as
a ``DownloadEnd``; the texts the person sees are written here once: ``describe`` for the notice
line, ``status`` for the short text the menus keep next to a model that did not finish.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DownloadEndKind(enum.Enum):
    FINISHED = "finished"
    PAUSED = "paused"  # the bytes are kept; the next start resumes
    CANCELLED = "cancelled"  # the partial download is deleted
    FAILED = "failed"


@dataclass(frozen=True)
class DownloadEnd:
    """How a download ended: its repo, the kind, and the folder (finished) or the reason
    (failed); ``hub_unreachable``: it failed because the Hub could not be reached (no network,
    the server down or failing: a ``NetworkError``), not because of this model."""

    repo_id: str
    kind: DownloadEndKind
    path: str | None = None
    reason: str | None = None
    hub_unreachable: bool = False

    @property
    def status(self) -> str:
        """The short text kept next to the model in the menus ("" once finished)."""
        if self.kind is DownloadEndKind.PAUSED:
            return "Paused."
        if self.kind is DownloadEndKind.CANCELLED:
            return "Cancelled."
        return self.reason or ""

    def describe(self, name: str) -> str:
        """One line for the person, naming the model ``name``."""
        if self.kind is DownloadEndKind.FINISHED:
            return f"{name} is downloaded and ready."
        if self.kind is DownloadEndKind.PAUSED:
            return f"{name}: download paused; resume it from the Model menu."
        if self.kind is DownloadEndKind.CANCELLED:
            return f"{name}: download cancelled."
        return f"{name}: {self.reason}"
