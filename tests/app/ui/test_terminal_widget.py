"""The terminal widget paints a Frame: text, colours, attributes, the cursor, search matches.

Frames come from the replay's real emulator fed with real escape sequences; what is checked is
what ends up on the widget's pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage

from app.services.replay import Frame
from app.services.terminal import Emulator
from app.ui import theme
from app.ui.terminal_widget import TerminalView


@pytest.fixture
def light() -> Iterator[theme.Colors]:
    t = theme.current()
    t.set_choice(theme.ThemeChoice.LIGHT)
    yield t.colors
    t.set_choice(theme.ThemeChoice.SYSTEM)


def screen(output: str, cols: int = 40, rows: int = 6) -> Frame:
    emulator = Emulator(cols, rows)
    emulator.feed(output)
    return emulator.frame(0.0)


def shown(view: TerminalView, frame: Frame, qtbot) -> QImage:
    view.set_frame(frame)
    view.resize(view.sizeHint())
    view.show()
    qtbot.waitExposed(view)
    return view.grab().toImage()


def near(a: QColor, b: QColor, tolerance: int = 40) -> bool:
    return (
        abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue()) <= tolerance
    )


def colours(image: QImage, rect: QRect) -> list[QColor]:
    return [
        image.pixelColor(x, y)
        for x in range(rect.left(), rect.right() + 1)
        for y in range(rect.top(), rect.bottom() + 1)
    ]


def has(image: QImage, rect: QRect, colour: str | QColor) -> bool:
    want = QColor(colour)
    return any(near(c, want) for c in colours(image, rect))


def test_text_is_painted_in_its_colours_on_the_theme_background(qtbot, light) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    image = shown(view, screen("\x1b[31mred\x1b[0m plain\r\n\x1b[42mgreen-bg\x1b[0m"), qtbot)
    assert view.text() == "red plain\ngreen-bg"
    red = view.cell_rect(0, 0, 3)
    assert has(image, red, "#cd0000")
    assert not has(image, view.cell_rect(4, 0, 5), "#cd0000")
    assert has(image, view.cell_rect(4, 0, 5), light.text)  # default colour: the theme's
    # a background colour fills the whole cells, glyphs or not
    assert near(image.pixelColor(view.cell_rect(0, 1).topLeft()), QColor("#00cd00"))
    # and the rest of the screen is the theme's code background
    assert near(image.pixelColor(view.cell_rect(20, 3).center()), light.code_bg, 6)


def test_reverse_video_swaps_the_colours_and_underline_draws_a_line(qtbot, light) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    image = shown(view, screen("\x1b[7mREV\x1b[0m \x1b[4m___x\x1b[0m"), qtbot)
    # reversed: the cell is filled with the default text colour
    assert near(image.pixelColor(view.cell_rect(0, 0).topLeft()), light.text, 30)
    underlined = view.cell_rect(4, 0, 3)
    plain = dataclasses.replace(view.frame, styles=((),) * view.frame.rows)  # type: ignore[type-var]
    before = colours(image, underlined)
    view.set_frame(plain)
    after = colours(view.grab().toImage(), underlined)
    assert before != after  # the underline is painted only with the attribute


def test_the_cursor_is_a_block_at_its_cell(qtbot, light) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    frame = screen("$ ls")
    assert frame.cursor == (4, 0)
    image = shown(view, frame, qtbot)
    cursor = view.cell_rect(4, 0)
    assert near(image.pixelColor(cursor.topLeft()), light.text, 6)
    hidden = dataclasses.replace(frame, cursor=None)
    view.set_frame(hidden)
    assert near(view.grab().toImage().pixelColor(cursor.topLeft()), light.code_bg, 6)


def test_search_matches_are_marked_and_the_current_one_stands_out(qtbot, light) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    shown(view, screen("grep root /etc/passwd\r\nroot:x:0:0:ROOT:/root"), qtbot)
    count = view.set_search("root", current=("root:x:0:0:ROOT:/root", 11))
    assert count == 4
    assert view.matches == [(0, 5, 4), (1, 0, 4), (1, 11, 4), (1, 17, 4)]
    assert view.current_match == (1, 11, 4)
    image = view.grab().toImage()
    current = view.cell_rect(11, 1, 4)
    other = view.cell_rect(0, 1, 4)
    assert image.pixelColor(current.topLeft()) != image.pixelColor(other.topLeft())
    assert not near(image.pixelColor(other.topLeft()), light.code_bg, 6)  # tinted
    view.set_search("")
    assert view.matches == [] and view.current_match is None


def test_matches_follow_the_screen_as_frames_change(qtbot) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    view.set_frame(screen("nothing here"))
    view.set_search("needle")
    assert view.matches == []
    view.set_frame(screen("a needle\r\nand NEEDLE"))
    assert view.matches == [(0, 2, 6), (1, 4, 6)]


def test_wide_characters_take_two_cells(qtbot) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    frame = screen("日本 ok")
    assert frame.cells[0][:5] == ("日", "", "本", "", " ")
    shown(view, frame, qtbot)
    view.set_search("ok")
    assert view.matches == [(0, 5, 2)]


def test_control_characters_in_a_frame_are_painted_as_visible_stand_ins(qtbot) -> None:
    """A frame is data from the recording: a control character in a cell must not reach the
    painter raw (it is drawn as the Control Pictures symbol)."""
    view = TerminalView()
    qtbot.addWidget(view)
    base = screen("a?b")

    def first_row(*row: str) -> Frame:
        cells = (*row, *base.cells[0][len(row) :])
        return dataclasses.replace(
            base, lines=("".join(cells), *base.lines[1:]), cells=(cells, *base.cells[1:])
        )

    tampered = first_row("a", "\x1b", "b")
    visible = first_row("a", "\u241b", "b")
    first = shown(view, tampered, qtbot)
    view.set_frame(visible)
    assert view.grab().toImage() == first


def test_a_large_terminal_shrinks_to_fit_the_widget(qtbot) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    view.set_frame(screen("x" * 160, cols=160, rows=50))
    natural = view.sizeHint()
    view.resize(int(natural.width() * 0.7), int(natural.height() * 0.7))
    view.show()
    qtbot.waitExposed(view)
    grid = view.cell_rect(0, 0, 160).united(view.cell_rect(0, 49))
    assert view.rect().contains(grid)
    assert view.cell_size().width() < natural.width() / 160


def test_nothing_to_show_paints_the_background(qtbot, light) -> None:
    view = TerminalView()
    qtbot.addWidget(view)
    view.resize(200, 100)
    view.show()
    qtbot.waitExposed(view)
    assert view.text() == ""
    image = view.grab().toImage()
    assert near(image.pixelColor(100, 50), light.code_bg, 6)
