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
parser drives the text-only screen of `localproxy.terminal` (the emulator the replay viewer
uses too, without its colours), and output is emulated only up to a budget per *window* (from
one point where the screen is needed - the first keystroke of a line, an Enter - to the next).
Every operation's work is charged before it is done (a character, an escape sequence, a row
erased or scrolled) and the feed stops where the budget ends. Past it the reader keeps only
the last `_TAIL_BYTES` bytes and follows the alternate-screen switches with a regex over the
raw bytes; at the next point where the screen is needed it emulates the last screenful of
lines of that tail, from a newline so the parser starts clean, and marks the command being
typed, if any, as not exact. CPU per window is thus bounded whatever the bytes
(bench/ssh_lines.py measures the worst kinds), and memory by the screen - `MAX_COLS` x
`MAX_ROWS` cells, twice with the alternate screen - and the tail. Control strings (OSC, DCS,
APC, PM, SOS) are dropped before pyte sees them.

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
"""

from __future__ import annotations

import codecs
import enum
import logging
import re
from dataclasses import dataclass
from typing import Any

from localproxy.terminal import UNLIMITED, Row, Screen, Stream, StringFilter

log = logging.getLogger(__name__)

MAX_COLS = 1000
MAX_ROWS = 500

# The emulator's cost is counted in units of roughly 0.1 us of CPU (one printable character):
# a character is 1 (5 in text that is not all ASCII), an escape sequence 24 more, a sequence
# pyte fails on 128, making or editing a row what the screen charges (`localproxy.terminal`:
# 8 plus 1 per 64 columns). A window may spend this many units before the reader stops
# emulating and keeps only the tail (the last `_TAIL_BYTES` bytes).
_WINDOW_BUDGET = 64 * 1024
_TAIL_BYTES = 16 * 1024
_ESCAPE_COST = 24
_ERROR_COST = 128
_WIDE_COST = 4
# Text is fed to pyte in pieces of this many characters, so that the budget is checked often
# and an escape sequence that never ends is noticed (pyte accumulates its parameters).
_PIECE = 256

# Keystrokes that abandon the line being typed (SIGINT: the shell draws a fresh prompt).
_ABORT = 0x03
# Keystrokes that are signals or end-of-file to a running program: they mark no anchor.
_NOT_EDITS = frozenset(b"\x04\x1a\x1c")

_ISEARCH = re.compile(r"\((?:failed )?(?:reverse-)?i-search\)`.*?': ")

# The switches to and from the alternate screen (`localproxy.terminal.ALT_MODES`), found in
# raw output while a flood is skipped.
_ALT_SWITCH = rb"\x1b\[\?(?:[0-9;]{0,32};)?(?:1049|1047|47)(?:;[0-9;]{0,32})?([hl])"
_FIRST_SWITCH = re.compile(_ALT_SWITCH)
_LAST_SWITCH = re.compile(b"(?s).*" + _ALT_SWITCH)  # the greedy prefix makes it the last one
_SCAN_CARRY = 72


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

    row: Row
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
        self._screen = Screen(self._cols, self._rows, colours=False)
        self._stream = Stream(self._screen)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._strings = StringFilter()
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
        left = _WINDOW_BUDGET - self._spent
        screen.credit, stream.errors = left, 0
        try:
            fed = stream.feed_bounded(piece)
            work = left - screen.credit
        finally:
            screen.credit = UNLIMITED  # work outside a feed (a resize, a sync) is not cut short
        if not fed:
            self._spent = _WINDOW_BUDGET + 1
            return False
        escapes = piece.count("\x1b") + piece.count("\x9b")
        self._spent += len(piece) + _ESCAPE_COST * escapes + _ERROR_COST * stream.errors + work
        if not piece.isascii():  # drawn one character at a time
            self._spent += _WIDE_COST * (len(piece) - len(piece.encode("ascii", "ignore")))
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
        self._strings = StringFilter()
        self._stream.restart()
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
