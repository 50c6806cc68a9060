"""Replaying a recorded terminal (asciicast v3) at any time, fast: the admin viewer's engine.

A one-hour shell recording holds tens of MB of output, and the viewer must show its first
frame within a second and land a seek anywhere within 200 ms. So opening a recording only
reads its events (times, codes, data) and its markers; the screen at a time `t` is the
emulator (`app.services.terminal`) fed with every output and resize event up to `t`, started
from the nearest *keyframe* before it: a snapshot of the emulator taken every
`KEYFRAME_COST` characters of output. A seek thus replays at most about that much output.

Keyframes come from one pass over the recording, the *index*, which also collects the lines
of output for search. The pass is incremental: it goes as far as a request needs (a seek
beyond it extends it, and what it builds on the way is kept), and `build_index` runs it to
the end. The viewer calls `build_index` in a worker thread right after opening, so that
seeks and search find it done.

A seek before the index got there would build it up to the seek on the GUI thread: seconds
for the end of an hour-long recording. So the viewer never asks for more than it can have at
once: `frame_near` (and `Playback.frame_near`) gives the exact frame when the keyframes built
so far reach it within `SEEK_BUDGET` characters of output, else the nearest frame they do
reach, and never extends the index; the exact frame then comes from `landing`, in a worker
thread, and `Playback.land` takes it over.

Thread safety: after `open`, every method of `TerminalReplay` may be called from any thread,
concurrently; the index is extended under a lock, in steps (so that two threads extending it
take turns), and keyframes, once made, never change; `frame_near` takes no lock at all.
`Playback` belongs to one thread (the GUI's); a `Landing` made in a worker thread is handed
to it once made.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, Literal

from app.services.terminal import Emulator, Frame, Snapshot, Style, clamp_cols, clamp_rows
from localproxy.asciicast import CastError, read_stream

__all__ = [
    "CastError",
    "Frame",
    "Landing",
    "Marker",
    "Playback",
    "SearchHit",
    "Style",
    "TerminalReplay",
]

# Output characters between keyframes. Replaying them costs about 20 ms on escape-heavy
# output (bench/replay_open.py), well inside a seek's 200 ms.
KEYFRAME_COST = 64 * 1024
# The most output the GUI thread replays for one frame (`frame_near`): two keyframes' worth,
# since keyframes are only taken between escape sequences, so they can lie further apart.
SEEK_BUDGET = 2 * KEYFRAME_COST
# When that is not enough, the nearest frame shown meanwhile replays at most this much past the
# last keyframe built: it is only a stand-in, and the GUI thread shares the interpreter with
# the threads emulating towards the exact frame (bench/replay_open.py, "seek while indexing").
NEAR_COST = 8 * 1024
# The index is extended in steps of this much output, so that a seek from another thread gets
# the lock between steps.
_INDEX_STEP = 256 * 1024
# What a marker's label starts with, by kind (the recorder writes these, see
# central/recording/recorder.py and central/protocols/ssh/channels.py).
_COMMAND = "command: "
_POLICY = "watchgate:"

MarkerKind = Literal["command", "policy", "marker", "resize", "exit"]


@dataclass(frozen=True, slots=True)
class Marker:
    """A point of interest on the timeline. For "command" the label is the command line as
    the recorder read it (without its "command: " prefix); "policy" marks a blocked, held or
    refused event, or a note of the recorder (truncated output)."""

    at: float
    label: str
    kind: MarkerKind


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A line of output that holds the text: when it appeared, the line, where in it
    (a character index into `line`)."""

    at: float
    line: str
    column: int


@dataclass(frozen=True, slots=True, eq=False)
class Landing:
    """The exact screen at `at`, made in a worker thread by `TerminalReplay.landing`, and
    the emulator that made it, which `Playback.land` adopts to play on from there."""

    at: float
    frame: Frame
    player: _Player


