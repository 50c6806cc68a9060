"""Recorders of central replicas sharing a PostgreSQL store: heartbeats, and the sealing of
the sessions that dead ones left open.

Each started recorder registers a row in `recorders` and its writer task sets the row's
`seen_at` every HEARTBEAT seconds, from the database's clock (`now()`), so that the replicas'
clocks never matter. Every SWEEP seconds each recorder sweeps: recorders not seen for STALE
seconds are dead; their rows are deleted and every open session whose recorder has no row
(dead, or closed while the session was open) is sealed at its last stored row with
ORPHAN_REASON, as a normal end is sealed. Open sessions with no recorder at all (opened before
recorders registered, or by a recorder that was never started) are sealed once they are STALE
seconds old.

A replica that was only paused (a stopped VM, a long partition) may come back after it was
declared dead. It must not write a row after its sessions were sealed, or their seals would
no longer name their last rows. So its flushes check, in their own transaction, that none of
their sessions is ended, under a shared advisory lock that a sweep takes exclusively while it
seals: a flush either commits before the sweep reads the last rows, or sees the seal and is
refused. Refused, or finding its own heartbeat row gone, the recorder turns unhealthy for
good (`DECLARED_DEAD`): live sessions end at their next statement, new ones are refused.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import timedelta
from typing import Final

from sqlalchemy import and_, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from central.logs import get_logger
from central.recording.seal import seal_as_orphans
from central.store import RecorderRecord, SessionRecord, Store, new_id

HEARTBEAT: float = 5.0  # seconds between a recorder's heartbeats
SWEEP: float = 30.0  # seconds between a recorder's sweeps for dead recorders
STALE: float = 60.0  # seconds without a heartbeat after which a recorder is dead

# Taken shared by every flush, exclusively by a sweep that seals (the seal lock is another).
_PG_SWEEP_LOCK: Final = 0x57617463_68537770  # "WatchSwp"

log = get_logger(__name__)


def declared_dead() -> str:
    """The problem of a recorder whose sessions another replica sealed."""
    return (
        "this central's recordings were sealed by another replica after it missed heartbeats "
        f"for {STALE:g} s; restart it to record again"
    )


async def register(store: Store) -> str:
    """Insert this recorder's heartbeat row; its id."""
    recorder_id = new_id()
    async with store.session() as s, s.begin():
        await s.execute(
            insert(RecorderRecord).values(
                id=recorder_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                started_at=func.now(),
                seen_at=func.now(),
            )
        )
    return recorder_id


async def beat(store: Store, recorder_id: str) -> bool:
    """Refresh the recorder's `seen_at`; False when its row is gone (declared dead)."""
    async with store.session() as s, s.begin():
        result = await s.execute(
            update(RecorderRecord)
            .where(RecorderRecord.id == recorder_id)
            .values(seen_at=func.now())
            .execution_options(synchronize_session=False)
        )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def unregister(store: Store, recorder_id: str) -> None:
    async with store.session() as s, s.begin():
        await s.execute(delete(RecorderRecord).where(RecorderRecord.id == recorder_id))


async def sealed_among(s: AsyncSession, session_ids: Iterable[str]) -> list[str]:
    """Inside a flush's transaction, before it writes: which of `session_ids` are ended
    already. Holds the sweep lock shared until the transaction ends (see the module
    docstring)."""
    await s.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": _PG_SWEEP_LOCK})
    found = await s.scalars(
        select(SessionRecord.id).where(
            SessionRecord.id.in_(list(session_ids)), SessionRecord.ended_at.is_not(None)
        )
    )
    return list(found.all())


async def sweep(store: Store, keep: str | None) -> list[str]:
    """Delete the rows of dead recorders (never `keep`'s, the caller's own: it is alive) and
    seal the sessions left open without a live recorder; the ids sealed."""
    stale = func.now() - timedelta(seconds=STALE)
    dead = RecorderRecord.seen_at < stale
    if keep is not None:
        dead = and_(dead, RecorderRecord.id != keep)
    orphans = select(SessionRecord.id).where(
        SessionRecord.ended_at.is_(None),
        or_(
            and_(SessionRecord.recorder_id.is_(None), SessionRecord.started_at < stale),
            and_(
                SessionRecord.recorder_id.is_not(None),
                ~exists().where(RecorderRecord.id == SessionRecord.recorder_id),
            ),
        ),
    )
    async with store.session() as s, s.begin():
        # Mostly there is nothing to do: find out without blocking any flush.
        found = await s.scalar(select(or_(exists().where(dead), orphans.exists())))
        if not found:
            return []
        await s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SWEEP_LOCK})
        # The staleness is checked again by the DELETE itself: a heartbeat committed since
        # saves its recorder.
        gone = list(
            (await s.scalars(delete(RecorderRecord).where(dead).returning(RecorderRecord.id))).all()
        )
        ids = list(
            (await s.scalars(orphans.order_by(SessionRecord.started_at, SessionRecord.id))).all()
        )
        now = await s.scalar(select(func.now()))
        if ids and now is not None:
            await seal_as_orphans(s, ids, now)
    if gone:
        log.warning("recorders %s missed heartbeats for %g s: declared dead", gone, STALE)
    if ids:
        log.warning("sealed %d sessions left open by dead recorders: %s", len(ids), ids)
    return ids
