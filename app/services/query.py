"""The analyst tab's queries: run through a local proxy like any client, streamed in batches.

The runner is an ordinary PostgreSQL client (asyncpg) of a `Connection`'s URI, so its queries
take the same local proxy -> central -> database path as psql's and are judged, masked and
recorded the same way. It names itself ``application_name = watchgate-desktop``; to such
clients central also says which result columns it masked, in a NOTICE sent before the rows:

    message  "Watchgate: masked columns"
    detail   {"columns": [{"index": 2, "name": "email", "rule": "pii", "style": "partial",
                          "action": "mask"}]}

Rows arrive in batches of `batch_size` from a server-side cursor (inside a transaction), so a
100k-row result never sits whole in memory: each batch goes to `on_rows` and is let go.
What central does to a statement comes back typed (`QueryOutcome`): a block is SQLSTATE 42501
with a "Watchgate: ..." message naming the rule; a hold is first a NOTICE naming the request
(`Notice.request_id`), then the statement runs (`Completed.request_id`) or is `Denied`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncpg

from app.services.proxies import Connection

APPLICATION_NAME = "watchgate-desktop"
BATCH_SIZE = 1000
MASKED_COLUMNS = "Watchgate: masked columns"
_HELD = re.compile(r"Watchgate: this .* is held for review .*; request ([0-9A-Za-z_-]+)\.")
_RULE = re.compile(r"\b(?:by|under) rule ([^\s:;,()]+)")
_MULTI = "cannot insert multiple commands into a prepared statement"


# -- what the callbacks and the outcome carry --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnMask:
    """How central masked a result column: the rule that did it and the masking style.

    `action` is "mask" (every value is masked) or "scan" (content detectors look for secrets
    in each value and mask what they find, so a cell may be shown as it is).
    """

    rule: str
    style: str
    action: str = "mask"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # the PostgreSQL type name ("int4", "text", ...)
    mask: ColumnMask | None = None  # None: shown as the database sent it


@dataclass(frozen=True, slots=True)
class Notice:
    """A NOTICE (or WARNING, INFO) from the database or from central.

    `request_id` is set when central holds the statement for review: the request reviewers
    decide (the statement waits meanwhile).
    """

    severity: str
    message: str
    detail: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    """The statement ran. `status` is the command tag ("INSERT 0 1") for statements without a
    result, None for a streamed result; `request_id` is set when it ran after an approval."""

    kind: ClassVar[str] = "completed"
    rows: int
    status: str | None
    elapsed: float
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class Blocked:
    """Central refused the statement; `message` is its words ("Watchgate: ... rule R")."""

    kind: ClassVar[str] = "blocked"
    message: str
    rule: str | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class Denied:
    """The statement was held for review and a reviewer denied it (or nobody decided in time)."""

    kind: ClassVar[str] = "denied"
    request_id: str
    message: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The database's own error, or the connection failed (`sqlstate` None)."""

    kind: ClassVar[str] = "failed"
    message: str
    sqlstate: str | None
    elapsed: float


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Stopped by `cancel()`; `rows` had been delivered by then."""

    kind: ClassVar[str] = "cancelled"
    rows: int
    elapsed: float


QueryOutcome = Completed | Blocked | Denied | Failed | Cancelled
Row = tuple[Any, ...]


# -- the masked-columns notice -----------------------------------------------------------------


class MaskNoticeError(ValueError):
    """A "Watchgate: masked columns" notice whose detail is not the documented JSON."""


def parse_masked_columns(message: str, detail: str | None) -> dict[int, ColumnMask] | None:
    """The masks of a masked-columns notice by column index; None for any other notice.

    Raises MaskNoticeError when the notice is one but its detail is malformed.
    """
    if message != MASKED_COLUMNS:
        return None
    if detail is None:
        raise MaskNoticeError("the masked-columns notice has no detail")
    try:
        data = json.loads(detail)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested JSON
        raise MaskNoticeError(f"the masked-columns detail is not JSON: {e}") from None
    columns = data.get("columns") if isinstance(data, dict) else None
    if not isinstance(columns, list):
        raise MaskNoticeError('the masked-columns detail has no "columns" list')
    masks: dict[int, ColumnMask] = {}
    for entry in columns:
        if not isinstance(entry, dict):
            raise MaskNoticeError("a masked column is not an object")
        index, rule, style = entry.get("index"), entry.get("rule"), entry.get("style")
        # bool is an int in Python; JSON true is not a column index.
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise MaskNoticeError(f"a masked column has no valid index: {index!r}")
        if not isinstance(rule, str) or not isinstance(style, str):
            raise MaskNoticeError(f"masked column {index} lacks its rule or style")
        if not isinstance(entry.get("name", ""), str):
            raise MaskNoticeError(f"masked column {index} has a name that is not text")
        action = entry.get("action", "mask")
        if not isinstance(action, str):
            raise MaskNoticeError(f"masked column {index} has an action that is not text")
        if index in masks:
            raise MaskNoticeError(f"masked column {index} is listed twice")
        masks[index] = ColumnMask(rule, style, action)
    return masks


def held_request_id(message: str) -> str | None:
    """The request id in central's "held for review" notice, or None for other messages."""
    found = _HELD.match(message)
    return found.group(1) if found else None


def rule_of(message: str) -> str | None:
    """The rule a "Watchgate: ..." refusal names ("... is blocked by rule no-drops")."""
    found = _RULE.search(message)
    return found.group(1) if found else None


# -- the runner --------------------------------------------------------------------------------


