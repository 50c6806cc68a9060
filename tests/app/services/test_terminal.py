"""The replay viewer's terminal: frames (lines, cells, colour runs, cursor) of what the shared
emulator shows, its sizes, snapshots to seek from, and the credit output earns. The emulator
itself is tested in tests/localproxy/test_terminal.py."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.services.terminal import CREDIT_MAX, MAX_COLS, MAX_ROWS, Emulator, Frame, Style
from tests.localproxy.test_terminal import OUTPUT


def screen(*outputs: str, cols: int = 20, rows: int = 4) -> Frame:
    emulator = Emulator(cols, rows)
    for text in outputs:
        emulator.feed(text)
    return emulator.frame(0.0)


def test_text_lines_and_the_cursor() -> None:
    frame = screen("hello\r\nworld")
    assert frame.lines == ("hello" + " " * 15, "world" + " " * 15, " " * 20, " " * 20)
    assert frame.cursor == (5, 1)
    assert all(len(cells) == 20 for cells in frame.cells)
    assert frame.text() == "hello\nworld"


def test_colours_and_attributes_become_styles() -> None:
    frame = screen(
        "\x1b[31mred\x1b[0m \x1b[1;4;38;5;208mhot\x1b[m \x1b[48;2;1;2;3;7mrgb\x1b[27;49m x"
        "\x1b[3;94mi\x1b[23;39mj"
    )
    assert frame.styles[0] == (
        Style(0, 3, "#cd0000", None, False, False, False, False),
        Style(4, 7, "#ff8700", None, True, False, True, False),
        Style(8, 11, None, "#010203", False, False, False, True),
        Style(13, 14, "#5c5cff", None, False, True, False, False),
    )
    assert frame.lines[0].startswith("red hot rgb xij")


def test_erasing_uses_the_background_colour() -> None:
    frame = screen("\x1b[44m\x1b[2J\x1b[0mx")
    assert frame.styles[1] == (Style(0, 20, None, "#0000ee", False, False, False, False),)
    assert frame.styles[0][0] == Style(1, 20, None, "#0000ee", False, False, False, False)


def test_wide_characters_take_two_cells() -> None:
    frame = screen("日本x")
    assert frame.cells[0][:5] == ("日", "", "本", "", "x")
    assert frame.lines[0] == "日本x" + " " * 15
    assert frame.cursor == (5, 0)


def test_the_cursor_waiting_to_wrap_is_shown_on_the_last_column() -> None:
    frame = screen("x" * 20)
    assert frame.cursor == (19, 0)
    assert screen("x" * 20 + "y").cursor == (1, 1)


def test_absurd_sizes_are_clamped() -> None:
    emulator = Emulator(10**6, 0)
    frame = emulator.frame(0)
    assert (frame.cols, frame.rows) == (MAX_COLS, 1)
    emulator.resize(0, 10**6)
    assert (emulator.frame(0).cols, emulator.frame(0).rows) == (1, MAX_ROWS)


def test_cursor_hidden_and_shown() -> None:
    assert screen("\x1b[?25l").cursor is None
    assert screen("\x1b[?25l\x1b[?25h").cursor == (0, 0)


def test_a_flood_of_costly_sequences_is_cut_short() -> None:
    """Each character earns credit and whole-row work spends it: an output event made of
    screen clears on the largest screen stops early instead of running for minutes."""
    emulator = Emulator(MAX_COLS, MAX_ROWS)
    emulator.feed("\x1b[2J" * 200_000 + "never shown")
    assert "never shown" not in emulator.frame(0).text()
    assert emulator.screen.credit < CREDIT_MAX
    emulator.feed("\x1b[Hshown again")  # ordinary output goes on
    assert emulator.frame(0).lines[0].startswith("shown again")


def test_a_snapshot_is_taken_between_sequences_and_restores_the_screen() -> None:
    emulator = Emulator(20, 4)
    emulator.feed("\x1b[31mred\x1b[?1049halt\x1b[")
    assert not emulator.clean  # inside a sequence: the parser's state cannot be copied
    emulator.feed("1;5H\x1b]0;title")
    assert not emulator.clean  # inside a control string
    emulator.feed("\x07x")
    assert emulator.clean
    snap, shown = emulator.snapshot(), emulator.frame(1.0)
    emulator.feed("\x1b[?1049l\x1b[2Jgone")
    seeker = Emulator(3, 3)
    seeker.restore(snap)
    assert seeker.frame(1.0) == shown
    seeker.feed("\x1b[?1049l")  # the normal screen was in the snapshot too
    assert seeker.frame(1.0).text() == "red"
    assert seeker.frame(1.0).styles[0] == (Style(0, 3, "#cd0000", None, *[False] * 4),)


# -- properties ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.text(max_size=40), OUTPUT, st.tuples(st.integers(-5, 10**6), st.integers())),
        max_size=12,
    )
)
def test_any_output_gives_a_frame_of_the_screens_size(events: list[str | tuple[int, int]]) -> None:
    emulator = Emulator(15, 4)
    cols, rows = 15, 4
    for event in events:
        if isinstance(event, str):
            emulator.feed(event)
        else:
            emulator.resize(*event)
            cols, rows = max(1, min(event[0], MAX_COLS)), max(1, min(event[1], MAX_ROWS))
        frame = emulator.frame(0)
        assert (frame.cols, frame.rows) == (cols, rows)
        assert len(frame.lines) == len(frame.cells) == len(frame.styles) == rows
        assert all(len(cells) == cols for cells in frame.cells)
        assert all(
            "".join(cells) == line for cells, line in zip(frame.cells, frame.lines, strict=True)
        )
        assert all(0 <= s.start < s.end <= cols for styles in frame.styles for s in styles)
        assert frame.cursor is None or (0 <= frame.cursor[0] < cols and 0 <= frame.cursor[1] < rows)
