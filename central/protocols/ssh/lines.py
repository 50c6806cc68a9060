"""The command line a user typed in an interactive shell, read off an emulated screen.

Shell command rules (issue 6, point 4) judge what the user is about to run, but in a shell with
a PTY that is not the bytes they typed: line editing, history recall and tab completion happen
in the shell, and only the screen shows the result. So central keeps a terminal emulator
(pyte's VT parser driving a text-only screen model) fed with everything the target prints, and
when the user presses Enter it reads the command line off the screen, from where the command
started to the end of its last wrapped row, with the prompt cut off.

This is an audit aid, not a boundary. The target decides what the screen shows: a shell
function, an alias, a script, a prompt that mimics another, output that switches to the
alternate screen (where nothing is read), or text drawn to look like a harmless command all
defeat it, and so does a terminal whose geometry differs from what the client announced.
Resources that need a boundary restrict users to exec requests, whose command is exact.

How the reader finds the command:

- **Where it starts.** The first keystroke after an Enter (or session start) marks the anchor:
  the screen row the cursor was on, its column, and the text left of it on that row (the last
  row of the prompt, colours already interpreted). The anchor is the row *object*, so it moves
  when the screen scrolls or lines are inserted above it and is gone when it scrolls off.
- **Where it ends.** Rows carry a flag set when text ran past the right margin into the next
  row (autowrap), as xterm's line-wrap flag; the command continues down the screen while the
  flag is set. Erasing to the end of a row clears it.
- **Redrawn prompts.** When the anchor no longer holds (the shell listed completions and drew
  the prompt again below them, Ctrl-L cleared the screen, the anchor scrolled away), the prompt
  text is looked for at the start of the wrapped rows around the cursor. Bash's incremental
  search prompt, which replaces the shell prompt, is recognised too.
- **Right prompts.** Text that stood apart right of the cursor at the first keystroke (zsh's
  RPROMPT) is left out while it stays where it was.
- **Aborted lines.** Ctrl-C drops the anchor: the line it was on is abandoned and the next
  keystroke marks a new one. Ctrl-D, Ctrl-Z and Ctrl-\\ do not mark an anchor on their own (they
  are signals to a running program), only edits when a line is under way; nor does a keystroke
  typed on the alternate screen once that program has left it (the `q` that quits less).

Bounded cost. pyte parses at about 1 MB/s and `cat` of a large file pours far more. So pyte's
parser drives a text-only screen of this module's own (about 8 MB/s), and output is emulated
only up to a budget per *window* (from one point where the screen is needed - the first
keystroke of a line, an Enter - to the next). Every operation's work is charged before it is
done (a character, an escape sequence, a row erased or scrolled) and the feed stops where the
budget ends. Past it the reader keeps only the last `_TAIL_BYTES` bytes and follows the
alternate-screen switches with a regex over the raw bytes; at the next point where the screen
is needed it emulates the last screenful of lines of that tail, from a newline so the parser
starts clean, and marks the command being typed, if any, as not exact. CPU per window is thus
bounded whatever the bytes (bench/ssh_lines.py measures the worst kinds), and memory by the
screen - `MAX_COLS` x `MAX_ROWS` cells, twice with the alternate screen - and the tail.
Control strings (OSC, DCS, APC, PM, SOS) are dropped before pyte sees them: pyte would
accumulate them without limit and draws DCS payloads as text.

Nothing here raises on any input: malformed sequences are ignored as a terminal ignores them,
and an unexpected error inside the emulator is logged, counted in `faults`, and answered by
starting over with a blank screen.

What it cannot see, besides the evasions above:

- Typeahead. Keys typed while the previous command still runs are echoed by the terminal
  driver where the output stands; the shell then prints its prompt after them and echoes them
  again, so the line reads ``ls$ ls``.
- Text a shell draws right of the cursor as a suggestion (fish, zsh-autosuggestions) is read
  as part of the line: the reader sees more than will run, never less.
- Continuation lines (PS2 after an open quote, a multi-line paste) are read one Enter at a
  time, each without the rest.
- The emulation trusts the size the client announced and this module's idea of character
  widths; a terminal that differs wraps elsewhere.

pyte's parser is used through three private members of `pyte.Stream` (`_send_to_parser`,
`_taking_plain_text`, `_initialize_parser`); the tests exercise each, so a pyte release that
changes them fails the tests rather than the sessions.
"""

