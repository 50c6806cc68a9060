"""Following a PostgreSQL conversation closely enough to record every statement: sans-io.

The tracker is told each client message the session forwards and each tracked target message
it relays. It keeps a queue of what the target will answer, in order: executions (one per
Query or Execute), Describes and Sync markers. Executions are matched with the target's
CommandComplete / ErrorResponse / ReadyForQuery to know each statement's outcome, rows and
duration. It also remembers prepared statements and portals (their SQL, parameter types, the
policy decision that let them through, and the columns a Describe of them announced), which
the session needs to judge a later Bind or Execute.

It keeps the first rows of each statement's result (`keep_rows`, each cell clipped) with the
column names, exactly as the client received them: the session hands it DataRows after
masking, never the target's own bytes. In the extended protocol the columns come from a
Describe, often long before the Execute (asyncpg describes a statement once and runs it many
times), and the Bind says which columns come in binary format: binary values of the common
types are kept as the text PostgreSQL would print (`binary.to_text`), others as hex. Only the
kept rows are decoded. When masking rewrote the result, the recording also names the masked
columns and their rules (`"masked"`; see `_Execution.result`).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from central.masking.rows import JSON_OID, JSONB_OID, TEXT_OIDS
from central.policy.enforce import FORWARD, Verdict
from central.protocols.postgres.binary import to_text
from central.protocols.postgres.codec import Frame, FrameReader, decode_backend
from central.protocols.postgres.messages import (
    Bind,
    Close,
    CommandComplete,
    DataRow,
    ErrorResponse,
    FieldDescription,
    ParameterDescription,
    Parse,
    ReadyForQuery,
    RowDescription,
)
from central.protocols.postgres.params import render_params
from central.recording import SessionLog, StatementRecordDraft
from central.recording.recorder import clip

if TYPE_CHECKING:
    from central.masking.policy import Plan

READY, ERROR, COMMAND_COMPLETE, EMPTY, SUSPENDED, PARAM_DESC, DATA_ROW, ROW_DESC, NO_DATA = (
    ord(c) for c in "ZECIstDTn"
)
TRACKED_BACKEND = frozenset(
    (COMMAND_COMPLETE, ERROR, READY, EMPTY, SUSPENDED, PARAM_DESC, ROW_DESC, NO_DATA)
)
_CELL_MAX = 200  # characters of a kept cell
_HEX_MAX = 64  # bytes of a binary cell kept (as hex)
# Binary values longer than this are not decoded (an array of thousands of elements would
# cost the event loop): they keep the hex form. Text-like values are decoded at any length.
_DECODE_MAX = 2048
_TEXT_LIKE = TEXT_OIDS | {JSON_OID, JSONB_OID}


def cell_text(value: bytes | None, type_oid: int = 0, binary: bool = False) -> str | None:
    """A result cell as recorded: its text, clipped. A binary-format value is the text
    PostgreSQL would print for it where its type is one `binary.to_text` reads; other data
    (binary of another type, text that is not UTF-8 or holds NUL) is \\x and hex, ending in
    … when cut."""
    if value is None:
        return None
    text: str | None = None
    if not binary:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" in text:
            text = None
    elif type_oid in _TEXT_LIKE or len(value) <= _DECODE_MAX:
        text = to_text(type_oid, value)
    if text is None:
        shown = "\\x" + value[:_HEX_MAX].hex()
        return shown + "…" if len(value) > _HEX_MAX else shown
    return clip(text, _CELL_MAX)


def rows_from_tag(tag: str) -> int | None:
    """Rows affected or returned, from a CommandComplete tag ("SELECT 5", "INSERT 0 3")."""
    last = tag.rpartition(" ")[2]
    return int(last) if last.isdigit() and " " in tag else None


Fields = tuple[FieldDescription, ...]


@dataclass(slots=True)
class Prepared:
    sql: str
    param_types: tuple[int, ...]
    verdict: Verdict
    executions: int = 0
    fields: Fields | None = None  # the result's columns, from a Describe of the statement


@dataclass(slots=True)
class _Portal:
    statement: Prepared | None
    params: list[str | None]
    formats: tuple[int, ...]  # result formats from Bind: none (text), one for all, or each
    fields: Fields | None = None  # from a Describe of the portal

    def columns(self) -> Fields | None:
        if self.fields is not None:
            return self.fields
        return self.statement.fields if self.statement is not None else None


@dataclass(slots=True)
class _Describe:
    """A Describe the target will answer (ParameterDescription, RowDescription or NoData)."""

    statement: Prepared | None = None
    portal: _Portal | None = None


@dataclass(slots=True)
class _Execution:
    sql: str
    params: list[str | None] | None
    protocol: str
    verdict: Verdict
    started_at: datetime
    t0: int
    portal: _Portal | None = None  # what an Execute ran: its columns and result formats
    plan: Plan | None = None  # how masking rewrote its result's columns, when it did
    rows: int | None = None  # from CommandComplete tags
    rows_sent: int = 0  # DataRows relayed, for executions that end without a tag
    error: str | None = None
    fields: Fields | None = None  # of the first result that had a RowDescription (a Query)
    shape: tuple[tuple[int, bool], ...] | None = None  # (type oid, binary?) of each column
    sample: list[list[str | None]] | None = None  # its first rows, as sent to the client
    more: bool = False  # rows were sent beyond the sample
    sealed: bool = False  # its first result is complete: later results are not kept

    def columns(self) -> Fields | None:
        if self.fields is not None:
            return self.fields
        return self.portal.columns() if self.portal is not None else None

    def cells(self) -> tuple[tuple[int, bool], ...]:
        """Each column's type and format, to decode the kept rows by; () when unknown."""
        if self.shape is None:
            fields = self.columns()
            if fields is None:
                self.shape = ()
            elif self.portal is None or self.fields is not None:  # its own RowDescription
                self.shape = tuple((f.type_oid, f.format == 1) for f in fields)
            else:  # described earlier, often in text: Bind said which columns are binary
                formats = self.portal.formats
                self.shape = tuple(
                    (f.type_oid, bool(_format(formats, i))) for i, f in enumerate(fields)
                )
        return self.shape

    def result(self) -> dict[str, object] | None:
        """{"columns": [name, ...] | null, "rows": [[text | null, ...]], "more": bool}, and
        when masking rewrote columns of it, "masked": {name: rule} for each (as the desktop
        app marks them: masked whole, or searched by the content detectors, which mask only
        what they find) and "scanned": [name, ...] for those of them only searched."""
        fields = self.columns()
        if fields is None and self.sample is None:
            return None
        columns = None if fields is None else [clip(f.name, _CELL_MAX) for f in fields]
        out: dict[str, object] = {"columns": columns, "rows": self.sample or [], "more": self.more}
        plan = self.plan
        if plan is not None and plan.masks and columns is not None:
            masked: dict[str, str] = {}
            scanned: list[str] = []
            for name, action in zip(columns, plan.actions(len(columns)), strict=True):
                if action is not None and name not in masked:
                    masked[name] = action.rule
                    if action.action == "scan":
                        scanned.append(name)
            if masked:
                out["masked"] = masked
            if scanned:
                out["scanned"] = scanned
        return out


