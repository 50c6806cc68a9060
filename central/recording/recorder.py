"""The recorder: sessions, statements and terminals appended to the store as they happen,
hash-chained.

Protocol sessions hand finished statements to their `SessionLog`, and terminal activity to a
`TerminalLog`, without awaiting anything (the data path must not wait for a disk); one writer
task flushes everything pending every `flush_interval` (50 ms) in a single transaction. That
is "as it happens" for an auditor and cheap enough for pgbench rates.

A terminal is recorded as asciicast v3 (`central.recording.asciicast`), stored as chunks: the
NDJSON lines of one channel gathered since the last flush. Statements and chunks of a session
share one seq counter and one hash chain, so that a verifier walking both, merged by seq,
detects any removed, altered or reordered row. A session's end is written with its seal (the
chain's last row, and its link in the chain across sessions) in the same flush transaction:
see `central.recording.integrity` and `central.recording.seal`. On PostgreSQL the recorder
keeps a heartbeat and seals the sessions of dead replicas (`central.recording.heartbeat`).

Fail closed: if the store cannot be written, the recorder turns unhealthy; new sessions are
refused and live ones end at their next statement, so no traffic passes unrecorded. Rows
that could not be written stay queued and are retried.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError

from central.logs import get_logger
from central.recording import asciicast, heartbeat, textindex
from central.recording.integrity import link_hash as _chain
from central.recording.seal import RecorderLock, SessionEnd, seal_orphans, write_seals
from central.store import (
    SessionRecord,
    Store,
    TerminalChunk,
    TerminalText,
    new_id,
)

FORMAT_VERSION = 1  # of session and statement records; bump with a migration of old rows
MAX_SQL = 64 * 1024
MAX_PARAM = 1024
MAX_PARAMS_TOTAL = 16 * 1024
SEAL_WAIT = 5.0  # seconds a session's teardown waits for its seal before auditing its end
MAX_CHUNK = 256 * 1024  # characters of cast text buffered before a chunk is cut early

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
    # The first rows of the result as the client received them: {"columns", "rows", "more"},
    # and {"masked": {column: rule}, "scanned": [column]} where masking rules applied.
    result: dict[str, Any] | None = None


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"…[{len(text) - limit} more]"


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
        self._terminals: dict[int, TerminalLog] = {}
        self._channels: set[int] = set()  # every channel recorded so far, open or closed
        self._end: SessionEnd | None = None  # set by close(): nothing is recorded after it

    def terminal(
        self, channel: int, header: dict[str, Any], *, limit: int | None = None
    ) -> TerminalLog:
        """Start recording a terminal channel; `header` from `asciicast.header()`.

        The header's "watchgate" key gets this session's id and the channel number. Past
        `limit` bytes of output (None: no limit) the rest is counted, not kept.
        RecordingUnavailable if the recorder is unhealthy or the session closed; ValueError if
        the channel number was recorded before in this session (a channel's chunks make one
        cast: a second header among them would break it).
        """
        if channel in self._channels:
            raise ValueError(f"channel {channel} of session {self.session_id} is recorded already")
        self._check_open()
        self._channels.add(channel)
        meta = header.get("watchgate")
        meta = meta if isinstance(meta, dict) else {}
        head = asciicast.normalized(header) | {
            "watchgate": {"format": asciicast.WATCHGATE_FORMAT}
            | meta
            | {"session": self.session_id, "channel": channel}
        }
        log = TerminalLog(self, channel, head, limit)
        self._terminals[channel] = log
        return log

    def statement(self, draft: StatementRecordDraft) -> None:
        self._check_open()
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

    def _chunk(self, channel: int, data: str, lines: list[textindex.Line] | None = None) -> None:
        """Queue a terminal chunk: the next link of the session's chain; with the plain text
        `lines` that its output finished, for search (written in the same transaction)."""
        self._seq += 1
        fields = {"session_id": self.session_id, "seq": self._seq, "channel": channel, "data": data}
        digest = _chain(self._prev, fields)
        fields["prev_hash"], fields["hash"] = self._prev, digest
        self._prev = digest
        self.recorder._chunks.append(fields)
        if lines:
            text, times = textindex.stored(lines)
            self.recorder._texts.append(
                {
                    "session_id": self.session_id,
                    "seq": self._seq,
                    "channel": channel,
                    "text": text,
                    "times": times,
                }
            )

    def close(self, reason: str) -> SessionEnd:
        """The session ended: terminals still open are closed first (without an exit), then
        the end is queued; the recorder seals the session with it at its next flush.

        Returns the end with the chain's last row (`last_seq`, `last_hash`), for the audit
        log's "session.ended" event. Idempotent: a second call returns the first end.
        """
        if self._end is not None:
            return self._end
        for log in list(self._terminals.values()):
            log.close()
        self._end = SessionEnd(self.session_id, datetime.now(UTC), reason, self._seq, self._prev)
        self.recorder._ends.append(self._end)
        return self._end

    def _check_open(self) -> None:
        if not self.recorder.healthy:
            raise RecordingUnavailable(self.recorder.problem or "recording unavailable")
        if self._end is not None:
            raise RecordingUnavailable(f"the recording of session {self.session_id} is closed")


class TerminalLog:
    """The asciicast v3 recording of one terminal channel of a session.

    Every method is synchronous and cheap: events are stamped with `time.monotonic()` when
    called, encoded to cast lines and buffered; the buffer becomes a chunk at the recorder's
    next flush, or at once when it passes MAX_CHUNK. `output()` and `input()` raise
    RecordingUnavailable when the recorder is unhealthy or the log is closed (the session
    must end: no unrecorded traffic); the other methods never raise, so teardown can call them.

    Each chunk carries the plain text of the output lines that ended in it, for search
    (`central.recording.textindex`). `output()` only keeps the recorded bytes with their time;
    the text is extracted when the chunk is cut, off the data path (in the flush task, or when
    a chunk fills). A line still open at a cut goes with a later chunk; the line open when the
    channel closes goes with its last chunk, which is cut even if it holds no event (empty
    data), so that no recorded output escapes search.
    """

    def __init__(
        self, session: SessionLog, channel: int, header: dict[str, Any], limit: int | None
    ) -> None:
        self.session = session
        self.channel = channel
        self.limit = limit
        self.output_bytes = 0  # every byte of output seen, recorded or not
        self.closed = False
        self._start = time.monotonic()
        self._encoder = asciicast.EventEncoder(self._start)
        self._lines: list[str] = []
        # Output recorded since the last cut, (time, bytes), and the text extractor.
        self._output: list[tuple[float, bytes]] = []
        self._text = textindex.TextIndexer()
        self._size = 0
        self._truncated = False
        session._chunk(channel, asciicast.header_line(header))
        session.recorder._terminals[self] = None

    def output(self, data: bytes) -> None:
        self._check()
        self.output_bytes += len(data)
        if self._truncated:
            return
        if self.limit is not None and self.output_bytes > self.limit:
            keep = len(data) - (self.output_bytes - self.limit)
            now = time.monotonic()
            self._output.append((now, data[:keep]))
            self._add(self._encoder.output(now, data[:keep]))
            self._add(self._encoder.marker(now, _truncated(self.limit)))
            self._truncated = True
            return
        now = time.monotonic()
        self._output.append((now, data))  # before _add, which may cut the chunk
        self._add(self._encoder.output(now, data))

    def input(self, data: bytes) -> None:
        self._check()
        self._add(self._encoder.input(time.monotonic(), data))

    def resize(self, cols: int, rows: int) -> None:
        if not self.closed:
            self._add(self._encoder.resize(time.monotonic(), cols, rows))

    def marker(self, label: str) -> None:
        if not self.closed:
            self._add(self._encoder.marker(time.monotonic(), label))

    def exit(self, status: int) -> None:
        """The command's exit status: the last event. Closes the log."""
        if not self.closed:
            now = time.monotonic()
            self._end(now)
            self._add(self._encoder.exit(now, status))
            self._close()

    def close(self) -> None:
        """No more events: what is buffered becomes the channel's last chunk. Idempotent."""
        if not self.closed:
            self._end(time.monotonic())
            self._close()

    def _end(self, now: float) -> None:
        """Held bytes of a split character, and what truncation left out."""
        self._add(self._encoder.finish(now))
        if self._truncated and self.limit is not None:
            dropped = self.output_bytes - self.limit
            label = f"watchgate: {self.output_bytes} bytes of output in all, {dropped} not recorded"
            self._add(self._encoder.marker(now, label))

    def _close(self) -> None:
        self.closed = True
        self._cut()
        self.session.recorder._terminals.pop(self, None)
        self.session._terminals.pop(self.channel, None)

    def _check(self) -> None:
        recorder = self.session.recorder
        if not recorder.healthy:
            raise RecordingUnavailable(recorder.problem or "recording unavailable")
        if self.closed:
            raise RecordingUnavailable(f"the recording of channel {self.channel} is closed")

    def _add(self, lines: str) -> None:
        if lines:
            self._lines.append(lines)
            self._size += len(lines)
            if self._size >= MAX_CHUNK:
                self._cut()

    def _cut(self) -> None:
        """Turn the buffered lines into a chunk (called by the recorder before each flush),
        with the text of the output lines that ended in it."""
        lines: list[textindex.Line] = []
        for at, output in self._output:
            lines += self._text.feed(at - self._start, output)
        self._output.clear()
        if self.closed:
            lines += self._text.finish()
        if self._lines or lines:
            data = "".join(self._lines)
            self._lines.clear()
            self._size = 0
            self.session._chunk(self.channel, data, lines)


