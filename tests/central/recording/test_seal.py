"""Seals on both store backends: written with the session's end, linked across sessions by
concurrent replicas, and written for sessions a dead process left open (where that is safe)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from central.recording import (
    Recorder,
    RecordingUnavailable,
    SessionEnd,
    StatementRecordDraft,
    heartbeat,
)
from central.recording import recorder as recorder_module
from central.recording.evidence import verify_store
from central.recording.integrity import GENESIS, record_fields, seal_hash
from central.recording.seal import ORPHAN_REASON
from central.store import RecorderRecord, SessionRecord, Store
from tests.support.pgtemp import temporary_database


def draft(sql: str) -> StatementRecordDraft:
    return StatementRecordDraft(datetime.now(UTC), 10, "simple", sql, None, "ok", 1, None)


async def test_a_session_end_writes_its_seal_and_its_link_in_the_chain(store: Store) -> None:
    recorder = Recorder(store)
    busy = await recorder.open_session("alice", "shop-db", "postgres", "c")
    idle = await recorder.open_session("bob", "shop-db", "postgres", "c")
    busy.statement(draft("SELECT 1"))
    busy.statement(draft("SELECT 2"))
    first = busy.close("client disconnected")
    second = idle.close("client disconnected")
    await recorder.flush()

    rows = await store.session_chain(busy.session_id)
    assert first == SessionEnd(busy.session_id, first.at, "client disconnected", 2, rows[-1].hash)
    assert (second.last_seq, second.last_hash) == (0, idle.session_id)
    a = await store.session_record(busy.session_id)
    b = await store.session_record(idle.session_id)
    assert a is not None and b is not None
    assert (a.last_seq, a.last_hash, a.ended_at) == (2, rows[-1].hash, first.at)
    assert (a.chain_seq, a.chain_prev) == (1, GENESIS)
    assert a.chain_hash == seal_hash(GENESIS, record_fields(a))
    assert (b.last_seq, b.last_hash, b.chain_seq) == (0, idle.session_id, 2)
    assert b.chain_prev == a.chain_hash
    assert b.chain_hash == seal_hash(a.chain_hash, record_fields(b))
    report = await verify_store(store, [])
    assert (report.problem, report.sealed, report.rows) == (None, 2, 2)


async def test_ends_wait_for_their_seal_from_the_writer_and_give_up_when_the_store_fails(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(store)
    recorder.start()
    try:
        logs = [await recorder.open_session(u, "shop-db", "postgres", "c") for u in "abc"]
        ends = [log.close("client disconnected") for log in logs]
        # Three teardowns wait together; the writer task seals them (no flush of their own).
        assert await asyncio.gather(*(recorder.until_sealed(e) for e in ends)) == [True] * 3
        for log in logs:
            record = await store.session_record(log.session_id)
            assert record is not None and record.chain_hash is not None

        # A store that fails: the wait ends (False) instead of holding the teardown forever.
        monkeypatch.setattr(recorder_module, "SEAL_WAIT", 0.3)
        log = await recorder.open_session("d", "shop-db", "postgres", "c")
        async with store.session() as s, s.begin():
            await s.execute(text("ALTER TABLE sessions RENAME TO gone"))  # seals fail
        end = log.close("client disconnected")
        assert await recorder.until_sealed(end) is False
        assert not recorder.healthy and end in recorder._ends  # kept, to be retried
    finally:
        recorder._ends.clear()
        await recorder.close()


async def test_nothing_is_recorded_after_the_close_and_a_second_close_is_the_first(
    store: Store,
) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    log.statement(draft("ls"))
    end = log.close("target closed")
    with pytest.raises(RecordingUnavailable, match="is closed"):
        log.statement(draft("rm -rf /"))
    with pytest.raises(RecordingUnavailable, match="is closed"):
        log.terminal(3, {"version": 3, "term": {"cols": 80, "rows": 24}})
    assert log.close("again") is end
    await recorder.flush()
    record = await store.session_record(log.session_id)
    assert record is not None and (record.end_reason, record.last_seq) == ("target closed", 1)


async def test_replicas_sharing_a_store_extend_one_chain(store_url: str) -> None:
    """Two recorders with their own connections (two replicas) seal at the same moments: on
    PostgreSQL the advisory lock, on SQLite BEGIN IMMEDIATE, keeps the chain one line."""
    stores = [await Store.open(store_url), await Store.open(store_url)]
    try:
        recorders = [Recorder(s) for s in stores]
        for _ in range(3):
            for recorder in recorders:
                for n in range(8):
                    log = await recorder.open_session("alice", "db", "postgres", "c")
                    if n % 2:
                        log.statement(draft(f"SELECT {n}"))
                    log.close("client disconnected")
            await asyncio.gather(*(r.flush() for r in recorders))
        assert all(r.healthy for r in recorders), [r.problem for r in recorders]
        sessions = await stores[0].list_sessions(user=None, limit=100)
        assert sorted(s.chain_seq for s in sessions) == list(range(1, 49))
        report = await verify_store(stores[1], [])
        assert (report.problem, report.sealed) == (None, 48)
    finally:
        for s in stores:
            await s.close()


async def test_recovery_seals_sessions_left_open_by_a_recorder_that_is_gone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session whose recorder never closed it (a crash) is sealed at the next recorder's
    start: on SQLite because that recorder is alone; on PostgreSQL because the session has no
    live recorder and is older than STALE (made 0 here)."""
    monkeypatch.setattr(heartbeat, "STALE", 0.0)
    crashed = Recorder(store)  # never started, never closed: as if killed after the flush
    log = await crashed.open_session("alice", "lab-host", "ssh", "c")
    log.statement(draft("uptime"))
    await crashed.flush()
    last = (await store.session_chain(log.session_id))[-1]

    recorder = Recorder(store)
    recorder.start()
    try:
        await recorder.open_session("bob", "lab-host", "ssh", "c")  # after the recovery
    finally:
        await recorder.close()
    record = await store.session_record(log.session_id)
    assert record is not None
    assert (record.end_reason, record.last_seq, record.last_hash, record.chain_seq) == (
        ORPHAN_REASON,
        1,
        last.hash,
        1,
    )
    assert (await verify_store(store, [])).problem is None


CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from central.recording import Recorder, StatementRecordDraft
from central.store import Store

async def main():
    store = await Store.open(sys.argv[1])
    recorder = Recorder(store)
    recorder.start()
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    log.statement(StatementRecordDraft(datetime.now(UTC), 1, "exec", "top", None, "ok", 0, None))
    await recorder.flush()
    print(log.session_id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_live_process_keeps_its_session_open_and_a_dead_ones_session_is_sealed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        orphan = (await asyncio.to_thread(child.stdout.readline)).strip()
        assert orphan, "the child recorded no session"
        store = await Store.open(url)
        try:
            beside = Recorder(store)  # another recorder while the child lives
            beside.start()
            mine = await beside.open_session("bob", "lab-host", "ssh", "c")
            mine.close("client disconnected")
            await beside.close()
            live = await store.session_record(orphan)
            assert live is not None and live.ended_at is None  # its owner is alive

            child.send_signal(signal.SIGKILL)
            await asyncio.to_thread(child.wait)
            after = Recorder(store)
            after.start()
            await after.open_session("carol", "lab-host", "ssh", "c")
            await after.close()
            sealed = await store.session_record(orphan)
            assert sealed is not None
            assert (sealed.end_reason, sealed.last_seq, sealed.chain_seq) == (ORPHAN_REASON, 1, 2)
            assert (await verify_store(store, [])).problem is None
        finally:
            await store.close()
    finally:
        child.kill()
        child.wait()


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait for `condition` (the writer tasks act on their own schedule); fail after 30 s."""
    async with asyncio.timeout(30):
        while not await condition():
            await asyncio.sleep(0.02)


def _small_intervals(monkeypatch: pytest.MonkeyPatch, stale: float) -> None:
    monkeypatch.setattr(heartbeat, "HEARTBEAT", 0.02)
    monkeypatch.setattr(heartbeat, "SWEEP", 0.02)
    monkeypatch.setattr(heartbeat, "STALE", stale)


async def test_a_killed_replicas_sessions_are_sealed_by_a_live_replicas_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: the child registers, beats and records a session, and is SIGKILLed; its
    heartbeat goes stale and a live replica seals the session at its last stored row."""
    async with temporary_database() as url:
        store = await Store.open(url)
        try:
            legacy = await Recorder(store).open_session("dave", "db", "postgres", "c")
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, url], stdout=subprocess.PIPE, text=True
            )
            try:
                assert child.stdout is not None
                orphan = (await asyncio.to_thread(child.stdout.readline)).strip()
                assert orphan, "the child recorded no session"
                record = await store.session_record(orphan)
                assert record is not None and record.recorder_id is not None
                child.send_signal(signal.SIGKILL)
                await asyncio.to_thread(child.wait)
            finally:
                child.kill()
                child.wait()

            _small_intervals(monkeypatch, stale=0.2)
            live = Recorder(store)
            live.start()
            try:
                mine = await live.open_session("carol", "lab-host", "ssh", "c")

                async def sealed() -> bool:
                    record = await store.session_record(orphan)
                    return record is not None and record.chain_hash is not None

                await _until(sealed)
                dead = await store.session_record(orphan)
                assert dead is not None
                assert (dead.end_reason, dead.last_seq) == (ORPHAN_REASON, 1)
                # The session of no recorder (before recorders registered) too, once stale.
                old = await store.session_record(legacy.session_id)
                assert old is not None and (old.end_reason, old.last_seq) == (ORPHAN_REASON, 0)
                async with store.session() as s:
                    ids = (await s.scalars(select(RecorderRecord.id))).all()
                assert ids == [live._recorder_id]  # the dead row is gone, the live one kept
                mine.statement(draft("uptime"))
                mine.close("client disconnected")
            finally:
                await live.close()
            assert live.healthy, live.problem
            report = await verify_store(store, [])
            assert (report.problem, report.sealed) == (None, 3)
        finally:
            await store.close()


