"""A terminal emulator for programs' output: pyte's VT parser driving a screen of this module's
own. Central's SSH command-line reader (central/protocols/ssh/lines.py) and the desktop app's
replay viewer (app/services/terminal.py) both use it.

Who may import it: central and app code only. It needs pyte, which is in the `server` and
`desktop` extras but not in the base dependencies that the local proxy and the `watchgate` CLI
run on, so nothing on those code paths (localproxy/cli.py and the modules it imports) imports
it; tests/localproxy/test_terminal.py checks that. It lives in localproxy because that is the
one package both central and app may import (tests/test_layout.py).

The screen. pyte's own screen keeps every cell as a named tuple in a dict per row and draws one
character at a time, about 1 MB/s. Here a row (`Row`) is a list of characters with a list of
pens beside it (how each cell is drawn: colours and attributes), edited with list slices so
that the loops run in C. Rows sit in a list: a scroll is a pop and an insert, and a row object
moves with its text (the line reader anchors the command being typed to one). Cursor movement,
margins and tab stops stay pyte's. The screen follows xterm where pyte does not:

- the alternate screen (modes 47, 1047, 1049), a blank screen of its own;
- the pending-wrap state: text that reaches the right margin leaves the cursor there until
  the next character, and any cursor move cancels it; each row carries a *wrapped* flag,
  xterm's, set when text ran past its right margin into the next row, cleared by erasing to
  its end; `lost_above` says that the top row continues a row that left the screen;
- one cursor save slot (DECSC), restored again by each DECRC;
- erasing, inserting and scrolling with the current background colour (xterm's bce);
- DEC line drawing (``ESC ( 0``) also in UTF-8, and G1 as ASCII until designated, so that a
  stray SO (shift out, from `cat` of a binary file) does not switch it on;
- DECALN (``ESC # 8``) fills the screen with E's and homes the cursor;
- modes that change nothing a reader of the screen sees (132 columns, reverse video, mouse
  reporting...) are not kept.

Pens cost a second list per row, so a screen made with ``colours=False`` keeps none: colour
sequences are ignored and rows have no pens (`Row.pens` is None). The line reader needs only
text; the replay viewer paints colours.

The parser. pyte's parser is a generator fed one character at a time outside plain text, and
most of a coloured terminal's output is escape sequences. `Stream` matches complete CSI
sequences of the usual form and the one-character controls itself and dispatches them as pyte
would (but for a few that pyte gets wrong, see `_TOKEN`), and passes the rest to pyte's
parser. pyte calls screen methods with whatever parameters a sequence carries, and
``ESC [ 1 ; 2 A`` raises TypeError, which would close the parser generator and abort `feed`:
such a sequence is dropped, as a terminal drops it. `Stream` relies on three private members of
`pyte.Stream` (`_send_to_parser`, `_taking_plain_text`, `_initialize_parser`); the tests
exercise each, so a pyte release that changes them fails the tests rather than the sessions.
Control strings (OSC, DCS, APC, PM, SOS: titles, clipboard, sixels) never reach pyte: pyte
accumulates them without limit and draws DCS payloads as text. `StringFilter` drops them from
the text first, across feeds.

Untrusted output. Nothing here raises on any text. Every operation that works on whole rows
(erasing, scrolling, inserting, switching screens, resetting, resizing) charges its cost to the
screen's `credit` before doing it, in units of about 0.1 us of CPU: `ROW_COST` per row plus one
per `CELLS_PER_UNIT` cells (characters and pens). When the credit runs out, `Overload` is
raised from inside the parser's feed and `Stream.feed_bounded` stops there. The owner decides
how output earns credit: the line reader grants a budget per window of output, the replay
viewer some per character. Drawing text is charged by the owner too (one unit a character is
about right). All of it is deterministic, so a screen restored from a snapshot goes on exactly
as the one that took it.
"""

from __future__ import annotations

import copy
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from sys import intern
from typing import Any

import pyte
from pyte import charsets
from pyte import modes as mo
from pyte.screens import Cursor, wcwidth

# Cost of making, blanking, shifting or scrolling a row, in units of about 0.1 us: a fixed part
# (the Python around it) and a C loop over its cells.
ROW_COST = 8
CELLS_PER_UNIT = 64
UNLIMITED = 1 << 62  # a screen's credit when its owner does not bound its work
# A sequence still open at the end of a feed after this many characters is no real one (xterm
# takes at most 30 parameters; control strings never reach the parser): it is abandoned, so
# that the parser starts clean, since pyte accumulates a sequence's parameters without limit.
MAX_SEQUENCE = 128
_MAX_CELL = 4  # characters in one cell: a character and up to three combining marks

# How a cell is drawn: fg, bg ("#rrggbb" or None), bold, italic, underline, reverse.
Pen = tuple[str | None, str | None, bool, bool, bool, bool]
DEFAULT_PEN: Pen = (None, None, False, False, False, False)