class TerminalReplay:
    """A parsed, indexed terminal recording (asciicast v3) that renders any time fast."""

    def __init__(
        self,
        header: dict[str, Any],
        times: list[float],
        events: list[str | tuple[int, int]],
        markers: list[Marker],
        duration: float,
    ) -> None:
        term = header["term"]
        self.header = header
        self.cols = clamp_cols(term["cols"])
        self.rows = clamp_rows(term["rows"])
        self.duration = duration
        self.started_at = _timestamp(header.get("timestamp"))
        self.markers: tuple[Marker, ...] = tuple(sorted(markers, key=lambda m: m.at))
        # The events that change the screen, in order: output text, or (cols, rows) for a
        # resize; `_times[i]` is when event i happens, `_cost[i]` the output before it.
        self._times = times
        self._events = events
        self._cost = [0, *accumulate(len(e) if isinstance(e, str) else 0 for e in events)]
        # The index: keyframes (events applied, snapshot) in order, and the pass making them.
        first = Emulator(self.cols, self.rows)
        self._keys: list[int] = [0]
        self._snaps: list[Snapshot] = [first.snapshot()]
        self._lock = threading.Lock()
        self._builder = Emulator(self.cols, self.rows)
        self._builder.screen.on_line = self._found
        self._built = 0  # events the builder has applied
        self._found_at = 0.0
        self._lines: list[tuple[float, str]] = []  # output lines, for search
        self._cancelled = threading.Event()

    @classmethod
    def open(cls, lines: str | Iterable[str]) -> TerminalReplay:
        """A whole cast: its text, or its lines. CastError, naming the line, when malformed."""
        if isinstance(lines, str):
            # Not str.splitlines(): it also splits at U+2028 and others that JSON strings hold.
            lines = lines.split("\n") if lines else []
        head, stream = read_stream(iter(lines))
        times: list[float] = []
        events: list[str | tuple[int, int]] = []
        markers: list[Marker] = []
        # Times are kept in whole microseconds, as the recorder writes them: a sum of float
        # intervals drifts (0.1 + 0.2), and central's search gives times rounded to the
        # microsecond, which must land on the event they name.
        micros = 0
        for event in stream:
            micros += round(event.interval * 1_000_000)
            now = micros / 1_000_000
            code, data = event.code, event.data
            if code == "o":
                if data:
                    times.append(now)
                    events.append(data)
            elif code == "r":
                cols, rows = (int(n) for n in data.split("x"))
                times.append(now)
                events.append((cols, rows))
                markers.append(Marker(now, data, "resize"))
            elif code == "m":
                markers.append(_marker(now, data))
            elif code == "x":
                markers.append(Marker(now, f"exit {data}", "exit"))
        return cls(head, times, events, markers, micros / 1_000_000)

    # -- timeline -------------------------------------------------------------------------------

    def add_policy_events(self, events: Iterable[tuple[float, str]]) -> None:
        """Blocked, held or refused statements of the session, at their time (seconds from the
        start of the cast), as "policy" markers."""
        added = [Marker(max(0.0, at), label, "policy") for at, label in events]
        self.markers = tuple(sorted((*self.markers, *added), key=lambda m: m.at))

    def next_change(self, at: float) -> float | None:
        """When the screen next changes after `at` (output or a resize), None after the last."""
        i = bisect_right(self._times, at)
        return self._times[i] if i < len(self._times) else None

    def last_change(self, at: float) -> float:
        """When the screen last changed at or before `at` (0 before the first change)."""
        i = bisect_right(self._times, at)
        return self._times[i - 1] if i else 0.0

    def skip_idle(self, at: float, idle: float) -> float:
        """Where to go on from `at` without sitting through idle time: just before the next
        change if it is more than `idle` seconds away, else `at` itself."""
        following = self.next_change(at)
        if following is None or following - at <= idle:
            return at
        return following - min(0.25, idle / 2)

    # -- frames ---------------------------------------------------------------------------------

    def frame_at(self, at: float) -> Frame:
        """The screen at `at` seconds: every change up to and including that time applied."""
        player = _Player(self)
        player.goto(self._count(at))
        return player.frame(at)

    def frame_near(self, at: float) -> tuple[Frame, bool]:
        """The screen at `at` if it is cheap to make, else the nearest earlier screen that is:
        (frame, exact). Cheap: from the latest keyframe built so far at or before `at`, at most
        `SEEK_BUDGET` characters of output replayed; it never extends the index nor waits for
        it, so the GUI thread may call it. Else the frame is the latest keyframe built at or
        before `at` plus at most `NEAR_COST` characters of output, and its `at` is the time of
        the last change it shows."""
        player = _Player(self)
        n = self._count(at)
        if player.goto(n, extend=False, budget=SEEK_BUDGET):
            return player.frame(at), True
        reached = player.approach(n, NEAR_COST)
        return player.frame(self._times[reached - 1] if reached else 0.0), False

    def landing(self, at: float) -> Landing | None:
        """The exact screen at `at`, extending the index as far as it needs (slow before the
        index got there: call it in a worker thread), ready for `Playback.land`. None when
        `cancel` stopped it."""
        n = self._count(at)
        if not self._advance(n):
            return None
        player = _Player(self)
        player.goto(n)
        return Landing(at, player.frame(at), player)

    def text_at(self, at: float) -> str:
        """The screen's text at `at` (for copying), trailing blanks stripped."""
        return self.frame_at(at).text()

    def search(self, text: str, limit: int = 1000) -> list[SearchHit]:
        """Lines of output holding `text` (case-insensitive), in order, with the time each line
        appeared: when it was completed (a newline), scrolled away, or cleared with the screen.
        Builds the whole index first: call it off the GUI thread."""
        needle = text.casefold()
        if not needle:
            return []
        self.build_index()
        hits = []
        for at, line in self._lines:
            column = line.casefold().find(needle)
            if column >= 0:
                hits.append(SearchHit(at, line, column))
                if len(hits) >= limit:
                    break
        return hits

    # -- the index ------------------------------------------------------------------------------

    @property
    def indexed(self) -> float:
        """How much of the recording's output the index covers, 0..1."""
        total = self._cost[-1]
        return 1.0 if total == 0 else self._cost[self._built] / total

    def build_index(self, progress: Callable[[float], None] | None = None) -> bool:
        """Run the index to the end (slow: seconds for an hour of busy output; call it in a
        worker thread). `progress` is called with `indexed` after each step. False when
        `cancel` stopped it."""
        return self._advance(len(self._events), progress)

    def _advance(self, n: int, progress: Callable[[float], None] | None = None) -> bool:
        """Extend the index to `n` events, a step at a time; False when `cancel` stopped it."""
        while self._built < n:
            if self._cancelled.is_set():
                return False
            self._extend(min(n, self._step_end()))
            if progress is not None:
                progress(self.indexed)
        return True

    def cancel(self) -> None:
        """Stop a `build_index` running in another thread (the viewer closed)."""
        self._cancelled.set()

    def _step_end(self) -> int:
        target = self._cost[self._built] + _INDEX_STEP
        return min(bisect_right(self._cost, target), len(self._events))

    def _count(self, at: float) -> int:
        """How many screen events happen at or before `at`."""
        return bisect_right(self._times, at)

    def _keyframe(self, n: int, extend: bool = True) -> tuple[int, Snapshot]:
        """The latest keyframe at or before `n` events applied, extending the index to `n`
        first unless `extend` is false (then the latest one built so far)."""
        if extend and n > self._built:
            self._extend(n)
        # `_keys` is bisected without the lock: it only grows, its snapshot appended first.
        i = bisect_right(self._keys, n) - 1
        return self._keys[i], self._snaps[i]

    def _extend(self, n: int) -> None:
        with self._lock:  # another thread may have gone further meanwhile: then nothing to do
            builder, events, times, cost = self._builder, self._events, self._times, self._cost
            last = self._cost[self._keys[-1]]
            while self._built < n:
                i = self._built
                self._found_at = times[i]
                _apply(builder, events[i])
                self._built = i + 1
                if cost[i + 1] - last >= KEYFRAME_COST and builder.clean:
                    # Appended snapshot first: a reader bisecting `_keys` finds it complete.
                    self._snaps.append(builder.snapshot())
                    self._keys.append(i + 1)
                    last = cost[i + 1]
            if self._built == len(events):
                builder.screen.collect_all()  # what the screen still shows at the end counts

    def _found(self, line: str) -> None:
        self._lines.append((self._found_at, line))


