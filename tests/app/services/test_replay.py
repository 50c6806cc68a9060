"""The replay engine: opening casts (and refusing bad ones), frames at any time through
keyframes, markers, search, idle skipping and playback; on casts built here and on a shell
session recorded through the real gateway from a real sshd."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.services import replay as replay_module
from app.services.replay import CastError, Marker, Playback, SearchHit, TerminalReplay
from app.services.terminal import MAX_COLS, MAX_ROWS, Emulator, Frame
from localproxy.api import CentralClient
from localproxy.asciicast import read_cast
from tests.central.protocols.ssh.test_gateway import shell
from tests.support.ssh_gateway import ssh_gateway

HEAD = {"version": 3, "term": {"cols": 20, "rows": 4}, "timestamp": 1_764_000_000}


def cast(*events: list[Any], head: dict[str, Any] | None = None) -> str:
    return "\n".join(json.dumps(x) for x in [head or HEAD, *events]) + "\n"


def straight(text: str, at: float) -> Frame:
    """The frame at `at` the plain way: a fresh emulator fed every event up to `at`."""
    parsed = read_cast(text)
    term = parsed.header["term"]
    emulator = Emulator(term["cols"], term["rows"])
    micros = 0  # the replay's clock: whole microseconds, as the recorder writes them
    for event in parsed.events:
        micros += round(event.interval * 1_000_000)
        if micros / 1_000_000 > at:
            break
        if event.code == "o":
            emulator.feed(event.data)
        elif event.code == "r":
            cols, rows = event.data.split("x")
            emulator.resize(int(cols), int(rows))
    return emulator.frame(at)


SESSION = cast(
    [0.5, "o", "$ "],
    [1.0, "o", "l"],
    [0.2, "o", "s"],
    [0.1, "m", "command: ls"],
    [0.0, "o", "\r\nalpha \x1b[34mBeta\x1b[0m\r\n$ "],
    [10.0, "r", "30x5"],
    [0.5, "m", "watchgate: output recording truncated after 10 bytes"],
    [0.5, "m", "exit by signal TERM"],
    [1.0, "x", "0"],
)


# -- opening ---------------------------------------------------------------------------------------


def test_open_reads_the_header_markers_and_duration() -> None:
    replay = TerminalReplay.open(SESSION)
    assert (replay.cols, replay.rows) == (20, 4)
    assert replay.duration == pytest.approx(13.8)
    assert replay.started_at is not None and replay.started_at.timestamp() == 1_764_000_000
    assert replay.markers == (
        Marker(pytest.approx(1.8), "ls", "command"),
        Marker(pytest.approx(11.8), "30x5", "resize"),
        Marker(
            pytest.approx(12.3), "watchgate: output recording truncated after 10 bytes", "policy"
        ),
        Marker(pytest.approx(12.8), "exit by signal TERM", "marker"),
        Marker(pytest.approx(13.8), "exit 0", "exit"),
    )
    # lines as an iterable work as well as the text
    assert TerminalReplay.open(iter(SESSION.split("\n"))).markers == replay.markers


def test_policy_events_join_the_markers_in_time_order() -> None:
    replay = TerminalReplay.open(SESSION)
    replay.add_policy_events([(5.0, "blocked by rule no-rm: rm -rf /"), (-1.0, "held")])
    kinds = [(m.label, m.kind) for m in replay.markers]
    assert kinds[:3] == [
        ("held", "policy"),
        ("ls", "command"),
        ("blocked by rule no-rm: rm -rf /", "policy"),
    ]
    assert replay.markers[0].at == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty recording"),
        ('{"version": 2, "width": 80, "height": 24}\n', "line 1: not asciicast v3"),
        (cast([0.1, "o", "a"]) + "[0.1, 'o', 'b']\n", "line 3: not JSON"),
        (cast([0.1, "o", "a"], [-1, "o", "b"]), "line 3: bad interval"),
        (cast([0.1, "r", "80 by 24"]), "line 2: a resize is COLSxROWS"),
        (cast([0.1, "o", 7]), "line 2: the data of an event is a string"),
    ],
)
def test_a_malformed_cast_is_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(CastError, match=message):
        TerminalReplay.open(text)


def test_absurd_sizes_are_clamped() -> None:
    replay = TerminalReplay.open(
        cast(
            [0.1, "o", "x"],
            [0.1, "r", "99999x99999"],
            head={"version": 3, "term": {"cols": 99999, "rows": 1}},
        )
    )
    assert (replay.cols, replay.rows) == (MAX_COLS, 1)
    frame = replay.frame_at(1.0)
    assert (frame.cols, frame.rows) == (MAX_COLS, MAX_ROWS)


# -- frames ----------------------------------------------------------------------------------------


def test_frames_follow_the_recording() -> None:
    replay = TerminalReplay.open(SESSION)
    assert replay.frame_at(0.0).text() == ""
    assert replay.text_at(0.5) == "$"
    assert replay.text_at(1.7) == "$ ls"
    frame = replay.frame_at(1.8)
    assert frame.text() == "$ ls\nalpha Beta\n$"
    assert frame.styles[1][0].fg == "#0000ee" and frame.styles[1][0].start == 6
    assert frame.cursor == (2, 2)
    assert frame.at == 1.8
    resized = replay.frame_at(11.8)
    assert (resized.cols, resized.rows) == (30, 5)
    assert replay.frame_at(1000.0) == replay.frame_at(replay.duration).__class__(
        **{**_fields(replay.frame_at(replay.duration)), "at": 1000.0}
    )


def _fields(frame: Frame) -> dict[str, Any]:
    return {name: getattr(frame, name) for name in frame.__slots__}


def test_next_change_last_change_and_idle_skipping() -> None:
    replay = TerminalReplay.open(SESSION)
    assert replay.next_change(0.0) == pytest.approx(0.5)
    assert replay.next_change(1.8) == pytest.approx(11.8)  # the resize
    assert replay.next_change(11.8) is None
    assert replay.last_change(5.0) == pytest.approx(1.8)
    assert replay.last_change(0.1) == 0.0
    assert replay.skip_idle(1.7, 2.0) == 1.7  # output 0.1 s away: nothing to skip
    assert replay.skip_idle(2.0, 2.0) == pytest.approx(11.8 - 0.25)
    assert replay.skip_idle(12.0, 2.0) == 12.0  # nothing follows


def test_search_finds_lines_with_the_time_they_appeared() -> None:
    text = cast(
        [1.0, "o", "first line\r\n"],
        [2.0, "o", "second "],
        [1.0, "o", "LINE here\r\n"],
        [1.0, "o", "x" * 20 + "wrapped-word\r\n"],
        [1.0, "o", "\x1b[?1049hfull screen words"],
        [1.0, "o", "\x1b[?1049l"],
        [1.0, "o", "$ last words"],  # still on the screen at the end
    )
    replay = TerminalReplay.open(text)
    assert replay.search("line") == [
        SearchHit(1.0, "first line", 6),
        SearchHit(4.0, "second LINE here", 7),
    ]
    assert replay.search("xwrapped-WORD") == [SearchHit(5.0, "x" * 20 + "wrapped-word", 19)]
    assert replay.search("screen words") == [SearchHit(7.0, "full screen words", 5)]
    assert replay.search("words") == [
        SearchHit(7.0, "full screen words", 12),
        SearchHit(8.0, "$ last words", 7),
    ]
    assert replay.search("line", limit=1) == [SearchHit(1.0, "first line", 6)]
    assert replay.search("") == [] and replay.search("absent") == []
    assert replay.indexed == 1.0


def test_frames_after_a_full_index_and_through_keyframes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "KEYFRAME_COST", 16)
    lines = [[0.5, "o", f"line {i} \x1b[3{i % 8}mcolour\x1b[0m\r\n"] for i in range(60)]
    text = cast(*lines[:30], [0.5, "r", "25x6"], *lines[30:])
    replay = TerminalReplay.open(text)
    progress: list[float] = []
    assert replay.build_index(progress.append)
    assert progress[-1] == 1.0
    assert len(replay._keys) > 20  # keyframes all along
    for at in (0.0, 3.2, 15.0, 15.5, 22.1, 31.0, 100.0, 7.7):
        assert replay.frame_at(at) == straight(text, at)


def test_seeks_while_another_thread_indexes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The viewer indexes in a worker thread while the GUI thread seeks: both extend the one
    index, under its lock, and every frame is still the straight replay's."""
    monkeypatch.setattr(replay_module, "KEYFRAME_COST", 64)
    monkeypatch.setattr(replay_module, "_INDEX_STEP", 256)
    lines = [
        [0.01, "o", f"{i:05d} \x1b[1;3{i % 8}m{'x' * (i % 70)}\x1b[0m\r\n"] for i in range(3000)
    ]
    text = cast(*lines)
    replay = TerminalReplay.open(text)
    worker = threading.Thread(target=replay.build_index)
    worker.start()
    times = [29.0, 3.0, 15.5, 0.2, 22.2, 29.99, 7.0]
    frames = [replay.frame_at(at) for at in times]
    worker.join()
    assert replay.indexed == 1.0 and len(replay._keys) > 100
    assert frames == [straight(text, at) for at in times]
    assert [h.at for h in replay.search("02999")] == [30.0]


