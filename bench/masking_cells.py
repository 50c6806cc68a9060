"""Per-cell cost of the content detectors and of each masking style (prints ns/cell).

    .venv/bin/python bench/masking_cells.py [--cells N] [--runs N]

For each kind of realistic cell (short integers, names, dates, emails, cards, 200-character
free text, ...) it times `Scanner.find_all` with every detector enabled — the path the
PostgreSQL masker takes for a column of unknown origin — and the `find_all` convenience
function (which also looks the scanner up by name set). Then each style over a card value, and
`mask_spans` over a free-text cell with spans. Times are the best CPU time of several runs
divided by the number of cells.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from central.masking.detectors import ALL_NAMES, NamedSpan, Scanner, find_all
from central.masking.styles import Style, mask, mask_spans

KEY = b"bench-key-0123456789abcdef"


def best_of(runs: int, fn: Callable[[], object]) -> float:
    """Best CPU seconds over `runs` runs (CPU time, so other work on the machine does not count)."""
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def cells(n: int) -> dict[str, list[str]]:
    rng = random.Random(5)
    words = "the order was shipped to our customer after payment cleared and the invoice".split()
    first = ["Alice", "Bob", "Carol", "Dmitri", "Eve", "Fatima", "Grace", "Hiro"]
    last = ["Johnson", "Smith", "Okafor", "Nguyen", "Garcia", "Müller", "Kowalski"]

    def text(k: int) -> str:
        out = ""
        while len(out) < k:
            out += rng.choice(words) + " "
        return out[:k]

    def free_with_pii() -> str:
        t = text(150)
        return f"{t} contact jane.doe@example.com or +44 20 7946 0958"[:200]

    return {
        "short int": [str(rng.randint(0, 99999)) for _ in range(n)],
        "bigint id": [str(rng.randint(10**12, 10**18)) for _ in range(n)],
        "decimal": [f"{rng.uniform(0, 10000):.2f}" for _ in range(n)],
        "name": [f"{rng.choice(first)} {rng.choice(last)}" for _ in range(n)],
        "date": [f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(n)],
        "timestamp": [f"2024-05-{rng.randint(1, 28):02d} 10:30:00.123+00" for _ in range(n)],
        "uuid": ["123e4567-e89b-12d3-a456-426614174000"] * n,
        "email": [f"user{i}@example.com" for i in range(n)],
        "card": ["4242 4242 4242 4242", "5555555555554444"] * (n // 2),
        "phone": ["+1 (415) 555-2671"] * n,
        "iban": ["GB82 WEST 1234 5698 7654 32"] * n,
        "free text 200, clean": [text(200) for _ in range(n)],
        "free text 200, 2 hits": [free_with_pii() for _ in range(n)],
    }


def _mask_found(cell: str, *, found: dict[str, list[NamedSpan]], style: Style) -> object:
    return mask_spans(cell, found[cell], style, KEY)


def per_cell_ns(runs: int, fn: Callable[[str], object], values: list[str]) -> float:
    return best_of(runs, lambda: [fn(c) for c in values]) / len(values) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    scanner = Scanner(ALL_NAMES)
    print(
        f"find_all, all {len(ALL_NAMES)} detector names ({args.cells} cells, best of {args.runs})"
    )
    print(f"{'cell':<24}{'Scanner.find_all':>18}{'find_all()':>14}  spans/cell")
    for label, values in cells(args.cells).items():
        t_scan = per_cell_ns(args.runs, scanner.find_all, values)
        t_func = per_cell_ns(args.runs, lambda c: find_all(c, ALL_NAMES), values)
        hits = sum(len(scanner.find_all(c)) for c in values[:100]) / 100
        print(f"{label:<24}{t_scan:>15.0f} ns{t_func:>11.0f} ns  {hits:.1f}")

    print("\nmask() over one card value, kind credit_card")
    card = ["4242 4242 4242 4242"] * args.cells
    styles: tuple[Style, ...] = ("full", "partial", "hash", "null")
    for style in styles:
        ns = per_cell_ns(args.runs, partial(mask, style=style, kind="credit_card", key=KEY), card)
        print(f"{style:<24}{ns:>15.0f} ns")

    print("\nmask_spans() over a 200-character cell with 2 spans (spans precomputed)")
    free = cells(1000)["free text 200, 2 hits"]
    found = {c: scanner.find_all(c) for c in free}
    for style in styles[:3]:
        ns = per_cell_ns(args.runs, partial(_mask_found, found=found, style=style), free)
        print(f"{style:<24}{ns:>15.0f} ns")


if __name__ == "__main__":
    main()
