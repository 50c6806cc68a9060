"""The shared terminal emulator (localproxy/terminal.py): what the screen shows for what programs
print, as xterm shows it; colours; the fast parser against pyte's own; snapshots; bounded work
on hostile output; and that the local proxy and the CLI never import it."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localproxy.terminal import (
    DEFAULT_PEN,
    MAX_SEQUENCE,
    PALETTE,
    Pen,
    Screen,
    Stream,
    StringFilter,
)


class Term:
    """A screen with its parser and control-string filter, fed as its owners feed it."""

    def __init__(self, cols: int = 20, rows: int = 4, *, colours: bool = True) -> None:
        self.screen = Screen(cols, rows, colours=colours)
        self.stream = Stream(self.screen)
        self.strings = StringFilter()

    def feed(self, *outputs: str) -> Term:
        for text in outputs:
            self.stream.feed_bounded(self.strings(text))
        return self

    @property
    def lines(self) -> list[str]:
        return [row.text() for row in self.screen.rows]

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.lines).rstrip("\n")

    @property
    def cursor(self) -> tuple[int, int]:
        return self.screen.cursor.x, self.screen.cursor.y

    def pens(self, y: int) -> list[Pen]:
        pens = self.screen.rows[y].pens
        assert pens is not None
        return pens

    @property
    def clean(self) -> bool:
        return not (self.stream.in_sequence or self.strings.pending)

    def state(self) -> tuple[object, ...]:
        """Everything the screen shows and will go on from."""
        screen = self.screen
        rows = tuple(
            (tuple(r), None if r.pens is None else tuple(r.pens), r.wrapped) for r in screen.rows
        )
        cursor = screen.cursor
        return rows, cursor.x, cursor.y, cursor.hidden, screen.pen, screen.alt, screen.lost_above


def term(*outputs: str, cols: int = 20, rows: int = 4) -> Term:
    return Term(cols, rows).feed(*outputs)


def pen(fg: str | None = None, bg: str | None = None, *flags: str) -> Pen:
    return (fg, bg, "bold" in flags, "italic" in flags, "underline" in flags, "reverse" in flags)


# -- text ------------------------------------------------------------------------------------------


def test_text_lines_and_the_cursor() -> None:
    t = term("hello\r\nworld")
    assert t.lines == ["hello" + " " * 15, "world" + " " * 15, " " * 20, " " * 20]
    assert t.cursor == (5, 1)
    assert t.text() == "hello\nworld"


def test_wide_characters_take_two_cells() -> None:
    t = term("日本x")
    assert t.screen.rows[0][:5] == ["日", "", "本", "", "x"]
    assert t.lines[0] == "日本x" + " " * 15
    assert t.cursor == (5, 0)
    # Overwriting half of one blanks its other half.
    assert term("日本", "\x1b[1;2Hy").screen.rows[0][:4] == [" ", "y", "本", ""]
    # One that does not fit at the end of a row goes on below; on one column it is not drawn.
    assert term("x" * 19 + "日", cols=20).lines[1].startswith("日")
    assert term("日a", cols=1, rows=1).lines == ["a"]


def test_combining_marks_join_their_character_up_to_four_to_a_cell() -> None:
    t = term("e\u0301!" + "\r\n" + "日\u0301" + "\r\n" + "a" + "\u0301" * 9)
    assert t.screen.rows[0][:2] == ["e\u0301", "!"]
    assert t.screen.rows[1][:2] == ["日\u0301", ""]
    assert t.screen.rows[2][0] == "a" + "\u0301" * 3


def test_autowrap_the_pending_wrap_and_the_wrap_flag() -> None:
    t = term("x" * 20)
    assert t.cursor == (20, 0)  # waiting past the margin (pending wrap), not yet on the next row
    assert not t.screen.rows[0].wrapped
    t = term("x" * 20 + "y")
    assert t.lines[1].startswith("y") and t.screen.rows[0].wrapped
    t = term("x" * 20 + "\x1b[Dz")  # a move leaves the pending state (xterm)
    assert t.lines[0] == "x" * 18 + "zx" and t.lines[1] == " " * 20
    # Erasing to the end of a row (or all of it) clears its flag.
    for erase in ("\x1b[K", "\x1b[2K", "\x1b[1K"):
        t = term("x" * 25, f"\x1b[1;20H{erase}")
        assert not t.screen.rows[0].wrapped, erase
    assert term("x" * 25, "\x1b[1;5H\x1b[1K").screen.rows[0].wrapped  # text left on its end


def test_without_autowrap_the_last_column_is_overwritten() -> None:
    assert term("\x1b[?7l" + "x" * 19 + "abc").lines[0] == "x" * 19 + "c"


def test_insert_mode_and_character_edits() -> None:
    t = term("abcdef", "\x1b[1;3H\x1b[4hXY\x1b[4l")
    assert t.lines[0].rstrip() == "abXYcdef"
    assert term("abcdef", "\x1b[1;2H\x1b[2P").lines[0].rstrip() == "adef"
    assert term("abcdef", "\x1b[1;2H\x1b[2@").lines[0].rstrip() == "a  bcdef"
    assert term("abcdef", "\x1b[1;2H\x1b[3X").lines[0].rstrip() == "a   ef"


def test_scrolling_and_scroll_regions() -> None:
    t = term("1\r\n2\r\n3\r\n4\r\n5")
    assert [line.strip() for line in t.lines] == ["2", "3", "4", "5"]
    t = term("a\r\nb\r\nc\r\nd", "\x1b[2;3r\x1b[3;1H\nx")
    assert [line.strip() for line in t.lines] == ["a", "c", "x", "d"]
    t = term("a\r\nb\r\nc\r\nd", "\x1b[2;1H\x1b[L")
    assert [line.strip() for line in t.lines] == ["a", "", "b", "c"]
    t = term("a\r\nb\r\nc\r\nd", "\x1b[2;1H\x1b[2M")
    assert [line.strip() for line in t.lines] == ["a", "d", "", ""]
    t = term("a\r\nb", "\x1b[H\x1bM")  # reverse index at the top scrolls down
    assert [line.strip() for line in t.lines] == ["", "a", "b", ""]


def test_rows_that_leave_the_top_say_whether_the_top_row_continues_them() -> None:
    t = term("x" * 30 + "\r\n\r\n\r\n")  # the wrapped row scrolled off, its rest is on top
    assert t.lines[0].startswith("x" * 10) and t.screen.lost_above
    t.feed("\r\n")
    assert not t.screen.lost_above
    t = term("x" * 30 + "\r\n\r\n\r\n", "\x1b[2J")
    assert not t.screen.lost_above


def test_tabs_and_tab_stops() -> None:
    assert term("a\tb").lines[0].startswith("a       b")
    assert term("\x1b[3g\x1b[1;4H\x1bH\ra\tb").lines[0].startswith("a  b")
    assert term("\t" * 5 + "z").lines[0] == " " * 19 + "z"


def test_one_cursor_save_slot_restored_again_by_each_restore() -> None:
    t = term("\x1b[2;3H\x1b7\x1b[4;1H\x1b7\x1b[1;1H\x1b8\x1b[1;1H\x1b8")
    assert t.cursor == (0, 3)
    assert len(t.screen.savepoints) == 1


def test_the_alternate_screen_comes_and_goes() -> None:
    t = term("$ vim\r\n")
    t.feed("\x1b[?1049h\x1b[H\x1b[2Jediting")
    assert t.screen.alt and t.text() == "editing"
    t.feed("\x1b[?1049l")
    assert not t.screen.alt and t.text() == "$ vim"
    assert t.cursor == (0, 1)  # 1049 restores the cursor
    t = term("$ less\r\n", "\x1b[?47hpage\x1b[?47l")
    assert t.text() == "$ less" and t.cursor == (4, 1)  # 47 does not
    t = term("$ x", "\x1b[?1049hfull", "\x1bc")  # a full reset returns to the normal screen
    assert not t.screen.alt and t.text() == ""


def test_resize_keeps_the_cursor_row_pads_and_cuts() -> None:
    t = term("1\r\n2\r\n3\r\n4", cols=10)
    t.screen.resize(2, 12)
    assert (t.screen.columns, t.screen.lines) == (12, 2)
    assert [line.strip() for line in t.lines] == ["3", "4"]
    t.screen.resize(3, 5)
    assert t.lines == ["3    ", "4    ", "     "]
    t = term("abc日", cols=10)
    t.screen.resize(4, 4)  # half of the wide character is cut off
    assert t.lines[0] == "abc "
    t = term("ab日", cols=10)
    t.screen.resize(4, 4)  # all of it still fits
    assert t.screen.rows[0] == ["a", "b", "日", ""]
    t.screen.resize(4, 20)
    assert "\t" not in t.lines[0] and term("\t\tz", cols=20).lines[0].index("z") == 16


def test_line_drawing_characters() -> None:
    assert term("\x1b(0lqqk\x1b(Bq").lines[0].startswith("┌──┐q")
    # A stray SO (shift out) does not turn text into line drawing, as in xterm.
    assert term("\x0eabc\x0f").lines[0].startswith("abc")


def test_control_strings_are_dropped_even_split_across_feeds() -> None:
    t = term("a\x1b]0;title\x07b\x1bP1;2|payload\x1b\\c\x1b]8;;http://x", "y\x1b", "\\d")
    assert t.lines[0].startswith("abcd")
    t = term("a\x1b]0;t", "itle")
    assert not t.clean  # inside the string, between feeds
    t.feed("\x07b\x9d0;c1\x9cc")
    assert t.lines[0].startswith("abc") and t.clean


def test_cursor_hidden_and_shown() -> None:
    assert term("\x1b[?25l").screen.cursor.hidden
    assert not term("\x1b[?25l\x1b[?25h").screen.cursor.hidden


def test_sequences_pyte_cannot_take_are_dropped() -> None:
    # Too many parameters for the screen method (pyte would raise), a status report request.
    t = term("a\x1b[1;2Ab\x1b[5;3;9999999999999999999999999Hc\x1b[6nd\x1b[?3h")
    assert t.text() == "abcd"  # 132-column mode does not change the size
    assert t.stream.errors >= 2
    assert (t.screen.columns, t.screen.lines) == (20, 4)


def test_sequences_xterm_takes_as_no_change_to_the_screen_are_dropped() -> None:
    # Key modifier options (vim sends CSI > 4 ; 2 m), device attribute requests, a soft
    # reset, a conformance level: pyte would underline, or draw their final characters.
    t = term("\x1b[>4;2ma\x1b[>c\x1b[=cb\x1b[!pc\x1b[62;1\"pd\x1b[0'~e")
    assert t.text() == "abcde"
    assert t.pens(0)[:5] == [DEFAULT_PEN] * 5


def test_the_alignment_pattern_fills_the_screen_and_homes_the_cursor() -> None:
    t = term("a\x1b[2;3r\x1b[3;5H\x1b#8")
    assert t.lines == ["E" * 20] * 4
    assert t.cursor == (0, 0) and t.screen.margins is None


def test_a_sequence_that_runs_on_is_abandoned() -> None:
    t = term("\x1b[" + "1" * (MAX_SEQUENCE + 1))
    assert t.clean  # the parser starts clean
    t.feed("ok")
    assert t.lines[0].startswith("ok")
    t = term("\x1b[" + "1;" * 10)  # a real one split across feeds is kept
    assert not t.clean
    t.feed("31mred")
    assert t.lines[0].startswith("red") and t.pens(0)[0] == pen(PALETTE[1], None, "bold")


# -- colours ---------------------------------------------------------------------------------------


def test_colours_and_attributes_become_pens() -> None:
    t = term(
        "\x1b[31mred\x1b[0m \x1b[1;4;38;5;208mhot\x1b[m \x1b[48;2;1;2;3;7mrgb\x1b[27;49m x"
        "\x1b[3;94mi\x1b[23;39mj"
    )
    pens = t.pens(0)
    assert pens[0:3] == [pen("#cd0000")] * 3
    assert pens[3] == DEFAULT_PEN
    assert pens[4:7] == [pen("#ff8700", None, "bold", "underline")] * 3
    assert pens[8:11] == [pen(None, "#010203", "reverse")] * 3
    assert pens[13] == pen("#5c5cff", None, "italic")
    assert pens[14] == DEFAULT_PEN
    assert t.lines[0].startswith("red hot rgb xij")


def test_the_256_colour_palette_is_xterms() -> None:
    assert len(PALETTE) == 256
    assert (PALETTE[1], PALETTE[16], PALETTE[196], PALETTE[231], PALETTE[232], PALETTE[255]) == (
        "#cd0000",
        "#000000",
        "#ff0000",
        "#ffffff",
        "#080808",
        "#eeeeee",
    )


def test_malformed_colours_keep_the_pen() -> None:
    t = term("\x1b[32m\x1b[38;5;999ma\x1b[38;2;1mb\x1b[38mc")
    assert {p[0] for p in t.pens(0)[:3]} == {"#00cd00"}


def test_private_sgr_is_not_colours() -> None:
    # CSI ? 4 m is xterm's query of key modifier options.
    assert term("\x1b[?4ma").pens(0)[0] == DEFAULT_PEN


def test_erasing_and_scrolling_use_the_background_colour() -> None:
    t = term("\x1b[44m\x1b[2J\x1b[0mx")
    blue = pen(None, "#0000ee")
    assert t.pens(1) == [blue] * 20
    assert t.pens(0)[0] == DEFAULT_PEN and t.pens(0)[1:] == [blue] * 19
    t = term("\x1b[41m\x1b[4;1H\n")
    assert t.pens(3) == [pen(None, "#cd0000")] * 20


def test_saving_the_cursor_saves_the_pen() -> None:
    assert term("\x1b[31m\x1b7\x1b[0m\x1b8x").pens(0)[0] == pen("#cd0000")


def test_a_text_only_screen_keeps_no_colours() -> None:
    t = Term(colours=False).feed("\x1b[31;44mred\x1b[2J\x1b[1;1Hx\x1b[38;5;9my")
    assert t.lines[0].startswith("xy")
    assert all(row.pens is None for row in t.screen.rows)
    t.screen.resize(5, 30)
    t.feed("\x1b[4h\x1b[2@\x1b[P\x1b[5;1H\n\x1b[Lz日\x1b#8")
    assert all(row.pens is None for row in t.screen.rows)
    copy = Term(colours=False)
    copy.screen.restore(t.screen.snapshot())
    assert copy.state() == t.state()


# -- lines of output -------------------------------------------------------------------------------


def test_completed_lines_are_handed_over_once_with_wrapped_rows_joined() -> None:
    t = Term(10, 3)
    seen: list[str] = []
    t.screen.on_line = seen.append
    t.feed("first\r\n", "a" * 15 + "\r\n", "cleared", "\x1b[2J\x1b[H", "last")
    assert seen == ["first", "a" * 15, "cleared"]
    t.screen.collect_all()
    assert seen[-1] == "last"


# -- bounded work ----------------------------------------------------------------------------------


def test_work_stops_where_the_credit_ends() -> None:
    t = Term(1000, 500)
    t.screen.credit = 100_000
    assert not t.stream.feed_bounded("\x1b[2J" * 1000 + "never shown")
    assert t.screen.credit < 0 and "never shown" not in t.text()
    assert t.clean  # the parser starts clean after it
    t.screen.credit = 100_000
    assert t.stream.feed_bounded("\x1b[Hshown")
    assert t.lines[0].startswith("shown")


@pytest.mark.parametrize(
    "output",
    [
        "\x1b[2J",
        "\x1bc",
        "\x1b[?1049h",
        "\x1b[L",
        "\x1b[M",
        "\x1b[@",
        "\x1b[P",
        "\x1b[X",
        "\x1b[K",
        "\x1b#8",
        "\x1bH\t",
        "\x1b[4;1H\n",
    ],
)
def test_each_costly_operation_is_charged_before_it_is_done(output: str) -> None:
    t = term("a\r\nb\r\nc\r\nd" + "x" * 16)
    before = t.state()
    t.screen.credit = 0
    assert not t.stream.feed_bounded(output)
    assert t.state()[0] == before[0]  # no row changed


# -- properties ------------------------------------------------------------------------------------

# Text with the characters that matter to a terminal: controls, escapes, digits, wide and
# combining characters.
ALPHABET = st.sampled_from(
    [
        *"ab \r\n\b\t\x07\x0e\x0f0123456789;?[]()#%PHJKm",
        "\x1b",
        "\x1b[",
        "\x9b",
        "日",
        "\u0301",
        "\x1b[31m",
        "\x1b[2J",
        "\x1b[?1049h",
        "\x1b[?1049l",
        "\x1b[2;3r",
        "\x1b[4@",
        "\x1b[3P",
        "\x1b[2L",
        "\x1b[M",
        "\x1b7",
        "\x1b8",
        "\x1bM",
        "\x1b(0",
        "\x1b]0;t\x07",
    ]
)
OUTPUT = st.lists(ALPHABET, max_size=60).map("".join)


def _pyte_parsed(t: Term) -> Term:
    """`t` fed through pyte's own parser loop, without the fast paths."""
    t.stream.feed = functools.partial(pyte.Stream.feed, t.stream)  # type: ignore[method-assign]
    return t


