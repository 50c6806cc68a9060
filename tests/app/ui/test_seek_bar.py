"""The seek bar's geometry: times to pixels and back, snapping to markers, tooltips."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from app.services.replay import Marker
from app.ui.seek_bar import MARGIN, SeekBar, clock


@pytest.fixture
def bar(qtbot) -> SeekBar:
    b = SeekBar()
    qtbot.addWidget(b)
    b.resize(2 * MARGIN + 1000, 30)  # one pixel a tenth of a second over 100 s
    b.set_duration(100.0)
    b.set_markers(
        [
            Marker(50.0, "policy: rm -rf /", "policy"),
            Marker(10.0, "ls", "command"),
            Marker(50.2, "whoami", "command"),
        ]
    )
    return b


def test_times_map_to_pixels_and_back(bar: SeekBar) -> None:
    assert bar.x_of(0) == MARGIN and bar.x_of(100) == MARGIN + 1000
    assert bar.time_at(MARGIN + 250) == 25.0
    assert bar.time_at(-5) == 0.0 and bar.time_at(5000) == 100.0
    assert [m.at for m in bar.markers] == [10.0, 50.0, 50.2]  # kept in time order


def test_a_marker_within_a_few_pixels_is_hit_and_policy_wins_a_crowd(bar: SeekBar) -> None:
    assert bar.marker_near(bar.x_of(10.0) + 4) == Marker(10.0, "ls", "command")
    assert bar.marker_near(bar.x_of(10.0) + 9) is None
    # 50.0 and 50.2 are two pixels apart: between them, the policy event is found
    near = bar.marker_near(bar.x_of(50.1))
    assert near is not None and near.kind == "policy"


def test_clicks_seek_and_dragging_scrubs(bar: SeekBar, qtbot) -> None:
    asked: list[float] = []
    bar.seek_requested.connect(asked.append)
    qtbot.mousePress(bar, Qt.MouseButton.LeftButton, pos=QPoint(round(bar.x_of(10.0)) + 3, 15))
    qtbot.mouseMove(bar, QPoint(round(bar.x_of(70.0)), 15))
    qtbot.mouseRelease(bar, Qt.MouseButton.LeftButton, pos=QPoint(round(bar.x_of(70.0)), 15))
    assert asked[0] == 10.0  # snapped to the marker
    assert asked[-1] == pytest.approx(70.0, abs=0.1)


def test_tooltips_name_the_marker_or_the_time(bar: SeekBar) -> None:
    assert bar.tooltip_at(bar.x_of(50.0)) == "0:50  policy: rm -rf /"
    assert bar.tooltip_at(bar.x_of(80.0)) == "1:20"


def test_clock() -> None:
    shown = [clock(s) for s in (0, 7.9, 754, 3723, -1)]
    assert shown == ["0:00", "0:07", "12:34", "1:02:03", "0:00"]
