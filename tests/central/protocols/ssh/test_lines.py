"""Reading the typed command line off an emulated terminal screen (central/protocols/ssh/lines.py).

Two kinds of tests. Conversations in bytes: what a shell would print, what the user types,
and what `enter()` must answer. And real shells (bash, dash, sh) in a real PTY, their output
fed to the reader exactly as central would, with `less` and `vim` for the full-screen case.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.protocols.ssh import lines
from central.protocols.ssh.lines import MAX_COLS, MAX_ROWS, CommandLine, LineKind, LineReader
from localproxy.terminal import MAX_SEQUENCE

GREEN, BLUE, RESET = b"\x1b[1;32m", b"\x1b[34m", b"\x1b[0m"
PROMPT = GREEN + b"alice@db1" + RESET + b":" + BLUE + b"~/src" + RESET + b"$ "


def shell(cols: int = 80, rows: int = 24, prompt: bytes = PROMPT) -> LineReader:
    """A reader whose screen shows a fresh prompt."""
    reader = LineReader(cols, rows)
    reader.output(prompt)
    return reader


def type_echoed(reader: LineReader, text: str) -> None:
    """Type `text` one key at a time, each echoed as a shell in raw mode echoes it."""
    for char in text:
        key = char.encode()
        reader.typed(key)
        reader.output(key)


def run(reader: LineReader, output: bytes = b"", prompt: bytes = PROMPT) -> None:
    """Forward the Enter: the shell moves to a new row, prints output and a new prompt."""
    reader.output(b"\r\n" + output + prompt)


def screen_text(reader: LineReader) -> list[str]:
    screen = reader._screen
    return [row.text(0, screen.columns).rstrip() for row in screen.rows]


# -- the prompt -------------------------------------------------------------------------------


def test_a_plain_command_is_read_without_its_coloured_prompt() -> None:
    reader = shell()
    type_echoed(reader, "ls -la /etc")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "ls -la /etc", exact=True)


def test_enter_without_typing_reads_nothing_and_enter_resets_for_the_next_line() -> None:
    reader = shell()
    assert reader.enter_line().kind is LineKind.NOTHING_TYPED
    type_echoed(reader, "whoami")
    assert reader.enter() == "whoami"
    run(reader, b"alice\r\n")
    assert reader.enter() is None  # nothing typed since that Enter
    type_echoed(reader, "id")
    assert reader.enter() == "id"


def test_the_start_is_where_the_cursor_was_at_the_first_keystroke() -> None:
    # A prompt that ends in text which looks like a command is still cut off: the start is a
    # screen position, not a guess from the text.
    reader = shell(prompt=b"[prod] rm -rf / ? ")
    type_echoed(reader, "uptime")
    assert reader.enter() == "uptime"


def test_a_title_escape_in_the_prompt_is_not_text() -> None:
    reader = shell(prompt=b"\x1b]0;alice@db1: ~/src\x07" + PROMPT)
    type_echoed(reader, "make")
    assert reader.enter() == "make"


def test_a_two_line_prompt() -> None:
    reader = shell(
        prompt=b"\x1b[33malice@db1 ~/src (main)\x1b[0m\r\n" + GREEN + b"\xe2\x9d\xaf " + RESET
    )
    type_echoed(reader, "git status")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "git status", exact=True)


def test_a_right_prompt_is_not_part_of_the_command() -> None:
    # zsh's RPROMPT: drawn at the right margin, the cursor put back after the left prompt.
    reader = shell(prompt=b"%~ \x1b7\x1b[68G\x1b[2m[main] 10:42\x1b[0m\x1b8")
    type_echoed(reader, "ls -l")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "ls -l", exact=True)


def test_text_right_of_the_cursor_is_read_when_it_is_part_of_the_line() -> None:
    reader = shell()
    type_echoed(reader, "echo b")
    reader.typed(b"\x01")  # back to the start, then insert: the row right of the cursor is text
    reader.output(b"\x08" * 6 + b"sudo echo b" + b"\x08" * 6)
    assert reader.enter() == "sudo echo b"


def test_a_prompt_redrawn_below_a_completion_listing() -> None:
    reader = shell()
    type_echoed(reader, "ls redraw-")
    reader.typed(b"\t\t")
    reader.output(b"\x07\r\nredraw-alpha.txt  redraw-beta.txt\r\n" + PROMPT + b"ls redraw-")
    type_echoed(reader, "beta.txt")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "ls redraw-beta.txt", exact=True)


def test_a_prompt_redrawn_at_the_top_after_ctrl_l() -> None:
    reader = shell()
    run(reader, b"one\r\ntwo\r\n")
    type_echoed(reader, "echo cleared")
    reader.typed(b"\x0c")
    reader.output(b"\x1b[H\x1b[2J" + PROMPT + b"echo cleared")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "echo cleared", exact=True)


def test_bash_incremental_search_replaces_the_prompt() -> None:
    reader = shell()
    reader.typed(b"\x12")
    reader.output(b"\r\x1b[K(reverse-i-search)`': ")
    reader.typed(b"dep")
    reader.output(b"\r\x1b[K(reverse-i-search)`dep': ./deploy.sh --prod\x1b[11D")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "./deploy.sh --prod", exact=True)


# -- long commands and scrolling --------------------------------------------------------------


def test_a_long_command_wraps_over_several_rows() -> None:
    reader = shell(cols=20)  # the prompt takes 17 columns
    command = "echo " + "".join(f"{i:02d}-" for i in range(20))
    type_echoed(reader, command)
    assert len(command) > 3 * 20
    assert reader.enter() == command


def test_a_command_is_read_whole_with_the_cursor_moved_back_to_its_start() -> None:
    reader = shell(cols=30)
    command = "echo " + "x" * 50  # 17 + 55 columns: three rows
    type_echoed(reader, command)
    reader.typed(b"\x01")  # Ctrl-A: bash moves up and back to just after the prompt
    reader.output(b"\x1b[A\x1b[A" + b"\x08" * 5)
    assert reader.enter() == command


def test_a_command_that_fills_its_row_exactly_is_not_joined_to_the_next_row() -> None:
    # The prompt is redrawn over row 0 with old text left on row 1; the command then ends
    # exactly at the right margin. Reaching the margin is not wrapping: nothing was written
    # past it, so row 1 is not part of the command.
    reader = shell(cols=20)
    reader.output(b"\r\nleftover\x1b[A\r" + PROMPT)
    type_echoed(reader, "pwd")  # 17 + 3 columns
    assert reader.enter() == "pwd"
    assert screen_text(reader)[:2] == ["alice@db1:~/src$ pwd", "leftover"]


def test_the_start_moves_up_when_the_screen_scrolls_while_typing() -> None:
    reader = shell(cols=20, rows=5)
    run(reader, b"1\r\n2\r\n3\r\n4\r\n")  # the prompt is now on the bottom row
    command = "echo " + "y" * 30  # wraps twice: the screen scrolls twice
    type_echoed(reader, command)
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, command, exact=True)


def test_a_command_whose_start_scrolled_off_the_screen_is_not_exact() -> None:
    reader = shell(cols=10, rows=3)
    command = "echo " + "z" * 60  # 17 + 65 columns: more rows than the screen has
    type_echoed(reader, command)
    line = reader.enter_line()
    assert line.kind is LineKind.COMMAND and not line.exact
    assert line.text is not None and command.endswith(line.text.strip())


def test_wide_characters_and_a_wide_character_at_the_margin() -> None:
    reader = shell(cols=20)
    command = "echo 日本語のテキスト"  # 5 + 2 * 9 columns: the last wide one does not fit row 1
    type_echoed(reader, command)
    assert reader.enter() == command


# -- editing ----------------------------------------------------------------------------------


def test_backspace_as_bash_echoes_it() -> None:
    reader = shell()
    type_echoed(reader, "sudo rebxx")
    for _ in range(2):
        reader.typed(b"\x7f")
        reader.output(b"\x08\x1b[K")
    type_echoed(reader, "oot")
    assert reader.enter() == "sudo reboot"


def test_backspace_as_a_canonical_mode_tty_echoes_it() -> None:
    reader = shell(prompt=b"$ ")
    type_echoed(reader, "lx")
    reader.typed(b"\x7f")
    reader.output(b"\x08 \x08")
    type_echoed(reader, "s")
    assert reader.enter() == "ls"


def test_ctrl_a_then_inserting_at_the_start() -> None:
    reader = shell()
    type_echoed(reader, "reboot")
    reader.typed(b"\x01")
    reader.output(b"\x08" * 6)
    reader.typed(b"s")
    reader.output(b"sreboot" + b"\x08" * 6)  # bash redraws the rest and moves back
    reader.typed(b"udo ")
    reader.output(b"udo reboot" + b"\x08" * 6)
    reader.typed(b"\x05")  # Ctrl-E
    reader.output(b"\x1b[C" * 6)
    assert reader.enter() == "sudo reboot"


def test_history_recall_reads_the_recalled_command() -> None:
    reader = shell()
    type_echoed(reader, "echo first")
    reader.enter()
    run(reader, b"first\r\n")
    reader.typed(b"\x1b[A")
    reader.output(b"echo first")
    assert reader.enter() == "echo first"


def test_recalling_a_short_command_after_a_long_one_drops_the_long_ones_rows() -> None:
    reader = shell(cols=30)
    long = "echo " + "q" * 50  # three rows
    type_echoed(reader, long)
    reader.typed(b"\x1b[B")  # Down: bash rewrites the first row and erases the rest
    reader.output(b"\x1b[A\x1b[A\r\x1b[17C" + b"ls\x1b[K\r\n\x1b[K\r\n\x1b[K\x1b[A\x1b[A\x1b[19C")
    assert reader.enter() == "ls"


def test_tab_completion_reads_the_completed_text() -> None:
    reader = shell()
    type_echoed(reader, "cat /etc/host")
    reader.typed(b"\t")
    reader.output(b"name ")
    assert reader.enter() == "cat /etc/hostname"


def test_ctrl_c_abandons_the_line_and_the_next_keystroke_starts_a_new_one() -> None:
    reader = shell()
    type_echoed(reader, "rm -rf /srv/data")
    reader.typed(b"\x03")
    reader.output(b"^C\r\n" + PROMPT)
    type_echoed(reader, "ls")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "ls", exact=True)


def test_signals_to_a_running_program_mark_no_start() -> None:
    reader = shell()
    type_echoed(reader, "sleep 100")
    reader.enter()
    run(reader, prompt=b"")  # sleep runs: no prompt
    reader.typed(b"\x1a")  # Ctrl-Z: the shell stops sleep and prints a new prompt
    reader.output(b"^Z\r\n[1]+  Stopped                 sleep 100\r\n" + PROMPT)
    type_echoed(reader, "bg")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "bg", exact=True)


def test_ctrl_d_within_a_line_is_an_edit() -> None:
    reader = shell()
    type_echoed(reader, "lss")
    reader.typed(b"\x08")  # Ctrl-B: back one
    reader.output(b"\x08")
    reader.typed(b"\x04")  # Ctrl-D: delete the character under the cursor
    reader.output(b"\x1b[K")
    assert reader.enter() == "ls"


# -- full-screen programs ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", [b"1049", b"1047", b"47", b"1;1049"])
def test_nothing_is_read_on_the_alternate_screen(mode: bytes) -> None:
    reader = shell()
    type_echoed(reader, "vim notes.txt")
    reader.enter()
    run(reader, prompt=b"")
    reader.output(b"\x1b[?" + mode + b"h\x1b[H\x1b[2J~\r\n~\r\n\x1b[H")
    assert reader.full_screen
    type_echoed(reader, "irm -rf /")
    assert reader.enter_line() == CommandLine(LineKind.FULL_SCREEN)
    type_echoed(reader, ":wq")
    assert reader.enter() is None
    reader.output(b"\x1b[?" + mode + b"l" + PROMPT)
    assert not reader.full_screen
    type_echoed(reader, "echo back")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "echo back", exact=True)


def test_alternate_screen_switches_split_across_output_calls() -> None:
    reader = shell()
    for byte in b"\x1b[?1049h":
        reader.output(bytes([byte]))
    assert reader.full_screen
    reader.output(b"\x1b[?10")
    assert reader.full_screen
    reader.output(b"49l")
    assert not reader.full_screen


def test_the_normal_screen_comes_back_when_a_full_screen_program_quits() -> None:
    reader = shell(cols=20)
    type_echoed(reader, "less log")
    reader.enter()
    reader.output(b"\r\n\x1b[?1049h")
    reader.output(b"x" * 20 * 23 + b"\x1b[24;1H:")  # full rows, all flagged as wrapped
    reader.typed(b"q")  # quits less: this keystroke does not start the next command
    reader.output(b"\r\x1b[K\x1b[?1049l" + PROMPT)
    type_echoed(reader, "ls")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "ls", exact=True)
    assert "".join(screen_text(reader)[:2]) == "alice@db1:~/src$ less log"


def test_a_keystroke_that_only_quit_a_program_is_not_a_command() -> None:
    reader = shell()
    reader.output(b"\x1b[?1049h")
    reader.typed(b"q")
    reader.output(b"\x1b[?1049l" + PROMPT)
    assert reader.enter_line().kind is LineKind.NOTHING_TYPED


# -- floods -----------------------------------------------------------------------------------


def log_lines(size: int) -> bytes:
    line = b"2024-05-01T12:00:00Z \x1b[32mINFO\x1b[0m request served in 12ms path=/api/v1/items\r\n"
    return line * (size // len(line) + 1)


def test_after_a_flood_the_next_command_is_read_exactly() -> None:
    reader = shell()
    type_echoed(reader, "cat big.log")
    reader.enter()
    flood = log_lines(5_000_000)
    for i in range(0, len(flood), 65536):
        reader.output(flood[i : i + 65536])
    run(reader, prompt=PROMPT)
    assert reader.skipped_bytes > 4_000_000
    type_echoed(reader, "echo done")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "echo done", exact=True)
    rows = screen_text(reader)
    assert rows[-3].endswith("path=/api/v1/items") and rows[-1].endswith("$ echo done")


def test_a_flood_while_typing_makes_the_line_inexact() -> None:
    reader = shell()
    type_echoed(reader, "echo typed")
    reader.output(log_lines(500_000))  # a background job writes all over the line
    line = reader.enter_line()
    assert line.kind is LineKind.COMMAND and not line.exact


def test_alternate_screen_switches_are_followed_through_a_flood() -> None:
    reader = shell()
    reader.typed(b"x")  # a window is open: what follows is a flood within it
    flood = log_lines(1_000_000)
    reader.output(flood)
    assert reader.skipped_bytes > 0
    reader.output(flood[:100_000] + b"\x1b[?1049h" + flood[:100_000])
    assert reader.full_screen
    reader.output(flood[:50_000] + b"\x1b[?104")
    reader.output(b"9l" + flood[:50_000])
    assert not reader.full_screen
    reader.output(b"\x1b[?47h")
    assert reader.enter_line().kind is LineKind.FULL_SCREEN
    reader.output(flood[:70_000] + b"\x1b[?47l" + PROMPT)
    type_echoed(reader, "echo out")
    assert reader.enter() == "echo out"


@pytest.mark.parametrize(
    ("data", "first", "last"),
    [
        (b"\x1b[?1049h", True, True),
        (b"\x1b[?1;1049l", False, False),
        (b"\x1b[?1049h vim \x1b[?25l\x1b[?1049l", True, False),
        (b"\x1b[?47h\x1b[?1047l\x1b[?1049h", True, True),
        (b"\x1b[?25h\x1b[?10047h\x1b[?2004l\x1b[1049h", None, None),
    ],
)
def test_switches_found_in_skipped_output(
    data: bytes, first: bool | None, last: bool | None
) -> None:
    assert lines._first_switch(data) is first
    assert lines._last_switch(data) is last
    assert lines._last_switch(data, skip=len(data)) is None  # all of it seen before


def test_the_emulator_sees_a_bounded_amount_of_a_flood_per_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = shell()
    fed = []
    feed = reader._stream.feed

    def counting(text: str) -> None:
        fed.append(len(text))
        feed(text)

    monkeypatch.setattr(reader._stream, "feed", counting)
    flood = log_lines(20_000_000)
    for i in range(0, len(flood), 65536):
        reader.output(flood[i : i + 65536])
    run(reader)
    type_echoed(reader, "w")
    assert reader.enter() == "w"
    # One window's budget, one piece past it, the tail at the keystroke, and the echo.
    assert sum(fed) <= lines._WINDOW_BUDGET + lines._PIECE + lines._TAIL_BYTES + 100


@pytest.mark.parametrize(
    "unit",
    [
        b"\x1b[2J",  # erase the whole screen
        b"\x1b[1;1H" + b"x" * 999 + b"\x1b[1;1H" + b"\x1b[@" * 300,  # insert in a full row
        b"\x1bH\t",  # a new tab stop, then a tab
        b"\x1b[?47h\x1b[?47l",  # alternate screen on and off
        b"\x1b[H\x1b[500L",  # insert 500 rows
        b"\x1bc",  # full reset
        b"\x1b[1;2A\x1b[?5A\x1b[5J",  # sequences pyte fails on
        b"\n",  # scrolling
        "漢字".encode(),
    ],
)
def test_costly_sequences_cost_bounded_cpu(unit: bytes) -> None:
    reader = shell(cols=MAX_COLS, rows=MAX_ROWS)
    data = unit * (4_000_000 // len(unit))
    start = time.process_time()
    for i in range(0, len(data), 65536):
        reader.output(data[i : i + 65536])
        reader.typed(b"x")
        reader.enter()
    spent = time.process_time() - start
    # Measured at about 1 s on a laptop; without the budget each takes minutes.
    assert spent < 15, f"{spent:.1f} s"
    assert reader.faults == 0


# -- malformed and hostile output -------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        b"\x1b[1;2A\x1b[?5A\x1b[5J\x1b[7K\x1b[?6h\x1b[5d\x1b[6n\x1b[?6l",  # pyte raises on these
        b"\x1b[" + b"1" * 100_000 + b"m",  # a parameter longer than int() accepts
        b"\x1b[" + b";" * 100_000 + b"m",
        b"\x1b]0;" + b"t" * 1_000_000,  # an OSC that never ends (until the next ESC)
        b"\x1bP+q544e\x1b\\",  # a DCS request (pyte would draw its payload)
        b"\xff\xfe\xc3(\xe2\x82",  # invalid UTF-8
        b"\x1b7" * 50_000 + b"\x1b8",  # cursor saves: one slot, not a growing stack
        b"\x1b[?3h\x1b[?5h",  # 132 columns, reverse video: ignored
    ],
)
def test_hostile_output_breaks_nothing(junk: bytes) -> None:
    reader = shell()
    reader.output(junk)
    reader.output(b"\x1b\\\x1b[0m\r\n" + PROMPT)
    type_echoed(reader, "id")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "id", exact=True)
    assert reader.faults == 0
    assert len(reader._screen.savepoints) <= 1
    assert reader._screen.columns == 80


def test_the_alignment_pattern_fills_the_screen_as_in_xterm() -> None:
    reader = shell()
    reader.output(b"\x1b[5;10r\x1b#8")
    assert screen_text(reader) == ["E" * 80] * 24
    # The cursor went home: a prompt drawn now stands over the E's, and so does the command.
    reader.output(PROMPT)
    type_echoed(reader, "id")
    assert reader.enter() == "id" + "E" * (80 - len("alice@db1:~/src$ id"))


def test_control_strings_are_not_drawn() -> None:
    reader = shell()
    reader.output(b"\x1bP+q544e\x1b\\\x1b]52;c;c2VjcmV0\x07\x1b_Gf=24;AAAA\x1b\\")
    type_echoed(reader, "ls")
    assert reader.enter() == "ls"
    assert screen_text(reader)[0] == "alice@db1:~/src$ ls"


def test_utf8_split_across_output_calls() -> None:
    reader = shell()
    reader.typed(b"e")
    for byte in "echo héllo wörld ✓".encode():
        reader.output(bytes([byte]))
    assert reader.enter() == "echo héllo wörld ✓"


# -- resizing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "got"),
    [
        ((0, 0), (1, 1)),
        ((-5, 3), (1, 3)),
        ((5000, 9000), (MAX_COLS, MAX_ROWS)),
        ((132, 43), (132, 43)),
    ],
)
def test_sizes_are_clamped(asked: tuple[int, int], got: tuple[int, int]) -> None:
    reader = LineReader(*asked)
    assert (reader._screen.columns, reader._screen.lines) == got
    reader = LineReader()
    reader.resize(*asked)
    assert (reader._screen.columns, reader._screen.lines) == got


def test_a_width_change_while_typing_makes_the_line_inexact() -> None:
    reader = shell()
    type_echoed(reader, "echo x")
    reader.resize(100, 24)
    line = reader.enter_line()
    assert line == CommandLine(LineKind.COMMAND, "echo x", exact=False)


def test_fewer_rows_keep_the_cursors_row() -> None:
    reader = shell(rows=24)
    run(reader, b"a\r\nb\r\nc\r\n" * 5)  # the prompt is on row 16
    type_echoed(reader, "echo kept")
    reader.resize(80, 5)
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "echo kept", exact=True)


def test_a_one_by_one_terminal_reads_what_it_can_and_says_so() -> None:
    reader = LineReader(1, 1)
    reader.output(b"$ ")
    type_echoed(reader, "ls")
    assert reader.enter_line() == CommandLine(LineKind.COMMAND, "s", exact=False)
    assert reader.faults == 0


# -- fuzzing ----------------------------------------------------------------------------------

_SEQUENCES = [
    b"\x1b[",
    b"\x1b[?",
    b"\x1b]",
    b"\x1bP",
    b"\x1b\\",
    b"\x07",
    b"\x1b[?1049h",
    b"\x1b[?1049l",
    b"\x1b[?47h",
    b"\x1b[2J",
    b"\x1b[K",
    b"\x1b[H",
    b"\x1b[5;10r",
    b"\x1b[?6h",
    b"\x1b[4h",
    b"\x1b[?7l",
    b"\x1bc",
    b"\x1b7",
    b"\x1b8",
    b"\x1bM",
    b"\x1b[3L",
    b"\x1b[2M",
    b"\x1b[5@",
    b"\x1b[3P",
    b"\x1b[9X",
    b"\x1bH",
    b"\t",
    b"\r\n",
    b"\x08",
    "日本".encode(),
    "é\u0301".encode(),
    b"\xc2\x9b",
    b"\xc2\x9d",
]
_output = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(_SEQUENCES),
        st.integers(0, 10_000).map(lambda n: str(n).encode()),
        st.text(max_size=20).map(str.encode),
    ),
    max_size=20,
).map(b"".join)
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("output"), _output),
        st.tuples(st.just("typed"), st.binary(max_size=8)),
        st.tuples(st.just("enter"), st.none()),
        st.tuples(st.just("resize"), st.tuples(st.integers(-5, 1200), st.integers(-5, 600))),
    ),
    max_size=30,
)


def check_bounds(reader: LineReader) -> None:
    screen = reader._screen
    assert reader.faults == 0
    assert 1 <= screen.columns <= MAX_COLS and 1 <= screen.lines <= MAX_ROWS
    assert len(screen.rows) == screen.lines
    assert all(len(row) == screen.columns for row in screen.rows)
    assert all(len(cell) <= 4 for row in screen.rows for cell in row)
    assert 0 <= screen.cursor.x <= screen.columns and 0 <= screen.cursor.y < screen.lines
    assert len(screen.savepoints) <= 1 and len(screen.tabstops) <= screen.columns + 1
    assert reader._tail is None or len(reader._tail) <= 2 * lines._TAIL_BYTES
    assert reader._stream.sequence <= MAX_SEQUENCE + lines._PIECE


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_steps)
def test_fuzz_never_raises_and_stays_bounded(steps: list[tuple[str, object]]) -> None:
    reader = LineReader()
    for kind, arg in steps:
        if kind == "output":
            assert isinstance(arg, bytes)
            reader.output(arg)
        elif kind == "typed":
            assert isinstance(arg, bytes)
            reader.typed(arg)
        elif kind == "enter":
            line = reader.enter_line()
            assert (line.text is None) == (line.kind is not LineKind.COMMAND)
            assert line.text is None or line.text == line.text.rstrip()
        else:
            assert isinstance(arg, tuple)
            reader.resize(*arg)
        check_bounds(reader)
    assert isinstance(reader.enter(), str | None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(8, 200), st.integers(1, 60))
def test_fuzz_random_bytes_then_a_prompt_still_reads_commands(
    junk: bytes, cols: int, rows: int
) -> None:
    reader = LineReader(cols, rows)
    reader.output(junk)
    # Whatever state the junk left (modes, margins, an alternate screen, a string), a reset
    # and a prompt make the terminal usable again, as they do a real one.
    reader.output(b"\x1b\\\x1bc$ ")
    type_echoed(reader, "ls")
    assert reader.enter() == "ls"
    check_bounds(reader)


# -- real shells in a real PTY ----------------------------------------------------------------

TIMEOUT = 30.0
QUIET = 0.15
# The prompts end in this, so the harness knows a prompt has arrived.
PROMPT_END = b"\x1b[0m > "
BASH_PS1 = r"\[\e[1;32m\]wg\[\e[0m\]@\[\e[34m\]\W\[\e[0m\] > "
PLAIN_PS1 = "\x1b[1;32mwg\x1b[0m@\x1b[34mhost\x1b[0m > "


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # job control and Ctrl-C, as under sshd


class Pty:
    """A program in a real PTY whose output goes to a `LineReader`, as central relays it."""

    def __init__(self, argv: list[str], cwd: Path, cols: int = 80, rows: int = 24, **env: str):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        environ = {
            "PATH": os.environ["PATH"],
            "HOME": str(cwd),
            "TERM": "xterm",
            "LANG": "C.UTF-8",
            "INPUTRC": "/dev/null",
            "HISTFILE": str(cwd / ".history"),
            **env,
        }
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            env=environ,
            start_new_session=True,
            preexec_fn=_controlling_tty,
        )
        os.close(slave)
        self.master = master
        self.reader = LineReader(cols, rows)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        os.close(self.master)

    def _read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return b""
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program has gone
            return b""
        self.reader.output(data)
        return data

    def pump(self, until: Callable[[bytes], bool]) -> bytes:
        """Feed output to the reader until `until(output so far)` holds, then until quiet."""
        out = b""
        deadline = time.monotonic() + TIMEOUT
        while not until(out):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the last output was {out[-300:]!r}"
            out += self._read(min(left, 0.5))
        while chunk := self._read(QUIET):
            out += chunk
        return out

    def type(self, keys: bytes, expect: bytes | None = None) -> bytes:
        """Keystrokes, forwarded at once; wait for `expect` (or any output) in the echo."""
        self.reader.typed(keys)
        os.write(self.master, keys)
        return self.pump(lambda out: expect in out if expect is not None else bool(out))

    def enter(self, expect: bytes | None = PROMPT_END) -> CommandLine:
        """Enter as central handles it: read the line, then forward the Enter."""
        line = self.reader.enter_line()
        os.write(self.master, b"\r")
        self.pump(lambda out: expect in out if expect is not None else bool(out))
        return line


def _shells() -> list[str]:
    found = ["bash"]  # required: it must be installed
    found += [name for name in ("dash", "sh") if shutil.which(name)]
    return found


def _argv(name: str) -> list[str]:
    return ["bash", "--norc", "--noprofile", "-i"] if name == "bash" else [name, "-i"]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Pty]]:
    started: list[Pty] = []

    def start(name: str = "bash", cols: int = 80, rows: int = 24, ps1: str | None = None) -> Pty:
        ps1 = ps1 or (BASH_PS1 if name == "bash" else PLAIN_PS1)
        pty = Pty(_argv(name), tmp_path, cols, rows, PS1=ps1)
        started.append(pty)
        pty.pump(lambda out: PROMPT_END in out)
        return pty

    yield start
    for pty in started:
        pty.close()


@pytest.mark.parametrize("name", _shells())
def test_real_shell_plain_command(spawn: Callable[..., Pty], name: str) -> None:
    sh = spawn(name)
    sh.type(b"echo plain-one", expect=b"plain-one")
    assert sh.enter() == CommandLine(LineKind.COMMAND, "echo plain-one", exact=True)
    sh.type(b"echo second", expect=b"second")
    assert sh.enter().text == "echo second"


@pytest.mark.parametrize("name", _shells())
def test_real_shell_backspace(spawn: Callable[..., Pty], name: str) -> None:
    sh = spawn(name)
    sh.type(b"echo typoo", expect=b"typoo")
    sh.type(b"\x7f\x7f")
    sh.type(b"ed", expect=b"ed")
    assert sh.enter().text == "echo typed"


@pytest.mark.parametrize("name", _shells())
def test_real_shell_wrapped_200_character_command_with_a_scroll(
    spawn: Callable[..., Pty], name: str
) -> None:
    sh = spawn(name, cols=80, rows=24)
    sh.type(b"seq 40", expect=b"seq 40")
    sh.enter()  # the prompt is now on the bottom row: the command scrolls the screen
    command = "echo " + "".join(f"{i:03d}-" for i in range(49)) + "end"
    assert len(command) == 204
    sh.type(command.encode(), expect=b"048-end")
    assert sh.enter() == CommandLine(LineKind.COMMAND, command, exact=True)


def test_real_bash_two_line_prompt(spawn: Callable[..., Pty]) -> None:
    sh = spawn(ps1=r"\[\e[33m\]\u on \h in \w\[\e[0m\]\n\[\e[32m\]>\[\e[0m\] > ")
    sh.type(b"echo two-lines", expect=b"two-lines")
    assert sh.enter() == CommandLine(LineKind.COMMAND, "echo two-lines", exact=True)


def test_real_bash_ctrl_a_edit(spawn: Callable[..., Pty]) -> None:
    sh = spawn(cols=40)
    sh.type(b"echo " + b"m" * 50 + b"x", expect=b"mx")  # wraps: Ctrl-A moves up a row
    sh.type(b"\x7f")
    sh.type(b"\x01")
    sh.type(b"sudo ", expect=b"sudo ")
    sh.type(b"\x05")
    assert sh.enter().text == "sudo echo " + "m" * 50


def test_real_bash_edit_inside_a_wrapped_line(spawn: Callable[..., Pty]) -> None:
    sh = spawn()
    sh.type(b"echo " + b"b" * 100 + b"END", expect=b"END")
    sh.type(b"\x01")
    sh.type(b"\x1b[C" * 7, expect=b"\x1b[C")
    sh.type(b"\x04\x04\x04", expect=b"END")  # deletes three b's: bash redraws both rows
    assert sh.enter() == CommandLine(LineKind.COMMAND, "echo " + "b" * 97 + "END", exact=True)


def test_real_bash_resize_while_typing(spawn: Callable[..., Pty]) -> None:
    sh = spawn(cols=40, ps1="x" * 50 + r"\[\e[0m\] > ")  # the prompt itself wraps at 40
    sh.type(b"echo " + b"r" * 60 + b"Z", expect=b"Z")
    # As a window-change request: the PTY gets the size (bash gets SIGWINCH and redraws the
    # prompt and line) and the reader is told.
    fcntl.ioctl(sh.master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 60, 0, 0))
    sh.reader.resize(60, 24)
    sh.type(b"Y", expect=b"Y")
    line = sh.enter()
    assert line == CommandLine(LineKind.COMMAND, "echo " + "r" * 60 + "ZY", exact=False)


def test_real_bash_history_recall(spawn: Callable[..., Pty]) -> None:
    sh = spawn()
    sh.type(b"echo recall-me", expect=b"recall-me")
    sh.enter()
    sh.type(b"echo other", expect=b"other")
    sh.enter()
    sh.type(b"\x1b[A", expect=b"other")
    sh.type(b"\x1b[A", expect=b"recall-me")
    assert sh.enter() == CommandLine(LineKind.COMMAND, "echo recall-me", exact=True)


def test_real_bash_tab_completion(spawn: Callable[..., Pty], tmp_path: Path) -> None:
    (tmp_path / "completion-target-file.txt").write_text("x\n")
    sh = spawn()
    sh.type(b"cat completion-ta", expect=b"completion-ta")
    sh.type(b"\t", expect=b"rget-file.txt")
    assert sh.enter() == CommandLine(LineKind.COMMAND, "cat completion-target-file.txt", exact=True)


def test_real_bash_completion_listing_redraws_the_prompt(
    spawn: Callable[..., Pty], tmp_path: Path
) -> None:
    (tmp_path / "redraw-alpha.txt").write_text("a\n")
    (tmp_path / "redraw-beta.txt").write_text("b\n")
    sh = spawn()
    sh.type(b"ls redraw-", expect=b"redraw-")
    sh.reader.typed(b"\t\t")
    os.write(sh.master, b"\t\t")
    sh.pump(lambda out: out.rfind(b"ls redraw-") > out.find(b"redraw-beta.txt") > 0)
    sh.type(b"al\t", expect=b"pha.txt")
    assert sh.enter() == CommandLine(LineKind.COMMAND, "ls redraw-alpha.txt", exact=True)


def test_real_bash_ctrl_c_and_ctrl_l(spawn: Callable[..., Pty]) -> None:
    sh = spawn()
    sh.type(b"echo abandoned", expect=b"abandoned")
    sh.type(b"\x03", expect=PROMPT_END)
    sh.type(b"echo cleared", expect=b"cleared")
    sh.type(b"\x0c", expect=b"echo cleared")
    assert sh.enter() == CommandLine(LineKind.COMMAND, "echo cleared", exact=True)


def test_real_bash_reverse_search(spawn: Callable[..., Pty]) -> None:
    sh = spawn()
    sh.type(b"echo needle-in-history", expect=b"needle-in-history")
    sh.enter()
    sh.type(b"\x12", expect=b"i-search")
    sh.type(b"needle", expect=b"\x1b[7mneedle")  # the match is highlighted
    assert sh.enter().text == "echo needle-in-history"


def _full_screen_programs() -> list[str]:
    found = [name for name in ("less", "vim") if shutil.which(name)]
    assert found, "neither less nor vim is installed: the full-screen case cannot be tested"
    return found


@pytest.mark.parametrize("program", _full_screen_programs())
def test_real_full_screen_program_is_never_read(
    spawn: Callable[..., Pty], tmp_path: Path, program: str
) -> None:
    (tmp_path / "notes.txt").write_text("".join(f"note line {i}\n" for i in range(300)))
    sh = spawn()
    command = "less notes.txt" if program == "less" else "vim -u NONE -N -i NONE -n notes.txt"
    sh.type(command.encode(), expect=b"notes.txt")
    assert sh.enter(expect=b"note line 5").text == command
    assert sh.reader.full_screen
    if program == "less":
        sh.type(b"j", expect=b"note line")
        assert sh.enter(expect=b"note line") == CommandLine(LineKind.FULL_SCREEN)
        sh.type(b"q", expect=PROMPT_END)
    else:
        sh.type(b"O", expect=b"INSERT")
        sh.type(b"rm -rf /srv", expect=b"srv")
        assert sh.enter(expect=None) == CommandLine(LineKind.FULL_SCREEN)
        sh.type(b"\x1b")
        sh.type(b":q!", expect=b"q!")
        assert sh.enter().kind is LineKind.FULL_SCREEN
    assert not sh.reader.full_screen
    sh.type(b"echo after-" + program.encode(), expect=b"after-")
    assert sh.enter() == CommandLine(LineKind.COMMAND, f"echo after-{program}", exact=True)
