"""The recorder on both store backends: statements and terminals appended as they happen,
chained together, fail-closed."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from central.recording import (
    Recorder,
    RecordingUnavailable,
    StatementRecordDraft,
    asciicast,
    chain_fields,
)
from central.recording.asciicast import read_cast
from central.recording.recorder import MAX_CHUNK, _chain
from central.store import StatementRecord, Store
from central.store.models import TerminalChunk
from tests.central.recording.test_asciicast import play


def draft(sql: str, **kw: object) -> StatementRecordDraft:
    base: dict[str, object] = {
        "started_at": datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC),
        "duration_us": 1500,
        "protocol": "simple",
        "sql": sql,
        "params": None,
        "outcome": "ok",
        "rows": 1,
        "error": None,
    }
    return StatementRecordDraft(**(base | kw))  # type: ignore[arg-type]


async def test_statements_round_trip_in_order_with_a_hash_chain(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "shop-db", "postgres", "127.0.0.1:5000")
    log.statement(draft("SELECT 1"))
    log.statement(draft("SELECT $1", protocol="extended", params=["x", None]))
    log.close("client disconnected")
    await recorder.flush()
    found = await store.session_with_statements(log.session_id)
    assert found is not None
    session, rows = found
    assert session.end_reason == "client disconnected" and session.ended_at is not None
    assert [r.sql for r in rows] == ["SELECT 1", "SELECT $1"]
    assert rows[0].started_at == datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=UTC)
    assert json.loads(rows[1].params or "") == ["x", None]
    assert rows[0].prev_hash == log.session_id and rows[1].prev_hash == rows[0].hash
    assert len({r.hash for r in rows}) == 2


async def test_the_chain_covers_the_content(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "db", "postgres", "c")
    log.statement(draft("DELETE FROM t"))
    result = {"columns": ["ssn"], "rows": [["****"]], "more": False}
    log.statement(draft("SELECT ssn FROM t", result=result))
    await recorder.flush()
    found = await store.session_with_statements(log.session_id)
    assert found is not None
    row, with_result = found[1]
    fields = {
        "session_id": row.session_id,
        "seq": row.seq,
        "started_at": row.started_at,
        "duration_us": row.duration_us,
        "protocol": row.protocol,
        "sql": row.sql,
        "params": row.params,
        "outcome": row.outcome,
        "rows": row.rows,
        "error": row.error,
        "decision": row.decision,
        "rule": row.rule,
    }
    # The stored row re-hashes to its recorded hash, and the same row with other SQL does not:
    # a verifier reading the store can tell an edited statement.
    assert _chain(row.prev_hash, fields) == row.hash
    assert _chain(row.prev_hash, fields | {"sql": "SELECT 1"}) != row.hash
    # A kept result is in the hash; a statement without one hashes as before results existed.
    assert row.result is None and with_result.result is not None
    assert json.loads(with_result.result) == result
    again = fields | {
        "seq": with_result.seq,
        "sql": with_result.sql,
        "started_at": with_result.started_at,
        "result": with_result.result,
    }
    assert _chain(with_result.prev_hash, again) == with_result.hash
    edited = with_result.result.replace("****", "123-45-6789")
    assert _chain(with_result.prev_hash, again | {"result": edited}) != with_result.hash


async def test_a_store_that_cannot_be_written_fails_closed(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "db", "postgres", "c")
    async with store.session() as s, s.begin():
        await s.execute(text("DROP TABLE statements"))  # the store breaks under us
    log.statement(draft("SELECT 1"))
    await recorder.flush()
    assert not recorder.healthy
    assert "cannot be written" in (recorder.problem or "")
    with pytest.raises(RecordingUnavailable):
        log.statement(draft("SELECT 2"))
    with pytest.raises(RecordingUnavailable):
        await recorder.open_session("bob", "db", "postgres", "c")


# -- terminals ----------------------------------------------------------------------------------


def shell_header(**watchgate: object) -> dict[str, object]:
    return asciicast.header(
        80, 24, timestamp=1_764_000_000, watchgate={"kind": "shell", **watchgate}
    )


async def stored_cast(store: Store, session_id: str, channel: int) -> str:
    return "".join([chunk async for chunk in store.terminal_cast(session_id, channel)])


def first_break(session_id: str, rows: list[StatementRecord | TerminalChunk]) -> int | None:
    """The seq of the first row that does not continue the chain (what verify-audit checks)."""
    prev, expected_seq = session_id, 1
    for row in rows:
        if (
            row.seq != expected_seq
            or row.prev_hash != prev
            or _chain(row.prev_hash, chain_fields(row)) != row.hash
        ):
            return row.seq
        prev, expected_seq = row.hash, row.seq + 1
    return None


async def test_terminal_chunks_reach_the_store_within_a_flush_interval(store: Store) -> None:
    recorder = Recorder(store, flush_interval=0.05)
    recorder.start()
    try:
        log = await recorder.open_session("alice", "lab-host", "ssh", "127.0.0.1:5000")
        term = log.terminal(0, shell_header())
        term.output(b"$ whoami\r\nalice\r\n")
        sent = time.monotonic()
        cast = ""
        while "alice\\r\\n" not in cast and time.monotonic() - sent < 2:
            await asyncio.sleep(0.01)
            cast = await stored_cast(store, log.session_id, 0)
        waited = time.monotonic() - sent
    finally:
        await recorder.close()
    assert "alice\\r\\n" in cast
    # One flush interval plus a commit; far from "buffered for minutes".
    assert waited < 0.5, waited
    # Still open: no exit yet, but what is there is a valid cast already.
    parsed = read_cast(cast)
    assert parsed.text() == "$ whoami\r\nalice\r\n"
    assert parsed.header["watchgate"] == {
        "format": 1,
        "kind": "shell",
        "session": log.session_id,
        "channel": 0,
    }


async def test_statements_and_chunks_share_one_verifiable_chain(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    log.statement(draft("shell", protocol="shell"))
    term = log.terminal(1, shell_header())
    term.output(b"$ ")
    await recorder.flush()
    log.statement(draft("ls -l", protocol="line"))
    term.output("ls -l\r\ntotal 0 — ok\r\n".encode())
    term.resize(120, 40)
    term.exit(0)
    log.statement(draft("exit", protocol="line"))
    log.close("client disconnected")
    await recorder.flush()

    rows = await store.session_chain(log.session_id)
    assert [(r.seq, type(r).__name__) for r in rows] == [
        (1, "StatementRecord"),
        (2, "TerminalChunk"),  # the header
        (3, "TerminalChunk"),  # "$ ", cut by the first flush
        (4, "StatementRecord"),
        (5, "TerminalChunk"),  # the rest, up to the exit
        (6, "StatementRecord"),
    ]
    assert first_break(log.session_id, rows) is None
    cast = read_cast(await stored_cast(store, log.session_id, 1))
    assert cast.text() == "$ ls -l\r\ntotal 0 — ok\r\n"
    assert [(e.code, e.data) for e in cast.events[-2:]] == [("r", "120x40"), ("x", "0")]


TAMPERING = {
    # what is done to the stored rows -> the seq where a verifier finds the break
    "edit chunk": (
        ["UPDATE terminal_chunks SET data = replace(data, '1', '7') WHERE {s} AND seq = 5"],
        5,
    ),
    "remove statement": (["DELETE FROM statements WHERE {s} AND seq = 4"], 5),
    "remove chunk": (["DELETE FROM terminal_chunks WHERE {s} AND seq = 3"], 4),
    "reorder": (
        [
            "UPDATE statements SET seq = 3 WHERE {s} AND seq = 4",
            "UPDATE terminal_chunks SET seq = 4 WHERE {s} AND seq = 3",
        ],
        3,
    ),
}


@pytest.mark.parametrize("tamper", TAMPERING.keys())
async def test_a_tampered_row_breaks_the_chain(store: Store, tamper: str) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    for i in range(3):
        log.statement(draft(f"echo {i}", protocol="line"))
        term.output(f"{i}\r\n".encode())
        await recorder.flush()  # the statement, then the chunk cut at this flush
    term.close()
    await recorder.flush()
    rows = await store.session_chain(log.session_id)
    assert first_break(log.session_id, rows) is None
    kinds = [type(r).__name__ for r in rows]
    assert kinds == ["TerminalChunk"] + ["StatementRecord", "TerminalChunk"] * 3
    assert "1\\r\\n" in rows[4].data  # type: ignore[union-attr]

    statements, expected = TAMPERING[tamper]
    async with store.session() as s, s.begin():
        for sql in statements:
            await s.execute(text(sql.format(s="session_id = :s")), {"s": log.session_id})
    after = await store.session_chain(log.session_id)
    assert first_break(log.session_id, after) == expected


async def test_output_past_the_limit_is_counted_not_kept(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(2, shell_header(kind="exec"), limit=10)
    term.output(b"0123456")
    term.output(b"789abcdef")  # crosses the limit: "789" kept
    term.output(b"x" * 1000)
    term.exit(3)
    await recorder.flush()

    cast = read_cast(await stored_cast(store, log.session_id, 2))
    assert cast.text() == "0123456789"
    assert [(e.code, e.data) for e in cast.events if e.code != "o"] == [
        ("m", "watchgate: output recording truncated after 10 bytes"),
        ("m", "watchgate: 1016 bytes of output in all, 1006 not recorded"),
        ("x", "3"),
    ]
    assert term.output_bytes == 1016


async def test_large_output_is_cut_into_chunks_before_the_flush(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    block = b"y" * 4096
    for _ in range(200):  # 800 KiB, no flush in between
        term.output(block)
    assert len(recorder._chunks) >= 1 + 3  # the header, then a chunk per 256 KiB
    term.close()
    await recorder.flush()
    chunks = [r for r in await store.session_chain(log.session_id) if r.seq > 1]
    assert len(chunks) >= 3
    assert all(len(c.data) < MAX_CHUNK + 8192 for c in chunks)  # type: ignore[union-attr]
    cast = read_cast(await stored_cast(store, log.session_id, 0))
    assert cast.text() == "y" * 4096 * 200


async def test_closing_the_session_closes_its_terminals(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    term.output(b"\xe2\x82")  # half a character, never completed
    log.close("target closed")
    await recorder.flush()
    assert term.closed and not recorder._terminals
    with pytest.raises(RecordingUnavailable):
        term.output(b"late")  # nothing passes unrecorded after the close
    cast = read_cast(await stored_cast(store, log.session_id, 0))
    assert cast.text() == "\ufffd"
    assert cast.events[-1].code == "o"  # closed without an exit status
    # A channel number makes one cast per session: never two headers in one channel.
    with pytest.raises(ValueError, match="recorded already"):
        log.terminal(0, shell_header())
    other = await recorder.open_session("alice", "lab-host", "ssh", "c")
    other.terminal(1, shell_header())
    with pytest.raises(ValueError, match="recorded already"):
        other.terminal(1, shell_header())


async def test_terminal_output_fails_closed_when_the_store_breaks(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    async with store.session() as s, s.begin():
        await s.execute(text("DROP TABLE terminal_chunks"))  # the store breaks under us
    term.output(b"first")
    await recorder.flush()
    assert not recorder.healthy
    with pytest.raises(RecordingUnavailable):
        term.output(b"second")
    with pytest.raises(RecordingUnavailable):
        term.input(b"typed")
    with pytest.raises(RecordingUnavailable):
        log.terminal(1, shell_header())
    # Teardown still works: these never raise.
    term.resize(100, 30)
    term.marker("ending")
    term.exit(1)
    log.close("recording unavailable")
    assert len(recorder._chunks) >= 2  # kept for a retry, in order


async def test_a_stored_terminal_plays_in_asciinema_player(store: Store, tmp_path: Path) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    term.output(b"$ ")
    term.input(b"echo h\xc3")
    term.input(b"\xa9\r")
    term.output(b"echo h\xc3\xa9\r\nh\xc3\xa9\r\n")
    term.resize(100, 30)
    term.marker("command: echo hé")
    term.exit(0)
    await recorder.flush()

    played = play(await stored_cast(store, log.session_id, 0), tmp_path)

    output = "".join(data for kind, data in played["events"] if kind == "output")
    assert output == "$ echo hé\r\nhé\r\n"
    # The split "é" comes out whole, in the second input event.
    assert [d for k, d in played["events"] if k == "input"] == ["echo h", "é\r"]
    assert ["resize", {"cols": 100, "rows": 30}] in played["events"]
    assert [m[1] for m in played["metadata"]["markers"]] == ["command: echo hé"]