# -- colours -------------------------------------------------------------------------------------

# xterm's default 16 colours, then its 6x6x6 cube and 24 greys.
_ANSI = (
    "#000000", "#cd0000", "#00cd00", "#cdcd00", "#0000ee", "#cd00cd", "#00cdcd", "#e5e5e5",
    "#7f7f7f", "#ff0000", "#00ff00", "#ffff00", "#5c5cff", "#ff00ff", "#00ffff", "#ffffff",
)  # fmt: skip
_LEVELS = (0, 95, 135, 175, 215, 255)
PALETTE: tuple[str, ...] = (
    _ANSI
    + tuple(
        f"#{_LEVELS[i // 36]:02x}{_LEVELS[i // 6 % 6]:02x}{_LEVELS[i % 6]:02x}" for i in range(216)
    )
    + tuple(f"#{8 + 10 * i:02x}{8 + 10 * i:02x}{8 + 10 * i:02x}" for i in range(24))
)

# SGR attributes: (pen index, value) for the simple ones.
_SGR_FLAGS = {
    1: (2, True), 22: (2, False),
    3: (3, True), 23: (3, False),
    4: (4, True), 24: (4, False),
    7: (5, True), 27: (5, False),
}  # fmt: skip


def _extended_colour(params: list[int]) -> str | None:
    """The colour of a 38/48 sequence's remaining parameters (reversed: pop() is next),
    consuming them; None when malformed (the terminal keeps its colour then)."""
    kind = params.pop() if params else None
    if kind == 5 and params:
        n = params.pop()
        return PALETTE[n] if 0 <= n < 256 else None
    if kind == 2 and len(params) >= 3:
        r, g, b = params.pop(), params.pop(), params.pop()
        return f"#{min(r, 255):02x}{min(g, 255):02x}{min(b, 255):02x}"
    return None


# -- the screen ----------------------------------------------------------------------------------


class Overload(Exception):
    """The screen's credit is spent: raised from inside pyte's feed to stop it."""


class Row(list[str]):
    """One screen row: the list of its cells, a character each ("" in the second cell of a wide
    character); `pens`, a pen per cell (None on a screen without colours); whether text ran
    past the right margin into the next row (`wrapped`, autowrap), and whether it was drawn on
    since its text was last collected (`dirty`, see `Screen.on_line`).

    The row is the list of characters itself, not an object holding one: a screen makes rows
    by the thousand when output scrolls, and each object the garbage collector tracks makes
    its collections come more often."""

    __slots__ = ("dirty", "pens", "wrapped")

    pens: list[Pen] | None
    wrapped: bool
    dirty: bool

    def blank(self, start: int, stop: int, pen: Pen) -> None:
        if start < stop:
            self[start:stop] = [" "] * (stop - start)
            if self.pens is not None:
                self.pens[start:stop] = [pen] * (stop - start)

    def text(self, start: int = 0, stop: int | None = None) -> str:
        """The row's characters from column `start` to `stop` (as wide on screen as those
        columns, shorter as a string where it holds wide characters)."""
        # A slice is a plain list, which join takes as it is (a subclass, it iterates over).
        return "".join(self[start:stop])


def _row(cells: Iterable[str], pens: list[Pen] | None, wrapped: bool = False) -> Row:
    # Not Row.__init__: list's own is a C call, and rows are made by the thousand.
    row = Row(cells)
    row.pens, row.wrapped, row.dirty = pens, wrapped, False
    return row