class _Run:
    """What one `run` has seen so far (notices arrive on their own callback)."""

    def __init__(self, on_notice: Callable[[Notice], None]) -> None:
        self.on_notice = on_notice
        self.masks: dict[int, ColumnMask] = {}
        self.request_id: str | None = None
        self.rows = 0
        self.started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


class QueryRunner:
    """One database session for the analyst tab; one statement (or script) at a time."""

    def __init__(self, connection: Connection | str, *, batch_size: int = BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.uri = connection if isinstance(connection, str) else connection.uri
        self.batch_size = batch_size
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Future[QueryOutcome] | None = None
        self._run: _Run | None = None
        self._cancelling = False

    @property
    def running(self) -> bool:
        return self._task is not None

    async def run(
        self,
        sql: str,
        on_columns: Callable[[list[Column]], None],
        on_rows: Callable[[list[Row]], None],
        on_notice: Callable[[Notice], None],
    ) -> QueryOutcome:
        """Run `sql`; result columns go to `on_columns` (once, before the first rows, with
        their masks), rows to `on_rows` in batches, notices to `on_notice`."""
        if self._task is not None:
            raise RuntimeError("a query is already running on this runner")
        state = self._run = _Run(on_notice)
        self._cancelling = False
        self._task = asyncio.ensure_future(self._execute(sql, state, on_columns, on_rows))
        try:
            return await self._task
        except asyncio.CancelledError:
            if not self._cancelling:
                raise  # our caller was cancelled, not the query
            return Cancelled(state.rows, state.elapsed)
        except asyncpg.PostgresError as e:
            return self._refusal(e, state)
        except (OSError, asyncpg.InterfaceError) as e:
            return Failed(f"the connection failed: {e}", None, state.elapsed)
        finally:
            self._task = None
            self._run = None
            if self._conn is not None and self._conn.is_closed():
                self._conn = None  # central ended the session: the next run reconnects

    def cancel(self) -> None:
        """Stop the running query: the database is asked to cancel it, `run` returns
        `Cancelled`. A no-op when nothing runs."""
        if self._task is not None and not self._task.done() and not self._cancelling:
            self._cancelling = True
            self._task.cancel()

    async def aclose(self) -> None:
        self.cancel()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await asyncio.wait_for(conn.close(), 5)
            conn.terminate()

    # -- inside the query task -----------------------------------------------------------------

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            conn = await asyncpg.connect(
                self.uri,
                server_settings={"application_name": APPLICATION_NAME},
                ssl=False,  # the local proxy is on loopback; the leg to central is TLS
            )
            conn.add_log_listener(self._log_message)
            self._conn = conn
        return self._conn

    async def _execute(
        self,
        sql: str,
        state: _Run,
        on_columns: Callable[[list[Column]], None],
        on_rows: Callable[[list[Row]], None],
    ) -> QueryOutcome:
        conn = await self._connection()
        try:
            stmt = await conn.prepare(sql)
        except asyncpg.PostgresSyntaxError as e:
            if _MULTI not in str(e):
                raise
            # A script: the simple protocol runs it whole (its results are not shown).
            status = await conn.execute(sql)
            await asyncio.sleep(0)  # let the notices it caused reach on_notice first
            return Completed(0, status, state.elapsed, state.request_id)
        if not stmt.get_attributes():
            await stmt.fetch()
            await asyncio.sleep(0)
            return Completed(0, stmt.get_statusmsg(), state.elapsed, state.request_id)
        # A cursor needs a transaction; inside the user's own (they typed BEGIN) it uses that.
        own = contextlib.nullcontext() if conn.is_in_transaction() else conn.transaction()
        async with own:
            cursor = await stmt.cursor()
            announced = False
            while True:
                batch = await cursor.fetch(self.batch_size)
                # Notices come to the log listener by call_soon: let the one naming masked
                # columns (sent before the rows) land before the columns are announced.
                await asyncio.sleep(0)
                if not announced:
                    on_columns(_columns(stmt.get_attributes(), state.masks))
                    announced = True
                if batch:
                    state.rows += len(batch)
                    on_rows([tuple(record) for record in batch])
                if len(batch) < self.batch_size:
                    break
        return Completed(state.rows, None, state.elapsed, state.request_id)

    def _log_message(self, conn: object, message: asyncpg.PostgresLogMessage) -> None:
        state = self._run
        if state is None:
            return  # a late notice of a finished run: nobody to tell
        text = str(getattr(message, "message", "") or "")
        detail = getattr(message, "detail", None)
        severity = str(getattr(message, "severity", "") or "NOTICE")
        try:
            masks = parse_masked_columns(text, detail)
        except MaskNoticeError as e:
            state.on_notice(Notice(severity, f"{text} (unreadable: {e})", detail))
            return
        if masks is not None:
            state.masks = masks
            return
        request_id = held_request_id(text)
        if request_id is not None:
            state.request_id = request_id
        state.on_notice(Notice(severity, text, detail, request_id))

    def _refusal(self, e: asyncpg.PostgresError, state: _Run) -> QueryOutcome:
        message = str(getattr(e, "message", None) or e)
        sqlstate = getattr(e, "sqlstate", None)
        if sqlstate == "42501" and message.startswith("Watchgate:"):
            if state.request_id is not None:
                return Denied(state.request_id, message, state.elapsed)
            return Blocked(message, rule_of(message), state.elapsed)
        return Failed(message, sqlstate, state.elapsed)


def _columns(attributes: Sequence[Any], masks: dict[int, ColumnMask]) -> list[Column]:
    return [
        Column(attr.name, attr.type.name, masks.get(index)) for index, attr in enumerate(attributes)
    ]
