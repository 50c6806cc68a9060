"""Inline masking end to end: a 100k-row select with three masked columns, in one run.

    .venv/bin/python bench/masking_path.py [--rows 100000] [--repeat 5]

Reads `SELECT id, name, email, ssn, card, city FROM people` (100k rows, every value distinct)
on this machine's PostgreSQL four ways, each in turn: direct; through Watchgate with no mask
rule (the relay's own cost); with three masked columns in the default style (full); with three
masked columns in the three value-dependent styles (email partial, ssn full, card hash).
Watchgate = `watchgate-central serve` and `watchgate connect` as their own processes with the
TLS tunnel between them, as in bench/pg_path.py. Each path is read by two clients: psql
(unaligned output to /dev/null: what an analyst's terminal pays) and psycopg fetching every row
into Python objects. Prints the best wall time of `--repeat` runs and the ratio to direct.
The per-cell cost of the detectors and styles is bench/masking_cells.py.

With `--pgbench SECONDS` it also runs pgbench -S (8 clients) through Watchgate on
bench/pg_path.py's database, without and with a mask rule on the resource: what planning every
statement against the catalog costs a workload of small queries.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pg_path import DB as PGBENCH_DB
from bench.pg_path import PG, pgbench_tps, sh, watchgate
from bench.pg_path import prepare as prepare_pgbench

DB = "wg_mask_bench"
QUERY = "SELECT id, name, email, ssn, card, city FROM people"


def rule(name: str, columns: list[str], style: str = "full") -> str:
    """One mask rule on the bench resource, as config text."""
    return (
        f'[[rules]]\nname = "{name}"\nresources = ["db"]\naction = "mask"\n'
        f"columns = {columns!r}\nstyle = {style!r}\n".replace("'", '"')
    )


FULL = rule("pii", ["people.ssn", "people.email", "people.card"])
MIXED = (
    rule("pii", ["people.ssn"])
    + rule("contact", ["people.email"], "partial")
    + rule("cards", ["people.card"], "hash")
)


def prepare(rows: int) -> None:
    exists = sh("psql", f"{PG}/postgres", "-Atc", f"SELECT 1 FROM pg_database WHERE datname='{DB}'")
    if exists.strip():
        have = sh("psql", f"{PG}/{DB}", "-Atc", "SELECT count(*) FROM people", check=False)
        if have.strip() == str(rows):
            return
        sh("psql", f"{PG}/postgres", "-c", f"DROP DATABASE {DB}")
    print(f"preparing {DB} with {rows} rows ...", flush=True)
    sh("psql", f"{PG}/postgres", "-c", f"CREATE DATABASE {DB}")
    sh(
        "psql",
        f"{PG}/{DB}",
        "-c",
        "CREATE TABLE people (id int PRIMARY KEY, name text, email text, ssn text, card text,"
        " city text);"
        "INSERT INTO people SELECT g, 'person ' || g, 'user' || g || '@example.com',"
        " lpad((g % 900)::text, 3, '0') || '-' || lpad((g % 90)::text, 2, '0') || '-'"
        " || lpad(g::text, 4, '0'), (4000000000000000 + g)::text,"
        f" (ARRAY['Paris','Lyon','Oslo'])[1 + g % 3] FROM generate_series(1, {rows}) g;"
        "ANALYZE people",
    )


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def psql_read(url: str) -> None:
    subprocess.run(["psql", url, "-Atqc", QUERY], stdout=subprocess.DEVNULL, check=True)


def psycopg_read(url: str, rows: int) -> Callable[[], None]:
    def read() -> None:
        with psycopg.connect(url) as conn:
            got = conn.execute(QUERY).fetchall()
        assert len(got) == rows, len(got)

    return read


def sample(url: str) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(QUERY + " WHERE id = 42").fetchone()
    assert row is not None
    return tuple(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pgbench", type=int, default=0, metavar="SECONDS")
    args = parser.parse_args()
    if args.pgbench:
        pgbench_masked(args.pgbench)
    prepare(args.rows)
    direct = f"{PG}/{DB}"
    results: dict[str, tuple[float, float]] = {}
    paths: list[tuple[str, str | None]] = [
        ("direct", None),
        ("watchgate, no mask rule", ""),
        ("watchgate, 3 columns full", FULL),
        ("watchgate, 3 partial/full/hash", MIXED),
    ]
    for label, extra in paths:
        if extra is None:
            url = direct
            results[label] = (
                best(args.repeat, lambda: psql_read(direct)),
                best(args.repeat, psycopg_read(direct, args.rows)),
            )
            print(f"{label:30} sample row: {sample(direct)}", flush=True)
            continue
        with watchgate(DB, extra) as (url, _central, _proxy):
            print(f"{label:30} sample row: {sample(url)}", flush=True)
            results[label] = (
                best(args.repeat, lambda u=url: psql_read(u)),  # type: ignore[misc]
                best(args.repeat, psycopg_read(url, args.rows)),
            )
    base_psql, base_py = results["direct"]
    print(f"\n{args.rows} rows, best of {args.repeat}:")
    print(f"{'path':30} {'psql s':>8} {'x direct':>9} {'psycopg s':>10} {'x direct':>9}")
    for label, (t_psql, t_py) in results.items():
        print(
            f"{label:30} {t_psql:8.3f} {t_psql / base_psql:9.2f} {t_py:10.3f} {t_py / base_py:9.2f}"
        )


def pgbench_masked(seconds: int) -> None:
    prepare_pgbench(10)
    masked = rule("m", ["pgbench_accounts.filler"])
    found = {}
    for label, extra in (("no mask rule", ""), ("a mask rule", masked)):
        with watchgate(PGBENCH_DB, extra) as (url, _central, _proxy):
            found[label] = pgbench_tps(url, 8, seconds)
    plain = found["no mask rule"]
    for label, tps in found.items():
        print(f"pgbench -S -c 8 through Watchgate, {label:13} {tps:9.0f} tps {tps / plain:6.2f}x")
    print()


if __name__ == "__main__":
    main()
