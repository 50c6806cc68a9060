"""Opening and seeking a one-hour terminal recording in the replay viewer's engine.

    .venv/bin/python bench/replay_open.py [--minutes 60] [--seeks 200] [--seed 1]

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
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.services.replay import Playback, TerminalReplay
from app.services.terminal import MAX_COLS, MAX_ROWS, Emulator
from central.recording.asciicast import EventEncoder, header, header_line

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
        head = header(
            cols, rows, timestamp=1_764_000_000, watchgate={"session": "s-bench", "channel": 0}
        )
        self.lines = [header_line(head)]
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

    def _add(self, line: str) -> None:
        if line:
            self.lines.append(line)
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
    rec.lines.append(rec.encoder.exit(rec.now, 0))
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
    idle, frames = [], []
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--cat-mb", type=float, default=8, help="MB of output in big `cat`s")
    parser.add_argument("--seeks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hostile-mb", type=float, default=4)
    args = parser.parse_args()

    rec = one_hour(args.minutes, args.seed, args.cat_mb)
    text = rec.text()
    print(
        f"recording: {rec.now / 60:.1f} min, {len(text.encode()) / 1e6:.1f} MB of cast, "
        f"{rec.events} events"
    )

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


if __name__ == "__main__":
    main()
