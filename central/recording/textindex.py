"""The plain text of a terminal's output, line by line with the time each line started: what
session search looks in; sans-io.

A terminal's output is not text: it is a program for a screen. Colours, titles and cursor
moves are escape sequences; a progress bar rewrites one line after a carriage return; readline
edits the command line with backspaces and erase-in-line. :class:`TextIndexer` runs that
program against a model of one line, which is what a reader would have seen on that line when
it ended, and drops everything that does not put characters on it:

- UTF-8 is decoded incrementally (a character split between two reads is whole, invalid
  bytes are U+FFFD), and escape sequences are parsed by a state machine, so that a sequence
  split between two reads is still removed: CSI (``ESC [`` ... final byte), OSC ended by BEL
  or ST (``ESC \\``), DCS/SOS/PM/APC strings ended by ST, and two- or three-byte ESC
  sequences (charsets, keypad modes, save/restore cursor). C1 control characters (U+0080 to
  U+009F) are dropped, never shown.
- LF (and VT, FF, IND, NEL) ends the line; CR moves to its start, so that what follows
  overwrites it (CR LF ends it as it was); backspace, tab, cursor left/right/column, erase in
  line and delete character act on the line. Moving to another row (cursor up/down/position,
  clearing the screen: full-screen programs) ends the line too, so that rows are not glued.
- A line is cut at :data:`MAX_LINE` characters; the rest starts a new line. Blank lines are
  not kept, and trailing blanks are removed.

Output is bounded by input: moving the cursor past the end of the line pads it with at most one
blank, so no sequence makes more characters than it has bytes, and the lines of a stream hold
at most as many characters as the stream has bytes.

Times are the caller's (seconds from the start of the channel's cast, the clock of its
events); a line's time is that of the read that put its first character on it. A line still
open at the end of a read is carried over to the next one: :meth:`TextIndexer.feed` returns
only finished lines, :meth:`TextIndexer.finish` the last open one.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_LINE = 4096  # characters; longer lines are cut (a cat of a one-line file of megabytes)
TAB = 8
_MAX_PARAMS = 32  # characters of CSI parameters kept; the rest are not needed

# Runs of characters that go on the line as they are: everything but C0, DEL and C1.
_TEXT = re.compile(r"[^\x00-\x1f\x7f-\x9f]+")
# Whole plain lines ended by (CR) LF: the common case, taken in one step at a line's start.
_LINES = re.compile(r"(?:[^\x00-\x1f\x7f-\x9f]*\r*\n)+")
# A whole CSI sequence, the common case (parameters, intermediates, final byte).
_CSI = re.compile(r"\x1b\[([\x30-\x3f]*)[\x20-\x2f]*([\x40-\x7e])")
# What ends an OSC/DCS/SOS/PM/APC string: BEL, ESC (of ST), or the C1 ST.
_STRING_END = re.compile(r"[\x07\x1b\x9c]")
_STRING_STARTS = frozenset("]PX^_")
# The runs of LFs that blank lines leave in a block of plain lines.
_BLANK_LINES = re.compile(r"\n\n+")

# Parser states.
_GROUND, _ESC, _ESC_INTER, _CSI_STATE, _STRING, _STRING_ESC = range(6)


@dataclass(frozen=True, slots=True)
class Line:
    """Output lines as they stood when they ended, and when their first character came.

    Usually one line; a run of plain lines that came in one read is one `Line` whose text
    holds them joined by newlines (they share their time): making an object per line cost
    more than all the parsing of a `cat` of a log.
    """

    at: float
    text: str


class TextIndexer:
    """Output bytes with their times in, finished lines out. Never raises on any input."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._max = max_line
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._state = _GROUND
        self._params = ""  # of a CSI sequence split between reads
        self._line = ""
        self._cursor = 0
        self._start: float | None = None  # time of the open line's first character
        self._now = 0.0
        self._out: list[Line] = []

    def feed(self, at: float, data: bytes) -> list[Line]:
        """The lines that `data`, output at time `at`, finished."""
        # A clock that steps back gives the time of the read before (as the cast does).
        self._now = max(self._now, at)
        self._run(self._decoder.decode(data))
        return self._take()

    def finish(self) -> list[Line]:
        """The end of the output: the held bytes of a split character, and the open line."""
        self._run(self._decoder.decode(b"", final=True))
        self._end_line()
        return self._take()

    def _take(self) -> list[Line]:
        out, self._out = self._out, []
        return out

    # -- the parser ---------------------------------------------------------------------------

    def _run(self, text: str) -> None:
        pos, size = 0, len(text)
        while pos < size:
            state = self._state
            if state == _GROUND:
                pos = self._ground(text, pos)
            elif state == _STRING:
                found = _STRING_END.search(text, pos)
                if found is None:
                    return  # the string goes on in the next read; its content is not kept
                self._state = _STRING_ESC if found[0] == "\x1b" else _GROUND
                pos = found.end()
            else:
                pos = self._escape(text, pos, state)

    def _ground(self, text: str, pos: int) -> int:
        if not self._line and not self._cursor and self._start is None and text[pos] != "\x1b":
            block = _LINES.match(text, pos)
            if block is not None and self._plain(block[0]):
                return block.end()
        run = _TEXT.match(text, pos)
        if run is not None:
            self._write(run[0])
            return run.end()
        char = text[pos]
        if char == "\x1b":
            whole = _CSI.match(text, pos)
            if whole is not None:
                self._csi(whole[1][:_MAX_PARAMS], whole[2])
                return whole.end()
            self._state = _ESC
        else:
            self._control(char)
        return pos + 1

    def _escape(self, text: str, pos: int, state: int) -> int:
        """One character after ESC, inside a CSI sequence, or after ESC inside a string."""
        char = text[pos]
        code = ord(char)
        if state == _STRING_ESC:
            if char == "\\":  # ST: the string is over
                self._state = _GROUND
                return pos + 1
            state = self._state = _ESC  # ESC and something else: a new sequence begins
        if state == _ESC:
            if char == "[":
                self._state, self._params = _CSI_STATE, ""
            elif char in _STRING_STARTS:
                self._state = _STRING
            elif 0x20 <= code <= 0x2F:
                self._state = _ESC_INTER
            elif char == "\x1b":
                pass  # ESC ESC: the first one is abandoned
            elif 0x30 <= code <= 0x7E:
                self._state = _GROUND
                self._esc_final(char)
            else:  # a control or text character: the sequence is abandoned, the char is not
                self._state = _GROUND
                return pos
            return pos + 1
        if state == _ESC_INTER:
            if 0x20 <= code <= 0x2F:
                return pos + 1
            self._state = _GROUND
            return pos + 1 if 0x30 <= code <= 0x7E else pos
        # Inside a CSI sequence that an earlier read began.
        if 0x30 <= code <= 0x3F:
            if len(self._params) < _MAX_PARAMS:
                self._params += char
            return pos + 1
        if 0x20 <= code <= 0x2F:
            return pos + 1
        self._state = _GROUND
        if 0x40 <= code <= 0x7E:
            self._csi(self._params, char)
            return pos + 1
        return pos  # not a CSI character: the sequence is abandoned

    def _control(self, char: str) -> None:
        if char in "\n\x0b\x0c":
            self._end_line()
        elif char == "\r":
            self._cursor = 0
        elif char == "\b":
            self._cursor = max(self._cursor - 1, 0)
        elif char == "\t":
            self._move((self._cursor // TAB + 1) * TAB)
        # Every other control character (BEL, NUL, SO/SI, DEL, C1) puts nothing on the line.

    def _esc_final(self, char: str) -> None:
        if char in "DE":  # IND, NEL: the next line
            self._end_line()
        elif char in "Mc":  # RI (a row up), RIS (reset): this line is over
            self._end_line()

    def _csi(self, params: str, final: str) -> None:
        if final == "m":  # colours: the most common sequence by far
            return
        if final in "ABEFHfdJST":  # to another row, or the screen is cleared or scrolled
            self._end_line()
            return
        n = _first(params)
        line, cursor = self._line, self._cursor
        if final == "K":  # erase in line: 0 to the end, 1 to the start, 2 all
            mode = _first(params, 0)
            if mode == 0:
                self._line = line[:cursor]
            elif mode == 1:
                kept = line[cursor + 1 :]
                self._line = " " * (len(line) - len(kept)) + kept
            elif mode == 2:
                self._line = ""
            self._cursor = min(cursor, len(self._line) + 1)
        elif final == "D":
            self._cursor = max(cursor - n, 0)
        elif final == "C":
            self._move(cursor + n)
        elif final in "G`":
            self._move(n - 1)
        elif final == "P":  # delete characters: the rest moves left
            self._line = line[:cursor] + line[cursor + n :]
        elif final == "X":  # erase characters: blanks, the rest stays
            end = min(cursor + n, len(line))
            self._line = line[:cursor] + " " * max(end - cursor, 0) + line[end:]
        elif final == "@" and cursor < len(line):  # insert one blank (never more: bounded)
            self._line = line[:cursor] + " " + line[cursor:]
        # Everything else (colours, modes, reports, scroll regions) puts nothing on the line.

    def _plain(self, block: str) -> bool:
        """Plain lines at once, as the slow path would take them (trailing blanks removed,
        blank lines left out); False (nothing done) when one is too long, to be cut by the
        slow path. Every step runs in C: this is the path of a `cat` of megabytes."""
        parts = block.split("\n")
        if len(block) > self._max and max(map(len, parts)) > self._max:
            return False
        text = "\n".join(map(str.rstrip, parts))  # CRs are blanks to rstrip too
        if "\n\n" in text:
            text = _BLANK_LINES.sub("\n", text)
        text = text.strip("\n")
        if text:
            self._out.append(Line(self._now, text))
        self._cursor = 0
        return True

    # -- the line -----------------------------------------------------------------------------

    def _move(self, column: int) -> None:
        # Past the end of the line the cursor stops one column out: at most one blank of
        # padding per sequence, so that no input makes more text than it has bytes.
        self._cursor = min(max(column, 0), len(self._line) + 1)

    def _write(self, run: str) -> None:
        if self._start is None:
            self._start = self._now
        line, cursor = self._line, self._cursor
        if cursor > len(line):
            line += " " * (cursor - len(line))
        if cursor == len(line):
            line += run
        else:
            line = line[:cursor] + run + line[cursor + len(run) :]
        cursor += len(run)
        while len(line) >= self._max:
            self._emit(line[: self._max])
            line = line[self._max :]
            cursor = max(cursor - self._max, 0)
            self._start = self._now
        self._line, self._cursor = line, cursor

    def _end_line(self) -> None:
        self._emit(self._line)
        self._line, self._cursor, self._start = "", 0, None

    def _emit(self, text: str) -> None:
        text = text.rstrip()
        if text:
            self._out.append(Line(self._now if self._start is None else self._start, text))


def _first(params: str, default: int = 1) -> int:
    """The first numeric parameter of a CSI sequence (its default when empty or 0 where the
    default is 1); private markers such as ``?`` are skipped."""
    digits = params.lstrip("<=>?").split(";", 1)[0].split(":", 1)[0]
    if not digits.isdigit():
        return default
    value = min(int(digits[:6]), 99_999)
    return default if value == 0 and default == 1 else value


def stored(lines: Iterable[Line]) -> tuple[str, str]:
    """The `terminal_text` columns of some lines: their texts joined by newlines, and the JSON
    list of their start times (seconds, to the microsecond, as the cast writes them)."""
    items = list(lines)
    text = "\n".join(line.text for line in items)
    starts: list[float] = []
    for line in items:
        starts += [round(line.at, 6)] * (line.text.count("\n") + 1)
    return text, json.dumps(starts, separators=(",", ":"))


def line_at(text: str, times: str, index: int) -> float | None:
    """The start time of line `index` of a stored text; None when `times` does not say (the
    row is untrusted: anything but a list of numbers as long as the lines is ignored)."""
    try:
        found = json.loads(times)
    except (ValueError, RecursionError):
        return None
    if not isinstance(found, list) or not 0 <= index < len(found):
        return None
    value = found[index]
    if type(value) not in (int, float) or value != value or not 0 <= value < 1e12:
        return None
    return float(value)
