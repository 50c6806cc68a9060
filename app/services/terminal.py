"""The replay viewer's terminal: the shared emulator (`localproxy.terminal`, pyte's parser
driving a screen of characters and pens) fed with a recording's output and resizes, and what
the viewer reads off it: frames (text, colour runs, cursor) and snapshots to seek from.

Recorded output is untrusted. The emulator never raises on any text, and its work is bounded
by the size of what it is fed: each character of output earns `CREDIT_PER_CHAR` units of the
screen's credit (about 0.1 us of CPU each), and every operation that touches whole rows
(erasing, scrolling, inserting, resizing) spends some. When the credit is spent, the rest of
that output event is dropped. Ordinary output never comes close; a recording made of screen
clears is replayed in time linear in its size instead of hanging the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass

from localproxy.terminal import DEFAULT_PEN, Pen, Screen, Snapshot, Stream, StringFilter

__all__ = [
    "CREDIT_MAX",
    "CREDIT_PER_CHAR",
    "MAX_COLS",
    "MAX_ROWS",
    "Emulator",
    "Frame",
    "Snapshot",
    "Style",
    "clamp_cols",
    "clamp_rows",
]

MAX_COLS = 500
MAX_ROWS = 200

# Credit, in the screen's units of about 0.1 us of CPU: a character of output pays for
# blanking or scrolling one or two rows (of 500 or 80 columns), and a screen may save up for
# about 0.2 s of such work: what one output event may spend at most.
CREDIT_PER_CHAR = 16
CREDIT_MAX = 1 << 21


@dataclass(frozen=True, slots=True)
class Style:
    """One run of cells with the same look, other than the default."""

    start: int  # column range [start, end)
    end: int
    fg: str | None  # "#rrggbb", or None for the default colours
    bg: str | None
    bold: bool
    italic: bool
    underline: bool
    reverse: bool


@dataclass(frozen=True, slots=True)
class Frame:
    """What the terminal shows at one time.

    `cells[r]` is row r as exactly `cols` cells: a character (with any combining marks) per
    cell, a wide character in its first cell and "" in the second. `lines[r]` is the same row
    as text, ``"".join(cells[r])``: as wide as `cols` cells on screen, shorter as a string when
    it holds wide characters. `styles[r]` are the runs of row r that are not in the default
    look, by cell column. `cursor` is (col, row), None while hidden.
    """

    at: float
    cols: int
    rows: int
    lines: tuple[str, ...]
    styles: tuple[tuple[Style, ...], ...]
    cursor: tuple[int, int] | None
    cells: tuple[tuple[str, ...], ...] = ()

    def text(self) -> str:
        """The screen's text, trailing blanks of each line and trailing blank lines stripped."""
        return "\n".join(line.rstrip() for line in self.lines).rstrip("\n")


class Emulator:
    """A screen fed with output and resizes, in recording order (not thread-safe: one owner).

    `clean` says whether the emulator sits between sequences, where a snapshot captures all of
    its state (pyte's parser is a generator, which cannot be copied mid-sequence).
    """

    def __init__(self, cols: int, rows: int) -> None:
        self.screen = Screen(clamp_cols(cols), clamp_rows(rows))
        self.screen.credit = CREDIT_MAX
        self._stream = Stream(self.screen)
        self._strings = StringFilter()

    @property
    def clean(self) -> bool:
        return not (self._stream.in_sequence or self._strings.pending)

    def feed(self, text: str) -> None:
        """One output event's text."""
        screen = self.screen
        screen.credit = min(screen.credit + CREDIT_PER_CHAR * len(text), CREDIT_MAX)
        self._stream.feed_bounded(self._strings(text))

    def resize(self, cols: int, rows: int) -> None:
        self.screen.resize(clamp_rows(rows), clamp_cols(cols))

    def snapshot(self) -> Snapshot:
        assert self.clean
        return self.screen.snapshot()

    def restore(self, snap: Snapshot) -> None:
        self.screen.restore(snap)
        self._stream.restart()
        self._strings = StringFilter()

    def frame(self, at: float) -> Frame:
        screen = self.screen
        cols = screen.columns
        lines, styles, cells = [], [], []
        for row in screen.rows:
            chars = tuple(row[:])  # a slice is a plain list: copied in C, not iterated
            cells.append(chars)
            lines.append("".join(chars))
            styles.append(() if row.pens is None else _styles(row.pens, cols))
        cursor = None if screen.cursor.hidden else (min(screen.cursor.x, cols - 1), screen.cursor.y)
        return Frame(at, cols, screen.lines, tuple(lines), tuple(styles), cursor, tuple(cells))


def _styles(pens: list[Pen], cols: int) -> tuple[Style, ...]:
    """The runs of a row's pens that are not the default."""
    if pens.count(DEFAULT_PEN) == cols:
        return ()
    runs = []
    start = 0
    for x in range(1, cols + 1):
        if x < cols and pens[x] == pens[start]:
            continue
        pen = pens[start]
        if pen != DEFAULT_PEN:
            runs.append(Style(start, x, pen[0], pen[1], pen[2], pen[3], pen[4], pen[5]))
        start = x
    return tuple(runs)


def clamp_cols(cols: int) -> int:
    return max(1, min(int(cols), MAX_COLS))


def clamp_rows(rows: int) -> int:
    return max(1, min(int(rows), MAX_ROWS))
