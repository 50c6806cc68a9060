"""FrameReader.scan: the relay's bulk path must agree with frame-by-frame reading."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.protocols.postgres.codec import FrameReader, ProtocolError, encode
from central.protocols.postgres.messages import (
    CommandComplete,
    DataRow,
    ErrorResponse,
    ReadyForQuery,
)

TRACKED = frozenset(ord(c) for c in "CEZ")
D = ord("D")

messages = st.lists(
    st.one_of(
        st.builds(DataRow, st.tuples(st.binary(max_size=20), st.none() | st.binary(max_size=5))),
        st.builds(CommandComplete, st.sampled_from(["SELECT 1", "INSERT 0 2", "BEGIN"])),
        st.just(ReadyForQuery("I")),
        st.just(ErrorResponse({"S": "ERROR", "C": "42P01", "M": "nope"})),
    ),
    max_size=40,
)


@given(messages, st.lists(st.integers(min_value=1, max_value=64), max_size=30))
def test_scan_forwards_every_byte_and_reports_tracked_frames_in_order(
    msgs: list[object], cuts: list[int]
) -> None:
    stream = b"".join(encode(m) for m in msgs)  # type: ignore[arg-type]
    reader = FrameReader()
    out = b""
    tracked: list[tuple[int, bytes]] = []
    rows = 0
    pos = 0
    for size in [*cuts, len(stream)]:
        piece, pos = stream[pos : pos + size], pos + size
        if not piece:
            continue
        reader.receive_data(piece)
        chunk, events, tail = reader.scan(TRACKED, D)
        for end, before, frame in events:
            rows += before
            assert chunk[end - len(frame.raw) : end] == frame.raw
            tracked.append((frame.type, frame.raw))
        rows += tail
        out += chunk
    assert out == stream
    assert tracked == [(encode(m)[0], encode(m)) for m in msgs if not isinstance(m, DataRow)]  # type: ignore[arg-type]
    assert rows == sum(isinstance(m, DataRow) for m in msgs)


def test_scan_rejects_a_bad_length() -> None:
    reader = FrameReader()
    reader.receive_data(encode(ReadyForQuery("I")) + b"D\x00\x00\x00\x02")
    with pytest.raises(ProtocolError, match="below the minimum"):
        reader.scan(TRACKED, D)


def test_scan_is_for_typed_frames() -> None:
    with pytest.raises(ProtocolError):
        FrameReader(startup=True).scan(TRACKED, D)


@given(messages, st.lists(st.integers(min_value=1, max_value=64), max_size=30))
def test_take_run_and_next_frame_together_yield_every_frame_in_order(
    msgs: list[object], cuts: list[int]
) -> None:
    stream = b"".join(encode(m) for m in msgs)  # type: ignore[arg-type]
    reader = FrameReader()
    seen: list[tuple[int, bytes]] = []
    pos = 0

    def drain() -> None:
        while True:
            run = reader.take_run(D)
            if run is not None:
                buf, start, end, count = run
                reader2 = FrameReader()
                reader2.receive_data(buf[start:end])
                frames = [(f.type, f.raw) for f in reader2.frames()]
                assert len(frames) == count and all(t == D for t, _ in frames)
                seen.extend(frames)
                continue
            frame = reader.next_frame()
            if frame is None:
                return
            seen.append((frame.type, frame.raw))

    for cut in cuts:
        reader.receive_data(stream[pos : pos + cut])
        pos += cut
        drain()
    if pos < len(stream):
        reader.receive_data(stream[pos:])
        drain()
    expected = FrameReader()
    expected.receive_data(stream)
    assert seen == [(f.type, f.raw) for f in expected.frames()]


def test_take_run_stops_at_another_type_and_consumes_nothing_then() -> None:
    reader = FrameReader()
    rows = encode(DataRow((b"a",))) + encode(DataRow((None,)))
    reader.receive_data(rows + encode(CommandComplete("SELECT 2")))
    run = reader.take_run(D)
    assert run is not None and run[0][run[1] : run[2]] == rows
    assert reader.take_run(D) is None
    frame = reader.next_frame()
    assert frame is not None and frame.type == ord("C")


@given(
    messages,
    st.lists(st.integers(min_value=1, max_value=64), max_size=30),
    st.integers(min_value=1, max_value=3),
)
def test_scan_hands_out_the_first_rows_after_each_tracked_frame(
    msgs: list[object], cuts: list[int], sample: int
) -> None:
    stream = b"".join(encode(m) for m in msgs)  # type: ignore[arg-type]
    # What frame-by-frame reading says: after each tracked frame, the next `sample` rows.
    expected: list[bytes] = []
    left = 0
    for m in msgs:
        raw = encode(m)  # type: ignore[arg-type]
        if not isinstance(m, DataRow):
            expected.append(raw)
            left = sample
        elif left:
            expected.append(raw)
            left -= 1
    reader = FrameReader()
    seen: list[bytes] = []
    counted = 0
    pos = 0
    for size in [*cuts, len(stream)]:
        piece, pos = stream[pos : pos + size], pos + size
        if piece:
            reader.receive_data(piece)
            _, events, tail = reader.scan(TRACKED, D, sample)
            seen += [frame.raw for _, _, frame in events]
            counted += sum(before for _, before, _ in events) + tail
    assert seen == expected
    assert counted + sum(r[0] == D for r in seen) == sum(isinstance(m, DataRow) for m in msgs)