_RowState = tuple[tuple[str, ...], tuple[Pen, ...] | None, bool]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a screen needs to go on exactly as the one that took it (immutable)."""

    cols: int
    rows: int
    lines: tuple[_RowState, ...]
    lost_above: bool
    # The normal screen while on the alternate one: its rows, lost_above, saved cursor.
    main: tuple[tuple[_RowState, ...], bool, Any] | None
    cursor: Any
    savepoints: tuple[Any, ...]
    mode: frozenset[int]
    margins: Any
    tabstops: frozenset[int]
    charsets: tuple[int, str, str]
    credit: int


_NARROW_RUNS = re.compile("([\x20-\x7e]+)")
# Private modes that switch to the alternate screen (xterm): 1049 also saves the cursor and
# clears, 1047 clears, 47 is the original form.
ALT_MODES = frozenset({47, 1047, 1049})
# The modes kept (pyte's numbering: private modes shifted left by 5). The others change nothing
# a reader of the screen sees (mouse reporting, bracketed paste), would change the size the
# owner gives (132 columns) or cost a full-screen pass each (reverse video).
_KEPT_MODES = frozenset({mo.LNM, mo.IRM, mo.DECTCEM, mo.DECOM, mo.DECAWM})


class Screen(pyte.Screen):
    """pyte's screen with rows of characters and pens; see the module's docstring.

    `rows` are the rows shown (the alternate screen's while `alt`); `credit` bounds the work
    (see the module's docstring); `on_line`, if set, is called with the text of each line of
    output as it is completed: when the cursor leaves it for the next line, when it scrolls
    away, or when it is cleared with the screen (rows wrapped together make one line).
    """

    def __init__(self, columns: int, lines: int, *, colours: bool = True) -> None:
        self.rows: list[Row] = []
        self.alt = False
        self.lost_above = False  # the top row continues a row that left the screen
        self.credit = UNLIMITED
        self.colours = colours
        self.on_line: Callable[[str], None] | None = None
        self._row_cost = self._cost_of_row(columns)
        self._spaces = [" "] * columns  # a blank row's cells, copied to make new rows
        # The normal screen's rows, lost_above and saved cursor (1049), while on the alternate.
        self._main: tuple[list[Row], bool, Cursor | None] | None = None
        self._stops: list[int] | None = None  # the tab stops sorted, until they change
        self._pending = ""  # a collected line's text so far, while it wraps on
        self._sgr_cache: dict[tuple[Pen, str], Pen] = {}
        super().__init__(columns, lines)

    @property
    def pen(self) -> Pen:
        """The pen text is drawn with. pyte keeps it in the cursor (its `attrs`), so that
        saving the cursor (DECSC) saves it too."""
        return self.cursor.attrs  # type: ignore[return-value]

    @pen.setter
    def pen(self, pen: Pen) -> None:
        self.cursor.attrs = pen  # type: ignore[assignment]

    # -- credit -------------------------------------------------------------------------------

    def _charge(self, units: int) -> None:
        """Spend credit on work about to be done; past zero, stop feeding instead."""
        self.credit -= units
        if self.credit < 0:
            raise Overload

    def _charge_rows(self, rows: int) -> None:
        self._charge(rows * self._row_cost)

    def _cost_of_row(self, columns: int) -> int:
        """Work units for making, blanking or editing a row: pens are a second list."""
        return ROW_COST + columns * (2 if self.colours else 1) // CELLS_PER_UNIT

    # -- whole-screen state -------------------------------------------------------------------

    def reset(self) -> None:
        self._charge_rows(self.lines)
        self._collect_all()
        super().reset()
        self.savepoints.clear()
        # xterm's G1 is ASCII until designated; pyte's is line drawing.
        self.g1_charset = charsets.LAT1_MAP
        self.pen = DEFAULT_PEN
        if self._main is not None:  # a full reset returns to the normal screen, blank
            self.rows = self._main[0]
            self._main = None
        self.alt = False
        self.lost_above = False
        if len(self.rows) == self.lines:
            for row in self.rows:
                row.blank(0, self.columns, DEFAULT_PEN)
                row.wrapped = row.dirty = False
        else:
            self.rows = [self._new_row() for _ in range(self.lines)]
        self._stops = None

    def _blank_pen(self) -> Pen:
        """What erased cells look like: the current background colour (xterm's bce)."""
        bg = self.pen[1]
        return DEFAULT_PEN if bg is None else (None, bg, False, False, False, False)

    def _new_row(self, pen: Pen = DEFAULT_PEN) -> Row:
        return _row(self._spaces, [pen] * self.columns if self.colours else None)

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        lines = lines or self.lines
        columns = columns or self.columns
        if (lines, columns) == (self.lines, self.columns):
            return
        self._row_cost = self._cost_of_row(columns)
        # Always done, whatever the credit: the owner has the new size.
        self.credit -= lines * self._row_cost * (2 if self._main is not None else 1)
        # Like xterm: rows leave from the top only as far as needed to keep the cursor's row.
        drop = max(0, self.cursor.y + 1 - lines)
        self.cursor.y -= drop
        if drop:
            self.lost_above = self.rows[drop - 1].wrapped
        self.rows = _fit(self.rows, lines, columns, drop, self.colours)
        if self._main is not None:
            rows, lost, cursor = self._main
            self._main = (_fit(rows, lines, columns, 0, self.colours), lost, cursor)
        if columns > self.columns:
            self.tabstops.update(range((self.columns + 7) // 8 * 8, columns, 8))
        else:
            self.tabstops = {stop for stop in self.tabstops if stop < columns}
        self._stops = None
        self.lines, self.columns = lines, columns
        self._spaces = [" "] * columns
        self.margins = None
        self.cursor.x = min(self.cursor.x, columns - 1)
        self.cursor.y = min(self.cursor.y, lines - 1)

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        self._modes(True, modes, kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        self._modes(False, modes, kwargs)

    def _modes(self, on: bool, modes: tuple[int, ...], kwargs: dict[str, Any]) -> None:
        private = bool(kwargs.get("private"))
        if private:
            for m in modes:
                if m in ALT_MODES:
                    self.switch_alt(on, cursor=m == 1049)
        kept = [m for m in modes if (m << 5 if private else m) in _KEPT_MODES]
        if kept:
            (super().set_mode if on else super().reset_mode)(*kept, **kwargs)

    def switch_alt(self, on: bool, *, cursor: bool = False) -> None:
        """Enter or leave the alternate screen (a blank screen of its own, as xterm's);
        `cursor`: save the cursor on entering and restore it on leaving (1049)."""
        if on == self.alt:
            return
        self._charge_rows(self.lines)
        self._collect_all()
        if on:
            self._main = (self.rows, self.lost_above, copy.copy(self.cursor) if cursor else None)
            self.rows = [self._new_row() for _ in range(self.lines)]
            self.lost_above = False
        else:
            assert self._main is not None
            self.rows, self.lost_above, saved = self._main
            self._main = None
            if saved is not None:
                self.cursor = saved
                self.ensure_hbounds()
                self.ensure_vbounds()
        self.alt = on

    # -- text ---------------------------------------------------------------------------------

    def draw(self, data: str) -> None:
        if not data:
            return
        table = self.g1_charset if self.charset else self.g0_charset
        if table is not charsets.LAT1_MAP:
            data = data.translate(table)
        if data.isascii() and data.isprintable():
            # The common case, inline: a run that fits on the cursor's row.
            cursor = self.cursor
            x = cursor.x
            end = x + len(data)
            if end <= self.columns and mo.IRM not in self.mode:
                row = self.rows[cursor.y]
                if (x and row[x] == "") or (end < self.columns and row[end] == ""):
                    self._clear_wide_halves(row, x, end)
                row[x:end] = data
                if row.pens is not None:
                    row.pens[x:end] = [self.pen] * len(data)
                row.dirty = True
                cursor.x = end
            else:
                self._draw_narrow(data)
            return
        for run in _NARROW_RUNS.split(data):
            if run.isascii() and run.isprintable():
                self._draw_narrow(run)
            elif run:
                self._draw_each(run)

    def _draw_each(self, data: str) -> None:
        cursor, pen, columns, mode = self.cursor, self.pen, self.columns, self.mode
        for char in data:
            width = wcwidth(char)
            if width < 0:
                continue  # a control character pyte passes as text: a terminal shows nothing
            if width == 0:
                self._combine(char)
                continue
            # At the margin, or a wide character that does not fit: xterm goes on below.
            if cursor.x + width > columns and cursor.x > 0 and not self._wrap():
                cursor.x = max(0, columns - width)
            if width > columns:
                continue  # a wide character on a one-column screen
            row = self.rows[cursor.y]
            x = cursor.x
            end = x + width
            if mo.IRM in mode:
                self._insert_blanks(row, x, width)
            if (x and row[x] == "") or (end < columns and row[end] == ""):
                self._clear_wide_halves(row, x, end)
            row[x] = intern(char)  # one object per distinct character, not per cell
            pens = row.pens
            if pens is not None:
                pens[x] = pen
            if width == 2:
                row[x + 1] = ""
                if pens is not None:
                    pens[x + 1] = pen
            row.dirty = True
            cursor.x = end

    def _draw_narrow(self, data: str) -> None:
        cursor, columns, pen = self.cursor, self.columns, self.pen
        start, end = 0, len(data)
        while start < end:
            if cursor.x >= columns and not self._wrap():
                # No autowrap: each further character overwrites the last column.
                row = self.rows[cursor.y]
                self._clear_wide_halves(row, columns - 1, columns)
                row[columns - 1] = data[end - 1]
                if row.pens is not None:
                    row.pens[columns - 1] = pen
                row.dirty = True
                return
            row = self.rows[cursor.y]
            x = cursor.x
            count = min(end - start, columns - x)
            if mo.IRM in self.mode:
                self._insert_blanks(row, x, count)
            self._clear_wide_halves(row, x, x + count)
            row[x : x + count] = data[start : start + count]
            if row.pens is not None:
                row.pens[x : x + count] = [pen] * count
            row.dirty = True
            cursor.x = x + count
            start += count

    def _wrap(self) -> bool:
        """More text at the right margin: with autowrap, flag this row as wrapped and go on at
        the start of the next one; without, say so (the caller overwrites the margin)."""
        if mo.DECAWM not in self.mode:
            return False
        self.rows[self.cursor.y].wrapped = True
        self.cursor.x = 0
        self.index()
        return True

    def _combine(self, char: str) -> None:
        """A zero-width character joins the one left of the cursor (a few to a cell)."""
        row = self.rows[self.cursor.y]
        x = min(self.cursor.x, self.columns) - 1
        if x > 0 and row[x] == "":
            x -= 1  # the second half of a wide character: join the character itself
        if x >= 0 and len(row[x]) < _MAX_CELL:
            row[x] = intern(row[x] + char)

    def _clear_wide_halves(self, row: Row, start: int, stop: int) -> None:
        # Overwriting half of a wide character blanks its other half, as terminals do.
        if 0 < start < self.columns and row[start] == "":
            row[start - 1] = " "
        if stop < self.columns and row[stop] == "":
            row[stop] = " "

    def _insert_blanks(self, row: Row, x: int, count: int) -> None:
        self._charge_rows(1)
        count = min(count, self.columns - x)
        row[x:x] = [" "] * count
        del row[self.columns :]
        if row.pens is not None:
            row.pens[x:x] = [self._blank_pen()] * count
            del row.pens[self.columns :]

    # -- cursor: xterm leaves the pending-wrap state on any move (pyte keeps x == columns) -----

    def _leave_margin(self) -> None:
        if self.cursor.x >= self.columns:
            self.cursor.x = self.columns - 1

    def cursor_up(self, count: int | None = None) -> None:
        super().cursor_up(count)
        self._leave_margin()

    def cursor_down(self, count: int | None = None) -> None:
        super().cursor_down(count)
        self._leave_margin()

    def cursor_to_line(self, line: int | None = None) -> None:
        # pyte asserts that origin mode comes with margins; a terminal just ignores that.
        self.cursor.y = (line or 1) - 1
        if mo.DECOM in self.mode and self.margins is not None:
            self.cursor.y += self.margins.top
        self.ensure_vbounds()
        self._leave_margin()

    def report_device_status(self, mode: int, *args: Any, **kwargs: Any) -> None:
        pass  # nobody is answered here; pyte's version asserts on origin mode

    def save_cursor(self) -> None:
        super().save_cursor()
        del self.savepoints[:-1]  # xterm has one slot; pyte's stack grows with every ESC 7

    def restore_cursor(self) -> None:
        saved = self.savepoints[-1] if self.savepoints else None
        super().restore_cursor()
        if saved is not None:  # xterm restores the same position again on the next ESC 8
            self.savepoints.append(saved._replace(cursor=copy.copy(saved.cursor)))

    def tab(self) -> None:
        if self._stops is None:
            self._charge(len(self.tabstops))
            self._stops = sorted(self.tabstops)
        i = bisect_right(self._stops, self.cursor.x)
        self.cursor.x = self._stops[i] if i < len(self._stops) else self.columns - 1
        self._leave_margin()

    def set_tab_stop(self) -> None:
        super().set_tab_stop()
        self._stops = None

    def clear_tab_stop(self, how: int = 0) -> None:
        super().clear_tab_stop(how)
        self._stops = None

    # -- colours ------------------------------------------------------------------------------

    def sgr(self, numbers: str) -> None:
        """``CSI numbers m``, through a cache: output repeats a few colour changes."""
        if not self.colours:
            return
        key = (self.pen, numbers)
        pen = self._sgr_cache.get(key)
        if pen is None:
            if len(self._sgr_cache) > 4096:
                self._sgr_cache.clear()
            params = (min(int(n), 9999) if n else 0 for n in numbers.split(";"))
            self.select_graphic_rendition(*params)
            pen = self._sgr_cache[key] = self.pen
        self.pen = pen

    def select_graphic_rendition(self, *attrs: int, **kwargs: Any) -> None:
        if not self.colours or kwargs.get("private"):
            return  # ``CSI ? ... m`` is xterm's query of key modifier options, not colours
        pen: list[Any] = list(self.pen)
        params = list(reversed(attrs)) or [0]
        while params:
            a = params.pop()
            if a == 0:
                pen = list(DEFAULT_PEN)
            elif a in _SGR_FLAGS:
                index, value = _SGR_FLAGS[a]
                pen[index] = value
            elif 30 <= a <= 37:
                pen[0] = PALETTE[a - 30]
            elif 90 <= a <= 97:
                pen[0] = PALETTE[a - 82]
            elif 40 <= a <= 47:
                pen[1] = PALETTE[a - 40]
            elif 100 <= a <= 107:
                pen[1] = PALETTE[a - 92]
            elif a == 39:
                pen[0] = None
            elif a == 49:
                pen[1] = None
            elif a in (38, 48):
                colour = _extended_colour(params)
                if colour is not None:
                    pen[0 if a == 38 else 1] = colour
        new: Pen = (pen[0], pen[1], pen[2], pen[3], pen[4], pen[5])
        self.pen = DEFAULT_PEN if new == DEFAULT_PEN else new

    # -- scrolling ----------------------------------------------------------------------------

    def index(self) -> None:
        row = self.rows[self.cursor.y]
        if row.dirty and self.on_line is not None:
            self._collect(row)
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            self._charge_rows(1)
            gone = self.rows.pop(top)
            if gone.dirty and self.on_line is not None:
                self._collect(gone)
            self.rows.insert(bottom, self._new_row(self._blank_pen()))
            if top == 0:
                self.lost_above = gone.wrapped
        elif self.cursor.y < self.lines - 1:
            self.cursor.y += 1  # also below the scroll region (pyte moves the cursor up there)
        self._leave_margin()

    def reverse_index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == top:
            self._charge_rows(1)
            self.rows.pop(bottom)
            self.rows.insert(top, self._new_row(self._blank_pen()))
            if top == 0:
                self.lost_above = False
        elif self.cursor.y > 0:
            self.cursor.y -= 1
        self._leave_margin()

    def insert_lines(self, count: int | None = None) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        y = self.cursor.y
        if top <= y <= bottom:
            count = min(count or 1, bottom - y + 1)
            self._charge_rows(count)
            del self.rows[bottom - count + 1 : bottom + 1]
            pen = self._blank_pen()
            self.rows[y:y] = [self._new_row(pen) for _ in range(count)]
            if y == 0:
                self.lost_above = False
            self.cursor.x = 0

    def delete_lines(self, count: int | None = None) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        y = self.cursor.y
        if top <= y <= bottom:
            count = min(count or 1, bottom - y + 1)
            self._charge_rows(count)
            last_gone = self.rows[y + count - 1]
            del self.rows[y : y + count]
            pen = self._blank_pen()
            self.rows[bottom - count + 1 : bottom - count + 1] = [
                self._new_row(pen) for _ in range(count)
            ]
            if y == 0:
                self.lost_above = last_gone.wrapped
            self.cursor.x = 0

    # -- erasing ------------------------------------------------------------------------------

    def insert_characters(self, count: int | None = None) -> None:
        x = min(self.cursor.x, self.columns - 1)
        self._insert_blanks(self.rows[self.cursor.y], x, count or 1)

    def delete_characters(self, count: int | None = None) -> None:
        self._charge_rows(1)
        row = self.rows[self.cursor.y]
        x = min(self.cursor.x, self.columns - 1)
        count = min(count or 1, self.columns - x)
        del row[x : x + count]
        row.extend([" "] * count)
        if row.pens is not None:
            del row.pens[x : x + count]
            row.pens.extend([self._blank_pen()] * count)

    def erase_characters(self, count: int | None = None) -> None:
        self._charge_rows(1)
        x = min(self.cursor.x, self.columns - 1)
        self.rows[self.cursor.y].blank(x, min(x + (count or 1), self.columns), self._blank_pen())

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        self._charge_rows(1)
        row = self.rows[self.cursor.y]
        x = min(self.cursor.x, self.columns - 1)
        pen = self._blank_pen()
        if how == 0:
            row.blank(x, self.columns, pen)
            row.wrapped = False
        elif how == 1:
            row.blank(0, x + 1, pen)
            if x == self.columns - 1:
                row.wrapped = False  # all of it blank: nothing goes on into the next row
        elif how == 2:
            row.blank(0, self.columns, pen)
            row.wrapped = False

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        y = self.cursor.y
        if how == 0:
            span = range(y + 1, self.lines)
        elif how == 1:
            span = range(y)
        elif how == 2:
            span = range(self.lines)
        else:
            return  # 3 erases the scrollback only (xterm); others are not defined
        self._charge_rows(len(span))
        if how == 2:
            self._collect_all()  # a cleared screen's text was shown: it counts as output
        pen = self._blank_pen()
        for r in span:
            # Blanked in place: a row object stays where it is (the line reader's anchor).
            row = self.rows[r]
            row.blank(0, self.columns, pen)
            row.wrapped = row.dirty = False
        if how != 0:
            self.lost_above = False
        if how != 2:
            self.erase_in_line(how)

    def alignment_display(self) -> None:
        # DECALN, the screen alignment test: margins reset, the cursor home, the screen filled
        # with E's in the default pen (xterm).
        self._charge_rows(self.lines)
        self.margins = None
        self.cursor.x = self.cursor.y = 0
        cols = self.columns
        self.rows = [
            _row(["E"] * cols, [DEFAULT_PEN] * cols if self.colours else None) for _ in self.rows
        ]
        self.lost_above = False

    # -- collecting lines of output -----------------------------------------------------------

    def _collect(self, row: Row) -> None:
        """Hand a row's text to `on_line`, joined with the rows it wrapped on from."""
        row.dirty = False
        text = self._pending + row.text()
        if row.wrapped:
            self._pending = text
            return
        self._pending = ""
        self._emit(text)

    def _emit(self, text: str) -> None:
        text = text.rstrip()
        if text and self.on_line is not None:
            self.on_line(text)

    def collect_all(self) -> None:
        """Hand `on_line` every row drawn on and not collected yet (the end of the output)."""
        self._collect_all()

    def _collect_all(self) -> None:
        """The screen is about to be cleared or switched: collect what was drawn on it."""
        if self.on_line is None:
            return
        for row in self.rows:
            if row.dirty:
                self._collect(row)
        pending, self._pending = self._pending, ""
        self._emit(pending)

    # -- snapshots ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The screen's state (not the parser's: take it between sequences)."""
        main = None
        if self._main is not None:
            rows, lost, saved = self._main
            main = (_row_states(rows), lost, copy.copy(saved))
        return Snapshot(
            cols=self.columns,
            rows=self.lines,
            lines=_row_states(self.rows),
            lost_above=self.lost_above,
            main=main,
            cursor=copy.copy(self.cursor),
            savepoints=tuple(sp._replace(cursor=copy.copy(sp.cursor)) for sp in self.savepoints),
            mode=frozenset(self.mode),
            margins=self.margins,
            tabstops=frozenset(self.tabstops),
            charsets=(self.charset, self.g0_charset, self.g1_charset),
            credit=self.credit,
        )

    def restore(self, snap: Snapshot) -> None:
        self.columns, self.lines = snap.cols, snap.rows
        self._row_cost = self._cost_of_row(snap.cols)
        self._spaces = [" "] * snap.cols
        self.rows = _rows_from(snap.lines)
        self.lost_above = snap.lost_above
        self._main = None
        if snap.main is not None:
            rows, lost, saved = snap.main
            self._main = (_rows_from(rows), lost, copy.copy(saved))
        self.alt = snap.main is not None
        self.cursor = copy.copy(snap.cursor)
        self.savepoints = [sp._replace(cursor=copy.copy(sp.cursor)) for sp in snap.savepoints]
        self.mode = set(snap.mode)
        self.margins = snap.margins
        self.tabstops = set(snap.tabstops)
        self._stops = None
        self.charset, self.g0_charset, self.g1_charset = snap.charsets
        self.credit = snap.credit
        self._pending = ""


def _fit(rows: list[Row], lines: int, columns: int, drop: int, colours: bool) -> list[Row]:
    """`rows` cut or padded to `lines` x `columns` (dropping `drop` rows from the top)."""
    del rows[:drop]
    del rows[lines:]
    for row in rows:
        have = len(row)
        if columns < have:
            if row[columns] == "":
                row[columns - 1] = " "  # a wide character cut in half
            del row[columns:]
            if row.pens is not None:
                del row.pens[columns:]
        else:
            row.extend([" "] * (columns - have))
            if row.pens is not None:
                row.pens.extend([DEFAULT_PEN] * (columns - have))
    spaces = [" "] * columns
    rows.extend(
        _row(spaces, [DEFAULT_PEN] * columns if colours else None) for _ in range(lines - len(rows))
    )
    return rows


def _row_states(rows: list[Row]) -> tuple[_RowState, ...]:
    return tuple((tuple(r[:]), None if r.pens is None else tuple(r.pens), r.wrapped) for r in rows)


def _rows_from(states: tuple[_RowState, ...]) -> list[Row]:
    return [
        _row(chars, None if pens is None else list(pens), wrapped)
        for chars, pens, wrapped in states
    ]


# -- the parser ----------------------------------------------------------------------------------


class Stream(pyte.Stream):
    """pyte's parser, faster on the common sequences and made to shrug off the others; see
    the module's docstring. Feed it text without control strings (`StringFilter`).

    `errors` counts the sequences dropped because the screen could not take them (the line
    reader charges them: each cost pyte a parser restart)."""

    errors = 0

    def __init__(self, screen: Screen) -> None:
        super().__init__(screen)
        self.use_utf8 = False  # so that pyte passes ESC ( 0 (line drawing) on
        self.sequence = 0  # characters fed since the parser left text, inside a sequence

    def attach(self, screen: pyte.Screen) -> None:
        assert isinstance(screen, Screen)
        super().attach(screen)
        self._screen = screen
        self._csi_handlers = {code: getattr(screen, name) for code, name in self.csi.items()}
        self._basic_handlers = {code: getattr(screen, name) for code, name in self.basic.items()}

    def feed_bounded(self, text: str) -> bool:
        """Feed `text`; False when the screen's credit ran out within it (the rest of it is
        dropped and the parser starts clean). A sequence left open for longer than any real
        one is abandoned."""
        try:
            self.feed(text)
        except Overload:
            self.restart()
            return False
        if self._taking_plain_text:
            self.sequence = 0
            return True
        last = max(text.rfind("\x1b"), text.rfind("\x9b"))
        self.sequence = len(text) - last if last >= 0 else self.sequence + len(text)
        if self.sequence > MAX_SEQUENCE:
            self.restart()
        return True

    def feed(self, data: str) -> None:
        # pyte's own loop, with the fast paths; the parser generator is left waiting for the
        # start of a sequence, where a directly dispatched one leaves it too.
        screen = self._screen
        draw, match = screen.draw, _TOKEN.match
        basic, csi = self._basic_handlers, self._csi_handlers
        send = self._send_to_parser
        taking_plain_text = self._taking_plain_text
        length, offset = len(data), 0
        while offset < length:
            if taking_plain_text:
                m = match(data, offset)
                if m is None:
                    taking_plain_text = False
                    continue
                offset = m.end()
                last = m.lastindex
                if last == 1:  # text
                    draw(m[1])
                elif last == 6:  # a control character
                    basic[m[6]]()
                elif m[4] or (m[2] and m[2] != "?"):
                    pass  # see _TOKEN: nothing the screen shows
                elif m[5] == "m" and not m[2]:  # colours and attributes: most sequences
                    screen.sgr(m[3])
                elif (handler := csi.get(m[5])) is not None:  # pyte ignores the others
                    params = tuple(min(int(n), 9999) if n else 0 for n in m[3].split(";"))
                    self._dispatch(handler, params, bool(m[2]))
            else:
                taking_plain_text = send(data[offset : offset + 1])
                offset += 1
        self._taking_plain_text = taking_plain_text

    def _dispatch(self, handler: Any, params: tuple[int, ...], private: bool) -> None:
        """A screen method for a sequence; one that fails on its parameters is dropped."""
        try:
            if private:
                handler(*params, private=True)
            else:
                handler(*params)
        except Overload:
            raise
        except Exception:
            self.errors += 1

    def _send_to_parser(self, data: str) -> bool | None:
        try:
            return super()._send_to_parser(data)
        except Overload:
            raise
        except Exception:
            self.errors += 1
            return True  # pyte has already started a fresh parser: back to text

    @property
    def in_sequence(self) -> bool:
        return not self._taking_plain_text

    def restart(self) -> None:
        """Abandon any sequence under way: the parser starts clean."""
        self._initialize_parser()
        self.sequence = 0


# What is dispatched without pyte's parser: (1) plain text, as pyte's own pattern has it;
# a CSI sequence of (2) a prefix, (3) parameters, (4) an intermediate, (5) a final character,
# where longer parameter lists go to pyte's parser; (6) one of pyte's one-character controls.
# pyte skips the prefixes other than "?" and mistakes some intermediates for final characters:
# it takes xterm's key modifier setting ``CSI > 4 ; 2 m`` (sent by vim) for colours (underline)
# and draws the "p" of a soft reset (``CSI ! p``, sent by `reset`). Those sequences change
# nothing xterm shows, and here they are dropped.
_TOKEN = re.compile(
    f"({pyte.Stream._text_pattern.pattern})"
    "|(?:\x1b\\[|\x9b)([?<=>]?)([0-9;]{0,32})([!\"']?)([@-~])"
    f"|([{re.escape(''.join(pyte.Stream.basic))}])"
)

# Control strings: OSC, DCS, SOS, PM, APC, 7-bit and C1 forms. They end with ST (ESC \ or
# 0x9c), BEL (xterm, for OSC), CAN or SUB, or any ESC (which starts the next sequence).
_STRING_START = re.compile("\x1b[]P_^X]|[\x90\x98\x9d\x9e\x9f]")
_STRING_END = re.compile("[\x07\x18\x1a\x1b\x9c]")
_C1_STRINGS = re.compile("[\x90\x98\x9d\x9e\x9f]")


class StringFilter:
    """Drops control strings (OSC, DCS, APC, PM, SOS) from decoded text, across feeds.

    `pending` says that it holds state between feeds: inside a string, or an ESC held back
    at the end of the last feed to see whether a backslash (ending a string) follows."""

    def __init__(self) -> None:
        self.inside = False
        self._held = False

    @property
    def pending(self) -> bool:
        return self.inside or self._held

    def __call__(self, text: str) -> str:
        if self._held:
            text, self._held = "\x1b" + text, False
        if not self.inside and "\x1b" not in text and not _has_c1(text):
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            if self.inside:
                m = _STRING_END.search(text, i)
                if m is None:
                    return "".join(out)
                i = m.end()
                if m.group() == "\x1b":
                    if i == n:
                        self._held = True  # ESC \ may be split: see what follows
                        return "".join(out)
                    if text[i] == "\\":
                        i += 1
                    else:
                        i -= 1  # any other ESC ends the string and starts a sequence
                self.inside = False
            else:
                m = _STRING_START.search(text, i)
                if m is None:
                    rest = text[i:]
                    if rest.endswith("\x1b"):
                        rest, self._held = rest[:-1], True
                    out.append(rest)
                    break
                out.append(text[i : m.start()])
                i = m.end()
                self.inside = True
        return "".join(out)


def _has_c1(text: str) -> bool:
    return not text.isascii() and _C1_STRINGS.search(text) is not None
