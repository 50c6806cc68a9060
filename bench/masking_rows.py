"""Cost of rewriting result rows with masked cells (prints µs per row).

    .venv/bin/python bench/masking_rows.py [--rows N] [--runs N]

A result of N rows of 5 columns (id, name, email, card, date) is built as DataRow messages and
as COPY text and CSV rows, then rewritten with different sets of masked columns: none (the
cost of walking the fields), "full" (the constant path), "null", "hash", "partial" and content
scanning. Hash, partial and scan results are cached per distinct value: names and emails are
unique, so always computed; cards repeat, so nearly always cached. Cell functions are built
afresh for each run, so caches start empty as they do for each statement. Times are the best
CPU time of several runs divided by the rows; "per masked cell" is the time over the unmasked
walk, divided by the masked cells in a row.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.masking_cells import best_of
from central.masking.detectors import ALL_NAMES, scanner
from central.masking.rows import (
    CellFn,
    CopyFormat,
    CopyRows,
    mask_cell,
    rewrite_data_rows,
    scan_cell,
)
from central.masking.styles import Style

KEY = b"bench-key-0123456789abcdef"
INT4, TEXT, DATE = 23, 25, 1082
TYPES = (INT4, TEXT, TEXT, TEXT, DATE)
Factory = Callable[[], Sequence[CellFn | None]]


def _letters(i: int) -> str:
    out = ""
    while True:
        i, d = divmod(i, 26)
        out += chr(97 + d)
        if not i:
            return out


def table(n: int) -> list[tuple[bytes, ...]]:
    """Names and emails are unique (every hash or scan is computed), cards repeat (cached)."""
    first = ["Alice", "Bob", "Carol", "Dmitri", "Eve", "Fatima", "Grace", "Hiro"]
    return [
        (
            str(i).encode(),
            f"{first[i % 8]} Smith{_letters(i)}".encode(),
            f"user{i}@example.com".encode(),
            ("4242 4242 4242 4242" if i % 2 else "5555555555554444").encode(),
            f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}".encode(),
        )
        for i in range(n)
    ]


def data_row(values: Sequence[bytes]) -> bytes:
    body = struct.pack("!h", len(values)) + b"".join(struct.pack("!i", len(v)) + v for v in values)
    return b"D" + struct.pack("!I", len(body) + 4) + body


def masked(style: Style, columns: Sequence[int], *, direct: bool = True) -> Factory:
    def build() -> list[CellFn | None]:
        return [
            mask_cell(style, KEY, type_oid=t, binary=False, direct=direct) if i in columns else None
            for i, t in enumerate(TYPES)
        ]

    return build


def scanned(style: Style, columns: Sequence[int]) -> Factory:
    scan = scanner(ALL_NAMES)

    def build() -> list[CellFn | None]:
        return [
            scan_cell(scan, style, KEY, type_oid=t, binary=False) if i in columns else None
            for i, t in enumerate(TYPES)
        ]

    return build


CASES: dict[str, tuple[Factory, int]] = {  # label: (cell functions, masked cells per row)
    "passthrough only (fields walked)": (lambda: [None] * 5, 0),
    "1 full col": (masked("full", [3]), 1),
    "3 full cols": (masked("full", [1, 2, 3]), 3),
    "3 null cols": (masked("null", [1, 2, 3]), 3),
    "3 hash cols (2 unique, 1 repeating)": (masked("hash", [1, 2, 3]), 3),
    "1 hash col, unique (email)": (masked("hash", [2]), 1),
    "1 hash col, repeating (card)": (masked("hash", [3]), 1),
    "1 partial col, unique (email)": (masked("partial", [2]), 1),
    "1 scan col, unique clean (name)": (scanned("full", [1]), 1),
    "1 scan col, unique (email)": (scanned("full", [2]), 1),
    "1 scan col, repeating (card)": (scanned("full", [3]), 1),
    "3 scan cols": (scanned("full", [1, 2, 3]), 3),
}


def _same(raw: bytes) -> bytes:
    return raw


def _copy(fmt: CopyFormat, payloads: list[bytes], cells: Sequence[CellFn | None]) -> None:
    rewrite = CopyRows(fmt, cells, type_oids=TYPES).rewrite
    for p in payloads:
        rewrite(p)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = args.rows
    rows = table(n)
    data = b"".join(data_row(r) for r in rows)

    def per_row(cells: Factory, rewrite: Callable[[Sequence[CellFn | None]], object]) -> float:
        return best_of(args.runs, lambda: rewrite(cells())) / n * 1e6

    print(f"rewrite_data_rows: {n} rows of 5 columns, {len(data) / n:.0f} bytes a row")
    print(f"{'masked columns':<36}{'µs/row':>9}{'ms total':>10}{'µs/masked cell':>16}")
    base = 0.0
    for label, (cells, count) in CASES.items():
        us = per_row(cells, lambda c: rewrite_data_rows(data, 0, len(data), c))
        base = us if count == 0 else base
        cell = f"{(us - base) / count:>16.2f}" if count else ""
        print(f"{label:<36}{us:>9.2f}{us * n / 1000:>10.0f}{cell}")

    for fmt in (CopyFormat(), CopyFormat("csv", ",", "")):
        sep = fmt.delimiter.encode()
        payloads = [sep.join(r) + b"\n" for r in rows]
        print(f"\nCopyRows ({fmt.format}), one CopyData payload a row")
        for label in ("1 unchanged col (rows parsed)", "3 full cols", "1 scan col, unique (email)"):
            # (Without any cell function CopyRows does not even parse: nothing to measure.)
            cells = (
                (lambda: [_same, None, None, None, None])
                if "unchanged" in label
                else CASES[label][0]
            )

            print(f"{label:<36}{per_row(cells, partial(_copy, fmt, payloads)):>9.2f}")


if __name__ == "__main__":
    main()
