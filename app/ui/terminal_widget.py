"""The terminal screen of a replay: one `Frame` painted cell by cell in a fixed-pitch font.

The emulation is done elsewhere (app/services/replay.py turns the cast into Frames); this
widget only paints what a Frame says: each line's text on a grid of cells, the non-default runs
with their colours, bold, italic, underline and reverse video, and the cursor. Default colours
come from the app's theme, so a replay reads like the rest of the app in light and dark.

Search matches are painted over the text: every occurrence of the query on the screen, and the
one the viewer jumped to in a stronger colour. Whatever the recording contains, no control
character reaches the painter (a cell holding one is painted as a visible stand-in).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QSize, QSizeF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QFontMetricsF,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui import theme
from app.ui.untrusted import printable

if TYPE_CHECKING:
    from app.services.replay import Frame, Style

PAD = 6  # pixels around the grid
MIN_POINTS = 6.0  # the smallest font a large terminal is shrunk to


def terminal_font() -> QFont:
    """The system's fixed-pitch font, at a size that reads well in a replay."""
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.TypeWriter)
    font.setFixedPitch(True)
    font.setPointSizeF(max(font.pointSizeF(), 10.0))
    return font


def _width(ch: str) -> int:
    """Cells a character takes: 2 for wide (CJK, most emoji), 0 for combining marks."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cells(line: str) -> list[tuple[int, str]]:
    """(column, text) of each cell that starts a glyph; combining marks join their base."""
    out: list[tuple[int, str]] = []
    col = 0
    for ch in line:
        w = _width(ch)
        if w == 0 and out:
            c, text = out[-1]
            out[-1] = (c, text + ch)
            continue
        out.append((col, ch))
        col += max(w, 1)
    return out


class TerminalView(QWidget):
    """Paints a `Frame`. `set_frame` shows a new screen; `set_search` marks a query on it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("terminal")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._frame: Frame | None = None
        self._fonts: dict[tuple[bool, bool, bool], QFont] = {}
        self._colors: dict[str, QColor] = {}
        self._query = ""
        self._current: tuple[str, int] | None = None  # (line text, column) jumped to
        self._matches: list[tuple[int, int, int]] = []  # (row, column, length)
        self._current_match: int | None = None
        self.paints = 0  # how many times the screen was painted (tests, diagnostics)
        self._base = terminal_font()
        self._grid_font = QFont(self._base)
        self._cell = _cell_of(self._base)
        self._ascent = QFontMetricsF(self._base).ascent()
        self.setFont(self._base)
        self._fit()
        theme.current().changed.connect(self.update)

    # -- what is shown --------------------------------------------------------------------------

    @property
    def frame(self) -> Frame | None:
        return self._frame

    def set_frame(self, frame: Frame | None) -> None:
        resized = (
            frame is None
            or self._frame is None
            or (frame.cols, frame.rows) != (self._frame.cols, self._frame.rows)
        )
        self._frame = frame
        self._find_matches()
        if resized:
            self._fit()
            self.updateGeometry()
        self.update()

    def text(self) -> str:
        """The screen as text, each line's trailing blanks stripped (what a test reads)."""
        if self._frame is None:
            return ""
        return "\n".join(line.rstrip() for line in self._frame.lines).rstrip("\n")

    def set_search(self, query: str, current: tuple[str, int] | None = None) -> int:
        """Mark every occurrence of `query` (any case) on the screen, and the one on the line
        `current[0]` at column `current[1]` as the current hit. Returns how many are shown."""
        self._query = query
        self._current = current
        self._find_matches()
        self.update()
        return len(self._matches)

    @property
    def matches(self) -> list[tuple[int, int, int]]:
        """(row, column, length) of each marked occurrence."""
        return list(self._matches)

    @property
    def current_match(self) -> tuple[int, int, int] | None:
        return None if self._current_match is None else self._matches[self._current_match]

    def _find_matches(self) -> None:
        self._matches, self._current_match = [], None
        frame, query = self._frame, self._query.lower()
        if frame is None or not query:
            return
        want_line = self._current[0].rstrip().lower() if self._current else None
        for row, line in enumerate(frame.lines):
            lower = line.lower()
            start = lower.find(query)
            while start >= 0:
                col = _column(frame, row, start)
                width = _column(frame, row, start + len(query)) - col
                if (
                    self._current_match is None
                    and want_line is not None
                    and self._current is not None
                    and lower.rstrip() == want_line
                    and start == self._current[1]
                ):
                    self._current_match = len(self._matches)
                self._matches.append((row, col, max(width, 1)))
                start = lower.find(query, start + max(len(query), 1))
        if self._current_match is None and self._current is not None and self._matches:
            # The line scrolled or was redrawn since: the first match on screen stands in.
            self._current_match = 0

    # -- geometry -------------------------------------------------------------------------------
    #
    # The grid is drawn in the base font when it fits, and in a smaller one when the widget is
    # smaller than the recording's terminal (a 200-column session in a laptop window), so the
    # whole screen is always visible; it is centred in the space it has.

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:  # setFont: the new base size
            self._base = QFont(self.font())
            self._fit()
            self.updateGeometry()
        super().changeEvent(event)

    def _grid(self) -> tuple[int, int]:
        return (self._frame.cols, self._frame.rows) if self._frame else (80, 24)

    def _fit(self) -> None:
        cols, rows = self._grid()
        width, height = self.width() - 2 * PAD, self.height() - 2 * PAD
        font = QFont(self._base)
        size = font.pointSizeF()
        while size > MIN_POINTS:
            w, h = _cell_of(font)
            if w * cols <= width and h * rows <= height:
                break
            size = max(MIN_POINTS, size - 0.5)
            font.setPointSizeF(size)
        self._grid_font = font
        self._cell = _cell_of(font)
        self._ascent = QFontMetricsF(font).ascent()
        self._fonts.clear()

    def cell_size(self) -> QSizeF:
        """A cell's size in pixels: the font's own advance, fractions kept, so that a run of
        text drawn at once stays on the grid."""
        return QSizeF(*self._cell)

    def _origin(self) -> QPointF:
        """The grid's top left: centred across, at the top (as a terminal is)."""
        cols, _ = self._grid()
        return QPointF(max(float(PAD), (self.width() - cols * self._cell[0]) / 2), float(PAD))

    def sizeHint(self) -> QSize:
        cols, rows = self._grid()
        w, h = _cell_of(self._base)
        return QSize(math.ceil(cols * w) + 2 * PAD, math.ceil(rows * h) + 2 * PAD)

    def minimumSizeHint(self) -> QSize:
        return QSize(240, 120)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self._fit()
        super().resizeEvent(event)

    def cell_rect(self, col: int, row: int, width: int = 1) -> QRect:
        """The pixels of cell (`col`, `row`), `width` cells wide."""
        (w, h), origin = self._cell, self._origin()
        left, top = origin.x() + col * w, origin.y() + row * h
        return QRect(
            QPoint(round(left), round(top)),
            QPoint(round(left + width * w) - 1, round(top + h) - 1),
        )

    # -- painting -------------------------------------------------------------------------------

    def _font(self, bold: bool, italic: bool, underline: bool) -> QFont:
        key = (bold, italic, underline)
        font = self._fonts.get(key)
        if font is None:
            font = QFont(self._grid_font)
            font.setBold(bold)
            font.setItalic(italic)
            font.setUnderline(underline)
            self._fonts[key] = font
        return font

    def _color(self, spec: str | None, default: QColor) -> QColor:
        if spec is None:
            return default
        color = self._colors.get(spec)
        if color is None:
            color = QColor(spec)
            if not color.isValid():
                color = default  # a malformed colour from the recording: the default
            self._colors[spec] = color
        return color

    def paintEvent(self, event: QPaintEvent) -> None:
        self.paints += 1
        colors = theme.current().colors
        fg, bg = colors.text, colors.code_bg
        p = QPainter(self)
        p.fillRect(self.rect(), bg)
        frame = self._frame
        if frame is None:
            p.end()
            return
        (w, h), origin = self._cell, self._origin()
        first = max(0, int((event.rect().top() - origin.y()) // h))
        last = min(frame.rows - 1, int((event.rect().bottom() - origin.y()) // h))
        plain = self._font(False, False, False)
        for row in range(first, last + 1):
            line = frame.lines[row] if row < len(frame.lines) else ""
            styles = frame.styles[row] if row < len(frame.styles) else ()
            baseline = origin.y() + row * h + self._ascent
            self._paint_matches(p, row, colors)
            row_cells = _row_cells(frame, row)
            for start, end, style in _segments(styles, frame.cols):
                sfg = self._color(style.fg, fg) if style else fg
                sbg = self._color(style.bg, bg) if style else bg
                if style is not None and style.reverse:
                    sfg, sbg = sbg, sfg
                if sbg != bg:
                    p.fillRect(self.cell_rect(start, row, end - start), sbg)
                p.setFont(self._font(style.bold, style.italic, style.underline) if style else plain)
                p.setPen(sfg)
                for col, text in _glyphs(line, row_cells, start, end):
                    p.drawText(QPointF(origin.x() + col * w, baseline), text)
        self._paint_cursor(p, frame, fg, bg)
        p.end()

    def _paint_matches(self, p: QPainter, row: int, colors: theme.Colors) -> None:
        for i, (r, col, length) in enumerate(self._matches):
            if r != row:
                continue
            rect = self.cell_rect(col, row, length)
            if i == self._current_match:
                fill = QColor(colors.accent)
                fill.setAlpha(110)
                p.fillRect(rect, fill)
                p.setPen(QPen(colors.accent, 2))
                p.drawRect(rect.adjusted(0, 0, -1, -1))
            else:
                fill = QColor(colors.warning)
                fill.setAlpha(80)
                p.fillRect(rect, fill)

    def _paint_cursor(self, p: QPainter, frame: Frame, fg: QColor, bg: QColor) -> None:
        if frame.cursor is None:
            return
        col, row = frame.cursor
        if not (0 <= col < frame.cols and 0 <= row < frame.rows):
            return
        rect = self.cell_rect(col, row)
        p.fillRect(rect, fg)  # a block, the character under it in the background colour
        row_cells = _row_cells(frame, row)
        under = row_cells[col] if col < len(row_cells) else ""
        if under.strip():
            p.setPen(bg)
            p.setFont(self._grid_font)
            origin = self._origin()
            at = QPointF(origin.x() + col * self._cell[0], origin.y() + row * self._cell[1])
            p.drawText(at + QPointF(0, self._ascent), printable(under))


def _cell_of(font: QFont) -> tuple[float, float]:
    m = QFontMetricsF(font)
    return max(m.horizontalAdvance("M"), 1.0), max(float(math.ceil(m.height())), 1.0)


def _row_cells(frame: Frame, row: int) -> Sequence[str]:
    """Row `row` as one string per cell ("" in the second cell of a wide character)."""
    if row < len(frame.cells):
        return frame.cells[row]
    line = frame.lines[row] if row < len(frame.lines) else ""
    if line.isascii():
        return tuple(line)
    out: list[str] = []
    for col, text in cells(line):
        out += [""] * (col - len(out))
        out.append(text)
    return out


def _column(frame: Frame, row: int, index: int) -> int:
    """The cell column where character `index` of row `row`'s text starts."""
    line = frame.lines[row]
    if line.isascii():
        return index
    at = 0
    for col, text in enumerate(_row_cells(frame, row)):
        if at >= index:
            return col
        at += len(text)
    return frame.cols


def _segments(styles: Sequence[Style], cols: int) -> Iterator[tuple[int, int, Style | None]]:
    """Cover columns [0, cols) with (start, end, style) runs: the styled ones as the frame
    says (clipped, in order, overlaps cut), the gaps between them unstyled."""
    at = 0
    for style in sorted(styles, key=lambda s: s.start):
        start, end = max(style.start, at), min(style.end, cols)
        if end <= start:
            continue
        if start > at:
            yield at, start, None
        yield start, end, style
        at = end
    if at < cols:
        yield at, cols, None


def _glyphs(line: str, row_cells: Sequence[str], start: int, end: int) -> Iterator[tuple[int, str]]:
    """What to draw for columns [start, end): one run for plain ASCII (a fixed-pitch font
    keeps it on the grid), else glyph by glyph at its own cell."""
    if line.isascii() and line.isprintable():
        text = line[start:end].rstrip()
        if text:
            yield start, text
        return
    for col in range(start, min(end, len(row_cells))):
        text = row_cells[col]
        if text.strip():
            yield col, printable(text)
