"""The images a person picked, dropped or pasted, placed in the order chosen while they decode.

Picks wait in a queue in the order chosen. At most as many are decoded at once as there are free
slots (``MAX_IMAGES_PER_MESSAGE`` less the images attached and the picks decoded or decoding),
and they are placed in order: a pick decoded early waits for those chosen before it. A pick
refused (not an image, damaged, already attached, or past the fifth image) never holds a slot:
the next one is decoded in its place. Everything refused from picks that were waiting together
is said in one line once the queue is empty.

Signals:
    accepted(object, QImage): the next image in the order chosen, and its thumbnail.
    refused(str): one line for the picks refused since the queue was last empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from desktop.workers.image_loader import ImageLoader
from models.inference.images import MAX_IMAGES_PER_MESSAGE, ChatImage

TOO_MANY = f"too many: {MAX_IMAGES_PER_MESSAGE} images a message"
NAMED = 3  # refused picks named in the line; more are counted


@dataclass
class Pick:
    """One chosen image: a file (``path``) or image bytes (``data``), or one refused up front."""

    name: str
    path: str | None = None
    data: bytes | None = None
    error: str | None = None  # a one-line reason it was refused
    ticket: int | None = None  # set once its decoding started
    image: ChatImage | None = None
    thumbnail: QImage | None = None

    @property
    def done(self) -> bool:
        return self.image is not None or self.error is not None

    @property
    def may_take_a_slot(self) -> bool:
        """Decoding or decoded well: it is placed before any pick chosen after it."""
        return self.ticket is not None and self.error is None


def refusal_line(refusals: list[tuple[str, str]]) -> str:
    """One line for refused picks: the reason itself for one; for several, each name with why."""
    if len(refusals) == 1:
        name, reason = refusals[0]
        return reason if reason != TOO_MANY else _too_many_sentence()
    parts = []
    for name, reason in refusals[:NAMED]:
        why = reason[len(name) :].strip() if reason.startswith(name) else reason
        for lead in ("is a ", "is an ", "is "):
            if why.startswith(lead):
                why = why[len(lead) :]
                break
        parts.append(f"{name} ({why.rstrip('.')})")
    if len(refusals) > NAMED:
        parts.append(f"and {len(refusals) - NAMED} more")
    return f"{len(refusals)} files were not attached: {', '.join(parts)}."


def _too_many_sentence() -> str:
    return f"A message can carry at most {MAX_IMAGES_PER_MESSAGE} images; remove one to add another."


class PickQueue(QObject):
    accepted = Signal(object, QImage)
    refused = Signal(str)

    def __init__(self, loader: ImageLoader, attached: Callable[[], list[ChatImage]], parent=None):
        super().__init__(parent)
        self._loader = loader
        self._attached = attached
        self._picks: list[Pick] = []
        self._refusals: list[tuple[str, str]] = []
        loader.loaded.connect(self._on_loader_loaded)
        loader.failed.connect(self._on_loader_failed)

    @property
    def pending(self) -> int:
        """Picks not placed or refused yet."""
        return len(self._picks)

    def add(self, picks: list[Pick]) -> None:
        """Queue ``picks`` (in the order chosen) behind those still waiting."""
        self._picks.extend(picks)
        self._advance()

    def clear(self) -> None:
        """Forget every waiting pick (results still decoding are dropped) and what was refused."""
        self._picks.clear()
        self._refusals.clear()

    def _find(self, ticket: int) -> Pick | None:
        return next((p for p in self._picks if p.ticket == ticket), None)

    def _on_loader_loaded(self, ticket: int, image: ChatImage, thumbnail: QImage) -> None:
        pick = self._find(ticket)
        if pick is not None:  # else cleared meanwhile
            pick.image, pick.thumbnail = image, thumbnail
            self._advance()

    def _on_loader_failed(self, ticket: int, message: str) -> None:
        pick = self._find(ticket)
        if pick is not None:
            pick.error = message
            self._advance()

    def _advance(self) -> None:
        """Place or refuse the picks at the head that are done, start decoding as many as there
        are free slots, and once nothing waits, say what was refused."""
        while True:
            while self._picks and self._picks[0].done:
                self._settle(self._picks.pop(0))
            attached = len(self._attached())
            waiting = [p for p in self._picks if p.ticket is None and not p.done]
            if attached >= MAX_IMAGES_PER_MESSAGE and waiting:
                for pick in waiting:
                    pick.error = TOO_MANY
                continue  # these are settled in order above
            free = MAX_IMAGES_PER_MESSAGE - attached - sum(p.may_take_a_slot for p in self._picks)
            for pick in self._picks:
                if free <= 0:
                    break
                if pick.ticket is None and not pick.done:
                    if pick.path is not None:
                        pick.ticket = self._loader.load_file(pick.path)
                    else:
                        pick.ticket = self._loader.load_data(pick.data or b"", pick.name)
                    free -= 1
            break
        if not self._picks and self._refusals:
            refusals, self._refusals = self._refusals, []
            self.refused.emit(refusal_line(refusals))

    def _settle(self, pick: Pick) -> None:
        attached = self._attached()
        if pick.error is not None:
            self._refusals.append((pick.name, pick.error))
        elif pick.image is None:
            return
        elif any(image.sha256 == pick.image.sha256 for image in attached):
            self._refusals.append((pick.name, f"{pick.name} is already attached."))
        elif len(attached) >= MAX_IMAGES_PER_MESSAGE:
            self._refusals.append((pick.name, TOO_MANY))
        else:
            self.accepted.emit(pick.image, pick.thumbnail)
