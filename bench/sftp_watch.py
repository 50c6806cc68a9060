"""Throughput of the SFTP watcher on an upload (plain script, prints results).

    .venv/bin/python bench/sftp_watch.py [--mb 200] [--write-size 261120]

Feeds an SFTP upload of `--mb` MB (INIT, OPEN, then WRITE packets of `--write-size` data bytes,
OpenSSH's largest, and CLOSE) through `SftpWatch.from_client`, with the target's STATUS replies
through `from_target`, and prints MB/s and µs per WRITE packet. Each feed size is one way the
SSH channel could hand data to the relay: 32 KiB is asyncssh's default channel packet (every
WRITE spans 8 chunks and is joined once for the output), 256 KiB a large read, and "packet"
one whole WRITE per call (forwarded with no copy at all). Times are the best of several runs.
"""

from __future__ import annotations

import argparse
import struct
import time

from central.protocols.ssh.sftp import FileRequest, SftpWatch

U32 = struct.Struct(">I")


def packet(ptype: int, body: bytes) -> bytes:
    return U32.pack(len(body) + 1) + bytes((ptype,)) + body


def string(value: bytes) -> bytes:
    return U32.pack(len(value)) + value


def status_ok(request_id: int) -> bytes:
    return packet(101, U32.pack(request_id) + U32.pack(0) + string(b"") + string(b""))


HANDLE = b"\x00\x00\x00\x00"


def upload(total: int, write_size: int) -> tuple[bytes, list[bytes], int]:
    """(client stream after INIT/OPEN, the target's replies to each WRITE, WRITE count)."""
    data = bytes(write_size)
    writes: list[bytes] = []
    replies: list[bytes] = []
    offset = 0
    request_id = 10
    while offset < total:
        body = U32.pack(request_id) + string(HANDLE) + struct.pack(">Q", offset) + string(data)
        writes.append(packet(6, body))
        replies.append(status_ok(request_id))
        offset += write_size
        request_id += 1
    return b"".join(writes), replies, len(writes)


def opened_watch() -> SftpWatch:
    def decide(request: FileRequest) -> None:
        return None

    watch = SftpWatch(decide)
    watch.from_client(packet(1, U32.pack(3)))
    watch.from_target(packet(2, U32.pack(3)))
    open_body = U32.pack(1) + string(b"/tmp/big.bin") + U32.pack(0x1A) + U32.pack(0)
    watch.from_client(packet(3, open_body))
    watch.from_target(packet(102, U32.pack(1) + string(HANDLE)))
    return watch


def run(stream: bytes, replies: list[bytes], feed: int | None, packets: int) -> float:
    """Seconds to push `stream` through a fresh watcher in `feed`-byte chunks (None: one
    WRITE packet per call), answering every WRITE as it goes."""
    watch = opened_watch()
    if feed is None:
        size = len(stream) // packets
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    else:
        chunks = [stream[i : i + feed] for i in range(0, len(stream), feed)]
    packet_size = len(stream) // packets
    forwarded = answered = 0
    start = time.perf_counter()
    for chunk in chunks:
        out, _ = watch.from_client(chunk)
        forwarded += len(out)
        # The target answers each WRITE once it has all of it.
        while answered < forwarded // packet_size:
            watch.from_target(replies[answered])
            answered += 1
    elapsed = time.perf_counter() - start
    assert forwarded == len(stream), (forwarded, len(stream))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--write-size", type=int, default=261120)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stream, replies, packets = upload(args.mb * 1_000_000, args.write_size)
    megabytes = len(stream) / 1e6
    print(f"upload of {megabytes:.0f} MB: {packets} WRITE packets of {args.write_size} bytes")
    for label, feed in (("32 KiB", 32 * 1024), ("256 KiB", 256 * 1024), ("packet", None)):
        best = min(run(stream, replies, feed, packets) for _ in range(args.runs))
        print(
            f"  feed {label:>8}: {megabytes / best:8.0f} MB/s  "
            f"{best / packets * 1e6:7.1f} µs per WRITE packet"
        )


if __name__ == "__main__":
    main()