class _Player:
    """An emulator walking a replay's events, jumping through keyframes when that is shorter."""

    def __init__(self, replay: TerminalReplay) -> None:
        self._replay = replay
        self._emulator = Emulator(replay.cols, replay.rows)
        self.applied = 0

    def goto(self, n: int, *, extend: bool = True, budget: int | None = None) -> bool:
        """The state after the first `n` screen events. With `extend` false, only keyframes
        already built are used (the index is not extended); with a `budget`, nothing is done
        (False) when getting there would replay more output than that."""
        replay = self._replay
        cost, start = replay._cost, self.applied
        restore: Snapshot | None = None
        if n < start or cost[n] - cost[start] > KEYFRAME_COST:
            key, snap = replay._keyframe(n, extend)
            if key > start or n < start:
                restore, start = snap, key
        if budget is not None and cost[n] - cost[start] > budget:
            return False
        if restore is not None:
            self._emulator.restore(restore)
        events, emulator = replay._events, self._emulator
        for i in range(start, n):
            _apply(emulator, events[i])
        self.applied = n
        return True

    def approach(self, n: int, budget: int) -> int:
        """Towards the state after `n` events from the latest keyframe built at or before it,
        replaying whole events while they fit in `budget` characters; how many were reached."""
        replay = self._replay
        key, snap = replay._keyframe(n, extend=False)
        self._emulator.restore(snap)
        events, emulator = replay._events, self._emulator
        limit = min(bisect_right(replay._cost, replay._cost[key] + budget) - 1, n)
        for i in range(key, limit):
            _apply(emulator, events[i])
        self.applied = max(key, limit)
        return self.applied

    def frame(self, at: float) -> Frame:
        return self._emulator.frame(at)


