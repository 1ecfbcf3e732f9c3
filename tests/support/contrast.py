"""Text/background contrast measured from a widget's pixels (WCAG 2 relative luminance).

``text_contrast`` crops a rendered image to a rectangle, takes the most common colour as the
background and, as the text, the colour with the greatest contrast against it among colours
that cover at least a few pixels (glyph cores; anti-aliasing blends lie between the two and
never win). ``boundary_contrast`` measures a control's edge (its border or its fill) against
what surrounds it, and ``focus_change`` how much of a widget changes, and by how much, when it
takes focus. ``text_widgets`` lists what shows text in a window, with the rectangle to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRect
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QStyle,
    QStyleOptionButton,
    QTextEdit,
    QWidget,
)

MIN_PIXELS = 3  # a colour must cover this many pixels to count as the text's


def pixels(image: QImage) -> np.ndarray:
    """``image`` as an (height, width, 3) array of 0..255 RGB."""
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    data = data.reshape(height, image.bytesPerLine() // 4, 4)[:, :width, :]
    return data[:, :, 2::-1].astype(np.int64)  # BGRA in memory -> RGB


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of 0..255 sRGB colours (last axis RGB)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def ratio(a, b) -> np.ndarray:
    la, lb = luminance(a), luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def _colours(area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct colours of ``area`` (n, 3) and how many pixels each covers, most first."""
    flat = area.reshape(-1, 3)
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    values, counts = np.unique(packed, return_counts=True)
    order = np.argsort(-counts)
    values, counts = values[order], counts[order]
    colours = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=1)
    return colours, counts


def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


@dataclass
class Measure:
    ratio: float
    background: str
    foreground: str


def text_contrast(image: np.ndarray, rect: QRect) -> Measure | None:
    """The contrast of the text inside ``rect`` of ``image`` (None: a flat area, no text)."""
    area = image[max(0, rect.top()) : rect.bottom() + 1, max(0, rect.left()) : rect.right() + 1]
    if area.size == 0:
        return None
    colours, counts = _colours(area)
    background = colours[0]
    candidates = colours[counts >= MIN_PIXELS]
    if len(candidates) < 2:
        return None
    ratios = ratio(candidates, background)
    best = int(np.argmax(ratios))
    return Measure(float(ratios[best]), hex_colour(background), hex_colour(candidates[best]))


def fill_contrast(image: np.ndarray, rect: QRect, share: float = 0.05) -> Measure | None:
    """The contrast between the two colours that each fill at least ``share`` of ``rect`` (a
    scroll bar's track and handle); None when only one colour fills that much."""
    area = image[max(0, rect.top()) : rect.bottom() + 1, max(0, rect.left()) : rect.right() + 1]
    colours, counts = _colours(area)
    big = colours[counts >= share * counts.sum()]
    if len(big) < 2:
        return None
    return Measure(float(ratio(big[1], big[0])), hex_colour(big[0]), hex_colour(big[1]))


