"""Opening and seeking a one-hour terminal recording: the replay engine, then end to end.

    .venv/bin/python bench/replay_open.py [--minutes 60] [--seeks 200] [--seed 1] [--no-engine]
        [--no-app] [--app-seeks 100] [--chunking flush|size]

Generates a realistic hour of an interactive shell as central's recorder writes it
(`EventEncoder`: a keystroke's echo per event, output in chunks of up to 16 KiB, a "command:"
marker per command line): typed commands, coloured `ls`, `git log` and `grep` bursts, log tails
that trickle for minutes, `top` and a `vim` session on the alternate screen, a few large
`cat`s, idle gaps of up to minutes, and a resize. Then measures, on the cast's text:

- first frame: `TerminalReplay.open` (reading and checking every event) plus `frame_at` of the
  first moment with output (the first visible frame). Target: under 1 s.
- index: `build_index`, the one pass that makes the keyframes and the search lines (the viewer
  runs it in a worker thread after the first frame), and a seek before it is built (a cold
  seek to the end, which builds it on the way).
- seek: `frame_at` at random positions once indexed: median, p95, max. Target: under 200 ms.
- playback: `Playback.tick` at 60 ticks a second, at 1x and 8x over the busiest ten minutes,
  split into ticks that found nothing new (None) and ticks that returned a frame.
- search: one word over the whole hour.
- hostile output: one output event of --hostile-mb MB of a costly sequence on the largest
  screen: the emulator's work stays linear in what it is fed (no input makes it hang).

Times are wall-clock (`time.perf_counter`) on one thread; first frame and index, best of --runs.

Then (unless --no-app) the same figures end to end, the desktop app's way. The recording is
stored as central's recorder stores a shell channel, with the recorder's own code (session row,
header chunk, hash chain, seal; checked as `verify-audit` checks a store): a chunk per flush
(every 50 ms) with output, cut early at 256 Ki characters (`--chunking size`: at 256 Ki only).
A real central serves it from that SQLite store in a thread of its own (as another machine
would: the app's loop is measured alone), and an admin reviewer signed in with a token opens it
through `ReviewService` on the app's qasync loop, into a `ReplayView` painted offscreen:

- (a) first frame available: `open_cast` (the HTTP download of the cast and its parse in a
  worker thread) plus `frame_at` of the first moment with output; (b) first frame shown: the
  same download and parse, then `set_replay` (which starts the index in a worker thread), a
  seek to that moment and the view painted (`grab`). Target: under 1 s. Also the whole
  "open a session" of the sessions page (`SessionView`: the session's detail, then the cast).
- the index built in its worker thread; then seeks through the view at --app-seeks random
  positions: `seek` (the frame, set on the widget) plus painting the view. Target: 200 ms.
- seeks right after opening, while the index is still being built (what a reviewer who
  clicks the seek bar at once gets).
- where a slow download goes: the store's read of the cast (`Store.terminal_cast`, 16 chunks
  per store session as the export route reads it, and 256 for comparison), and the download
  and the parse apart.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keyring.backends.null
import qasync
import shiboken6

from app.services.account import Account
from app.services.replay import Playback, TerminalReplay
from app.services.review import ReviewService
from app.services.terminal import MAX_COLS, MAX_ROWS, Emulator
from app.ui.replay_view import ReplayView
from app.ui.run import ensure_application
from app.ui.session_view import SessionView
from app.ui.tasks import Tasks
from central.recording.asciicast import EventEncoder, header, header_line
from central.recording.evidence import verify_store
from central.recording.recorder import MAX_CHUNK, Recorder
from central.store import Store
from localproxy.tokens import TokenSet, TokenStore
from tests.app.ui.conftest import CentralThread
from tests.support.central import ROLES, make_config

FIRST_FRAME_TARGET = 1.0
SEEK_TARGET = 0.2
CHUNK = 16 * 1024  # the largest output event: what one read of the target's channel gives

PROMPT = "\x1b[1;32malice@db1\x1b[0m:\x1b[1;34m~/src/app\x1b[0m$ "
LEVELS = [("INFO", "32"), ("WARN", "33"), ("ERROR", "31"), ("DEBUG", "2")]
FILES = ["main.py", "README.md", "données.csv", "build", "naïve_test.go", "日本語.txt", "lib"]
WORDS = "select update the request user token cache miss retry session worker queue".split()


class Recording:
    """Writes cast lines on a clock of its own (seconds from the start)."""

    def __init__(self, cols: int, rows: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.cols, self.rows = cols, rows
        self.encoder = EventEncoder(0.0)
        # What central's SSH gateway puts in a shell channel's header (the recorder adds the
        # session and channel when it stores it).
        self.head = header(
            cols,
            rows,
            timestamp=1_764_000_000,
            watchgate={"user": "alice", "resource": "lab-host", "kind": "shell", "pty": True},
        )
        self.lines = [header_line(self.head)]
        self.times = [0.0]  # when each line was written, for cutting chunks as the recorder does
        self.events = 0

    def wait(self, seconds: float) -> None:
        self.now += seconds

    def out(self, text: str) -> None:
        data = text.encode()
        for i in range(0, len(data), CHUNK):
            self._add(self.encoder.output(self.now, data[i : i + CHUNK]))
            self.now += 0.002

    def marker(self, label: str) -> None:
        self._add(self.encoder.marker(self.now, label))

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        self._add(self.encoder.resize(self.now, cols, rows))

    def command(self, line: str) -> None:
        """A prompt, the command typed key by key (each echoed), Enter."""
        self.out(PROMPT)
        self.wait(self.rng.uniform(0.5, 3))
        for char in line:
            self.out(char)
            self.wait(self.rng.uniform(0.05, 0.25))
        self.marker(f"command: {line}")
        self.out("\r\n")
        self.wait(0.02)

    def text(self) -> str:
        return "".join(self.lines)

    def exit(self, status: int) -> None:
        self._add(self.encoder.exit(self.now, status))

    def _add(self, line: str) -> None:
        if line:
            self.lines.append(line)
            self.times.append(self.now)
            self.events += 1


def ls(rec: Recording) -> None:
    rng = rec.rng
    rec.command("ls -la --color=auto")
    rows = []
    for _ in range(rng.randint(20, 200)):
        colour = rng.choice(["01;34", "01;32", "00", "01;36", "38;5;208"])
        name = rng.choice(FILES) + str(rng.randint(0, 999))
        rows.append(
            f"-rw-r--r-- 1 alice staff {rng.randint(0, 10**7):10d} May  1"
            f" 12:{rng.randint(0, 59):02d} \x1b[{colour}m{name}\x1b[0m\r\n"
        )
    rec.out("".join(rows))


def log_line(rec: Recording) -> str:
    rng = rec.rng
    level, colour = rng.choice(LEVELS)
    return (
        f"\x1b[2m2025-05-01T12:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z\x1b[0m "
        f"\x1b[{colour}m{level:5}\x1b[0m {rng.choice(WORDS)} id={rng.randrange(10**9)} "
        f"path=/api/v1/{rng.choice(WORDS)}/{rng.randint(1, 9999)} took={rng.random():.3f}s\r\n"
    )


def tail(rec: Recording, minutes: float) -> None:
    rec.command("tail -f /var/log/app/app.log")
    end = rec.now + minutes * 60
    while rec.now < end:
        rec.out("".join(log_line(rec) for _ in range(rec.rng.randint(1, 8))))
        rec.wait(rec.rng.expovariate(3.0))
    rec.out("^C\r\n")


def grep(rec: Recording) -> None:
    rng = rec.rng
    word = rng.choice(WORDS)
    rec.command(f"grep -rn --color=always {word} src/")
    rec.out(
        "".join(
            f"\x1b[35msrc/{rng.choice(FILES)}\x1b[0m\x1b[36m:\x1b[0m\x1b[32m{rng.randint(1, 900)}"
            f"\x1b[0m\x1b[36m:\x1b[0m    x = \x1b[01;31m{word}\x1b[0m(y)  # {rng.choice(WORDS)}\r\n"
            for _ in range(rng.randint(10, 400))
        )
    )


def git_log(rec: Recording) -> None:
    rng = rec.rng
    rec.command("git log --oneline --graph --color | head -300")
    rec.out(
        "".join(
            f"* \x1b[33m{rng.randrange(16**7):07x}\x1b[m {rng.choice(WORDS)} the "
            f"{rng.choice(WORDS)} {rng.choice(WORDS)}\r\n"
            for _ in range(300)
        )
    )


def cat(rec: Recording, mb: float) -> None:
    rec.command("cat /var/log/app/app.log.1")
    text = "".join(log_line(rec) for _ in range(int(mb * 1e6 / 110)))
    rec.out(text)


def top(rec: Recording, minutes: float) -> None:
    rng = rec.rng
    rec.command("top")
    rec.out("\x1b[?1049h\x1b[22;0;0t\x1b[?1h\x1b=\x1b[H\x1b[2J")
    end = rec.now + minutes * 60
    while rec.now < end:
        screen = [
            f"\x1b[Htop - 12:00:00 up 10 days,  load average: {rng.random():.2f}\x1b[K\r\n",
            f"Tasks:\x1b[1m {rng.randint(100, 300)} \x1b[mtotal,\x1b[1m 1 \x1b[mrunning\x1b[K\r\n",
            "\x1b[K\r\n\x1b[7m    PID USER      PR  NI    VIRT    RES  S  %CPU  %MEM"
            "     TIME+ COMMAND\x1b[m\x1b[K\r\n",
        ]
        for i in range(rec.rows - 5):
            screen.append(
                f"\x1b[1m{1000 + i:7d} alice     20   0 {rng.randint(0, 10**6):7d} "
                f"{rng.randint(0, 10**5):6d}  S {rng.random() * 100:5.1f}   0.1   "
                f"0:01.23 proc{i}\x1b[m\x1b[K\r\n"
            )
        rec.out("".join(screen) + "\x1b[J")
        rec.wait(3.0)
    rec.out("\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t")


def vim(rec: Recording, minutes: float) -> None:
    rng = rec.rng
    rec.command("vim src/main.py")
    rows = rec.rows - 2
    rec.out("\x1b[?1049h\x1b[22;0;0t\x1b[?1h\x1b=\x1b[H\x1b[2J")

    def code_line(n: int) -> str:
        return (
            f"\x1b[38;5;130m{n:4d} \x1b[m\x1b[38;2;175;0;255mdef\x1b[m "
            f"\x1b[38;5;33m{rng.choice(WORDS)}_{n}\x1b[m(self, {rng.choice(WORDS)}):"
            f"  \x1b[38;5;244m# {rng.choice(WORDS)} {rng.choice(WORDS)}\x1b[m\x1b[K"
        )

    def redraw(top_line: int) -> None:
        parts = [f"\x1b[{y + 1};1H{code_line(top_line + y)}" for y in range(rows)]
        parts.append(f"\x1b[{rows + 1};1H\x1b[7m src/main.py  line {top_line} \x1b[m\x1b[K")
        rec.out("".join(parts))

    top_line = 1
    redraw(top_line)
    end = rec.now + minutes * 60
    while rec.now < end:
        action = rng.random()
        if action < 0.4:  # scroll a page
            top_line += rows
            redraw(top_line)
        elif action < 0.8:  # type a few words in insert mode
            y = rng.randint(1, rows)
            rec.out(f"\x1b[{y};10H\x1b[{rows + 2};1H-- INSERT --\x1b[{y};10H")
            for char in " ".join(rng.choice(WORDS) for _ in range(5)):
                rec.out(f"\x1b[1@{char}")
                rec.wait(rng.uniform(0.08, 0.3))
            rec.out(f"\x1b[{rows + 2};1H\x1b[K\x1b[{y};10H")
        else:  # scroll one line at a time inside the scroll region
            for _ in range(rng.randint(5, 30)):
                top_line += 1
                rec.out(f"\x1b[1;{rows}r\x1b[{rows};1H\n{code_line(top_line + rows - 1)}\x1b[r")
                rec.wait(0.05)
        rec.wait(rng.uniform(1, 10))
    rec.out(f"\x1b[{rows + 2};1H:wq\r\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t")
    rec.out('"src/main.py" 812L, 24013B written\r\n')


def one_hour(minutes: float, seed: int, cat_mb: float = 8.0) -> Recording:
    """`minutes` of a shell; `cat_mb` MB of it in four `cat`s of a log file."""
    rec = Recording(80, 24, seed)
    rng = rec.rng
    end = minutes * 60
    resized = cat_count = 0
    rec.wait(0.3)
    while rec.now < end:
        if not resized and rec.now > end / 2:
            rec.resize(120, 40)  # the window was made bigger
            rec.out("\x1b[H\x1b[2J")
            resized = 1
        kind = rng.random()
        if kind < 0.3:
            ls(rec)
        elif kind < 0.45:
            grep(rec)
        elif kind < 0.55:
            git_log(rec)
        elif kind < 0.65:
            tail(rec, rng.uniform(1, 4))
        elif kind < 0.72:
            top(rec, rng.uniform(1, 3))
        elif kind < 0.78:
            vim(rec, rng.uniform(2, 6))
        elif cat_count < 4 and rec.now > end * (cat_count + 1) / 5:
            cat(rec, cat_mb / 4)
            cat_count += 1
        else:
            rec.command(f"echo {rng.choice(WORDS)}-$((6*7))")
            rec.out(f"{rng.choice(WORDS)}-42\r\n")
        # Mostly a few seconds between commands; now and then minutes away (reading, a call).
        rec.wait(rng.uniform(1, 15) if rng.random() < 0.85 else rng.uniform(30, 300))
    rec.out(PROMPT + "exit\r\nlogout\r\n")
    rec.exit(0)
    return rec


def best(runs: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best_time, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best_time = min(best_time, time.perf_counter() - start)
    return best_time, result


def first_frame(text: str) -> tuple[TerminalReplay, float]:
    replay = TerminalReplay.open(text)
    first = replay.next_change(0.0) or 0.0
    replay.frame_at(first)
    return replay, first


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def ticks(replay: TerminalReplay, start: float, speed: float) -> tuple[list[float], list[float]]:
    """Ten minutes of 60 Hz ticks from `start` (minutes of the recording, at `speed`)."""
    playback = Playback(replay)
    playback.set_speed(speed, 0.0)
    playback.seek(start, 0.0)
    playback.play(0.0)
    idle: list[float] = []
    frames: list[float] = []
    for i in range(int(600 / speed * 60)):
        t0 = time.perf_counter()
        frame = playback.tick(i / 60)
        spent = time.perf_counter() - t0
        (frames if frame is not None else idle).append(spent)
        if not playback.playing:
            break
    return idle, frames


HOSTILE = {
    "screen clears": "\x1b[2J",
    "insert 200 lines": "\x1b[200L",
    "newlines": "\n",
    "tabs": "\t",
    "wide characters": "日",
    "CSI of 1000 parameters": "\x1b[" + "1;" * 1000 + "m",
}


def hostile(unit: str, mb: float) -> float:
    """Seconds of CPU for one output event of `mb` MB of `unit` on the largest screen."""
    emulator = Emulator(MAX_COLS, MAX_ROWS)
    data = unit * int(mb * 1e6 / len(unit))
    start = time.process_time()
    emulator.feed(data)
    return time.process_time() - start


def row(name: str, seconds: float, target: float | None = None, note: str = "") -> None:
    ratio = f"{seconds / target:6.2f}x of {target * 1000:.0f} ms" if target else ""
    print(f"  {name:34s} {seconds * 1000:9.2f} ms   {ratio:22s} {note}")


# -- end to end: central's store and API, the app's service and viewer ------------------------

# A reviewer whose role is marked admin (not auditor), as in tests/app/services/test_review.py.
ADMIN_ROLE = {"name": "security", "groups": ["dba-leads"], "resources": [], "admin": True}
REVIEWER = "carol"
CHANNEL = 0


def cast_chunks(rec: Recording, flush: float | None) -> list[str]:
    """The cast cut into chunks as central's recorder cuts a channel's lines: the header alone,
    then what was written between two flushes (every `flush` seconds; None: no flushes), a
    chunk cut early once it holds MAX_CHUNK characters."""
    chunks = [rec.lines[0]]
    buffered: list[str] = []
    size, window = 0, -1
    for at, line in zip(rec.times[1:], rec.lines[1:], strict=True):
        now = int(at // flush) if flush else 0
        if buffered and now != window:
            chunks.append("".join(buffered))
            buffered, size = [], 0
        window = now
        buffered.append(line)
        size += len(line)
        if size >= MAX_CHUNK:
            chunks.append("".join(buffered))
            buffered, size = [], 0
    if buffered:
        chunks.append("".join(buffered))
    return chunks


@dataclass
class Stored:
    session_id: str
    chunks: list[int]  # characters of each chunk, the header's first
    rows: int  # rows of the session's chain that verified
    reads: dict[int, float]  # chunks per store session -> seconds to read the cast


async def store_recording(url: str, rec: Recording, chunking: str) -> Stored:
    """The recording stored as central's recorder stores a shell channel, by the recorder's
    own code: the session row, the header chunk (`SessionLog.terminal`), each chunk a link of
    the session's chain (`SessionLog._chunk`), the end and the seal (`Recorder.flush`). Then
    checked as `verify-audit` checks a store, and read back as the export route reads it."""
    store = await Store.open(url)
    recorder = Recorder(store)  # not started: flushed by hand
    try:
        chunks = cast_chunks(rec, recorder.flush_interval if chunking == "flush" else None)
        log = await recorder.open_session("alice", "lab-host", "ssh", "127.0.0.1")
        terminal = log.terminal(CHANNEL, rec.head)
        for data in chunks[1:]:
            log._chunk(CHANNEL, data)
        terminal.close()
        log.close("ended")
        await recorder.flush()
        report = await verify_store(store, [])
        if report.problem is not None or report.sealed != 1:
            raise SystemExit(f"the stored recording does not verify: {report.problem}")
        reads: dict[int, float] = {}
        for batch in (16, 256, 16, 256):
            start = time.perf_counter()
            async for _ in store.terminal_cast(log.session_id, CHANNEL, batch=batch):
                pass
            spent = time.perf_counter() - start
            reads[batch] = min(reads.get(batch, spent), spent)
    finally:
        await recorder.close()
        await store.close()
    return Stored(log.session_id, [len(c) for c in chunks], report.rows, reads)


async def download(account: Account, session_id: str) -> bytes:
    """The cast's bytes as `ReviewService.open_cast` downloads them, without the parse."""
    data = bytearray()
    async with account.client() as api, api.export(session_id, "asciicast", CHANNEL) as body:
        async for piece in body:
            data += piece
    return bytes(data)


