"""One PostgreSQL session through central: the only place in the PostgreSQL path that does I/O.

Central has already opened the target with the held credential; this class greets the client
as if it were the server (AuthenticationOk, the target's ParameterStatus, a BackendKeyData of
central's own making, ReadyForQuery) and then relays message by message in both directions,
on asyncio protocols (no await per message).

Every statement passes the gate before it reaches the target: in a Query, or in a Parse for
the extended protocol (decided there, so nothing of it runs before Execute). A blocked
statement gets an ErrorResponse (SQLSTATE 42501, naming the rule) and the session stays
usable: in the extended protocol the rest of the batch is skipped up to Sync, exactly as the
server itself does after an error. A statement held for review stops the client's side of the
relay (its later messages wait, in order) until a reviewer decides; the client is told the
request id in a NoticeResponse first.

Replies that central produces itself are placed where the server's would have been: behind
the ReadyForQuery messages the target still owes, or right before the one that ends the batch,
so a pipelining client sees every answer in the order it asked. Writes to the client are always
whole messages, so the session can be ended between any two of them with a FATAL ErrorResponse
(for instance when the user's access expires).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from central.logs import ContextLogger
from central.masking.rows import RowError
from central.policy.enforce import FORWARD, Verdict
from central.policy.rules import Decision
from central.protocols.postgres.catalog import CatalogError
from central.protocols.postgres.codec import (
    Frame,
    FrameReader,
    ProtocolError,
    decode_backend,
    decode_frontend,
    encode,
)
from central.protocols.postgres.masking import MaskingFailed, SessionMasking
from central.protocols.postgres.messages import (
    Authentication,
    BackendKeyData,
    Bind,
    Close,
    Describe,
    ErrorResponse,
    Execute,
    NoticeResponse,
    ParameterStatus,
    Parse,
    Query,
    ReadyForQuery,
    error_response,
    notice_response,
)
from central.protocols.postgres.target import TargetConnection
from central.protocols.postgres.tracker import (
    DATA_ROW,
    ERROR,
    READY,
    ROW_DESC,
    TRACKED_BACKEND,
    StatementTracker,
    rows_from_tag,
)
from central.protocols.transport import Endpoint, adopt
from central.recording import RecordingUnavailable, SessionLog
from central.sessions import LiveSession, until_expired

__all__ = ["Gate", "PostgresSession", "disown", "rows_from_tag"]

NOTICE = ord("N")
_MESSAGES = frozenset((ERROR, NOTICE))
_RELAY_TRACKED = TRACKED_BACKEND | {NOTICE}
_OURS = b"atchgate"  # W or w: a fast first look, the message is then decoded

_Q, _P, _B, _E, _S, _C, _X, _F, _D = (ord(c) for c in "QPBESCXFD")
_PASSTHROUGH_FRONTEND = frozenset(ord(c) for c in "Hdcf")

StreamPair = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Gate(Protocol):
    """The policy as a session sees it (central/policy/enforce.py implements it)."""

    def decide(self, sql: str) -> Decision:
        """Allow, block or review this SQL text (a whole Query, or one Parse)."""
        ...

    def review(
        self, sql: str, decision: Decision, notify: Callable[[str], None]
    ) -> Awaitable[Verdict | str]:
        """Hold for a reviewer: the Verdict to run it with once, or why it may not run."""
        ...


class _Held:
    """Sentinel results of the gate for one message."""


_HOLD = _Held()
_REFUSED = _Held()


def disown(frame: Frame) -> bytes | None:
    """A notice or error from the target whose message speaks as Watchgate, made plainly the
    database's; None for every other (the same bytes go on).

    Clients trust what starts with "Watchgate:" (the desktop app reads masked columns and held
    statements from such notices), and a database function can RAISE any text it likes."""
    if _OURS not in frame.raw:
        return None
    message = decode_backend(frame)
    assert isinstance(message, NoticeResponse | ErrorResponse)
    text = message.fields.get("M", "")
    if not text.lstrip().lower().startswith("watchgate"):
        return None
    fields = {**message.fields, "M": f"(from the database) {text}"}
    return encode(type(message)(fields))


class PostgresSession:
    def __init__(
        self,
        *,
        live: LiveSession,
        recording: SessionLog,
        client: StreamPair,
        target: TargetConnection,
        gate: Gate,
        log: ContextLogger,
        masking: SessionMasking | None = None,
        record_rows: int = 20,
    ) -> None:
        self.live = live
        self.masking = masking
        if masking is not None:
            scs = target.parameters.get("standard_conforming_strings", "on")
            masking.backslash_escapes = scs == "off"
        self.recording = recording
        self.c_reader, self.c_writer = client
        self.target = target
        self.gate = gate
        self.log = log
        self.tracker = StatementTracker(recording, target.status, keep_rows=record_rows)
        self._c_frames = FrameReader()
        self._t_frames = FrameReader()
        self._queue: deque[Frame] = deque()  # client messages not yet through the gate
        self._holding = False
        self._cleared: tuple[Frame, Verdict] | None = None  # approved once by a reviewer
        self._batch_open = False  # extended messages forwarded since the last Sync
        self._discard: str | None = None  # skipping to Sync: "answer" it or "forward" it
        self._discard_error = b""
        # Our own replies: (ReadyForQuery messages to wait for, bytes, before that one?)
        self._injected: list[tuple[int, bytes, bool]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self) -> str:
        """Relay until either side ends or access expires; returns why the session ended."""
        self._done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        client = Endpoint(self._on_client_data, lambda exc: self._end("client disconnected"))
        target = Endpoint(
            self._on_target_data, lambda exc: self._end("target closed the connection")
        )
        client.peer, target.peer = target, client
        if self.masking is not None:
            try:
                await self.masking.refresh()
            except CatalogError as e:
                self.log.error("masking cannot start: %s", e)
                self.c_writer.write(
                    encode(
                        error_response(
                            "58000", f"Watchgate: masking cannot start: {e}", severity="FATAL"
                        )
                    )
                )
                return f"masking cannot start: {e}"
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
            for task in (watchdog, *self._tasks):
                task.cancel()
            await asyncio.gather(watchdog, *self._tasks, return_exceptions=True)
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
        out.append(encode(ReadyForQuery(self.tracker.status)))
        self.c_transport.write(b"".join(out))

    def _fatal(self, sqlstate: str, message: str) -> None:
        self.c_transport.write(encode(error_response(sqlstate, message, severity="FATAL")))

    def _notice(self, message: str) -> None:
        if not self._done.done():
            self.c_transport.write(encode(notice_response("00000", message)))

    async def _watchdog(self) -> None:
        why = await until_expired(self.live)
        self._fatal(
            "57P01",
            f"Watchgate: session ended: {why} at {self.live.deadline:%Y-%m-%d %H:%M:%S} UTC",
        )
        self._end(why)

    # -- client to target ----------------------------------------------------------------------

    def _on_client_data(self, data: bytes) -> None:
        if self._done.done():
            return
        if not self.recording.recorder.healthy:
            self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
            self._end("recording unavailable")
            return
        try:
            self._c_frames.receive_data(data)
            self._queue.extend(self._c_frames.frames())
        except ProtocolError as e:
            self._protocol_error(e)
            return
        self._pump()

    def _pump(self) -> None:
        """Pass queued client messages through the gate, in order, until one is held."""
        out: list[bytes] = []
        try:
            while self._queue and not self._holding and not self._done.done():
                if not self._client_message(self._queue.popleft(), out):
                    break
        except ProtocolError as e:
            self._protocol_error(e)
            return
        except RecordingUnavailable:
            self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
            self._end("recording unavailable")
            return
        if out:
            self.t_transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _protocol_error(self, e: ProtocolError) -> None:
        self.log.warning("protocol error from client: %s", e)
        self._fatal("08P01", f"Watchgate: protocol error: {e}")
        self._end(f"protocol error from client: {e}")

    def _client_message(self, frame: Frame, out: list[bytes]) -> bool:
        """Handle one client message; False when the relay must stop here (held, ended)."""
        kind = frame.type
        if self._discard is not None and kind not in (_S, _X):
            return True  # the rest of a refused batch, as the server would skip it
        if kind in _PASSTHROUGH_FRONTEND:
            out.append(frame.raw)
        elif kind == _Q:
            query = decode_frontend(frame)
            assert isinstance(query, Query)
            verdict = self._admit(frame, query.sql, None)
            if verdict is _HOLD:
                return False
            if isinstance(verdict, Verdict):
                self.tracker.query(query.sql, verdict)
                out.append(frame.raw)
        elif kind == _P:
            parse = decode_frontend(frame)
            assert isinstance(parse, Parse)
            verdict = self._admit(frame, parse.sql, parse.name)
            if verdict is _HOLD:
                return False
            if isinstance(verdict, Verdict):
                self.tracker.parse(parse, verdict)
                self._forward_extended(frame, out)
        elif kind == _B:
            bind = decode_frontend(frame)
            assert isinstance(bind, Bind)
            stmt = self.tracker.prepared.get(bind.statement)
            if stmt is not None and stmt.verdict.decision == "review" and stmt.executions:
                self._refuse(
                    stmt.sql,
                    "extended",
                    "42501",
                    "Watchgate: the approval was for one execution of this statement; "
                    "prepare it again to ask again",
                    "review",
                    stmt.verdict.rule,
                    "refused",
                )
                return True
            self.tracker.bind(bind)
            if self.masking is not None:
                self.masking.bind(bind)
            self._forward_extended(frame, out)
        elif kind == _E:
            execute = decode_frontend(frame)
            assert isinstance(execute, Execute)
            plan = None if self.masking is None else self.masking.execute(execute.portal)
            self.tracker.execute(execute.portal, plan)
            self._forward_extended(frame, out)
        elif kind == _D:
            describe = decode_frontend(frame)
            assert isinstance(describe, Describe)
            self.tracker.describe(describe.kind, describe.name)
            if self.masking is not None:
                self.masking.describe(describe.kind, describe.name)
            self._forward_extended(frame, out)
        elif kind == _C:
            close = decode_frontend(frame)
            assert isinstance(close, Close)
            self.tracker.close(close)
            if self.masking is not None:
                self.masking.close(close.kind, close.name)
            self._forward_extended(frame, out)
        elif kind == _S:
            self._sync(frame, out)
        elif kind == _X:
            out.append(frame.raw)
            self.t_transport.write(b"".join(out))
            out.clear()
            self._end("client terminated")
            return False
        elif kind == _F:
            self._refuse_function_call()
        else:
            raise ProtocolError(f"unexpected client message type {chr(kind)!r} in a session")
        return True

    def _forward_extended(self, frame: Frame, out: list[bytes]) -> None:
        self._batch_open = True
        out.append(frame.raw)

    def _sync(self, frame: Frame, out: list[bytes]) -> None:
        discard, self._discard = self._discard, None
        self._batch_open = False
        if discard == "answer":
            self._inject(b"")  # the batch never reached the target: we end it ourselves
            return
        self.tracker.sync()
        if self.masking is not None:
            self.masking.sync()
        out.append(frame.raw)
        if discard == "forward":
            # Earlier messages of this batch are with the target: our error goes right
            # before the ReadyForQuery that ends it.
            self._injected.append((self.tracker.owed, self._discard_error, True))

    # -- the gate ------------------------------------------------------------------------------

    def _judge(self, frame: Frame, sql: str, protocol: str) -> Verdict | _Held:
        if self._cleared is not None and self._cleared[0] is frame:
            verdict = self._cleared[1]
            self._cleared = None
            return verdict
        decision = self.gate.decide(sql)
        if decision.action == "allow":
            return FORWARD
        if decision.action == "block":
            message = f"Watchgate: {decision.reason}"
            self._refuse(sql, protocol, "42501", message, "block", decision.rule, "refused")
            return _REFUSED
        self._hold(frame, sql, protocol, decision)
        return _HOLD

    def _catalog_stale(self, frame: Frame) -> bool:
        """Hold the relay while the masking catalog is re-read (after DDL); True if held."""
        masking = self.masking
        if masking is None or masking.ready:
            return False
        self._queue.appendleft(frame)
        self._holding = True
        self.c_transport.pause_reading()
        task = asyncio.ensure_future(self._refresh_catalog(masking))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _refresh_catalog(self, masking: SessionMasking) -> None:
        try:
            await masking.refresh()
        except CatalogError as e:
            # Without a catalog nothing can be planned: fail closed, end the session.
            self.log.error("masking catalog unavailable: %s", e)
            self._fatal("58000", f"Watchgate: session ended: masking cannot plan: {e}")
            self._end(f"masking catalog unavailable: {e}")
            return
        if self._done.done():
            return
        self._holding = False
        self.c_transport.resume_reading()
        self._pump()

    def _admit(self, frame: Frame, sql: str, parse_name: str | None) -> Verdict | _Held:
        """The SQL of a Query (`parse_name` None) or a Parse through the gate and masking:
        the Verdict to forward it with, _HOLD (wait) or _REFUSED (the client has been told)."""
        if self._catalog_stale(frame):
            return _HOLD
        protocol = "simple" if parse_name is None else "extended"
        verdict = self._judge(frame, sql, protocol)
        masking = self.masking
        if masking is None or not isinstance(verdict, Verdict):
            return verdict
        refusal = masking.query(sql) if parse_name is None else masking.parse(parse_name, sql)
        if refusal is None:
            return verdict
        self.log.info("masking refused a statement: %s", refusal.reason)
        message = f"Watchgate: {refusal.reason}"
        self._refuse(sql, protocol, "42501", message, "mask", refusal.rule, "refused")
        return _REFUSED

    def _refuse(
        self,
        sql: str,
        protocol: str,
        sqlstate: str,
        message: str,
        decision: str,
        rule: str | None,
        outcome: str,
    ) -> None:
        self.tracker.refused(sql, protocol, f"{sqlstate} {message}", decision, rule, outcome)
        error = encode(error_response(sqlstate, message))
        if protocol == "simple":
            self._inject(error)
            return
        # Extended protocol: like the server after an error, skip to Sync.
        if self.tracker.owed == 0 and not self._batch_open and not self._injected:
            self.c_transport.write(error)
            self._discard = "answer"
        else:
            self._discard, self._discard_error = "forward", error

    def _hold(self, frame: Frame, sql: str, protocol: str, decision: Decision) -> None:
        self._queue.appendleft(frame)
        self._holding = True
        self.c_transport.pause_reading()  # later messages wait in the socket, in order
        task = asyncio.ensure_future(self._review(frame, sql, protocol, decision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _review(self, frame: Frame, sql: str, protocol: str, decision: Decision) -> None:
        try:
            outcome = await self.gate.review(sql, decision, self._notice)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # fail closed: no decision means no execution
            self.log.error("review failed: %s", e)
            outcome = f"the review could not be completed ({type(e).__name__})"
        if self._done.done():
            return
        self._holding = False
        if isinstance(outcome, Verdict):
            self._cleared = (frame, outcome)
        else:
            self._queue.popleft()
            try:
                self._refuse(
                    sql,
                    protocol,
                    "42501",
                    f"Watchgate: {outcome}",
                    "review",
                    decision.rule,
                    "denied",
                )
            except RecordingUnavailable:
                self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
                self._end("recording unavailable")
                return
        self.c_transport.resume_reading()
        self._pump()

    def _refuse_function_call(self) -> None:
        # The fast-path interface calls a function by OID with no SQL text, so nothing could
        # be classified or recorded meaningfully: refuse it.
        message = (
            "Watchgate: the fast-path function call interface is refused; "
            "call the function from a query instead"
        )
        self.tracker.refused(
            "<FunctionCall>", "function", f"0A000 {message}", "refuse", None, "refused"
        )
        self._inject(encode(error_response("0A000", message)))

    def _inject(self, reply: bytes) -> None:
        """Answer the client ourselves (reply + ReadyForQuery), after every reply the target
        still owes it."""
        owed = self.tracker.owed
        if owed == 0 and not self._injected:
            self.c_transport.write(reply + encode(ReadyForQuery(self.tracker.status)))
        else:
            self._injected.append((owed, reply, False))

    # -- target to client ----------------------------------------------------------------------

    def _on_target_data(self, data: bytes) -> None:
        if self._done.done():
            return
        try:
            self._t_frames.receive_data(data)
            chunk = self._relay() if self.masking is None else self._relay_masked()
        except ProtocolError as e:
            self.log.warning("protocol error from target: %s", e)
            self._fatal("08P01", f"Watchgate: the target sent malformed data: {e}")
            self._end(f"protocol error from target: {e}")
            return
        except RecordingUnavailable:
            self._fatal("58030", "Watchgate: session ended: the recording is unavailable")
            self._end("recording unavailable")
            return
        except (MaskingFailed, RowError) as e:
            self._masking_failed(str(e))
            return
        except Exception as e:  # a bug in masking must not let a row through: fail closed
            if self.masking is None:
                raise
            self.log.exception("masking failed")
            self._masking_failed(f"internal error ({type(e).__name__})")
            return
        if chunk:
            self.c_transport.write(chunk)

    def _masking_failed(self, why: str) -> None:
        self.log.error("masking failed, session ended: %s", why)
        self._fatal("XX000", f"Watchgate: masking failed, the result was withheld: {why}")
        self._end(f"masking failed: {why}")

    def _relay(self) -> bytes:
        """Everything the target sent, unchanged but for our own replies spliced in (and the
        target's messages that speak as Watchgate, disowned)."""
        tracker = self.tracker
        chunk, events, tail_rows = self._t_frames.scan(_RELAY_TRACKED, DATA_ROW, tracker.keep_rows)
        start = 0
        pieces: list[bytes] = []
        for end, rows, frame in events:
            if rows:
                tracker.count_rows(rows)
            if frame.type == DATA_ROW:  # one of the first rows of a result: recorded
                tracker.sample_row(frame.raw)
                continue
            if frame.type in _MESSAGES:
                disowned = disown(frame)
                if disowned is not None:
                    pieces += (chunk[start : end - len(frame.raw)], disowned)
                    start = end
                    frame = Frame(frame.type, disowned)
                if frame.type == NOTICE:
                    continue
            tracker.backend(frame)
            if frame.type == READY and self._injected:
                start = self._place_injected(chunk, start, end - len(frame.raw), end, pieces)
        if tail_rows:
            tracker.count_rows(tail_rows)
        if pieces:
            pieces.append(chunk[start:])
            chunk = b"".join(pieces)
        return chunk

    def _relay_masked(self) -> bytes:
        """The same, frame by frame through masking; runs of DataRows are handled at once."""
        frames, tracker, masking = self._t_frames, self.tracker, self.masking
        assert masking is not None
        out: list[bytes] = []
        while True:
            run = frames.take_run(DATA_ROW)
            if run is not None:
                buf, start, end, count = run
                rows = masking.data_rows(buf, start, end)
                tracker.sample_rows(rows, count)  # what the client gets is what is recorded
                out.append(rows)
                continue
            frame = frames.next_frame()
            if frame is None:
                break
            if frame.type == DATA_ROW:  # one that straddled chunks
                rows = masking.data_rows(frame.raw, 0, len(frame.raw))
                tracker.sample_rows(rows, 1)
                out.append(rows)
                continue
            raw = masking.backend(frame)
            if frame.type == ROW_DESC:
                # The recording reads the RowDescription itself (masking may have put its
                # notice to the desktop app before it), with the plan of the rows it announces.
                tracker.backend(frame, masking.result_plan())
                out.append(raw)
                continue
            if raw is not frame.raw:
                frame = Frame(frame.type, raw)
            if frame.type in _MESSAGES:
                disowned = disown(frame)
                if disowned is not None:
                    raw, frame = disowned, Frame(frame.type, disowned)
            if frame.type in TRACKED_BACKEND:
                tracker.backend(frame)
            if frame.type == READY and self._injected:
                self._place_injected(raw, 0, 0, len(raw), out)
            else:
                out.append(raw)
        return b"".join(out)

    def _place_injected(
        self, chunk: bytes, start: int, ready_at: int, ready_end: int, pieces: list[bytes]
    ) -> int:
        """Splice our replies around one ReadyForQuery of the target; returns the new start."""
        status = encode(ReadyForQuery(self.tracker.status))
        due = [(n - 1, reply, before) for n, reply, before in self._injected]
        self._injected = [entry for entry in due if entry[0] > 0]
        pieces.append(chunk[start:ready_at])
        pieces += [reply for n, reply, before in due if n == 0 and before]
        pieces.append(chunk[ready_at:ready_end])
        pieces += [reply + status for n, reply, before in due if n == 0 and not before]
        return ready_end