def boundary_contrast(image: np.ndarray, rect: QRect, ring: int = 2) -> Measure | None:
    """How far a control's edge (the ``ring`` pixels inside ``rect``: its border, or its fill
    where it has none) stands out from the colour just outside ``rect``."""
    h, w = image.shape[:2]
    outer = rect.adjusted(-ring, -ring, ring, ring)
    if outer.left() < 0 or outer.top() < 0 or outer.right() >= w or outer.bottom() >= h:
        return None
    mask_out = np.zeros((h, w), dtype=bool)
    mask_out[outer.top() : outer.bottom() + 1, outer.left() : outer.right() + 1] = True
    mask_out[rect.top() : rect.bottom() + 1, rect.left() : rect.right() + 1] = False
    mask_in = np.zeros((h, w), dtype=bool)
    mask_in[rect.top() : rect.bottom() + 1, rect.left() : rect.right() + 1] = True
    inner = rect.adjusted(ring + 2, ring + 2, -ring - 2, -ring - 2)
    mask_in[inner.top() : inner.bottom() + 1, inner.left() : inner.right() + 1] = False
    out_colours, _ = _colours(image[mask_out])
    surround = out_colours[0]
    in_colours, in_counts = _colours(image[mask_in])
    # The edge must go round: a colour counts if it covers a good part of the ring.
    perimeter = 2 * (rect.width() + rect.height())
    candidates = in_colours[in_counts >= perimeter // 3]
    if len(candidates) == 0:
        return Measure(1.0, hex_colour(surround), hex_colour(in_colours[0]))
    ratios = ratio(candidates, surround)
    best = int(np.argmax(ratios))
    return Measure(float(ratios[best]), hex_colour(surround), hex_colour(candidates[best]))


def focus_change(
    before: np.ndarray, after: np.ndarray, rect: QRect, pad: int = 3, band: int = 3
) -> tuple[int, int]:
    """(pixels along the edge of ``rect``, from ``pad`` outside to ``band`` inside, whose colour
    changed by >= 3:1 on taking focus; the rectangle's perimeter): a visible focus ring changes
    at least a 1-px ring all round. What changes further inside (a fill, text) does not count."""
    h, w = before.shape[:2]
    mask = np.zeros((h, w), dtype=bool)
    mask[
        max(0, rect.top() - pad) : rect.bottom() + 1 + pad, max(0, rect.left() - pad) : rect.right() + 1 + pad
    ] = True
    inner = rect.adjusted(band, band, -band, -band)
    if inner.width() > 0 and inner.height() > 0:
        mask[inner.top() : inner.bottom() + 1, inner.left() : inner.right() + 1] = False
    changed = (ratio(before, after) >= 3.0) & mask
    return int(changed.sum()), 2 * (rect.width() + rect.height())


def _indicator_rect(widget: QAbstractButton, contents: bool) -> QRect:
    """The box (or, with ``contents``, the words) of a check box or radio button."""
    option = QStyleOptionButton()
    option.initFrom(widget)
    option.text = widget.text()
    check = isinstance(widget, QCheckBox)
    element = {
        (True, False): QStyle.SubElement.SE_CheckBoxIndicator,
        (True, True): QStyle.SubElement.SE_CheckBoxContents,
        (False, False): QStyle.SubElement.SE_RadioButtonIndicator,
        (False, True): QStyle.SubElement.SE_RadioButtonContents,
    }[(check, contents)]
    return widget.style().subElementRect(element, option, widget)


def _in(window: QWidget, widget: QWidget, rect: QRect | None = None) -> QRect:
    rect = rect if rect is not None else widget.rect()
    return QRect(widget.mapTo(window, rect.topLeft()), rect.size())


def _showing(widget: QWidget, window: QWidget) -> bool:
    return widget.isVisibleTo(window) and widget.width() > 2 and widget.height() > 2


def text_widgets(window: QWidget) -> list[tuple[str, QRect, QWidget]]:
    """(a name, the rectangle in ``window`` to measure, the widget) for every enabled widget in
    ``window`` that shows text: labels, buttons, fields, spin boxes, combo boxes, text areas,
    item views (each shown cell) and their headers (each section)."""
    found: list[tuple[str, QRect, QWidget]] = []
    for widget in [window, *window.findChildren(QWidget)]:
        if not _showing(widget, window) or not widget.isEnabled():
            continue
        kind = type(widget).__name__
        if isinstance(widget, QLabel):
            if widget.text().strip():
                found.append((f"{kind} {widget.text()[:30]!r}", _in(window, widget), widget))
        elif isinstance(widget, QAbstractButton):
            if widget.text().strip():
                rect = widget.rect()
                if isinstance(widget, (QCheckBox, QRadioButton)):
                    rect = _indicator_rect(widget, contents=True)  # the words, not the box
                elif isinstance(widget, QPushButton):
                    rect = rect.adjusted(3, 3, -3, -3)  # the text, not the border or focus ring
                found.append((f"{kind} {widget.text()[:30]!r}", _in(window, widget, rect), widget))
        elif isinstance(widget, QLineEdit):
            if widget.text() or widget.placeholderText():
                rect = widget.rect().adjusted(3, 3, -3, -3)
                if isinstance(widget.parent(), QAbstractSpinBox):
                    rect = widget.rect()
                label = widget.text() or widget.placeholderText()
                found.append((f"{kind} {label[:30]!r}", _in(window, widget, rect), widget))
        elif isinstance(widget, QComboBox) and not widget.isEditable():
            rect = widget.rect().adjusted(3, 3, -3, -3)
            found.append((f"{kind} {widget.currentText()[:30]!r}", _in(window, widget, rect), widget))
        elif isinstance(widget, (QPlainTextEdit, QTextEdit)):
            text = widget.toPlainText() or widget.placeholderText()
            if text.strip():
                viewport = widget.viewport()
                found.append((f"{kind} {text[:30]!r}", _in(window, viewport, viewport.rect()), widget))
        elif isinstance(widget, QHeaderView):
            model = widget.model()
            if model is None or widget.isHidden():
                continue
            for section in range(widget.count()):
                if widget.isSectionHidden(section):
                    continue
                pos = widget.sectionViewportPosition(section)
                size = widget.sectionSize(section)
                if size < 4:
                    continue
                rect = (
                    QRect(pos, 0, size, widget.height())
                    if widget.orientation().name == "Horizontal"
                    else QRect(0, pos, widget.width(), size)
                )
                rect = rect.intersected(widget.viewport().rect()).adjusted(2, 2, -2, -2)
                if rect.width() > 4:
                    found.append((f"header {section}", _in(window, widget.viewport(), rect), widget))
        elif isinstance(widget, QAbstractItemView) and not isinstance(widget, QHeaderView):
            model = widget.model()
            if model is None:
                continue
            viewport = widget.viewport()
            columns = 1 if isinstance(widget, QListView) else model.columnCount(widget.rootIndex())
            for row in range(min(model.rowCount(widget.rootIndex()), 40)):
                for column in range(min(columns, 8)):
                    index = model.index(row, column, widget.rootIndex())
                    text = str(index.data() or "")
                    rect = widget.visualRect(index).intersected(viewport.rect())
                    if text.strip() and rect.width() > 6 and rect.height() > 6:
                        inside = _in(window, viewport, rect.adjusted(1, 1, -1, -1))
                        found.append((f"{kind} cell {text[:24]!r}", inside, widget))
    return found


def menu_items(menu: QMenu) -> list[tuple[str, QRect, QWidget]]:
    """(a name, the rectangle, the menu) for every enabled text action a shown ``menu`` has."""
    return [
        (f"menu item {action.text()[:30]!r}", menu.actionGeometry(action), menu)
        for action in menu.actions()
        if action.isEnabled() and action.isVisible() and not action.isSeparator() and action.text()
    ]


def control_edges(window: QWidget) -> list[tuple[str, QRect, QWidget]]:
    """(a name, the rectangle of its edge, the widget) for every enabled control in ``window``
    whose edge shows what can be clicked or typed into: buttons, fields, spin boxes, combo
    boxes, text areas, and the box of each check box or radio button."""
    found: list[tuple[str, QRect, QWidget]] = []
    for widget in window.findChildren(QWidget):
        if not _showing(widget, window) or not widget.isEnabled():
            continue
        kind = type(widget).__name__
        if isinstance(widget, (QCheckBox, QRadioButton)):
            rect = _indicator_rect(widget, contents=False)
            found.append((f"{kind} box {widget.text()[:24]!r}", _in(window, widget, rect), widget))
        elif isinstance(widget, QPushButton):
            found.append((f"{kind} {widget.text()[:24]!r}", _in(window, widget), widget))
        elif isinstance(widget, (QAbstractSpinBox, QComboBox, QPlainTextEdit)) or (
            isinstance(widget, QLineEdit) and not isinstance(widget.parent(), (QAbstractSpinBox, QComboBox))
        ):
            found.append((kind, _in(window, widget), widget))
    return found