@settings(max_examples=300, deadline=None)
@given(st.lists(OUTPUT, min_size=1, max_size=6), st.booleans())
def test_fast_paths_dispatch_as_pytes_parser(outputs: list[str], colours: bool) -> None:
    fast = Term(12, 5, colours=colours)
    slow = _pyte_parsed(Term(12, 5, colours=colours))
    for text in outputs:
        fast.feed(text)
        slow.feed(text)
    assert fast.state() == slow.state()


@settings(max_examples=200, deadline=None)
@given(OUTPUT, OUTPUT, st.integers(1, 30), st.integers(1, 8))
def test_a_restored_snapshot_goes_on_exactly_as_the_original(
    before: str, after: str, cols: int, rows: int
) -> None:
    original = Term(12, 5)
    original.feed(before)
    original.screen.resize(rows, cols)
    if not original.clean:
        original.feed("x")  # end whatever sequence was left open
    if not original.clean:
        return
    copy = Term(3, 3)
    copy.screen.restore(original.screen.snapshot())
    for t in (original, copy):
        t.feed(after)
    assert copy.state() == original.state()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=40), OUTPUT, st.tuples(st.integers(1, 40), st.integers(1, 9))),
        max_size=12,
    )
)
def test_any_output_leaves_a_screen_of_its_size(events: list[str | tuple[int, int]]) -> None:
    t = Term(15, 4)
    for event in events:
        if isinstance(event, str):
            t.feed(event)
        else:
            t.screen.resize(event[1], event[0])
        screen = t.screen
        assert len(screen.rows) == screen.lines
        assert all(len(r) == len(r.pens or ()) == screen.columns for r in screen.rows)
        assert all(len(cell) <= 4 for r in screen.rows for cell in r)
        assert 0 <= screen.cursor.x <= screen.columns and 0 <= screen.cursor.y < screen.lines
        assert len(screen.savepoints) <= 1


# -- who imports it --------------------------------------------------------------------------------


def test_the_local_proxy_and_the_cli_never_import_it() -> None:
    """pyte is not in the base dependencies the local proxy and the CLI run on."""
    code = (
        "import sys, localproxy.cli, localproxy.listener, localproxy.connect; "
        "print(sorted(m for m in sys.modules if m == 'pyte' or m == 'localproxy.terminal'))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"
