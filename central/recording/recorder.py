"""The recorder: sessions and statements appended to the store as they happen, hash-chained.

Protocol sessions hand finished statements to their `SessionLog` without awaiting anything
(the data path must not wait for a disk); one writer task flushes everything pending every
`flush_interval` (50 ms) in a single transaction. That is "as it happens" for an auditor and
cheap enough for pgbench rates.

Fail closed: if the store cannot be written, the recorder turns unhealthy; new sessions are
refused and live ones end at their next statement, so no traffic passes unrecorded. Rows
that could not be written stay queued and are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError

from central.logs import get_logger
from central.store import SessionRecord, Store, new_id

FORMAT_VERSION = 1  # of session and statement records; bump with a migration of old rows
MAX_SQL = 64 * 1024
MAX_PARAM = 1024
MAX_PARAMS_TOTAL = 16 * 1024

log = get_logger(__name__)


class RecordingUnavailable(Exception):
    """The recording cannot be written: the session must not carry traffic."""


@dataclass(slots=True)
class StatementRecordDraft:
    """A finished statement as the protocol session saw it."""

    started_at: datetime
    duration_us: int
    protocol: str  # "simple" | "extended" | "function"
    sql: str
    params: list[str | None] | None
    outcome: str  # "ok" | "error" | "skipped" | "refused"
    rows: int | None
    error: str | None
    decision: str = "forward"
    rule: str | None = None
    # The first rows of the result as the client received them: {"columns", "rows", "more"}.
    result: dict[str, Any] | None = None


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"…[{len(text) - limit} more]"


def _chain(prev: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()


_COLUMNS = (
    "session_id",
    "seq",
    "started_at",
    "duration_us",
    "protocol",
    "sql",
    "params",
    "outcome",
    "rows",
    "error",
    "decision",
    "rule",
    "result",
    "prev_hash",
    "hash",
)


def _bulk_insert(dialect: Dialect, rows: list[dict[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
    """One executemany straight to the driver: at pgbench rates, SQLAlchemy's per-row
    parameter processing cost a tenth of central's CPU. Times are stored as the store's
    UTCDateTime type stores them (naive UTC text on SQLite, timestamptz on PostgreSQL); the
    store's tests read these rows back through the ORM."""
    if dialect.paramstyle == "qmark":
        marks = ", ".join("?" for _ in _COLUMNS)
    else:  # numeric_dollar (asyncpg)
        marks = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
    sqlite = dialect.name == "sqlite"
    values = []
    for row in rows:
        started = row["started_at"]
        if sqlite:
            started = started.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
        values.append(tuple(started if c == "started_at" else row[c] for c in _COLUMNS))
    quoted = ", ".join(f'"{c}"' for c in _COLUMNS)
    sql = f"INSERT INTO statements ({quoted}) VALUES ({marks})"  # noqa: S608 - our constants
    return sql, values


class SessionLog:
    """The record of one session; `statement()` queues, never blocks."""

    def __init__(self, recorder: Recorder, session_id: str) -> None:
        self.recorder = recorder
        self.session_id = session_id
        self._seq = 0
        self._prev = session_id

    def statement(self, draft: StatementRecordDraft) -> None:
        if not self.recorder.healthy:
            raise RecordingUnavailable(self.recorder.problem or "recording unavailable")
        self._seq += 1
        # Built by hand: dataclasses.asdict deep-copies, which showed up in the profile.
        fields = {
            "session_id": self.session_id,
            "seq": self._seq,
            "started_at": draft.started_at,
            "duration_us": draft.duration_us,
            "protocol": draft.protocol,
            "sql": clip(draft.sql, MAX_SQL),
            "params": None if draft.params is None else json.dumps(draft.params),
            "outcome": draft.outcome,
            "rows": draft.rows,
            "error": draft.error,
            "decision": draft.decision,
            "rule": draft.rule,
        }
        # Only a statement with a result has the key in its hash, so that rows recorded
        # before results were kept still verify.
        if draft.result is not None:
            fields["result"] = json.dumps(draft.result, separators=(",", ":"))
        digest = _chain(self._prev, fields)
        fields.setdefault("result", None)
        fields["prev_hash"], fields["hash"] = self._prev, digest
        self._prev = digest
        self.recorder._statements.append(fields)

    def close(self, reason: str) -> None:
        self.recorder._ends.append((self.session_id, datetime.now(UTC), reason))


class Recorder:
    def __init__(self, store: Store, *, flush_interval: float = 0.05) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.healthy = True
        self.problem: str | None = None
        self._statements: deque[dict[str, Any]] = deque()
        self._ends: deque[tuple[str, datetime, str]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._flushing = asyncio.Lock()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self.flush()

    async def open_session(self, user: str, resource: str, kind: str, client: str) -> SessionLog:
        """Write the session's row before any traffic flows; RecordingUnavailable if we can't."""
        if not self.healthy:
            raise RecordingUnavailable(self.problem or "recording unavailable")
        session_id = new_id()
        row = {
            "id": session_id,
            "user": user,
            "resource": resource,
            "kind": kind,
            "client": client,
            "format_version": FORMAT_VERSION,
            "started_at": datetime.now(UTC),
        }
        try:
            async with self.store.session() as s, s.begin():
                await s.execute(insert(SessionRecord), [row])
        except SQLAlchemyError as e:
            self._fail(e)
            raise RecordingUnavailable(self.problem or "recording unavailable") from e
        return SessionLog(self, session_id)

    async def flush(self) -> None:
        """Write everything queued, in one transaction."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if not self._statements and not self._ends:
            if not self.healthy:
                await self._probe()
            return
        rows = list(self._statements)
        ends = list(self._ends)
        try:
            async with self.store.session() as s, s.begin():
                if rows:
                    conn = await s.connection()
                    await conn.exec_driver_sql(*_bulk_insert(conn.dialect, rows))
                for session_id, at, reason in ends:
                    await s.execute(
                        update(SessionRecord)
                        .where(SessionRecord.id == session_id)
                        .values(ended_at=at, end_reason=reason)
                    )
        except SQLAlchemyError as e:
            self._fail(e)
            return
        for _ in rows:
            self._statements.popleft()
        for _ in ends:
            self._ends.popleft()
        if not self.healthy:
            log.warning("recording recovered: the store accepts writes again")
        self.healthy, self.problem = True, None

    async def _probe(self) -> None:
        """Unhealthy with nothing queued (the failure was a refused session's own record):
        try a session row in a transaction that is rolled back, so that the recorder finds
        out when the store accepts writes again instead of refusing sessions until restart."""
        row = {
            "id": new_id(),
            "user": "",
            "resource": "",
            "kind": "probe",
            "client": "",
            "format_version": FORMAT_VERSION,
            "started_at": datetime.now(UTC),
        }
        try:
            async with self.store.session() as s:
                await s.begin()
                await s.execute(insert(SessionRecord), [row])
                await s.rollback()
        except SQLAlchemyError as e:
            self._fail(e)
            return
        log.warning("recording recovered: the store accepts writes again")
        self.healthy, self.problem = True, None

    def _fail(self, exc: BaseException) -> None:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.problem = f"the recording store cannot be written: {first[:300]}"
        if self.healthy:
            log.error("%s; new sessions are refused until it recovers", self.problem)
        self.healthy = False

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.flush_interval)
            except TimeoutError:
                pass
            await self.flush()
