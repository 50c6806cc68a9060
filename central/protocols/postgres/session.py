"""One PostgreSQL session through central: the only place in the PostgreSQL path that does I/O.

Central has already opened the target with the held credential; this class greets the client
as if it were the server (AuthenticationOk, the target's ParameterStatus, a BackendKeyData of
central's own making, ReadyForQuery) and then relays message by message in both directions.

The relay keeps just enough state to record every statement and its outcome: a queue of
executions in flight (one per Query or Execute) with Sync markers, matched against the
target's CommandComplete / ErrorResponse / ReadyForQuery. Replies that central produces itself
(a refused FunctionCall) are queued behind the ReadyForQuery messages the target still owes,
so a pipelining client sees every answer in the order it asked.

Writes to the client are always whole messages, so the session can be ended between any two
of them with a FATAL ErrorResponse (for instance when the user's access expires).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from central.logs import ContextLogger
from central.protocols.postgres.codec import (
    Frame,
    FrameReader,
    ProtocolError,
    decode_backend,
    decode_frontend,
    encode,
)
from central.protocols.postgres.messages import (
    Authentication,
    BackendKeyData,
    Bind,
    Close,
    CommandComplete,
    Describe,
    ErrorResponse,
    Execute,
    ParameterDescription,
    ParameterStatus,
    Parse,
    Query,
    ReadyForQuery,
    error_response,
)
from central.protocols.postgres.params import render_params
from central.protocols.postgres.target import TargetConnection
from central.protocols.transport import Endpoint, adopt
from central.recording import RecordingUnavailable, SessionLog, StatementRecordDraft
from central.recording.recorder import clip
from central.sessions import LiveSession

# Message type bytes, as ints (frame.type).
_Q, _P, _B, _E, _S, _C, _X, _F, _D = (ord(c) for c in "QPBESCXFD")
_PASSTHROUGH_FRONTEND = frozenset(ord(c) for c in "Hdcf")
_CMD_COMPLETE, _ERROR, _READY, _EMPTY, _SUSPENDED, _DATA_ROW, _PARAM_DESC = (
    ord(c) for c in "CEZIsDt"
)
_TRACKED_BACKEND = frozenset((_CMD_COMPLETE, _ERROR, _READY, _EMPTY, _SUSPENDED, _PARAM_DESC))

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(slots=True)
class _Execution:
    sql: str
    params: list[str | None] | None
    protocol: str
    started_at: datetime
    t0: int
    rows: int | None = None  # from CommandComplete tags
    rows_sent: int = 0  # DataRows relayed, for executions that end without a tag
    error: str | None = None


_SYNC = None  # the Sync marker in the queue of executions


def rows_from_tag(tag: str) -> int | None:
    """Rows affected or returned, from a CommandComplete tag ("SELECT 5", "INSERT 0 3")."""
    last = tag.rpartition(" ")[2]
    return int(last) if last.isdigit() and " " in tag else None


class PostgresSession:
    def __init__(
        self,
        *,
        live: LiveSession,
        recording: SessionLog,
        client: StreamPair,
        target: TargetConnection,
        log: ContextLogger,
    ) -> None:
        self.live = live
        self.recording = recording
        self.c_reader, self.c_writer = client
        self.target = target
        self.log = log
        self.status = target.status  # transaction status of the last ReadyForQuery
        self._statements: dict[str, str] = {}
        self._param_types: dict[str, tuple[int, ...]] = {}
        self._describing: deque[str] = deque()  # statements awaiting ParameterDescription
        self._portals: dict[str, tuple[str, list[str | None]]] = {}
        self._inflight: deque[_Execution | None] = deque()
        self._owed = 0  # ReadyForQuery messages the target still owes the client
        self._injected: deque[tuple[int, bytes]] = deque()
        self._c_frames = FrameReader()
        self._t_frames = FrameReader()

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self) -> str:
        """Relay until either side ends or access expires; returns why the session ended."""
        self._done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        client = Endpoint(self._on_client_data, lambda exc: self._end("client disconnected"))
        target = Endpoint(
            self._on_target_data, lambda exc: self._end("target closed the connection")
        )
        client.peer, target.peer = target, client
        self.c_transport, c_left = adopt(self.c_reader, self.c_writer, client)
        self.t_transport, t_left = adopt(self.target.reader, self.target.writer, target)
        self._greet()
        if self.target.buffered or t_left:
            self._on_target_data(self.target.buffered + t_left)
        if c_left:
            self._on_client_data(c_left)
        watchdog = asyncio.ensure_future(self._watchdog())
        try:
            reason = await self._done
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        self.log.info("session ended: %s", reason)
        return reason

    def _end(self, reason: str) -> None:
        if not self._done.done():
            self._done.set_result(reason)

    def _greet(self) -> None:
        out = [encode(Authentication(Authentication.OK, b""))]
        out += [encode(ParameterStatus(k, v)) for k, v in self.target.parameters.items()]
        pid, secret = self.live.key
        out.append(encode(BackendKeyData(pid, secret)))
        out.append(encode(ReadyForQuery(self.status)))
        self.c_transport.write(b"".join(out))

    def _fatal(self, sqlstate: str, message: str) -> None:
        self.c_transport.write(encode(error_response(sqlstate, message, severity="FATAL")))

    async def _watchdog(self) -> None:
        live = self.live
        while True:
            live.deadline_moved.clear()
            left = (live.deadline - datetime.now(UTC)).total_seconds()
            if left <= 0:
                why = (
                    "access grant expired"
                    if live.grant_until is not None and live.grant_until <= live.deadline
                    else "access token expired"
                )
                self._fatal(
                    "57P01",
                    f"Watchgate: session ended: {why} at {live.deadline:%Y-%m-%d %H:%M:%S} UTC",
                )
                self._end(why)
                return
            try:
                await asyncio.wait_for(live.deadline_moved.wait(), left)
            except TimeoutError:
                pass

    # -- client to target ----------------------------------------------------------------------

    def _on_client_data(self, data: bytes) -> None:
        if self._done.done():
            return
        if not self.recording.recorder.healthy:
            self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
            self._end("recording unavailable")
            return
        frames = self._c_frames
        frames.receive_data(data)
        out: list[bytes] = []
        try:
            for frame in frames.frames():
                kind = frame.type
                if kind in _PASSTHROUGH_FRONTEND:
                    out.append(frame.raw)
                elif kind == _X:
                    out.append(frame.raw)
                    self.t_transport.write(b"".join(out))
                    self._end("client terminated")
                    return
                elif kind == _F:
                    self._refuse_function_call()
                else:
                    self._track_frontend(frame)
                    out.append(frame.raw)
        except ProtocolError as e:
            self.log.warning("protocol error from client: %s", e)
            self._fatal("08P01", f"Watchgate: protocol error: {e}")
            self._end(f"protocol error from client: {e}")
            return
        except RecordingUnavailable:
            self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
            self._end("recording unavailable")
            return
        if out:
            self.t_transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _track_frontend(self, frame: Frame) -> None:
        kind = frame.type
        if kind == _Q:
            msg = decode_frontend(frame)
            assert isinstance(msg, Query)
            self._begin(msg.sql, None, "simple")
            self._owed += 1
        elif kind == _P:
            msg = decode_frontend(frame)
            assert isinstance(msg, Parse)
            self._statements[msg.name] = msg.sql
            self._param_types[msg.name] = msg.param_types
        elif kind == _B:
            msg = decode_frontend(frame)
            assert isinstance(msg, Bind)
            sql = self._statements.get(msg.statement, "")
            types = self._param_types.get(msg.statement, ())
            self._portals[msg.portal] = (sql, render_params(msg.params, msg.param_formats, types))
        elif kind == _D:
            msg = decode_frontend(frame)
            assert isinstance(msg, Describe)
            if msg.kind == "S":
                self._describing.append(msg.name)
        elif kind == _E:
            msg = decode_frontend(frame)
            assert isinstance(msg, Execute)
            sql, params = self._portals.get(msg.portal, ("", []))
            self._begin(sql, params, "extended")
        elif kind == _S:
            self._inflight.append(_SYNC)
            self._owed += 1
        elif kind == _C:
            msg = decode_frontend(frame)
            assert isinstance(msg, Close)
            if msg.kind == "S":
                self._statements.pop(msg.name, None)
                self._param_types.pop(msg.name, None)
            else:
                self._portals.pop(msg.name, None)
        else:
            raise ProtocolError(f"unexpected client message type {chr(kind)!r} in a session")

    def _begin(self, sql: str, params: list[str | None] | None, protocol: str) -> None:
        self._inflight.append(
            _Execution(sql, params, protocol, datetime.now(UTC), time.perf_counter_ns())
        )

    def _refuse_function_call(self) -> None:
        # The fast-path interface calls a function by OID with no SQL text, so nothing could
        # be classified or recorded meaningfully: refuse it, as the policy says.
        message = (
            "Watchgate: the fast-path function call interface is refused; "
            "call the function from a query instead"
        )
        self._record(
            StatementRecordDraft(
                started_at=datetime.now(UTC),
                duration_us=0,
                protocol="function",
                sql="<FunctionCall>",
                params=None,
                outcome="refused",
                rows=None,
                error=f"0A000 {message}",
                decision="refuse",
            )
        )
        self._inject(encode(error_response("0A000", message)))

    def _inject(self, reply: bytes) -> None:
        """Answer the client ourselves, after every reply the target still owes it."""
        if self._owed == 0 and not self._injected:
            self.c_transport.write(reply + encode(ReadyForQuery(self.status)))
        else:
            self._injected.append((self._owed, reply))

    # -- target to client ----------------------------------------------------------------------

    def _on_target_data(self, data: bytes) -> None:
        if self._done.done():
            return
        frames = self._t_frames
        frames.receive_data(data)
        try:
            chunk, events, tail_rows = frames.scan(_TRACKED_BACKEND, _DATA_ROW)
            start = 0
            pieces: list[bytes] = []
            for end, rows, frame in events:
                if rows:
                    self._count_rows(rows)
                self._track_backend(frame)
                if frame.type == _READY and self._injected:
                    # Our own replies go right after the ReadyForQuery they waited for.
                    pieces.append(chunk[start:end])
                    start = end
                    self._release_injected(pieces)
            if tail_rows:
                self._count_rows(tail_rows)
        except ProtocolError as e:
            self.log.warning("protocol error from target: %s", e)
            self._fatal("08P01", f"Watchgate: the target sent malformed data: {e}")
            self._end(f"protocol error from target: {e}")
            return
        except RecordingUnavailable:
            self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
            self._end("recording unavailable")
            return
        if pieces:
            pieces.append(chunk[start:])
            chunk = b"".join(pieces)
        if chunk:
            self.c_transport.write(chunk)

    def _count_rows(self, rows: int) -> None:
        if self._inflight and (head := self._inflight[0]) is not None:
            head.rows_sent += rows

    def _release_injected(self, out: list[bytes]) -> None:
        while self._injected and self._injected[0][0] <= 0:
            _, reply = self._injected.popleft()
            out.append(reply + encode(ReadyForQuery(self.status)))

    def _track_backend(self, frame: Frame) -> None:
        kind = frame.type
        head = self._inflight[0] if self._inflight else None
        if kind == _PARAM_DESC:
            msg = decode_backend(frame)
            assert isinstance(msg, ParameterDescription)
            if self._describing:
                self._param_types[self._describing.popleft()] = msg.types
            return
        if kind == _READY:
            self._describing.clear()
            msg = decode_backend(frame)
            assert isinstance(msg, ReadyForQuery)
            self.status = msg.status
            self._owed -= 1
            self._injected = deque((n - 1, reply) for n, reply in self._injected)
            # A simple Query ends here; an extended batch ends at its Sync marker.
            while self._inflight:
                item = self._inflight.popleft()
                if item is _SYNC:
                    break
                self._finish(item, "skipped" if item.protocol == "extended" else None)
                if item.protocol == "simple":
                    break
            return
        if head is None:
            return  # e.g. an asynchronous FATAL from the server: nothing in flight to close
        if kind == _CMD_COMPLETE:
            msg = decode_backend(frame)
            assert isinstance(msg, CommandComplete)
            rows = rows_from_tag(msg.tag)
            if rows is not None:
                head.rows = (head.rows or 0) + rows
            if head.protocol == "extended":
                self._finish(self._inflight.popleft())  # type: ignore[arg-type]
        elif kind in (_EMPTY, _SUSPENDED):
            if head.protocol == "extended":
                self._finish(self._inflight.popleft())  # type: ignore[arg-type]
        elif kind == _ERROR:
            msg = decode_backend(frame)
            assert isinstance(msg, ErrorResponse)
            head.error = clip(f"{msg.code} {msg.message}", 2000)
            if head.protocol == "extended":
                # The server skips everything up to the next Sync after an error.
                self._finish(self._inflight.popleft())  # type: ignore[arg-type]
                while self._inflight and self._inflight[0] is not _SYNC:
                    self._finish(self._inflight.popleft(), "skipped")  # type: ignore[arg-type]

    def _finish(self, item: _Execution, outcome: str | None = None) -> None:
        if outcome is None:
            outcome = "error" if item.error else "ok"
        self._record(
            StatementRecordDraft(
                started_at=item.started_at,
                duration_us=(time.perf_counter_ns() - item.t0) // 1000,
                protocol=item.protocol,
                sql=item.sql,
                params=item.params,
                outcome=outcome,
                rows=item.rows if item.rows is not None else (item.rows_sent or None),
                error=item.error,
            )
        )

    def _record(self, draft: StatementRecordDraft) -> None:
        self.recording.statement(draft)