def _apply(emulator: Emulator, event: str | tuple[int, int]) -> None:
    if isinstance(event, str):
        emulator.feed(event)
    else:
        emulator.resize(*event)


class Playback:
    """Play, pause, speed and seek over a replay, driven by a clock the UI passes in (`now`,
    seconds on any monotonic clock): no timers here. The UI calls `tick` from its timer and
    repaints when it returns a frame; `tick` does no work when nothing changed on screen.

    After a seek, `frame_near` gives the screen at once, exact or (when the index has not got
    there yet) approximate; while approximate, `seeking` is true, the position holds still,
    and the UI gets the exact frame with `TerminalReplay.landing` in a worker thread and hands
    it to `land`. A later seek supersedes it: `land` takes only the latest seek's landing.
    (`frame`, and `tick` right after a `seek`, give the exact frame however long it takes,
    for callers that do not go through `frame_near`.)

    With `skip_idle` on, a pause in the recording longer than `idle_limit` seconds plays as
    `idle_limit` seconds (as asciinema's idle time limit)."""

    MIN_SPEED, MAX_SPEED = 0.5, 8.0

    def __init__(self, replay: TerminalReplay, *, idle_limit: float | None = 2.0) -> None:
        self.replay = replay
        self.idle_limit = idle_limit
        self.position = 0.0
        self.speed = 1.0
        self.playing = False
        self.skip_idle = idle_limit is not None
        self._player = _Player(replay)
        self._anchor = (0.0, 0.0)  # (now, position) when playing last (re)started
        self._changed = True  # the screen differs from the last frame returned
        self._pending: float | None = None  # the seek whose exact frame is awaited

    @property
    def seeking(self) -> bool:
        """The screen shown is approximate: the exact one is awaited (`land`)."""
        return self._pending is not None

    def play(self, now: float) -> None:
        if self.position >= self.replay.duration:
            self.seek(0.0, now)  # from the start again, as players do at the end
        self.playing = True
        self._anchor = (now, self.position)

    def pause(self, now: float) -> None:
        if self.playing:
            self.position = self._target(now)
            self.playing = False

    def set_speed(self, speed: float, now: float) -> None:
        if self.playing:
            self.position = self._target(now)
            self._anchor = (now, self.position)
        self.speed = min(max(float(speed), self.MIN_SPEED), self.MAX_SPEED)

    def seek(self, at: float, now: float) -> None:
        self.position = min(max(float(at), 0.0), self.replay.duration)
        self._anchor = (now, self.position)
        self._changed = True
        self._pending = None

    def frame(self) -> Frame:
        """The screen at the current position, exactly: extends the index as far as needed
        (slow before the index got there; the UI uses `frame_near`)."""
        self._player.goto(self.replay._count(self.position))
        self._changed, self._pending = False, None
        return self._player.frame(self.position)

    def frame_near(self) -> Frame:
        """The screen at the current position if it is cheap to make (see
        `TerminalReplay.frame_near`), else the nearest one that is, and `seeking` is true
        until the exact one `land`s. Never extends the index: for the GUI thread."""
        position = self.position
        self._changed = False
        if self._player.goto(self.replay._count(position), extend=False, budget=SEEK_BUDGET):
            self._pending = None
            return self._player.frame(position)
        self._pending = position
        frame, _ = self.replay.frame_near(position)
        return frame

    def land(self, landing: Landing, now: float) -> Frame | None:
        """The exact frame of the pending seek, made in a worker thread: taken over (and
        returned) if it is for the latest seek, else None (a later seek superseded it).
        Playing goes on from there, from `now`."""
        if self._pending is None or landing.at != self._pending:
            return None
        self._player, self._pending, self._changed = landing.player, None, False
        self._anchor = (now, self.position)
        return landing.frame

    def tick(self, now: float) -> Frame | None:
        """Advance to `now`; the new screen if it changed since the last frame, else None.
        Playing stops at the end; it holds still while `seeking`."""
        if self._pending is not None:
            return None
        if self.playing:
            target = self._target(now)
            if target >= self.replay.duration:
                target, self.playing = self.replay.duration, False
            self.position = target
        n = self.replay._count(self.position)
        if n == self._player.applied and not self._changed:
            return None
        if self._changed:
            return self.frame()
        # Playing on: the output since the last tick, from keyframes already built at most.
        self._player.goto(n, extend=False)
        return self._player.frame(self.position)

    def _target(self, now: float) -> float:
        """Where playing has got to at `now`; moves the anchor past skipped idle time."""
        if self._pending is not None:
            return self.position  # held still until the seek lands
        start_now, start = self._anchor
        target = start + max(0.0, now - start_now) * self.speed
        limit = self.idle_limit
        if not self.skip_idle or limit is None:
            return target
        replay, position = self.replay, start
        while True:
            gap_start = max(replay.last_change(position), 0.0)
            following = replay.next_change(position)
            gap_end = replay.duration if following is None else following
            if gap_end - gap_start <= limit or target <= gap_start + limit:
                return target
            # A long pause: play `limit` seconds of it, then go on from its end.
            target = gap_end + (target - (gap_start + limit))
            self._anchor = (now, target)
            if following is None:
                return target
            position = gap_end


def _marker(at: float, label: str) -> Marker:
    if label.startswith(_COMMAND):
        return Marker(at, label[len(_COMMAND) :], "command")
    if label.startswith(_POLICY):
        return Marker(at, label, "policy")
    return Marker(at, label, "marker")


def _timestamp(value: object) -> datetime | None:
    if type(value) is not int:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None