def _truncated(limit: int) -> str:
    return f"watchgate: output recording truncated after {limit} bytes"


class Recorder:
    def __init__(self, store: Store, *, flush_interval: float = 0.05) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.healthy = True
        self.problem: str | None = None
        self._statements: deque[dict[str, Any]] = deque()
        self._ends: deque[SessionEnd] = deque()
        self._chunks: deque[dict[str, Any]] = deque()
        self._texts: deque[dict[str, Any]] = deque()  # terminal_text rows of queued chunks
        # Open terminal logs (an ordered set): each flush first collects their buffered lines.
        self._terminals: dict[TerminalLog, None] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._flushed = asyncio.Event()  # set (and replaced) after each flush that wrote
        # Crash recovery (`central.recording.seal`): sessions open before this recorder
        # existed are sealed at start when no other recorder is alive on the store.
        self._born = datetime.now(UTC)
        self._lock = RecorderLock.beside(store)
        self._ready = asyncio.Event()
        # On PostgreSQL: this recorder's heartbeat row once registered, and when to beat and
        # sweep next (monotonic); `_dead` once another replica sealed our sessions.
        self._beats = store.engine.dialect.name == "postgresql"
        self._recorder_id: str | None = None
        self._next_beat = self._next_sweep = 0.0
        self._dead = False

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self.flush()
        if self._lock is not None:
            self._lock.release()
        if self._recorder_id is not None:
            try:
                await heartbeat.unregister(self.store, self._recorder_id)
            except SQLAlchemyError as e:  # its sessions are sealed once it is stale
                log.error("cannot remove this recorder's heartbeat: %s", e)
            self._recorder_id = None

    async def open_session(self, user: str, resource: str, kind: str, client: str) -> SessionLog:
        """Write the session's row before any traffic flows; RecordingUnavailable if we can't."""
        if self._task is not None:
            await self._ready.wait()  # not before the recovery: it would seal this session
        if not self.healthy:
            raise RecordingUnavailable(self.problem or "recording unavailable")
        if self._beats and self._task is not None and self._recorder_id is None:
            # Unregistered, its sessions would look like orphans to the other replicas.
            raise RecordingUnavailable(self.problem or "this recorder is not registered")
        session_id = new_id()
        row = {
            "id": session_id,
            "user": user,
            "resource": resource,
            "kind": kind,
            "client": client,
            "format_version": FORMAT_VERSION,
            "started_at": datetime.now(UTC),
            "recorder_id": self._recorder_id,
        }
        try:
            async with self.store.session() as s, s.begin():
                await s.execute(insert(SessionRecord), [row])
        except SQLAlchemyError as e:
            self._fail(e)
            raise RecordingUnavailable(self.problem or "recording unavailable") from e
        return SessionLog(self, session_id)

    async def until_sealed(self, end: SessionEnd) -> bool:
        """Wait until the session end `end` is in the store: written, with the other ends of
        that moment, by the writer task's next flush (a flush of its own per ended session
        halved the sessions a second central could take). False when it is not written
        within SEAL_WAIT seconds: the store is failing, and the end stays queued to be
        retried."""
        if self._task is None or self._task.done():
            await self.flush()
        try:
            async with asyncio.timeout(SEAL_WAIT):
                while end in self._ends:
                    await self._flushed.wait()
        except TimeoutError:
            return False
        return True

    async def flush(self) -> None:
        """Write everything queued, in one transaction."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        if self._dead:
            return  # our sessions are sealed: nothing of theirs may be written any more
        for terminal in list(self._terminals):
            terminal._cut()
        if not self._statements and not self._ends and not self._chunks:
            if not self.healthy:
                await self._probe()
            return
        rows = list(self._statements)
        chunks = list(self._chunks)
        texts = list(self._texts)
        ends = list(self._ends)
        try:
            async with self.store.session() as s, s.begin():
                if self._beats:
                    ids = {r["session_id"] for r in rows} | {c["session_id"] for c in chunks}
                    sealed = await heartbeat.sealed_among(s, ids | {e.session_id for e in ends})
                    if sealed:
                        self._declared_dead(f"the flush found sessions sealed: {sealed}")
                        return
                if rows:
                    conn = await s.connection()
                    await conn.exec_driver_sql(*_bulk_insert(conn.dialect, rows))
                if chunks:
                    await s.execute(insert(TerminalChunk), chunks)
                if texts:
                    await s.execute(insert(TerminalText), texts)
                await write_seals(s, ends)
        except SQLAlchemyError as e:
            self._fail(e)
            return
        for _ in rows:
            self._statements.popleft()
        for _ in chunks:
            self._chunks.popleft()
        for _ in texts:
            self._texts.popleft()
        for _ in ends:
            self._ends.popleft()
        self._flushed.set()
        self._flushed = asyncio.Event()
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

    def _declared_dead(self, how: str) -> None:
        """Another replica declared this recorder dead and sealed its sessions: unhealthy for
        good (fail closed: rows written now would follow their seals)."""
        self._dead, self.healthy = True, False
        self.problem = heartbeat.declared_dead()
        log.error("%s (%s)", self.problem, how)

    def _fail(self, exc: BaseException) -> None:
        if self._dead:
            return  # that problem stands, whatever else fails
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        self.problem = f"the recording store cannot be written: {first[:300]}"
        if self.healthy:
            log.error("%s; new sessions are refused until it recovers", self.problem)
        self.healthy = False

    async def _claim(self) -> None:
        """Register as a live recorder on the store. On SQLite, alone, seal the sessions that a
        dead process left open first (best effort: recording goes on whatever happens here);
        on PostgreSQL, insert the heartbeat row (no session is opened without it) and sweep."""
        if self._beats:
            await self._tend()
            return
        lock = self._lock
        if lock is None:
            return
        try:
            alone = await lock.acquire()
        except OSError as e:
            log.error("cannot take %s (%s): sessions left open stay open", lock.path, e)
            lock.release()
            self._lock = None
            return
        if not alone:
            return
        try:
            async with self._flushing:
                sealed = await seal_orphans(self.store, self._born, datetime.now(UTC))
            if sealed:
                log.warning("sealed %d sessions left open by a crash: %s", len(sealed), sealed)
        except Exception as e:  # the orphans stay open; verify-audit reports them
            log.error("cannot seal the sessions left open by a crash: %s", e)
        finally:
            await lock.share()

    async def _run(self) -> None:
        try:
            await self._claim()
        finally:
            self._ready.set()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.flush_interval)
            except TimeoutError:
                pass
            await self.flush()
            if self._beats:
                await self._tend()

    async def _tend(self) -> None:
        """The heartbeat and the sweep, when due (in the writer task, off the data path)."""
        now = time.monotonic()
        if self._dead:
            return
        if now >= self._next_beat:
            self._next_beat = now + heartbeat.HEARTBEAT
            await self._beat()
        if now >= self._next_sweep and self._recorder_id is not None:
            self._next_sweep = now + heartbeat.SWEEP
            try:
                await heartbeat.sweep(self.store, self._recorder_id)
            except SQLAlchemyError as e:  # tried again at the next sweep
                log.error("cannot seal the sessions of dead recorders: %s", e)

    async def _beat(self) -> None:
        try:
            if self._recorder_id is None:
                self._recorder_id = await heartbeat.register(self.store)
            elif not await heartbeat.beat(self.store, self._recorder_id):
                self._declared_dead("its heartbeat row is gone")
        except SQLAlchemyError as e:
            self._fail(e)
