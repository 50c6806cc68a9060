"""The recorder on both store backends: appended as it happens, chained, fail-closed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from central.recording import Recorder, RecordingUnavailable, StatementRecordDraft
from central.recording.recorder import _chain
from central.store import Store


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
