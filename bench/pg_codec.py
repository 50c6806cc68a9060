"""Micro-benchmark of the PostgreSQL codec on the data path (plain script, prints results).

    .venv/bin/python bench/pg_codec.py [--rows N] [--transactions N]

Times are the best CPU time of several runs (see `best_of`).

1. Splitting a `pgbench -S` backend stream (RowDescription, DataRow, CommandComplete,
   ReadyForQuery per transaction), fed one response per `receive_data` (a synchronous client:
   each response is its own read) and in 256 KiB reads (many clients multiplexed).
2. Splitting a result of N DataRows shaped like `SELECT * FROM pgbench_accounts`, in 256 KiB
   reads.
3. Decoding: decode_backend per DataRow (1 and 4 columns), encode per DataRow, and the
   per-statement frontend decodes (Query, Bind) that policy needs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from central.protocols.postgres.codec import (
    Frame,
    FrameReader,
    decode_backend,
    decode_frontend,
    encode,
)
from central.protocols.postgres.messages import (
    Bind,
    CommandComplete,
    DataRow,
    FieldDescription,
    Query,
    ReadyForQuery,
    RowDescription,
)

CHUNK = 256 * 1024


def pgbench_select_response(balance: int) -> bytes:
    """What the server sends for `SELECT abalance FROM pgbench_accounts WHERE aid = :aid`."""
    return b"".join(
        encode(m)
        for m in (
            RowDescription((FieldDescription("abalance", 16397, 3, 23, 4, -1, 0),)),
            DataRow((str(balance).encode(),)),
            CommandComplete("SELECT 1"),
            ReadyForQuery("I"),
        )
    )


def accounts_row(aid: int) -> bytes:
    """A pgbench_accounts row in text format: aid, bid, abalance, filler char(84)."""
    return encode(DataRow((str(aid).encode(), str(aid // 100000 + 1).encode(), b"0", b" " * 84)))


def best_of(runs: int, fn: Callable[[], int]) -> tuple[float, int]:
    """(best CPU seconds, frames) over `runs` runs of fn, which returns the frames it produced.

    CPU time of this process, not wall time: on a shared machine other work would otherwise
    count against the codec.
    """
    best, count = float("inf"), 0
    for _ in range(runs):
        start = time.process_time()
        count = fn()
        best = min(best, time.process_time() - start)
    return best, count


def split(chunks: list[bytes]) -> int:
    reader = FrameReader()
    receive, next_frame = reader.receive_data, reader.next_frame
    count = 0
    for chunk in chunks:
        receive(chunk)
        while next_frame() is not None:
            count += 1
    return count


def split_iter(chunks: list[bytes]) -> int:
    reader = FrameReader()
    count = 0
    for chunk in chunks:
        reader.receive_data(chunk)
        for _ in reader.frames():
            count += 1
    return count


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def report(label: str, seconds: float, frames: int, nbytes: int) -> None:
    print(
        f"{label:58} {frames / seconds / 1e6:6.2f} M frames/s  "
        f"{nbytes / seconds / 1e6:7.1f} MB/s  {seconds * 1e9 / frames:6.0f} ns/frame"
    )


def per_op(label: str, fn: Callable[[], object], n: int) -> None:
    best = float("inf")
    for _ in range(7):
        start = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, time.process_time() - start)
    print(f"{label:58} {best * 1e9 / n:6.0f} ns/op")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="DataRows in test 2")
    parser.add_argument("--transactions", type=int, default=200_000, help="pgbench -S responses")
    args = parser.parse_args()

    responses = [pgbench_select_response(i % 10000 - 5000) for i in range(args.transactions)]
    stream = b"".join(responses)
    seconds, frames = best_of(5, lambda: split(responses))
    report("pgbench -S stream, one response per read", seconds, frames, len(stream))
    big = chunked(stream, CHUNK)
    seconds, frames = best_of(5, lambda: split(big))
    report("pgbench -S stream, 256 KiB reads", seconds, frames, len(stream))
    seconds, frames = best_of(5, lambda: split_iter(big))
    report("pgbench -S stream, 256 KiB reads, frames() iterator", seconds, frames, len(stream))

    rows = b"".join(accounts_row(i) for i in range(1, args.rows + 1))
    rows_chunks = chunked(rows, CHUNK)
    seconds, frames = best_of(5, lambda: split(rows_chunks))
    report(f"{args.rows:,} DataRows (pgbench_accounts), 256 KiB reads", seconds, frames, len(rows))

    one = encode(DataRow((b"-4321",)))
    one_frame = Frame(one[0], one)
    four = accounts_row(123456)
    four_frame = Frame(four[0], four)
    four_message = decode_backend(four_frame)
    n = 100_000
    print()
    per_op("decode_backend(DataRow), 1 column", lambda: decode_backend(one_frame), n)
    per_op("decode_backend(DataRow), 4 columns", lambda: decode_backend(four_frame), n)
    per_op("encode(DataRow), 4 columns", lambda: encode(four_message), n)
    per_op("Frame(type, raw)", lambda: Frame(68, four), n)
    query = encode(Query("SELECT abalance FROM pgbench_accounts WHERE aid = 4242;"))
    query_frame = Frame(query[0], query)
    bind = encode(Bind("", "", (), (b"4242",), (0,)))
    bind_frame = Frame(bind[0], bind)
    per_op("decode_frontend(Query)", lambda: decode_frontend(query_frame), n)
    per_op("decode_frontend(Bind), 1 parameter", lambda: decode_frontend(bind_frame), n)


if __name__ == "__main__":
    main()