async def test_a_live_replicas_sessions_are_never_sealed_by_anothers_sweep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: two replicas beat and sweep many times over a session older than STALE;
    the session stays open, and is sealed by its own end."""
    async with temporary_database() as url:
        stores = [await Store.open(url), await Store.open(url)]
        try:
            _small_intervals(monkeypatch, stale=0.5)
            owner, other = Recorder(stores[0]), Recorder(stores[1])
            owner.start()
            other.start()
            try:
                log = await owner.open_session("alice", "lab-host", "ssh", "c")
                log.statement(draft("uptime"))
                await owner.flush()

                async def old() -> bool:  # by the database's clock, three times STALE
                    async with stores[1].session() as s:
                        age = await s.scalar(
                            select(func.now() - SessionRecord.started_at).where(
                                SessionRecord.id == log.session_id
                            )
                        )
                    return age is not None and age.total_seconds() > 1.5

                await _until(old)
                # One more sweep of the other's, after that.
                assert await heartbeat.sweep(stores[1], other._recorder_id) == []
                record = await stores[1].session_record(log.session_id)
                assert record is not None and record.ended_at is None
                assert owner.healthy and other.healthy, (owner.problem, other.problem)
                log.statement(draft("whoami"))
                end = log.close("client disconnected")
                assert await owner.until_sealed(end)
            finally:
                await owner.close()
                await other.close()
            record = await stores[1].session_record(log.session_id)
            assert record is not None
            assert (record.end_reason, record.last_seq) == ("client disconnected", 2)
            assert (await verify_store(stores[1], [])).problem is None
        finally:
            for s in stores:
                await s.close()


async def test_a_replica_declared_dead_turns_unhealthy_and_writes_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL: another replica deleted this recorder's heartbeat row and sealed its
    session (as after a pause longer than STALE). The rows queued before it noticed are not
    written after the seal; the session ends at its next statement; new ones are refused."""
    async with temporary_database() as url:
        store = await Store.open(url)
        try:
            monkeypatch.setattr(heartbeat, "HEARTBEAT", 3600.0)  # the flush finds out first
            recorder = Recorder(store)
            recorder.start()
            try:
                log = await recorder.open_session("alice", "lab-host", "ssh", "c")
                log.statement(draft("uptime"))
                await recorder.flush()
                async with store.session() as s, s.begin():
                    await s.execute(text("DELETE FROM recorders"))
                assert await heartbeat.sweep(store, None) == [log.session_id]

                log.statement(draft("rm -rf /"))  # queued before the recorder knows
                await recorder.flush()
                assert not recorder.healthy
                assert recorder.problem == heartbeat.declared_dead()
                assert "sealed by another replica after it missed heartbeats for 60 s" in (
                    recorder.problem or ""
                )
                assert [row.seq for row in await store.session_chain(log.session_id)] == [1]
                with pytest.raises(RecordingUnavailable, match="sealed by another replica"):
                    log.statement(draft("ls"))
                with pytest.raises(RecordingUnavailable, match="sealed by another replica"):
                    await recorder.open_session("bob", "lab-host", "ssh", "c")
                await recorder.flush()  # still nothing written, and no recovery
                assert not recorder.healthy
            finally:
                await recorder.close()
            assert [row.seq for row in await store.session_chain(log.session_id)] == [1]
            assert (await verify_store(store, [])).problem is None

            # A recorder with nothing queued finds out from its heartbeat.
            monkeypatch.setattr(heartbeat, "HEARTBEAT", 0.02)
            idle = Recorder(store)
            idle.start()
            try:
                await idle.open_session("carol", "lab-host", "ssh", "c")
                async with store.session() as s, s.begin():
                    await s.execute(text("DELETE FROM recorders"))

                async def unhealthy() -> bool:
                    return not idle.healthy

                await _until(unhealthy)
                assert idle.problem == heartbeat.declared_dead()
            finally:
                await idle.close()
        finally:
            await store.close()