from __future__ import annotations

import codecs
import copy
import enum
import logging
import re
from bisect import bisect_right
from dataclasses import dataclass
from sys import intern
from typing import Any

import pyte
from pyte import modes as mo
from pyte.screens import Cursor, wcwidth

log = logging.getLogger(__name__)

MAX_COLS = 1000
MAX_ROWS = 500

# The emulator's cost is counted in units of roughly 0.1 us of CPU (one printable character):
# a character is 1 (5 in text that is not all ASCII), an escape sequence 24 more, a sequence
# pyte fails on 128, making or editing a row 8 plus 1 per 64 columns. A window may spend this
# many units before the reader stops emulating and keeps only the tail (the last
# `_TAIL_BYTES` bytes).
_WINDOW_BUDGET = 64 * 1024
_TAIL_BYTES = 16 * 1024
_ESCAPE_COST = 24
_ERROR_COST = 128
_ROW_COST = 8
_CELLS_PER_UNIT = 64
_WIDE_COST = 4
# Text is fed to pyte in pieces of this many characters, so that the budget is checked often
# and an escape sequence that never ends is noticed (pyte accumulates its parameters).
_PIECE = 256
_MAX_SEQUENCE = 256

# Keystrokes that abandon the line being typed (SIGINT: the shell draws a fresh prompt).
_ABORT = 0x03
# Keystrokes that are signals or end-of-file to a running program: they mark no anchor.
_NOT_EDITS = frozenset(b"\x04\x1a\x1c")

_NARROW_RUNS = re.compile("([\x20-\x7e]+)")
_ISEARCH = re.compile(r"\((?:failed )?(?:reverse-)?i-search\)`.*?': ")

# Private modes that switch to the alternate screen (xterm): 1049 also saves the cursor and
# clears, 1047 clears, 47 is the original form.
_ALT_MODES = frozenset({47, 1047, 1049})
_ALT_SWITCH = rb"\x1b\[\?(?:[0-9;]{0,32};)?(?:1049|1047|47)(?:;[0-9;]{0,32})?([hl])"
_FIRST_SWITCH = re.compile(_ALT_SWITCH)
_LAST_SWITCH = re.compile(b"(?s).*" + _ALT_SWITCH)  # the greedy prefix makes it the last one
_SCAN_CARRY = 72

# Modes the text screen keeps; the rest (reverse video, 132 columns, ...) change nothing a
# reader needs or cost a full-screen pass per occurrence.
_KEPT_MODES = frozenset({mo.LNM, mo.IRM, mo.DECTCEM, mo.DECOM, mo.DECAWM})

# Control strings: OSC, DCS, SOS, PM, APC, 7-bit and C1 forms. They end with ST (ESC \ or
# 0x9c), BEL (xterm, for OSC), CAN or SUB, or any ESC (which starts the next sequence).
_STRING_START = re.compile("\x1b[]P_^X]|[\x90\x98\x9d\x9e\x9f]")
_STRING_END = re.compile("[\x07\x18\x1a\x1b\x9c]")


class LineKind(enum.Enum):
    """What an Enter found."""

    COMMAND = "command"  # a command line was read (possibly empty: a blank line, a password)
    NOTHING_TYPED = "nothing_typed"  # no keystroke since the previous Enter
    FULL_SCREEN = "full_screen"  # a program is on the alternate screen (vim, less, top)


@dataclass(frozen=True, slots=True)
class CommandLine:
    """The result of one Enter.

    `text` is the command line as the screen shows it, prompt cut off, trailing blanks
    stripped; None unless `kind` is COMMAND. `exact` is False when the reader had to guess
    where the command starts: its start scrolled off the screen, output was too large to
    emulate while it was typed, the terminal width changed, or the prompt could not be found
    again after a redraw. A policy that must fail closed treats an inexact line as unreadable.
    """

    kind: LineKind
    text: str | None = None
    exact: bool = True


