"""Following a PostgreSQL conversation closely enough to record every statement: sans-io.

The tracker is told each client message the session forwards and each tracked target message
it relays. It keeps a queue of executions in flight (one per Query or Execute) with Sync
markers, and matches them with the target's CommandComplete / ErrorResponse / ReadyForQuery
to know each statement's outcome, rows and duration. It also remembers prepared statements and
portals (their SQL, parameter types and the policy decision that let them through), which the
session needs to judge a later Bind or Execute.

It keeps the first rows of each statement's result (`keep_rows`, each cell clipped) with the
column names, exactly as the client received them: the session hands it DataRows after
masking, never the target's own bytes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from central.policy.enforce import FORWARD, Verdict
from central.protocols.postgres.codec import Frame, FrameReader, decode_backend
from central.protocols.postgres.messages import (
    Bind,
    Close,
    CommandComplete,
    DataRow,
    ErrorResponse,
    ParameterDescription,
    Parse,
    ReadyForQuery,
    RowDescription,
)
from central.protocols.postgres.params import render_params
from central.recording import SessionLog, StatementRecordDraft
from central.recording.recorder import clip

READY, ERROR, COMMAND_COMPLETE, EMPTY, SUSPENDED, PARAM_DESC, DATA_ROW, ROW_DESC = (
    ord(c) for c in "ZECIstDT"
)
TRACKED_BACKEND = frozenset(
    (COMMAND_COMPLETE, ERROR, READY, EMPTY, SUSPENDED, PARAM_DESC, ROW_DESC)
)
_CELL_MAX = 200  # characters of a kept cell
_HEX_MAX = 64  # bytes of a binary cell kept (as hex)


def cell_text(value: bytes | None) -> str | None:
    """A result cell as recorded: its text, clipped; binary data (not UTF-8, or holding NUL,
    as binary-format integers do) as \\x and hex."""
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        shown = "\\x" + value[:_HEX_MAX].hex()
        return shown + "…" if len(value) > _HEX_MAX else shown
    return clip(text, _CELL_MAX)


def rows_from_tag(tag: str) -> int | None:
    """Rows affected or returned, from a CommandComplete tag ("SELECT 5", "INSERT 0 3")."""
    last = tag.rpartition(" ")[2]
    return int(last) if last.isdigit() and " " in tag else None


@dataclass(slots=True)
class Prepared:
    sql: str
    param_types: tuple[int, ...]
    verdict: Verdict
    executions: int = 0


@dataclass(slots=True)
class _Execution:
    sql: str
    params: list[str | None] | None
    protocol: str
    verdict: Verdict
    started_at: datetime
    t0: int
    rows: int | None = None  # from CommandComplete tags
    rows_sent: int = 0  # DataRows relayed, for executions that end without a tag
    error: str | None = None
    columns: list[str] | None = None  # of the first result that had a RowDescription
    sample: list[list[str | None]] | None = None  # its first rows, as sent to the client
    more: bool = False  # rows were sent beyond the sample
    sealed: bool = False  # its first result is complete: later results are not kept

    def result(self) -> dict[str, object] | None:
        if self.columns is None and self.sample is None:
            return None
        return {"columns": self.columns, "rows": self.sample or [], "more": self.more}


_SYNC = None  # the Sync marker in the queue of executions


class StatementTracker:
    def __init__(self, recording: SessionLog, status: str, *, keep_rows: int = 20) -> None:
        self.recording = recording
        self.keep_rows = keep_rows  # rows of each result kept in the recording
        self.status = status  # transaction status of the last ReadyForQuery
        self.owed = 0  # ReadyForQuery messages the target still owes the client
        self.prepared: dict[str, Prepared] = {}
        self._portals: dict[str, tuple[Prepared | None, list[str | None]]] = {}
        self._describing: deque[str] = deque()  # statements awaiting ParameterDescription
        self._inflight: deque[_Execution | None] = deque()

    # -- what the client sends (and the session forwards) ---------------------------------------

    def query(self, sql: str, verdict: Verdict = FORWARD) -> None:
        self._begin(sql, None, "simple", verdict)
        self.owed += 1

    def parse(self, msg: Parse, verdict: Verdict = FORWARD) -> None:
        self.prepared[msg.name] = Prepared(msg.sql, msg.param_types, verdict)

    def bind(self, msg: Bind) -> None:
        stmt = self.prepared.get(msg.statement)
        types = stmt.param_types if stmt else ()
        self._portals[msg.portal] = (stmt, render_params(msg.params, msg.param_formats, types))

    def describe_statement(self, name: str) -> None:
        self._describing.append(name)

    def execute(self, portal: str) -> None:
        stmt, params = self._portals.get(portal, (None, []))
        if stmt is not None:
            stmt.executions += 1
        self._begin(stmt.sql if stmt else "", params, "extended", stmt.verdict if stmt else FORWARD)

    def sync(self) -> None:
        self._inflight.append(_SYNC)
        self.owed += 1

    def close(self, msg: Close) -> None:
        if msg.kind == "S":
            self.prepared.pop(msg.name, None)
        else:
            self._portals.pop(msg.name, None)

    def portal_statement(self, portal: str) -> Prepared | None:
        found = self._portals.get(portal)
        return found[0] if found else None

    def refused(
        self, sql: str, protocol: str, error: str, decision: str, rule: str | None, outcome: str
    ) -> None:
        """Record a statement that never reached the target."""
        self.recording.statement(
            StatementRecordDraft(
                started_at=datetime.now(UTC),
                duration_us=0,
                protocol=protocol,
                sql=sql,
                params=None,
                outcome=outcome,
                rows=None,
                error=error,
                decision=decision,
                rule=rule,
            )
        )

    def _begin(
        self, sql: str, params: list[str | None] | None, protocol: str, verdict: Verdict
    ) -> None:
        self._inflight.append(
            _Execution(sql, params, protocol, verdict, datetime.now(UTC), time.perf_counter_ns())
        )

    # -- what the target answers ------------------------------------------------------------------

    def count_rows(self, rows: int) -> None:
        """DataRows relayed without being shown to `sample_row` (the bulk of a result)."""
        if self._inflight and (head := self._inflight[0]) is not None:
            head.rows_sent += rows
            head.more = head.more or head.sample is not None

    @property
    def sampling(self) -> bool:
        """Does the statement whose rows come next still keep rows?"""
        head = self._inflight[0] if self._inflight else None
        return (
            head is not None
            and self.keep_rows > 0
            and not head.sealed
            and (head.sample is None or len(head.sample) < self.keep_rows)
        )

    def sample_row(self, raw: bytes) -> None:
        """One DataRow (a whole message) as the client received it."""
        head = self._inflight[0] if self._inflight else None
        if head is None:
            return
        head.rows_sent += 1
        if not self.keep_rows:
            return
        if head.sample is None:
            head.sample = []
        if head.sealed or len(head.sample) >= self.keep_rows:
            head.more = True
            return
        row = decode_backend(Frame(DATA_ROW, raw))
        assert isinstance(row, DataRow)
        head.sample.append([cell_text(v) for v in row.values])

    def sample_rows(self, data: bytes, count: int) -> None:
        """A run of `count` whole DataRows as the client received them."""
        if not self.sampling:
            self.count_rows(count)
            return
        reader = FrameReader()
        reader.receive_data(data)
        taken = 0
        for frame in reader.frames():
            if not self.sampling:
                break
            self.sample_row(frame.raw)
            taken += 1
        if taken < count:
            self.count_rows(count - taken)

    def backend(self, frame: Frame) -> None:
        """One tracked target message (a type in TRACKED_BACKEND)."""
        kind = frame.type
        head = self._inflight[0] if self._inflight else None
        if kind == ROW_DESC:
            if head is not None and self.keep_rows and head.columns is None and not head.sealed:
                desc = decode_backend(frame)
                assert isinstance(desc, RowDescription)
                head.columns = [clip(f.name, _CELL_MAX) for f in desc.fields]
            return
        if kind == PARAM_DESC:
            msg = decode_backend(frame)
            assert isinstance(msg, ParameterDescription)
            if self._describing and (stmt := self.prepared.get(self._describing.popleft())):
                stmt.param_types = msg.types
            return
        if kind == READY:
            self._describing.clear()
            ready = decode_backend(frame)
            assert isinstance(ready, ReadyForQuery)
            self.status = ready.status
            self.owed -= 1
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
        if kind == COMMAND_COMPLETE:
            done = decode_backend(frame)
            assert isinstance(done, CommandComplete)
            rows = rows_from_tag(done.tag)
            if rows is not None:
                head.rows = (head.rows or 0) + rows
            head.sealed = head.columns is not None or head.sample is not None
            if head.protocol == "extended":
                self._finish(head)
                self._inflight.popleft()
        elif kind in (EMPTY, SUSPENDED):
            if head.protocol == "extended":
                self._finish(head)
                self._inflight.popleft()
        elif kind == ERROR:
            err = decode_backend(frame)
            assert isinstance(err, ErrorResponse)
            head.error = clip(f"{err.code} {err.message}", 2000)
            if head.protocol == "extended":
                # The server skips everything up to the next Sync after an error.
                self._finish(head)
                self._inflight.popleft()
                while self._inflight and (skipped := self._inflight[0]) is not _SYNC:
                    self._finish(skipped, "skipped")
                    self._inflight.popleft()

    def _finish(self, item: _Execution, outcome: str | None = None) -> None:
        if outcome is None:
            outcome = "error" if item.error else "ok"
        self.recording.statement(
            StatementRecordDraft(
                started_at=item.started_at,
                duration_us=(time.perf_counter_ns() - item.t0) // 1000,
                protocol=item.protocol,
                sql=item.sql,
                params=item.params,
                outcome=outcome,
                rows=item.rows if item.rows is not None else (item.rows_sent or None),
                error=item.error,
                decision=item.verdict.decision,
                rule=item.verdict.rule,
                result=item.result(),
            )
        )
