"""Cost of reading typed command lines off the emulated terminal (prints MB/s and us per Enter).

    .venv/bin/python bench/ssh_lines.py [--mb 50] [--cols 80] [--rows 24]

- flood: N MB of typical output (coloured `ls -l` lines, log lines, some UTF-8) in 32 KiB
  chunks, as `cat bigfile` pours it, then a prompt and a typed command: the rate at which the
  reader absorbs output, the share it actually emulated, and the command it read.
- emulated: the same output with a keystroke after every 16 KiB chunk, so each window stays
  under budget and all of it goes through the emulator: its own speed, next to plain pyte's
  (`pyte.Screen` + `pyte.ByteStream`, on a 2 MB sample: it is slow).
- interactive: a prompt, a 40-character command typed key by key with its echo, Enter, 2 KB of
  output; us per `enter()` call, per keystroke (`typed` + echo `output`), per whole cycle.
- hostile: for each kind of costly sequence at the largest screen (1000 x 500), 8 MB of it with
  an Enter after every 64 KiB: the worst CPU per window, which the budget bounds.

Times are CPU time (`time.process_time`), best of --runs.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyte

from central.protocols.ssh.lines import MAX_COLS, MAX_ROWS, LineReader

PROMPT = b"\x1b[1;32malice@db1\x1b[0m:\x1b[34m~/src\x1b[0m$ "


def best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def typical_output(size: int) -> bytes:
    rng = random.Random(7)
    names = ["main.py", "README.md", "données.csv", "build", "naïve_test.go", "日本語.txt"]
    lines: list[bytes] = []
    total = 0
    while total < size:
        kind = rng.random()
        if kind < 0.4:
            colour = rng.choice([b"01;34", b"01;32", b"00", b"01;36"])
            name = rng.choice(names).encode()
            size_ = rng.randint(0, 10**7)
            line = b"-rw-r--r-- 1 alice staff %10d May  1 12:%02d \x1b[%sm%s\x1b[0m\r\n" % (
                size_,
                rng.randint(0, 59),
                colour,
                name,
            )
        elif kind < 0.9:
            level = rng.choice([b"\x1b[32mINFO\x1b[0m", b"\x1b[33mWARN\x1b[0m", b"DEBUG"])
            stamp = b"2024-05-01T12:00:%02d.%03dZ" % (rng.randint(0, 59), rng.randint(0, 999))
            line = b"%s %s request id=%08x served in %dms path=/api/v1/items/%d\r\n" % (
                stamp,
                level,
                rng.getrandbits(32),
                rng.randint(1, 900),
                rng.randint(1, 10**6),
            )
        else:
            words = [rng.choice(names).encode() for _ in range(rng.randint(1, 30))]
            line = b" ".join(words) + b"\r\n"
        lines.append(line)
        total += len(line)
    return b"".join(lines)


def type_command(reader: LineReader, command: bytes) -> None:
    for i in range(len(command)):
        key = command[i : i + 1]
        reader.typed(key)
        reader.output(key)


def flood(data: bytes, cols: int, rows: int) -> tuple[float, LineReader, str | None]:
    reader = LineReader(cols, rows)
    start = time.process_time()
    for i in range(0, len(data), 32 * 1024):
        reader.output(data[i : i + 32 * 1024])
    reader.output(PROMPT)
    type_command(reader, b"echo done")
    line = reader.enter()
    return time.process_time() - start, reader, line


def emulate_all(data: bytes, cols: int, rows: int) -> LineReader:
    reader = LineReader(cols, rows)
    for i in range(0, len(data), 16 * 1024):
        reader.output(data[i : i + 16 * 1024])
        reader.typed(b"x")  # a keystroke: the start of a new window, under budget
        reader.enter()
    assert reader.skipped_bytes == 0, reader.skipped_bytes
    return reader


def plain_pyte(data: bytes, cols: int, rows: int) -> None:
    pyte.ByteStream(pyte.Screen(cols, rows)).feed(data)


def interactive(cycles: int, cols: int, rows: int) -> tuple[float, float, float]:
    output = typical_output(2048)
    command = b"grep -rn 'needle' /var/log/app/*.log | wc"
    reader = LineReader(cols, rows)
    reader.output(PROMPT)
    keys = enter = 0.0
    start = time.process_time()
    for _ in range(cycles):
        t0 = time.process_time()
        type_command(reader, command)
        t1 = time.process_time()
        line = reader.enter()
        t2 = time.process_time()
        assert line == command.decode(), line
        reader.output(b"\r\n" + output + PROMPT)
        keys += t1 - t0
        enter += t2 - t1
    total = time.process_time() - start
    return enter / cycles * 1e6, keys / cycles / len(command) * 1e6, total / cycles * 1e6


HOSTILE = {
    "erase screen": b"\x1b[2J",
    "insert chars in a full row": b"\x1b[1;1H" + b"x" * 999 + b"\x1b[1;1H" + b"\x1b[@" * 300,
    "tab stop + tab": b"\x1bH\t",
    "alt screen on/off": b"\x1b[?47h\x1b[?47l",
    "insert 500 rows": b"\x1b[H\x1b[500L",
    "full reset": b"\x1bc",
    "sequences pyte fails on": b"\x1b[1;2A\x1b[?5A\x1b[5J",
    "linefeeds (scrolling)": b"\n",
    "wide characters": "漢字".encode(),
    "endless CSI digits": b"\x1b[" + b"1" * 100_000,
}


def hostile(unit: bytes) -> float:
    """The worst CPU seconds spent on one window (64 KiB of output, a keystroke, an Enter)."""
    reader = LineReader(MAX_COLS, MAX_ROWS)
    data = unit * (8_000_000 // len(unit))
    worst = 0.0
    for i in range(0, len(data), 65536):
        start = time.process_time()
        reader.output(data[i : i + 65536])
        reader.typed(b"x")
        reader.enter()
        worst = max(worst, time.process_time() - start)
    assert reader.faults == 0
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--cols", type=int, default=80)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    cols, rows = args.cols, args.rows
    data = typical_output(int(args.mb * 1e6))
    mb = len(data) / 1e6
    print(f"terminal {cols}x{rows}; {mb:.1f} MB of typical output")

    seconds, reader, line = flood(data, cols, rows)
    for _ in range(args.runs - 1):
        seconds = min(seconds, flood(data, cols, rows)[0])
    emulated = 1 - reader.skipped_bytes / len(data)
    print(
        f"flood        {mb / seconds:8.1f} MB/s absorbed   ({emulated:.2%} emulated;"
        f" read after it: {line!r})"
    )

    sample = data[: 8 * 1024 * 1024]
    ours = best_of(args.runs, lambda: emulate_all(sample, cols, rows))
    pyte_sample = sample[: 2 * 1024 * 1024]
    theirs = best_of(1, lambda: plain_pyte(pyte_sample, cols, rows))
    print(
        f"emulated     {len(sample) / ours / 1e6:8.1f} MB/s            "
        f"(plain pyte: {len(pyte_sample) / theirs / 1e6:.1f} MB/s)"
    )

    enter, key, cycle = min(
        (interactive(args.cycles, cols, rows) for _ in range(args.runs)), key=lambda t: t[0]
    )
    print(
        f"interactive  {enter:8.1f} us per Enter   ({key:.1f} us per keystroke;"
        f" {cycle:.0f} us per prompt-type-Enter-output cycle)"
    )

    print(f"hostile output at {MAX_COLS}x{MAX_ROWS}, worst CPU per window:")
    for name, unit in HOSTILE.items():
        print(f"  {name:28s} {hostile(unit) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