def seek_and_paint(view: ReplayView, at: float) -> tuple[float, float]:
    """Seconds to seek the view to `at` (the frame, set on the widget), and to paint it."""
    start = time.perf_counter()
    view.seek(at)
    sought = time.perf_counter()
    view.grab()
    return sought - start, time.perf_counter() - sought


async def viewer(url: str, token: str, stored: Stored, seeks: int, seed: int) -> None:
    """Open the stored recording as the app does, and print the figures."""
    tokens = TokenStore(keyring.backends.null.Keyring())  # no keyring here: held in memory
    tokens.save(url, TokenSet(token))
    account = Account(url, tokens)
    me = await account.restore()
    if me is None or not me.admin:
        raise SystemExit(f"{REVIEWER} did not sign in as an admin reviewer")
    service = ReviewService(account)
    failures: list[str] = []
    tasks = Tasks(lambda what, exc: failures.append(f"{what}: {exc!r}"))
    view = ReplayView(tasks)
    view.resize(1200, 760)
    view.show()
    sessions = SessionView(service, tasks)
    sessions.resize(1400, 860)
    try:
        # (a) and (b): one open, timed up to the frame and up to the frame painted.
        start = time.perf_counter()
        replay = await service.open_cast(stored.session_id, CHANNEL)
        opened = time.perf_counter() - start
        first = replay.next_change(0.0) or 0.0
        start = time.perf_counter()
        replay.frame_at(first)
        framed = time.perf_counter() - start
        start = time.perf_counter()
        view.set_replay(replay)  # paints the frame at 0, starts the index in a worker thread
        indexing = view._indexing
        view.seek(first)
        view.grab()
        shown = time.perf_counter() - start
        assert indexing is not None
        complete = await indexing
        indexed = time.perf_counter() - start
        assert complete and replay.indexed == 1.0

        rng = random.Random(seed)
        positions = [rng.uniform(0, replay.duration) for _ in range(seeks)]
        timed = [seek_and_paint(view, at) for at in positions]
        totals = [s + p for s, p in timed]

        # The sessions page's "open": the detail (statements), then the cast, then shown.
        sessions.show()
        start = time.perf_counter()
        await sessions.open_session(stored.session_id)
        sessions.grab()
        whole = time.perf_counter() - start
        await sessions.replay.aclose()

        # Where the time of the session page's open and of open_cast goes.
        start = time.perf_counter()
        await service.detail(stored.session_id)
        detailed = time.perf_counter() - start
        start = time.perf_counter()
        data = await download(account, stored.session_id)
        downloaded = time.perf_counter() - start
        start = time.perf_counter()
        fresh = await asyncio.to_thread(TerminalReplay.open, data.decode())
        parsed = time.perf_counter() - start

        # Seeks at once after opening, while the index is being built, a reviewer's pace apart.
        view.set_replay(fresh)
        early: list[tuple[float, float]] = []
        for at in positions[:10]:
            done = fresh.indexed
            sought, painted = seek_and_paint(view, at)
            early.append((sought + painted, done))
            await asyncio.sleep(0.1)
    finally:
        await sessions.replay.aclose()
        await view.aclose()
        await tasks.aclose()
        await account.aclose()
        shiboken6.delete(sessions)
        shiboken6.delete(view)
    if failures:
        raise SystemExit(f"the viewer reported failures: {failures}")

    size = len(data)
    print(f"  {size / 1e6:.1f} MB downloaded; first output at {first:.1f} s")
    print()
    print(f"  {'':34s} {'time':>12s}   {'vs target':22s}")
    row("download (export, bytes only)", downloaded, note=f"{size / downloaded / 1e6:.1f} MB/s")
    row("parse (TerminalReplay.open, thread)", parsed)
    row("open_cast (download + parse)", opened)
    row("(a) first frame available", opened + framed, FIRST_FRAME_TARGET, "open_cast + frame_at")
    row(
        "(b) first frame shown",
        opened + shown,
        FIRST_FRAME_TARGET,
        f"open_cast + set_replay, seek, paint ({shown * 1000:.0f} ms)",
    )
    row("open the session (SessionView)", whole, FIRST_FRAME_TARGET, "detail + open_cast + paint")
    row("  of which detail", detailed, note="the session, its statements, paged")
    row("index (worker thread)", indexed, note=f"{len(replay._keys)} keyframes")
    row(f"seek + paint, median of {len(totals)}", statistics.median(totals), SEEK_TARGET)
    row("seek + paint, p95", percentile(totals, 0.95), SEEK_TARGET)
    row("seek + paint, max", max(totals), SEEK_TARGET)
    row("  of which seek, median", statistics.median(s for s, _ in timed))
    row("  of which paint, median", statistics.median(p for _, p in timed))
    ahead = [t for t, _ in early]
    row(
        f"seek while indexing, median of {len(early)}",
        statistics.median(ahead),
        SEEK_TARGET,
        f"index {early[0][1]:.0%} to {early[-1][1]:.0%} built meanwhile",
    )
    row("seek while indexing, max", max(ahead), SEEK_TARGET)


