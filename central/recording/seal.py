"""Seals, written by the recorder when sessions end (see `central.recording.integrity`).

A session's seal is written in the same flush transaction as its end: its chain's last row,
and its link in the chain across sessions. Several central replicas may share a PostgreSQL
store, so the chain's head is read under a transaction-scoped advisory lock (on SQLite every
transaction is BEGIN IMMEDIATE, which serialises the same way).

Sessions left open by a crash are sealed, at their last stored row, with ORPHAN_REASON. A
live session and an orphan look the same in the store; what tells them apart is whether the
process that opened it is still alive. On SQLite every recorder holds a shared `flock` on a
file beside the database for its lifetime (the kernel drops it when the process dies), so a
recorder that can take that lock exclusively at start is alone and every open session is an
orphan. PostgreSQL replicas live on different hosts, and an advisory lock held on a connection
would vanish with that connection (a database restart, an idle timeout) while its replica and
sessions live on; there each recorder keeps a heartbeat row instead, and the live ones seal
the sessions of those that stopped beating (`central.recording.heartbeat`).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from central.logs import get_logger
from central.recording.integrity import GENESIS, seal_fields, seal_hash
from central.store import SessionRecord, StatementRecord, Store, TerminalChunk

# Key of the PostgreSQL advisory lock around the chain head (the migration lock is another).
_PG_SEAL_LOCK: Final = 0x57617463_68536561  # "WatchSea"
ORPHAN_REASON: Final = "central stopped before the session ended"

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """A session's end as its log knew it: when, why, and its chain's last row."""

    session_id: str
    at: datetime
    reason: str
    last_seq: int
    last_hash: str


_SEALED_COLUMNS = (
    SessionRecord.id,
    SessionRecord.user,
    SessionRecord.resource,
    SessionRecord.kind,
    SessionRecord.client,
    SessionRecord.format_version,
    SessionRecord.started_at,
)


async def write_seals(s: AsyncSession, ends: Sequence[SessionEnd]) -> None:
    """End and seal `ends`, in order, inside the caller's transaction.

    A session already ended (sealed by a recovery, or unknown) is left as it is and logged:
    its own later end must not fork the chain."""
    if not ends:
        return
    conn = await s.connection()
    if conn.dialect.name == "postgresql":
        await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SEAL_LOCK})
    head = (
        await s.execute(
            select(SessionRecord.chain_seq, SessionRecord.chain_hash)
            .where(SessionRecord.chain_seq.is_not(None))
            .order_by(SessionRecord.chain_seq.desc())
            .limit(1)
        )
    ).first()
    chain_seq, chain_prev = 0, GENESIS
    if head is not None and head.chain_seq is not None:
        # A head whose hash was emptied is tampering that verify names; the chain goes on.
        chain_seq, chain_prev = head.chain_seq, head.chain_hash or ""
    found = await s.execute(
        select(*_SEALED_COLUMNS).where(
            SessionRecord.id.in_([end.session_id for end in ends]),
            SessionRecord.ended_at.is_(None),
        )
    )
    open_rows = {row.id: dict(row._mapping) for row in found}
    for end in ends:
        row = open_rows.pop(end.session_id, None)
        if row is None:
            log.warning(
                "session %s was ended already (or is unknown): not sealed again", end.session_id
            )
            continue
        chain_seq += 1
        seal = {
            "ended_at": end.at,
            "end_reason": end.reason,
            "last_seq": end.last_seq,
            "last_hash": end.last_hash,
            "chain_seq": chain_seq,
        }
        digest = seal_hash(chain_prev, seal_fields(row | seal))
        await s.execute(
            update(SessionRecord)
            .where(SessionRecord.id == end.session_id, SessionRecord.ended_at.is_(None))
            .values(**seal, chain_prev=chain_prev, chain_hash=digest)
            .execution_options(synchronize_session=False)
        )
        chain_prev = digest


async def seal_orphans(store: Store, before: datetime, now: datetime) -> list[str]:
    """Seal every session still open that started before `before`, at its last stored row,
    with ORPHAN_REASON; the ids sealed. Only for a caller that knows no other recorder is
    alive (`RecorderLock`)."""
    async with store.session() as s, s.begin():
        ids = list(
            (
                await s.scalars(
                    select(SessionRecord.id)
                    .where(SessionRecord.ended_at.is_(None), SessionRecord.started_at < before)
                    .order_by(SessionRecord.started_at)
                )
            ).all()
        )
        await seal_as_orphans(s, ids, now)
    return ids


async def seal_as_orphans(s: AsyncSession, ids: Sequence[str], now: datetime) -> None:
    """Seal the open sessions `ids`, in order, at their last stored rows, ended `now` with
    ORPHAN_REASON, inside the caller's transaction (the same sealing as a normal end)."""
    ends = []
    for session_id in ids:
        last_seq, last_hash = await _last_link(s, session_id)
        ends.append(SessionEnd(session_id, now, ORPHAN_REASON, last_seq, last_hash))
    await write_seals(s, ends)


async def _last_link(s: AsyncSession, session_id: str) -> tuple[int, str]:
    """The seq and hash of the session's last stored row; (0, its id) when it has none."""
    last = (0, session_id)
    for table in (StatementRecord, TerminalChunk):
        row = (
            await s.execute(
                select(table.seq, table.hash)
                .where(table.session_id == session_id)
                .order_by(table.seq.desc())
                .limit(1)
            )
        ).first()
        if row is not None and int(row[0]) > last[0]:
            last = (int(row[0]), str(row[1]))
    return last


class RecorderLock:
    """The recorders alive on one SQLite store: each holds a shared lock on a file beside the
    database while it runs. Exclusive means alone (every other holder has exited or died)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def beside(cls, store: Store) -> RecorderLock | None:
        """The lock of a SQLite store; None for PostgreSQL (see the module docstring)."""
        url = store.engine.url
        if url.get_backend_name() != "sqlite" or not url.database:
            return None
        return cls(Path(f"{url.database}.recorders.lock"))

    async def acquire(self) -> bool:
        """Take the lock: exclusively if no other recorder holds it (True: alone, hold it
        exclusively until `share()`), else shared (False)."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Another recorder is alive (or recovering: wait for it to share).
            await asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_SH)
            return False
        return True

    async def share(self) -> None:
        """Downgrade to shared, so that other recorders can start beside this one."""
        if self._fd is not None:
            await asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
