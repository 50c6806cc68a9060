"""The replay viewer: play, pause, speed, skipping idle time, seeking by the markers, search
with jump-to-time, copy — on a real asciicast written by the recorder's own encoder, played
by the real engine. Time is a clock the test moves: no sleeps, no timings."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QGuiApplication

from app.services import replay as replay_module
from app.services.replay import Frame, TerminalReplay
from app.ui import theme
from app.ui.replay_view import SPEEDS, ReplayView
from app.ui.seek_bar import marker_color
from app.ui.tasks import Tasks
from central.recording.asciicast import EventEncoder, header, header_line
from tests.app.ui.conftest import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def recording() -> str:
    """A short shell session: two commands, then 18 s of nothing, then one more line."""
    enc = EventEncoder(0.0)
    head = header(40, 10, timestamp=1_700_000_000, watchgate={"kind": "shell", "user": "alice"})
    return "".join(
        [
            header_line(head),
            enc.output(0.2, b"$ "),
            enc.marker(1.0, "command: ls"),
            enc.output(1.0, b"ls\r\nalpha  beta\r\n$ "),
            enc.marker(2.0, "command: echo needle"),
            enc.output(2.0, b"echo needle\r\n\x1b[1mneedle\x1b[0m\r\n$ "),
            enc.output(20.0, b"date\r\nlater\r\n$ "),
            enc.exit(21.0, 0),
        ]
    )


@pytest.fixture
def failures() -> list[BaseException]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def view(qtbot, clock: Clock, failures: list[BaseException]) -> AsyncIterator[ReplayView]:
    v = ReplayView(Tasks(lambda _what, exc: failures.append(exc)), clock=clock)
    qtbot.addWidget(v)
    v.resize(900, 420)
    v.show()
    qtbot.waitExposed(v)
    v.set_replay(TerminalReplay.open(recording()))
    yield v
    await v.aclose()
    await v.tasks.aclose()
    assert failures == []


def advance(view: ReplayView, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    view.tick()


async def test_play_advances_the_position_and_the_painted_screen(view, clock) -> None:
    assert view.terminal.text() == ""
    assert view.time_label.text() == "0:00 / 0:21"
    painted = view.terminal.paints
    view.play()
    assert view.play_button.text() == "Pause" and view.timer.isActive()
    advance(view, clock, 1.5)
    assert view.position == pytest.approx(1.5)
    assert view.terminal.text() == "$ ls\nalpha  beta\n$"
    assert view.seek_bar.position == pytest.approx(1.5)
    view.terminal.repaint()
    assert view.terminal.paints > painted
    advance(view, clock, 1.0)
    assert "needle" in view.terminal.text().splitlines()


async def test_pause_stops_time(view, clock) -> None:
    view.play()
    advance(view, clock, 1.5)
    view.pause()
    assert view.play_button.text() == "Play" and not view.timer.isActive()
    screen = view.terminal.text()
    advance(view, clock, 30)
    assert view.position == pytest.approx(1.5)
    assert view.terminal.text() == screen


async def test_space_plays_and_pauses(view, clock, qtbot) -> None:
    view.terminal.setFocus()
    qtbot.keyClick(view.terminal, Qt.Key.Key_Space)
    assert view.playing
    advance(view, clock, 1.0)
    qtbot.keyClick(view.terminal, Qt.Key.Key_Space)
    assert not view.playing and view.position == pytest.approx(1.0)


async def test_speed_changes_the_rate(view, clock) -> None:
    view.skip_idle.setChecked(False)
    view.speed.setCurrentIndex(SPEEDS.index(4.0))
    view.play()
    advance(view, clock, 0.5)
    assert view.position == pytest.approx(2.0)  # 0.5 s at 4x
    view.speed.setCurrentIndex(SPEEDS.index(0.5))
    advance(view, clock, 1.0)
    assert view.position == pytest.approx(2.5)  # then 1 s at half speed
    view.speed.setCurrentIndex(SPEEDS.index(8.0))
    advance(view, clock, 1.0)
    assert view.position == pytest.approx(10.5)


async def test_skipping_idle_time_jumps_over_the_long_pause(view, clock) -> None:
    view.seek(2.5)
    assert view.skip_idle.isChecked()  # on by default
    view.play()
    advance(view, clock, 3.0)  # two seconds of the pause are played, then it is skipped
    assert view.position > 20
    assert "later" in view.terminal.text()

    view.skip_idle.setChecked(False)
    view.seek(2.5)
    view.play()
    advance(view, clock, 3.0)
    assert view.position == pytest.approx(5.5)
    assert "later" not in view.terminal.text()


async def test_play_stops_at_the_end_and_starts_over_from_there(view, clock) -> None:
    view.play()
    advance(view, clock, 100)
    assert not view.playing and view.position == pytest.approx(21.0)
    assert view.play_button.text() == "Play" and not view.timer.isActive()
    view.play()
    assert view.position == 0.0


async def test_clicking_a_marker_on_the_seek_bar_jumps_exactly_to_it(view, qtbot) -> None:
    bar = view.seek_bar
    commands = [m for m in bar.markers if m.kind == "command"]
    assert [(m.at, m.label) for m in commands] == [(1.0, "ls"), (2.0, "echo needle")]
    x = round(bar.x_of(2.0)) + 3  # a few pixels off: the click snaps to the marker
    assert "echo needle" in bar.tooltip_at(x)
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=QPoint(x, bar.height() // 2))
    assert view.position == 2.0
    assert view.terminal.text().splitlines()[-1] == "$"
    assert "needle" in view.terminal.text()
    # away from any marker, a click seeks to the time under the pointer
    x = round(bar.x_of(15.0))
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=QPoint(x, bar.height() // 2))
    assert view.position == pytest.approx(15.0, abs=21 / bar.width() * 2)


async def test_policy_markers_are_painted_in_their_own_colour(view, qtbot) -> None:
    replay = view.replay
    assert replay is not None
    replay.add_policy_events([(12.0, "blocked: rm -rf / (rule no-rm)")])
    view.refresh_markers()
    bar = view.seek_bar
    image = bar.grab().toImage()
    colors = theme.current().colors
    top = bar.height() // 2 - 7  # above the track, where only the tick is painted

    def tick_colour(at: float) -> QColor:
        return image.pixelColor(round(bar.x_of(at)), top)

    assert tick_colour(12.0) == marker_color("policy", colors) == colors.danger
    assert tick_colour(1.0) == marker_color("command", colors)
    assert "rm -rf /" in bar.tooltip_at(bar.x_of(12.0))


async def test_search_lists_the_hits_and_jumps_to_each_marked(view, qtbot) -> None:
    view.search_field.setText("NEEDLE")
    qtbot.keyClick(view.search_field, Qt.Key.Key_Return)
    assert view._searching is not None
    await view._searching
    assert [(h.at, h.line.strip()) for h in view.hits] == [
        (2.0, "$ echo needle"),
        (2.0, "needle"),
    ]
    assert view.hit_list.count() == 2 and view.hit_list.isVisible()
    # the first hit is shown: paused at its time, the text marked on the screen
    assert not view.playing and view.position == 2.0
    assert view.hit_label.text() == "1 of 2"
    assert view.terminal.current_match == (2, 7, 6)
    assert len(view.terminal.matches) == 2
    qtbot.keyClick(view.search_field, Qt.Key.Key_Return)  # Enter again: the next hit
    assert view.hit_label.text() == "2 of 2"
    assert view.terminal.current_match == (3, 0, 6)
    view.seek(0.0)
    assert view.terminal.matches == []  # not on screen yet at the start


async def test_copy_puts_the_screen_text_on_the_clipboard(view, qtbot) -> None:
    view.seek(2.5)
    view.terminal.setFocus()
    qtbot.keyClick(view.terminal, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    text = QGuiApplication.clipboard().text()
    assert text == "$ ls\nalpha  beta\n$ echo needle\nneedle\n$"
    view.seek(1.5)
    view.copy_button.click()
    assert QGuiApplication.clipboard().text() == "$ ls\nalpha  beta\n$"


async def test_channels_are_offered_only_when_there_is_a_choice(view) -> None:
    view.set_channels([(0, "shell")], 0)
    assert view.channel.isHidden()
    chosen: list[int] = []
    view.channel_chosen.connect(chosen.append)
    view.set_channels([(0, "#0 shell"), (3, "#3 exec: tail -f\x1b[2J /var/log/syslog")], 0)
    assert not view.channel.isHidden()
    assert view.channel.itemText(1) == "#3 exec: tail -f␛[2J /var/log/syslog"
    view.channel.activated.emit(1)
    assert chosen == [3]


async def test_labels_from_the_recording_reach_tooltips_only_made_safe(view) -> None:
    replay = view.replay
    assert replay is not None
    replay.add_policy_events([(5.0, "held: evil\x1b]0;title\x07\u202eeman\nfake line")])
    view.refresh_markers()
    tip = view.seek_bar.tooltip_at(view.seek_bar.x_of(5.0))
    assert "\x1b" not in tip and "\x07" not in tip and "\u202e" not in tip and "\n" not in tip
    assert "␛]0;title␇" in tip


async def test_no_recording_disables_the_controls(view) -> None:
    view.set_replay(None)
    assert not view.play_button.isEnabled() and not view.seek_bar.isEnabled()
    assert view.copy_text() == "" and view.terminal.text() == ""
    view.toggle()  # nothing to play: nothing happens
    assert not view.playing


def busy() -> str:
    """30 s of coloured output, a line every 10 ms: far more than a seek may replay at once
    with the small keyframes of `unindexed`."""
    enc = EventEncoder(0.0)
    lines = (
        enc.output(i / 100, f"{i:05d} \x1b[1;3{i % 8}m{'x' * (i % 70)}\x1b[0m\r\n".encode())
        for i in range(1, 3001)
    )
    head = header(40, 10, timestamp=1_700_000_000, watchgate={"kind": "shell", "user": "alice"})
    return "".join([header_line(head), *lines])


@pytest.fixture
def unindexed(view: ReplayView, monkeypatch: pytest.MonkeyPatch) -> tuple[TerminalReplay, str]:
    """A busy recording just loaded into the view: its index not built at all yet (the worker
    thread starts on the loop's next turn), keyframes every 64 characters."""
    monkeypatch.setattr(replay_module, "KEYFRAME_COST", 64)
    monkeypatch.setattr(replay_module, "SEEK_BUDGET", 256)
    monkeypatch.setattr(replay_module, "NEAR_COST", 128)
    monkeypatch.setattr(replay_module, "_INDEX_STEP", 256)
    text = busy()
    replay = TerminalReplay.open(text)
    view.set_replay(replay)
    return replay, text


def exact(text: str, at: float) -> Frame:
    """The frame at `at` from a fully indexed replay."""
    replay = TerminalReplay.open(text)
    replay.build_index()
    return replay.frame_at(at)


async def test_a_seek_past_the_index_shows_a_near_frame_then_lands(view, unindexed) -> None:
    replay, text = unindexed
    view.seek(25.0)
    # at once, and without indexing on the GUI thread: an earlier screen, marked as seeking
    assert replay._built == 0 and view.playback.seeking
    near = view.terminal.frame
    assert near is not None and near.at < 25.0 and near == replay.frame_near(25.0)[0]
    assert view.position == 25.0 and view.seeking_label.isVisible()
    assert view.copy_text() == "" and "Still seeking" in view.status.text()  # not a near one
    await wait_until(lambda: not view.seeking_label.isVisible(), what="the seek to land")
    landed = exact(text, 25.0)
    assert view.terminal.frame == landed and "02500" in landed.text()
    assert not view.playback.seeking and view.copy_text() == landed.text()


async def test_only_the_latest_of_quick_seeks_lands(view, unindexed, monkeypatch) -> None:
    _, text = unindexed
    shown: list[Frame | None] = []
    set_frame = view.terminal.set_frame
    monkeypatch.setattr(view.terminal, "set_frame", lambda f: (shown.append(f), set_frame(f)))
    view.seek(20.0)
    view.seek(28.0)
    first = view._landing
    await wait_until(lambda: not view.seeking_label.isVisible(), what="the seek to land")
    await view.tasks.idle()
    assert first is not None and first.done()
    assert shown[-1] == view.terminal.frame == exact(text, 28.0)
    assert exact(text, 20.0) not in shown  # the first seek's frame never appeared
    assert view.position == 28.0


async def test_playing_waits_for_the_seek_and_goes_on_from_where_it_landed(
    view, unindexed, clock
) -> None:
    _, text = unindexed
    view.skip_idle.setChecked(False)
    view.seek(20.0)
    view.play()
    advance(view, clock, 1.0)  # the exact frame is not there yet: the position holds
    assert view.position == 20.0 and view.playing
    await wait_until(lambda: not view.seeking_label.isVisible(), what="the seek to land")
    advance(view, clock, 0.5)
    assert view.position == pytest.approx(20.5)
    assert view.terminal.frame == exact(text, view.position)