def end_to_end(rec: Recording, chunking: str, seeks: int, seed: int) -> None:
    with tempfile.TemporaryDirectory(prefix="wg-replay-") as tmp:
        root = Path(tmp) / "central"
        config = make_config(root, 1)  # for its store_url: where running_central puts it
        config.data_dir.mkdir(parents=True, mode=0o700)
        start = time.perf_counter()
        stored = asyncio.run(store_recording(config.store_url, rec, chunking))
        written = time.perf_counter() - start
        sizes = stored.chunks
        print(
            f"\nend to end: central (SQLite, own thread) -> HTTP -> ReviewService -> ReplayView"
            f" (offscreen), as {REVIEWER} (admin)"
        )
        print(
            f"  stored in {written:.1f} s: {len(sizes)} chunks ({chunking}: the header, then"
            f" median {statistics.median(sizes[1:]):.0f}, largest {max(sizes) / 1024:.0f} Ki"
            f" characters); chain of {stored.rows} rows verified, sealed"
        )
        reads = ", ".join(
            f"{n} chunks a session {t * 1000:.0f} ms" for n, t in sorted(stored.reads.items())
        )
        print(f"  store read of the cast (terminal_cast, no HTTP): {reads}")
        with CentralThread(root, roles=[*ROLES, ADMIN_ROLE]) as central:
            loop = qasync.QEventLoop(ensure_application())
            asyncio.set_event_loop(loop)
            with loop:
                loop.run_until_complete(
                    viewer(central.url, central.token(REVIEWER), stored, seeks, seed)
                )