class _Row(list[str]):
    """One screen row: a character per column (a wide character's second cell holds ""), and
    whether the text ran past the right margin into the next row. Edits are list slices, so
    their loops run in C."""

    __slots__ = ("wrapped",)

    def __init__(self, cells: list[str]) -> None:
        super().__init__(cells)
        self.wrapped = False

    def blank(self, start: int, stop: int) -> None:
        if start < stop:
            self[start:stop] = [" "] * (stop - start)

    def text(self, start: int, stop: int) -> str:
        return "".join(self[start:stop])


class _Overload(Exception):
    """The window's budget is spent: raised from inside pyte's `feed` to stop it."""


class _TextScreen(pyte.Screen):
    """pyte's screen cut down to what reading a command line needs.

    Characters without colours or attributes, rows as objects in a list (a scroll is a list
    pop and insert, and an anchor is a row object that moves with its text), xterm's wrap flag
    per row, the alternate screen (pyte has none), and xterm's handling of the right margin.
    Every operation charges its work to `work` before doing it and raises `_Overload` past
    `work_limit`, which stops pyte's feed. pyte's own cell buffer is not used.
    """

    def __init__(self, columns: int, lines: int) -> None:
        self.rows: list[_Row] = []
        self.alt = False
        # The top row continues a row that scrolled off the screen.
        self.lost_above = False
        self.work = 0
        self.work_limit = 1 << 62  # the reader lowers it to what is left of its budget
        self._spaces = [" "] * columns  # a blank row, copied to make new ones
        self._main: tuple[list[_Row], bool, Cursor | None] | None = None
        self._spare: list[_Row] | None = None  # the alternate screen's rows, kept for reuse
        self._stops: list[int] | None = None
        super().__init__(columns, lines)

    # -- whole-screen state ------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        self.savepoints.clear()
        if self._main is not None:  # a full reset returns to the normal screen
            self.rows = self._main[0]
            self._main = None
        self.alt = False
        self.rows = self._blank(self.rows)
        self.lost_above = False
        self._stops = None

    def _blank(self, rows: list[_Row] | None) -> list[_Row]:
        """`rows` blanked if they fit the screen, else new rows."""
        self._charge(self.lines * self._row_cost)
        if rows is None or len(rows) != self.lines or len(rows[0]) != self.columns:
            return [_Row(self._spaces) for _ in range(self.lines)]
        for row in rows:
            row.blank(0, self.columns)
            row.wrapped = False
        return rows

    @property
    def _row_cost(self) -> int:
        """Work units for making or blanking a row: a C loop over its cells."""
        return _ROW_COST + self.columns // _CELLS_PER_UNIT

    def _new_row(self) -> _Row:
        self._charge(self._row_cost)
        return _Row(self._spaces)

    def _charge(self, units: int) -> None:
        """Count work about to be done; past the limit, stop feeding instead."""
        self.work += units
        if self.work > self.work_limit:
            raise _Overload

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        lines = lines or self.lines
        columns = columns or self.columns
        if (lines, columns) == (self.lines, self.columns):
            return
        # Like xterm: rows leave from the top only as far as needed to keep the cursor's row.
        drop = max(0, self.cursor.y + 1 - lines)
        self.cursor.y -= drop
        self.rows = self._fit(self.rows, lines, columns, drop)
        if self._main is not None:
            rows, lost, cursor = self._main
            self._main = (self._fit(rows, lines, columns, 0), lost, cursor)
        if columns > self.columns:
            self.tabstops.update(range((self.columns + 7) // 8 * 8, columns, 8))
        else:
            self.tabstops = {stop for stop in self.tabstops if stop < columns}
        self._stops = None
        self._spare = None
        self.lines, self.columns = lines, columns
        self._spaces = [" "] * columns
        self.margins = None
        self.cursor.x = min(self.cursor.x, columns - 1)
        self.cursor.y = min(self.cursor.y, lines - 1)

    def _fit(self, rows: list[_Row], lines: int, columns: int, drop: int) -> list[_Row]:
        if drop:
            self.lost_above = rows[drop - 1].wrapped
            del rows[:drop]
        del rows[lines:]
        for row in rows:
            if columns < len(row):
                del row[columns:]
            else:
                row.extend([" "] * (columns - len(row)))
        spaces = [" "] * columns
        rows.extend(_Row(spaces) for _ in range(lines - len(rows)))
        self.work += lines * (_ROW_COST + columns // _CELLS_PER_UNIT)
        return rows

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        self._modes(True, modes, kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        self._modes(False, modes, kwargs)

    def _modes(self, on: bool, modes: tuple[int, ...], kwargs: dict[str, Any]) -> None:
        private = bool(kwargs.get("private"))
        if private:
            for m in modes:
                if m in _ALT_MODES:
                    self.switch_alt(on, cursor=m == 1049)
        kept = [m for m in modes if (m << 5 if private else m) in _KEPT_MODES]
        if kept:
            (super().set_mode if on else super().reset_mode)(*kept, **kwargs)

    def switch_alt(self, on: bool, *, cursor: bool = False) -> None:
        """Enter or leave the alternate screen (a blank screen of its own, as xterm's)."""
        if on == self.alt:
            return
        if on:
            rows = self._blank(self._spare)
            self._main = (self.rows, self.lost_above, copy.copy(self.cursor) if cursor else None)
            self.rows = rows
            self.lost_above = False
        else:
            assert self._main is not None
            self._spare = self.rows
            self.rows, self.lost_above, saved = self._main
            self._main = None
            if saved is not None:
                self.cursor = saved
                self.ensure_hbounds()
                self.ensure_vbounds()
        self.alt = on

    # -- text --------------------------------------------------------------------------------

    def draw(self, data: str) -> None:
        if data.isascii() and data.isprintable():
            self._draw_narrow(data)
            return
        for run in _NARROW_RUNS.split(data):
            if run.isascii() and run.isprintable():
                self._draw_narrow(run)
            else:
                self._draw_each(run)

    def _draw_each(self, data: str) -> None:
        cursor = self.cursor
        for char in data:
            width = wcwidth(char)
            if width < 0:
                continue  # a control character pyte passes as text: a terminal shows nothing
            if width == 0:
                self._combine(char)
                continue
            # At the margin, or a wide character that does not fit: xterm goes on below.
            if cursor.x + width > self.columns and cursor.x > 0 and not self._wrap():
                cursor.x = max(0, self.columns - width)
            row = self.rows[cursor.y]
            x = cursor.x
            if mo.IRM in self.mode:
                self._insert_blanks(row, x, width)
            self._clear_wide_halves(row, x, x + width)
            row[x] = intern(char)  # one object per distinct character, not one per cell
            if width == 2 and x + 1 < self.columns:
                row[x + 1] = ""
            cursor.x = min(x + width, self.columns)

    def _draw_narrow(self, data: str) -> None:
        cursor, columns = self.cursor, self.columns
        start, end = 0, len(data)
        while start < end:
            if cursor.x >= columns and not self._wrap():
                # No autowrap: each further character overwrites the last column.
                row = self.rows[cursor.y]
                self._clear_wide_halves(row, columns - 1, columns)
                row[columns - 1] = data[end - 1]
                return
            row = self.rows[cursor.y]
            x = cursor.x
            count = min(end - start, columns - x)
            if mo.IRM in self.mode:
                self._insert_blanks(row, x, count)
            self._clear_wide_halves(row, x, x + count)
            row[x : x + count] = data[start : start + count]
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
        """A zero-width character joins the one left of the cursor (up to four to a cell)."""
        row = self.rows[self.cursor.y]
        x = min(self.cursor.x, self.columns) - 1
        if x > 0 and row[x] == "":
            x -= 1  # the second half of a wide character: join the character itself
        if x >= 0 and len(row[x]) < 4:
            row[x] = intern(row[x] + char)

    def _clear_wide_halves(self, row: _Row, start: int, stop: int) -> None:
        # Overwriting half of a wide character blanks its other half, as terminals do.
        if 0 < start < self.columns and row[start] == "":
            row[start - 1] = " "
        if stop < self.columns and row[stop] == "":
            row[stop] = " "

    def _insert_blanks(self, row: _Row, x: int, count: int) -> None:
        self._charge(self._row_cost)
        count = min(count, self.columns - x)
        row[x:x] = [" "] * count
        del row[self.columns :]

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
        pass  # the user's own terminal answers; pyte's version asserts on origin mode

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

    # -- scrolling ---------------------------------------------------------------------------

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom:
            new = self._new_row()
            gone = self.rows.pop(top)
            self.rows.insert(bottom, new)
            if top == 0:
                self.lost_above = gone.wrapped
        elif self.cursor.y < self.lines - 1:
            self.cursor.y += 1  # also below the scroll region (pyte moves the cursor up there)
        self._leave_margin()

    def reverse_index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == top:
            new = self._new_row()
            self.rows.pop(bottom)
            self.rows.insert(top, new)
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
            self._charge(count * self._row_cost)
            del self.rows[bottom - count + 1 : bottom + 1]
            self.rows[y:y] = [_Row(self._spaces) for _ in range(count)]
            if y == 0:
                self.lost_above = False
            self.cursor.x = 0

    def delete_lines(self, count: int | None = None) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        y = self.cursor.y
        if top <= y <= bottom:
            count = min(count or 1, bottom - y + 1)
            self._charge(count * self._row_cost)
            gone = self.rows[y : y + count]
            del self.rows[y : y + count]
            new = [_Row(self._spaces) for _ in range(count)]
            self.rows[bottom - count + 1 : bottom - count + 1] = new
            if y == 0:
                self.lost_above = gone[-1].wrapped
            self.cursor.x = 0

    # -- erasing ---------------------------------------------------------------------------

    def insert_characters(self, count: int | None = None) -> None:
        x = min(self.cursor.x, self.columns - 1)
        self._insert_blanks(self.rows[self.cursor.y], x, count or 1)

    def delete_characters(self, count: int | None = None) -> None:
        self._charge(self._row_cost)
        row = self.rows[self.cursor.y]
        x = min(self.cursor.x, self.columns - 1)
        count = min(count or 1, self.columns - x)
        del row[x : x + count]
        row.extend([" "] * count)

    def erase_characters(self, count: int | None = None) -> None:
        self._charge(self._row_cost)
        x = min(self.cursor.x, self.columns - 1)
        self.rows[self.cursor.y].blank(x, min(x + (count or 1), self.columns))

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        self._charge(self._row_cost)
        row = self.rows[self.cursor.y]
        x = min(self.cursor.x, self.columns - 1)
        if how == 0:
            row.blank(x, self.columns)
            row.wrapped = False
        elif how == 1:
            row.blank(0, x + 1)
            if x == self.columns - 1:
                row.wrapped = False
        elif how == 2:
            row.blank(0, self.columns)
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
        self._charge(len(span) * self._row_cost)
        for r in span:
            row = self.rows[r]
            row.blank(0, self.columns)
            row.wrapped = False
        if how != 0:
            self.lost_above = False
        if how != 2:
            self.erase_in_line(how)

    def alignment_display(self) -> None:
        pass  # DECALN fills the screen with E's: a test pattern, and a full-screen pass each

    def select_graphic_rendition(self, *attrs: int, **kwargs: Any) -> None:
        pass  # colours are not text


class _Stream(pyte.Stream):
    """pyte's parser, made to shrug off sequences it cannot dispatch.

    pyte calls screen methods with whatever parameters a sequence carries, so ``ESC [ 1 ; 2 A``
    raises TypeError, and an error closes the parser generator and aborts `feed`. Here the
    sequence is dropped and parsing goes on, as a terminal does.
    """

    errors = 0

    def _send_to_parser(self, data: str) -> bool | None:
        try:
            return super()._send_to_parser(data)
        except _Overload:
            raise
        except Exception:
            self.errors += 1
            return True  # pyte has already started a fresh parser: back to text

    @property
    def in_sequence(self) -> bool:
        return not self._taking_plain_text

    def restart(self) -> None:
        self._initialize_parser()


class _StringFilter:
    """Drops control strings (OSC, DCS, APC, PM, SOS) from decoded text, across chunks."""

    def __init__(self) -> None:
        self.inside = False
        self._carry = ""

    def __call__(self, text: str) -> str:
        if self._carry:
            text, self._carry = self._carry + text, ""
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
                        self._carry = "\x1b"  # ESC \ may be split; keep the ESC for next time
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
                        rest, self._carry = rest[:-1], "\x1b"
                    out.append(rest)
                    break
                out.append(text[i : m.start()])
                i = m.end()
                self.inside = True
        return "".join(out)


def _first_switch(data: bytes) -> bool | None:
    """The first alternate-screen switch in raw output: True on, False off, None if none."""
    m = _FIRST_SWITCH.search(data)
    return None if m is None else m[1] == b"h"


def _last_switch(data: bytes, skip: int = 0) -> bool | None:
    """The last switch, unless it ends within the first `skip` bytes (already seen). Both
    scans run in the regex engine: a flood costs no Python work per switch."""
    m = _LAST_SWITCH.match(data)
    return None if m is None or m.end() <= skip else m[1] == b"h"


@dataclass(slots=True)
class _Anchor:
    """Where the command being typed starts: a row object, a column, and the row's text left
    of it (the prompt's last row) to find the prompt again after a redraw; and text that stood
    right of it, apart (zsh's right prompt), which is no part of the command."""

    row: _Row
    x: int
    prefix: str
    alt: bool  # taken on the alternate screen (the keystroke that quits vim or less)
    right: int  # where the right prompt starts (the row's width if there is none)
    right_text: str
    exact: bool = True


def _clamp(value: int, high: int) -> int:
    return max(1, min(int(value), high))


class LineReader:
    """Sans-io: what the target printed and what the user typed, in; command lines, out.

    Call `output` with every byte the target writes to the terminal, `typed` with keystrokes
    other than Enter, `resize` on window changes, and `enter` (or `enter_line`) when the user
    presses Enter - after the echo of what was typed has arrived, before the Enter is forwarded.
    """

    def __init__(self, cols: int = 80, rows: int = 24) -> None:
        self.faults = 0
        self._cols, self._rows = _clamp(cols, MAX_COLS), _clamp(rows, MAX_ROWS)
        self._start()

    def _start(self) -> None:
        self._screen = _TextScreen(self._cols, self._rows)
        self._stream = _Stream(self._screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._strings = _StringFilter()
        self._sequence = 0  # characters fed since the parser left text, when inside a sequence
        self._spent = 0  # budget used in this window (characters fed + screen work)
        self._tail: bytearray | None = None  # while skipping a flood: the latest output
        self._tail_alt = False  # while skipping: the alternate screen as the raw bytes say
        self._carry = b""  # the last bytes of output, for switches split across chunks
        self._anchor: _Anchor | None = None
        self._skipped = 0

    # -- public API --------------------------------------------------------------------------

    @property
    def full_screen(self) -> bool:
        """A program has the alternate screen (``?1049h``, ``?1047h`` or ``?47h``)."""
        return self._tail_alt if self._tail is not None else self._screen.alt

    @property
    def skipped_bytes(self) -> int:
        """Output bytes never emulated because they came in floods (statistics)."""
        return self._skipped

    def resize(self, cols: int, rows: int) -> None:
        """The user's terminal changed size (clamped to 1..MAX_COLS x 1..MAX_ROWS)."""
        cols, rows = _clamp(cols, MAX_COLS), _clamp(rows, MAX_ROWS)
        if (cols, rows) == (self._cols, self._rows):
            return
        self._guard(self._resize, cols, rows)

    def output(self, data: bytes) -> None:
        """Bytes the target wrote to the terminal (UTF-8; incremental decoding, invalid bytes
        replaced)."""
        if data:
            self._guard(self._output, bytes(data))

    def typed(self, data: bytes) -> None:
        """Keystrokes the user sent that are NOT Enter (forwarded already). The first
        keystroke after a prompt marks where the command starts on the screen."""
        if data:
            self._guard(self._typed, bytes(data))

    def enter(self) -> str | None:
        """The user pressed Enter: the command line on the screen now, with the prompt cut off
        and trailing blanks stripped; None when no command can be read (a full-screen program
        is on the alternate screen, or nothing was typed). Resets for the next line."""
        return self.enter_line().text

    def enter_line(self) -> CommandLine:
        """As `enter`, with why there is no text and whether the start was found exactly."""
        anchor, self._anchor = self._anchor, None
        if self.full_screen:
            return CommandLine(LineKind.FULL_SCREEN)
        if anchor is None or anchor.alt:
            return CommandLine(LineKind.NOTHING_TYPED)  # alt: only typed in a program now gone
        line = self._guard(self._read, anchor)
        return line if line is not None else CommandLine(LineKind.COMMAND, "", exact=False)

    # -- internals ---------------------------------------------------------------------------

    def _guard(self, fn: Any, *args: Any) -> Any:
        """Run one step; an error inside means a bug or a pyte surprise: log it, start over
        with a blank screen (the session must go on), and count it."""
        try:
            return fn(*args)
        except Exception:
            self.faults += 1
            log.exception("terminal line reader failed; starting over with a blank screen")
            self._start()
            return None

    def _resize(self, cols: int, rows: int) -> None:
        if cols != self._cols and self._anchor is not None:
            self._anchor.exact = False  # rows that wrapped at the old width no longer do
        self._cols, self._rows = cols, rows
        # Output still in the tail was written for the old size; it is fed (cut to the new
        # number of rows) at the next point the screen is needed, like any flood.
        self._screen.resize(rows, cols)

    def _output(self, data: bytes) -> None:
        if self._tail is not None:
            self._keep(data)
            return
        text = self._strings(self._decoder.decode(data))
        for start in range(0, len(text), _PIECE):
            if self._spent <= _WINDOW_BUDGET and self._feed(text[start : start + _PIECE]):
                continue
            # A flood: from here on only the tail is kept. The switch scan goes on from what
            # the emulator has seen, so a switch split at this point is not missed.
            seen = text[max(0, start - _SCAN_CARRY) : start].encode("utf-8", "replace")
            self._carry = (self._carry + seen)[-_SCAN_CARRY:]
            self._tail, self._tail_alt = bytearray(), self._screen.alt
            self._keep(text[start:].encode("utf-8", "replace"))
            return
        self._carry = (self._carry + data[-_SCAN_CARRY:])[-_SCAN_CARRY:]

    def _feed(self, piece: str) -> bool:
        """Emulate a piece of output; False if the budget ran out within it (the rest of the
        piece is lost: the parser restarts clean at the next point the screen is needed)."""
        screen, stream = self._screen, self._stream
        screen.work = stream.errors = 0
        screen.work_limit = _WINDOW_BUDGET - self._spent
        try:
            stream.feed(piece)
        except _Overload:
            self._spent = _WINDOW_BUDGET + 1
            return False
        finally:
            screen.work_limit = 1 << 62
        escapes = piece.count("\x1b") + piece.count("\x9b")
        self._spent += (
            len(piece) + _ESCAPE_COST * escapes + _ERROR_COST * stream.errors + screen.work
        )
        if not piece.isascii():  # drawn one character at a time
            self._spent += _WIDE_COST * (len(piece) - len(piece.encode("ascii", "ignore")))
        if self._stream.in_sequence:
            # pyte accumulates a sequence's parameters without limit: cut off one that runs
            # on for longer than any real one (control strings never get here).
            last = max(piece.rfind("\x1b"), piece.rfind("\x9b"))
            self._sequence = len(piece) - last if last >= 0 else self._sequence + len(piece)
            if self._sequence > _MAX_SEQUENCE:
                self._stream.restart()
                self._sequence = 0
        else:
            self._sequence = 0
        return True

    def _keep(self, data: bytes) -> None:
        """Skipping a flood: keep the tail, follow the alternate-screen switches."""
        assert self._tail is not None
        switch = _last_switch(self._carry + data, skip=len(self._carry))
        if switch is not None:
            self._tail_alt = switch
        self._carry = (self._carry + data[-_SCAN_CARRY:])[-_SCAN_CARRY:]
        self._skipped += len(data)
        self._tail += data
        if len(self._tail) > 2 * _TAIL_BYTES:
            del self._tail[:-_TAIL_BYTES]

    def _sync(self) -> None:
        """The screen is needed now: emulate the tail of a skipped flood, if any, and open a
        new budget window."""
        self._spent = 0
        if self._tail is None:
            return
        tail, final_alt = bytes(self._tail[-_TAIL_BYTES:]), self._tail_alt
        self._tail = None
        start = _screenful(tail, self._rows)
        tail = tail[start:]
        self._skipped -= len(tail)
        # The switches inside the tail are replayed by the emulator; the state before them is
        # the opposite of the first (a switch is seldom repeated), or else the final state.
        first = _first_switch(tail)
        screen = self._screen
        screen.switch_alt(final_alt if first is None else not first)
        self._decoder.reset()
        self._strings = _StringFilter()
        self._stream.restart()
        self._sequence = 0
        if start:  # the cut was after a newline: go on from the start of a fresh row
            screen.carriage_return()
            screen.index()
        text = self._strings(self._decoder.decode(tail))
        for i in range(0, len(text), _PIECE):
            if self._spent > _WINDOW_BUDGET:
                break  # a tail of costly sequences: what is left of it is not emulated
            self._feed(text[i : i + _PIECE])
        self._spent = 0
        if self._anchor is not None:
            self._anchor.exact = False

    def _typed(self, data: bytes) -> None:
        abort = data.rfind(_ABORT)
        if abort >= 0:
            self._anchor = None
            data = data[abort + 1 :]
        if self._anchor is not None and self._anchor.alt != self.full_screen:
            self._anchor = None  # typed in a program that has since left (or took) the screen
        if self._anchor is None and data and not set(data) <= _NOT_EDITS:
            self._sync()
            screen = self._screen
            cols = screen.columns
            x = min(screen.cursor.x, cols)
            row = screen.rows[screen.cursor.y]
            rest = row.text(x, cols)
            right = cols - len(rest.lstrip(" ")) if rest.startswith(" ") else cols
            self._anchor = _Anchor(row, x, row.text(0, x), screen.alt, right, row.text(right, cols))

    def _read(self, anchor: _Anchor) -> CommandLine:
        self._sync()
        screen = self._screen
        rows, cols, cy = screen.rows, screen.columns, screen.cursor.y
        x = min(anchor.x, cols)

        def line(start: int, x: int, exact: bool) -> CommandLine:
            stop = start
            while rows[stop].wrapped and stop + 1 < len(rows):
                stop += 1
            end = cols
            if stop == start and rows[start].text(anchor.right, cols) == anchor.right_text:
                end = max(x, anchor.right)  # a right prompt still there: not typed
            parts = [rows[start].text(x, end)]
            parts += [rows[r].text(0, cols) for r in range(start + 1, stop + 1)]
            return CommandLine(LineKind.COMMAND, "".join(parts).rstrip(), exact)

        # The anchor still holds: its row is on screen, the cursor is on the rows wrapped on
        # from it, and the prompt is still left of it.
        start = next((i for i, row in enumerate(rows) if row is anchor.row), None)
        if (
            start is not None
            and start <= cy
            and all(rows[r].wrapped for r in range(start, cy))
            and rows[start].text(0, x) == anchor.prefix
        ):
            return line(start, x, anchor.exact)

        # Otherwise the command is on the rows wrapped together around the cursor: find the
        # prompt at the start of one of them.
        top = cy
        while top > 0 and rows[top - 1].wrapped:
            top -= 1
        if anchor.prefix:
            for r in range(top, cy + 1):
                if rows[r].text(0, x) == anchor.prefix:
                    return line(r, x, anchor.exact)
        whole = line(top, 0, exact=False)
        assert whole.text is not None
        search = _ISEARCH.match(whole.text)
        if search:  # bash's incremental search replaced the prompt; Enter runs what it found
            cut_off = top == 0 and screen.lost_above
            text = whole.text[search.end() :]
            return CommandLine(LineKind.COMMAND, text, anchor.exact and not cut_off)
        found = whole.text.find(anchor.prefix) if anchor.prefix else -1
        if found >= 0:  # the prompt redrawn where it wraps differently (a new width)
            text = whole.text[found + len(anchor.prefix) :]
            return CommandLine(LineKind.COMMAND, text, exact=False)
        # A guess: the line around the cursor, less as many columns as the prompt had - unless
        # the line goes on above the screen, where the prompt went.
        return line(top, 0 if top == 0 and screen.lost_above else x, exact=False)


def _screenful(tail: bytes, rows: int) -> int:
    """Where to start emulating a tail: after the newline that begins its last `rows` lines,
    or after its first newline (a clean start for the parser), or at 0 if it has none."""
    pos = len(tail)
    for _ in range(rows):
        pos = tail.rfind(b"\n", 0, pos)
        if pos < 0:
            first = tail.find(b"\n")
            return first + 1 if 0 <= first < len(tail) - 1 else 0
    return pos + 1