def _format(formats: tuple[int, ...], i: int) -> int:
    """The format of column `i` by a Bind's result format codes."""
    if len(formats) > 1:
        return formats[i] if i < len(formats) else 0
    return formats[0] if formats else 0


_SYNC = None  # the Sync marker in the queue of what the target will answer


class StatementTracker:
    def __init__(self, recording: SessionLog, status: str, *, keep_rows: int = 20) -> None:
        self.recording = recording
        self.keep_rows = keep_rows  # rows of each result kept in the recording
        self.status = status  # transaction status of the last ReadyForQuery
        self.owed = 0  # ReadyForQuery messages the target still owes the client
        self.prepared: dict[str, Prepared] = {}
        self._portals: dict[str, _Portal] = {}
        self._inflight: deque[_Execution | _Describe | None] = deque()

    # -- what the client sends (and the session forwards) ---------------------------------------

    def query(self, sql: str, verdict: Verdict = FORWARD) -> None:
        self._begin(sql, None, "simple", verdict)
        self.owed += 1

    def parse(self, msg: Parse, verdict: Verdict = FORWARD) -> None:
        self.prepared[msg.name] = Prepared(msg.sql, msg.param_types, verdict)

    def bind(self, msg: Bind) -> None:
        stmt = self.prepared.get(msg.statement)
        types = stmt.param_types if stmt else ()
        params = render_params(msg.params, msg.param_formats, types)
        self._portals[msg.portal] = _Portal(stmt, params, msg.result_formats)

    def describe(self, kind: str, name: str) -> None:
        """A Describe of a statement ("S") or a portal ("P"): its answer says the columns."""
        if kind == "S":
            self._inflight.append(_Describe(statement=self.prepared.get(name)))
        else:
            self._inflight.append(_Describe(portal=self._portals.get(name)))

    def execute(self, portal: str, plan: Plan | None = None) -> None:
        """An Execute; `plan` is how masking rewrites its rows (None: it does not)."""
        found = self._portals.get(portal)
        stmt = found.statement if found else None
        if stmt is not None:
            stmt.executions += 1
        self._begin(
            stmt.sql if stmt else "",
            found.params if found else [],
            "extended",
            stmt.verdict if stmt else FORWARD,
            found,
            plan,
        )

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
        return found.statement if found else None

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
        self,
        sql: str,
        params: list[str | None] | None,
        protocol: str,
        verdict: Verdict,
        portal: _Portal | None = None,
        plan: Plan | None = None,
    ) -> None:
        self._inflight.append(
            _Execution(
                sql,
                params,
                protocol,
                verdict,
                datetime.now(UTC),
                time.perf_counter_ns(),
                portal,
                plan,
            )
        )

    # -- what the target answers ------------------------------------------------------------------

    def _running(self) -> _Execution | None:
        """The execution whose rows and outcome come next, if one does."""
        head = self._inflight[0] if self._inflight else None
        return head if isinstance(head, _Execution) else None

    def count_rows(self, rows: int) -> None:
        """DataRows relayed without being shown to `sample_row` (the bulk of a result)."""
        if (head := self._running()) is not None:
            head.rows_sent += rows
            head.more = head.more or head.sample is not None

    @property
    def sampling(self) -> bool:
        """Does the statement whose rows come next still keep rows?"""
        head = self._running()
        return (
            head is not None
            and self.keep_rows > 0
            and not head.sealed
            and (head.sample is None or len(head.sample) < self.keep_rows)
        )

    def sample_row(self, raw: bytes) -> None:
        """One DataRow (a whole message) as the client received it."""
        head = self._running()
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
        shape = head.cells()
        known = len(shape)
        head.sample.append(
            [
                cell_text(v, *shape[i]) if i < known else cell_text(v)
                for i, v in enumerate(row.values)
            ]
        )

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

    def backend(self, frame: Frame, plan: Plan | None = None) -> None:
        """One tracked target message (a type in TRACKED_BACKEND). With a RowDescription,
        `plan` is how masking rewrites the rows it announces (None: it does not)."""
        kind = frame.type
        head = self._inflight[0] if self._inflight else None
        if kind in (ROW_DESC, NO_DATA, PARAM_DESC) and isinstance(head, _Describe):
            self._described(head, frame)
            return
        if kind == ROW_DESC:
            if isinstance(head, _Execution) and self.keep_rows and head.fields is None:
                if not head.sealed:  # the first result of a Query (later ones are not kept)
                    desc = decode_backend(frame)
                    assert isinstance(desc, RowDescription)
                    head.fields, head.plan = desc.fields, plan
            return
        if kind in (NO_DATA, PARAM_DESC):
            return  # answers to nothing we asked: a confused target; nothing to record
        if kind == READY:
            ready = decode_backend(frame)
            assert isinstance(ready, ReadyForQuery)
            self.status = ready.status
            self.owed -= 1
            # A simple Query ends here; an extended batch ends at its Sync marker.
            while self._inflight:
                item = self._inflight.popleft()
                if item is _SYNC:
                    break
                if isinstance(item, _Describe):
                    continue  # never answered: the batch failed before it
                self._finish(item, "skipped" if item.protocol == "extended" else None)
                if item.protocol == "simple":
                    break
            return
        if kind == ERROR and isinstance(head, _Describe):
            # The Describe failed (no such statement): the server skips to Sync.
            self._skip_to_sync()
            return
        while isinstance(head, _Describe):
            # A Describe at the head when its answer was not seen: the target answered out
            # of order. Drop it rather than give its columns to the wrong statement.
            self._inflight.popleft()
            head = self._inflight[0] if self._inflight else None
        if head is None:
            return  # e.g. an asynchronous FATAL from the server: nothing in flight to close
        if kind == COMMAND_COMPLETE:
            done = decode_backend(frame)
            assert isinstance(done, CommandComplete)
            rows = rows_from_tag(done.tag)
            if rows is not None:
                head.rows = (head.rows or 0) + rows
            head.sealed = head.fields is not None or head.sample is not None
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
                self._skip_to_sync()

    def _described(self, head: _Describe, frame: Frame) -> None:
        """The target's answer to a Describe: parameter types, then columns or none."""
        if frame.type == PARAM_DESC:
            msg = decode_backend(frame)
            assert isinstance(msg, ParameterDescription)
            if head.statement is not None:
                head.statement.param_types = msg.types
            return  # a RowDescription or NoData follows
        self._inflight.popleft()
        if frame.type == ROW_DESC and self.keep_rows:
            desc = decode_backend(frame)
            assert isinstance(desc, RowDescription)
            if head.statement is not None:
                head.statement.fields = desc.fields
            elif head.portal is not None:
                head.portal.fields = desc.fields

    def _skip_to_sync(self) -> None:
        while self._inflight and (skipped := self._inflight[0]) is not _SYNC:
            if isinstance(skipped, _Execution):
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
                result=item.result() if self.keep_rows else None,
            )
        )