def busy(lines: int = 3000) -> str:
    """A line of coloured output every 10 ms, each at its own time."""
    return cast(
        *[[0.01, "o", f"{i:05d} \x1b[1;3{i % 8}m{'x' * (i % 70)}\x1b[0m\r\n"] for i in range(lines)]
    )


def small_keyframes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_module, "KEYFRAME_COST", 64)
    monkeypatch.setattr(replay_module, "SEEK_BUDGET", 256)
    monkeypatch.setattr(replay_module, "NEAR_COST", 128)
    monkeypatch.setattr(replay_module, "_INDEX_STEP", 256)


def test_frame_near_never_extends_the_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the GUI thread asks for: the exact frame when the keyframes built so far reach it
    within the budget, else the nearest earlier screen they reach — never a wait for the
    index."""
    small_keyframes(monkeypatch)
    text = busy()
    replay, full = TerminalReplay.open(text), TerminalReplay.open(text)
    full.build_index()
    near, exact = replay.frame_near(25.0)
    assert not exact and replay._built == 0  # nothing indexed on the way
    assert 0.0 < near.at < 25.0 and near == straight(text, near.at)  # a true earlier screen
    assert replay.frame_near(0.05) == (full.frame_at(0.05), True)  # close to keyframe 0
    landing = replay.landing(25.0)
    assert landing is not None and landing.frame == full.frame_at(25.0)
    assert replay.frame_near(25.0) == (full.frame_at(25.0), True)  # indexed up to there now
    assert not replay.frame_near(29.0)[1]
    replay.cancel()
    assert replay.landing(29.0) is None


def test_a_seek_past_the_index_lands_later_and_only_the_latest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small_keyframes(monkeypatch)
    text = busy()
    replay, full = TerminalReplay.open(text), TerminalReplay.open(text)
    full.build_index()
    playback = Playback(replay, idle_limit=None)
    playback.seek(25.0, 0.0)
    near = playback.frame_near()
    assert playback.seeking and near == replay.frame_near(25.0)[0] and replay._built == 0
    playback.play(0.0)
    assert playback.tick(5.0) is None and playback.position == 25.0  # held until it lands
    earlier = replay.landing(25.0)  # a worker's, for a seek about to be superseded
    playback.seek(27.0, 5.0)
    playback.frame_near()
    assert earlier is not None and playback.land(earlier, 6.0) is None and playback.seeking
    landing = replay.landing(27.0)
    assert landing is not None
    assert playback.land(landing, 6.0) == full.frame_at(27.0) and not playback.seeking
    built = replay._built
    frame = playback.tick(6.5)  # playing goes on from the landing, from then
    assert playback.position == pytest.approx(27.5) and frame == full.frame_at(27.5)
    assert replay._built == built  # playing on replays the new output, no more
    playback.seek(1.0, 7.0)  # back into the indexed part: exact at once
    assert playback.frame_near() == full.frame_at(1.0) and not playback.seeking


def test_cancel_stops_indexing() -> None:
    replay = TerminalReplay.open(SESSION)
    replay.cancel()
    assert replay.build_index() is False
    assert replay.frame_at(13.0) == straight(SESSION, 13.0)  # seeks still index on the way


# -- playback --------------------------------------------------------------------------------------


def test_playback_plays_pauses_and_stops_at_the_end() -> None:
    replay = TerminalReplay.open(SESSION)
    playback = Playback(replay, idle_limit=None)
    assert not playback.skip_idle
    first = playback.tick(0.0)
    assert first is not None and first.text() == ""  # the first tick shows the screen
    assert playback.tick(0.1) is None  # paused: nothing
    playback.play(100.0)
    assert playback.tick(100.2) is None  # nothing printed yet at 0.2 s
    frame = playback.tick(100.6)
    assert frame is not None and frame.text() == "$" and playback.position == pytest.approx(0.6)
    assert playback.tick(100.7) is None
    playback.pause(101.0)
    assert playback.position == pytest.approx(1.0) and not playback.playing
    assert playback.tick(200.0) is None and playback.position == pytest.approx(1.0)
    playback.play(200.0)
    frame = playback.tick(201.0)
    assert frame is not None and frame.text() == "$ ls\nalpha Beta\n$"
    assert playback.tick(300.0) is not None  # the resize
    assert not playback.playing and playback.position == replay.duration
    playback.play(300.0)  # at the end: from the start again
    assert playback.position == 0.0 and playback.playing


def test_playback_speed_is_clamped_and_seek_shows_the_frame() -> None:
    replay = TerminalReplay.open(SESSION)
    playback = Playback(replay, idle_limit=None)
    playback.set_speed(100, 0.0)
    assert playback.speed == 8.0
    playback.set_speed(0.1, 0.0)
    assert playback.speed == 0.5
    playback.set_speed(4, 0.0)
    playback.play(0.0)
    frame = playback.tick(0.45)  # 1.8 s of the recording at 4x
    assert frame is not None and frame.text() == "$ ls\nalpha Beta\n$"
    playback.seek(0.6, 1.0)
    frame = playback.tick(1.0)
    assert frame is not None and frame.text() == "$"
    playback.pause(1.0)
    playback.seek(-5, 2.0)
    assert playback.position == 0.0
    assert playback.tick(2.0) == replay.frame_at(0.0)  # a seek shows its frame while paused
    assert playback.frame() == replay.frame_at(0.0)


def test_skip_idle_plays_a_long_pause_as_the_idle_limit() -> None:
    replay = TerminalReplay.open(SESSION)  # 10 s of nothing from 1.8 s to the resize at 11.8 s
    playback = Playback(replay, idle_limit=2.0)
    assert playback.skip_idle
    playback.seek(1.8, 0.0)
    playback.play(0.0)
    assert playback.tick(0.0) is not None  # the seek's frame
    assert playback.tick(1.0) is None and playback.position == pytest.approx(2.8)
    frame = playback.tick(2.5)  # 2 s of the pause played, then on from its end
    assert frame is not None and (frame.cols, frame.rows) == (30, 5)
    assert playback.position == pytest.approx(11.8 + 0.5)
    playback.skip_idle = False
    playback.seek(1.8, 10.0)
    playback.tick(10.0)
    assert playback.tick(12.5) is None and playback.position == pytest.approx(4.3)


# -- properties ------------------------------------------------------------------------------------

OUTPUT = st.lists(
    st.sampled_from(
        ["ab", "\r\n", "\x1b[3", "1m", "\x1b[0m", "\x1b[2J", "\x1b[H", "日", "\x1b[?1049h",
         "\x1b[?1049l", "\x1b]0;", "t\x07", "\x1b[5;2r", "\n" * 5, "\x1b", "[K", "xyz "]
    ),
    max_size=8,
).map("".join)  # fmt: skip
EVENTS = st.lists(
    st.tuples(
        st.floats(0, 3, allow_nan=False),
        st.one_of(
            OUTPUT.map(lambda o: ("o", o)),
            st.tuples(st.integers(1, 120), st.integers(1, 60)).map(
                lambda s: ("r", f"{s[0]}x{s[1]}")
            ),
            st.just(("m", "command: ls")),
            st.just(("i", "typed")),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.lists(st.floats(0, 130, allow_nan=False), min_size=1, max_size=8))
def test_seeking_anywhere_equals_a_straight_replay(
    events: list[tuple[float, tuple[str, str]]], times: list[float]
) -> None:
    """Keyframes every few characters, seeks back and forth: every frame is the one a plain
    replay from the start gives."""
    original = replay_module.KEYFRAME_COST, replay_module.SEEK_BUDGET
    replay_module.KEYFRAME_COST, replay_module.SEEK_BUDGET = 8, 16
    try:
        text = cast(*[[interval, code, data] for interval, (code, data) in events])
        replay = TerminalReplay.open(text)
        for at in times:
            assert replay.frame_at(at) == straight(text, at)
        playback = Playback(replay, idle_limit=None)
        for at in times:
            playback.seek(at, 0.0)
            assert playback.frame() == straight(text, playback.position)
        fresh = Playback(TerminalReplay.open(text), idle_limit=None)
        for at in times:
            fresh.seek(at, 0.0)
            near = fresh.frame_near()  # never indexes: exact only within the budget
            assert near == straight(text, fresh.position) or fresh.seeking
    finally:
        replay_module.KEYFRAME_COST, replay_module.SEEK_BUDGET = original


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=30),
            st.lists(
                st.one_of(st.floats(), st.integers(), st.text(max_size=5), st.none()), max_size=4
            ).map(json.dumps),
            st.tuples(st.floats(0, 5), st.sampled_from("oirmxz"), st.text(max_size=20)).map(
                lambda e: json.dumps(list(e))
            ),
        ),
        max_size=10,
    )
)
def test_any_lines_open_or_are_refused_with_cast_error(lines: list[str]) -> None:
    text = "\n".join([json.dumps(HEAD), *lines])
    try:
        replay = TerminalReplay.open(text)
    except CastError:
        return
    for at in (0.0, replay.duration / 2, replay.duration):
        frame = replay.frame_at(at)
        assert len(frame.lines) == frame.rows and all(len(c) == frame.cols for c in frame.cells)
    replay.search("a")


# -- a real recorded session -----------------------------------------------------------------------


async def record_session(tmp: Path) -> str:
    """A shell session through the gateway to a real sshd, its cast fetched from central."""
    async with ssh_gateway(tmp) as gw:
        async with shell(gw, 80, 24) as term:
            term.type("echo shown-$((40+2))\r")
            await term.expect(b"shown-42")
            term.type("printf '\\033[1;31m%s\\033[0m\\n' red-alert\r")
            await term.expect(b"red-alert\x1b[0m")
            term.resize(100, 30)
            term.type("stty size\r")
            await term.expect(b"30 100")
            term.type("vim -u NONE -N\r")
            await term.expect(b"\x1b[?1049h")
            term.type("ihello from vim\x1b:q!\r")
            await term.expect(b"\x1b[?1049l")
            term.type("echo done-$((1+1))\r")
            await term.expect(b"done-2")
            term.type("exit 5\r")
            assert await term.exit_status() == 5
        await gw.central.recorder.flush()
        async with CentralClient(gw.url, gw.token()) as api:
            session = (await api.sessions())[0]
            channel = next(c for c in await api.casts(session.id) if c.kind == "shell")
            async with api.cast(session.id, channel.channel) as chunks:
                return b"".join([chunk async for chunk in chunks]).decode()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> str:
    return asyncio.run(record_session(tmp_path_factory.mktemp("ssh")))


def test_a_recorded_session_replays_at_its_command_markers(recorded: str) -> None:
    replay = TerminalReplay.open(recorded)
    commands = {m.label: m.at for m in replay.markers if m.kind == "command"}
    # (The line that starts the test's bash is typed before the login shell's prompt: it may
    # or may not be read as a command.)
    assert [c for c in commands if not c.startswith("exec env")][:3] == [
        "echo shown-$((40+2))",
        "printf '\\033[1;31m%s\\033[0m\\n' red-alert",
        "stty size",
    ]
    # At Enter the command line is on the screen and its output is not yet.
    at_echo = replay.text_at(commands["echo shown-$((40+2))"])
    assert at_echo.splitlines()[-1] == "wg-prompt> echo shown-$((40+2))"
    assert "shown-42" not in at_echo
    # By the next command, the output is there, and the colours are the terminal's.
    frame = replay.frame_at(commands["stty size"])
    rows = frame.text().splitlines()
    assert rows[rows.index("wg-prompt> echo shown-$((40+2))") + 1] == "shown-42"
    red = next(r for r, line in enumerate(frame.lines) if line.rstrip() == "red-alert")
    assert [(s.start, s.end, s.fg, s.bold) for s in frame.styles[red]] == [(0, 9, "#cd0000", True)]
    # The window grew before `stty size`; the frame has the new size.
    assert (frame.cols, frame.rows) == (100, 30)
    assert any(m.kind == "resize" and m.label == "100x30" for m in replay.markers)
    assert replay.markers[-1] == Marker(replay.duration, "exit 5", "exit")
    # vim had the alternate screen; after it the shell's screen is back.
    after = replay.text_at(commands["echo done-$((1+1))"])
    assert "wg-prompt> vim -u NONE -N" in after and "hello from vim" not in after


def test_a_recorded_session_is_searchable(recorded: str) -> None:
    replay = TerminalReplay.open(recorded)
    commands = {m.label: m.at for m in replay.markers if m.kind == "command"}
    hits = replay.search("SHOWN-42")
    assert [h.line for h in hits] == ["shown-42"]
    assert commands["echo shown-$((40+2))"] <= hits[0].at < commands["stty size"]
    assert "shown-42" in replay.text_at(hits[0].at)
    typed = replay.search("echo shown")
    assert typed and typed[0].line == "wg-prompt> echo shown-$((40+2))" and typed[0].column == 11
    assert [h.line for h in replay.search("hello from vim")][:1] == ["hello from vim"]
    assert [h.line for h in replay.search("30 100")] == ["30 100"]


def test_a_recorded_session_seeks_as_a_straight_replay(
    recorded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay_module, "KEYFRAME_COST", 32)  # many keyframes in a short cast
    replay = TerminalReplay.open(recorded)
    replay.build_index()
    assert len(replay._keys) > 5

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.floats(0, replay.duration + 1, allow_nan=False), min_size=1, max_size=5))
    def seeks(times: list[float]) -> None:
        for at in times:
            assert replay.frame_at(at) == straight(recorded, at)

    seeks()