def engine(text: str, args: argparse.Namespace) -> None:
    """The engine's figures on the cast's text."""
    opened, _ = best(args.runs, lambda: TerminalReplay.open(text))
    shown, (replay, first) = best(args.runs, lambda: first_frame(text))
    output = replay._cost[-1]
    print(f"  {output / 1e6:.1f} M characters of output; first output at {first:.1f} s")

    def index() -> TerminalReplay:
        fresh = TerminalReplay.open(text)
        fresh.build_index()
        return fresh

    def cold() -> None:
        TerminalReplay.open(text).frame_at(replay.duration)

    indexed, replay = best(args.runs, index)
    cold_seek, _ = best(1, cold)

    rng = random.Random(args.seed)
    positions = [rng.uniform(0, replay.duration) for _ in range(args.seeks)]
    seeks = []
    for at in positions:
        t0 = time.perf_counter()
        replay.frame_at(at)
        seeks.append(time.perf_counter() - t0)

    busiest = max(
        range(int(replay.duration // 60)),
        key=lambda m: (
            replay._cost[replay._count(m * 60 + 600)] - replay._cost[replay._count(m * 60)]
        ),
    )
    searched, hits = best(1, lambda: replay.search("retry"))

    print()
    print(f"  {'':34s} {'time':>12s}   {'vs target':22s}")
    row("open (read + check every event)", opened)
    row("first frame (open + frame_at)", shown, FIRST_FRAME_TARGET)
    row(
        "index (build_index, worker thread)",
        indexed,
        note=f"{len(replay._keys)} keyframes, {len(replay._lines)} lines, "
        f"{output / indexed / 1e6:.1f} M chars/s",
    )
    row("cold seek to the end (no index yet)", cold_seek, note="builds the index on the way")
    row(f"seek, median of {len(seeks)}", statistics.median(seeks), SEEK_TARGET)
    row("seek, p95", percentile(seeks, 0.95), SEEK_TARGET)
    row("seek, max", max(seeks), SEEK_TARGET)
    row("search 'retry' (indexed)", searched, note=f"{len(hits)} hits")
    for speed in (1.0, 8.0):
        idle, frames = ticks(replay, busiest * 60.0, speed)
        row(
            f"tick at {speed:g}x, nothing new (mean)",
            statistics.fmean(idle) if idle else 0.0,
            note=f"{len(idle)} ticks; max {max(idle, default=0) * 1000:.2f} ms",
        )
        row(
            f"tick at {speed:g}x, new frame (mean)",
            statistics.fmean(frames) if frames else 0.0,
            note=f"{len(frames)} ticks; p95 {percentile(frames, 0.95) * 1000:.1f} ms,"
            f" max {max(frames, default=0) * 1000:.1f} ms",
        )
    print(f"\nhostile output, one event of {args.hostile_mb:g} MB at {MAX_COLS}x{MAX_ROWS} (CPU):")
    for name, unit in HOSTILE.items():
        seconds = hostile(unit, args.hostile_mb)
        print(f"  {name:34s} {seconds * 1000:9.1f} ms   {args.hostile_mb / seconds:6.1f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--cat-mb", type=float, default=8, help="MB of output in big `cat`s")
    parser.add_argument("--seeks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hostile-mb", type=float, default=4)
    parser.add_argument(
        "--no-engine", action="store_true", help="skip the engine's figures on the cast's text"
    )
    parser.add_argument(
        "--no-app", action="store_true", help="skip the end-to-end measure (central, app viewer)"
    )
    parser.add_argument("--app-seeks", type=int, default=100)
    parser.add_argument(
        "--chunking",
        choices=("flush", "size"),
        default="flush",
        help="how the stored cast is cut: a chunk per recorder flush (50 ms) cut early at 256 Ki"
        " characters, as live recording does; or at 256 Ki characters only",
    )
    args = parser.parse_args()

    rec = one_hour(args.minutes, args.seed, args.cat_mb)
    text = rec.text()
    print(
        f"recording: {rec.now / 60:.1f} min, {len(text.encode()) / 1e6:.1f} MB of cast, "
        f"{rec.events} events; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )

    if not args.no_engine:
        engine(text, args)
    if not args.no_app:
        end_to_end(rec, args.chunking, args.app_seeks, args.seed)


if __name__ == "__main__":
    main()
