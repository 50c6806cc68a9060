"""Session review for the admin viewer, without Qt: sessions, search, a session's statements,
and its terminal recordings opened for replay.

Everything goes through central's /api/review/* routes (roles marked admin or auditor), which
record each use as an audit event; `localproxy.api.CentralClient` speaks them, with a fresh
access token from the signed-in `Account` for each block of calls. Recordings are downloaded
whole (the replay needs every event) and parsed in a worker thread: tens of MB of JSON lines
must not stall the GUI's event loop.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.services.account import Account
from app.services.replay import TerminalReplay
from localproxy.api import CentralError
from localproxy.asciicast import CastError
from localproxy.contract import (
    ReviewPage,
    ReviewSession,
    SearchHit,
    SessionDetail,
    SessionSummary,
    StatementView,
)

# A recording larger than this is refused rather than held in memory (central's recorder cuts
# a channel's output far below it).
MAX_CAST_BYTES = 512 * 1024 * 1024
_CONTENT_PAGE = 2000  # rows per page of a session's content, central's largest


class ReviewService:
    """Qt-free access to /api/review/* for the viewer."""

    def __init__(self, account: Account) -> None:
        self._account = account

    async def sessions(self, **filters: Any) -> ReviewPage:
        """One page of sessions, newest first. Filters as `CentralClient.review_sessions`:
        user, resource, kind, since, until, flagged, limit, before (the previous page's
        `next`)."""
        async with self._account.client() as api:
            return await api.review_sessions(**filters)

    async def search(self, q: str, **filters: Any) -> list[SearchHit]:
        """Statements and terminal output lines holding `q`; filters as `sessions`, and limit."""
        async with self._account.client() as api:
            return await api.search(q, **filters)

    async def session(self, session_id: str) -> ReviewSession:
        """The session with its recorded channels, counts and seal."""
        async with self._account.client() as api:
            return await api.review_session(session_id)

    async def detail(self, session_id: str) -> SessionDetail:
        """The session with all its statements and recorded channels.

        Read from the review routes, which show any session to a reviewer (the /api/sessions
        routes show others' sessions to auditors only). The statements come from the
        session's content pages of statements only: its terminal chunks are left to
        `open_cast`, which reads a channel's recording as one file.
        """
        async with self._account.client() as api:
            found = await api.review_session(session_id)
            statements: list[StatementView] = []
            after = 0
            while True:
                page = await api.review_content(
                    found.id, after=after, limit=_CONTENT_PAGE, only="statement"
                )
                statements += [i.statement for i in page.items if i.statement is not None]
                if page.next_after is None:
                    break
                if page.next_after <= after:
                    raise CentralError(f"central's content of session {found.id} did not advance")
                after = page.next_after
        summary = {name: getattr(found, name) for name in SessionSummary.model_fields}
        return SessionDetail(**summary, statements=statements, casts=found.casts)

    async def open_cast(self, session_id: str, channel: int) -> TerminalReplay:
        """One terminal channel's recording, downloaded and parsed (off the event loop),
        ready to replay. CastError when it is not a valid asciicast v3 recording."""
        data = bytearray()
        async with self._account.client() as api:
            async with api.export(session_id, "asciicast", channel) as chunks:
                async for chunk in chunks:
                    data += chunk
                    if len(data) > MAX_CAST_BYTES:
                        raise CastError(
                            f"the recording is larger than {MAX_CAST_BYTES // 2**20} MiB"
                        )
        return await asyncio.to_thread(_parse, bytes(data))


def _parse(data: bytes) -> TerminalReplay:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CastError(f"the recording is not UTF-8 text (byte {e.start})") from None
    return TerminalReplay.open(text)


# -- the statement timeline ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One statement of a database (or SSH) session, for the timeline: what ran, what policy
    decided and by which rule, how long it took, and the first rows of its result as the user
    saw them (masked where rules masked)."""

    seq: int
    started_at: datetime
    duration_ms: float
    protocol: str
    text: str
    decision: str
    rule: str | None
    outcome: str
    rows: int | None
    error: str | None
    columns: list[str] | None = None
    result_rows: list[list[str | None]] = field(default_factory=list)
    more: bool = False  # the result had more rows than were recorded
    masked: dict[str, str] = field(default_factory=dict)  # column -> masking rule, when known


def timeline(detail: SessionDetail) -> list[TimelineEntry]:
    """The session's statements in order, their recorded results read (and checked: the
    result JSON comes from the store, so anything malformed is shown as no result)."""
    return [_entry(st) for st in sorted(detail.statements, key=lambda s: s.seq)]


def _entry(st: StatementView) -> TimelineEntry:
    columns, rows, more, masked = _result(st.result)
    return TimelineEntry(
        seq=st.seq,
        started_at=st.started_at,
        duration_ms=st.duration_us / 1000,
        protocol=st.protocol,
        text=st.sql,
        decision=st.decision,
        rule=st.rule,
        outcome=st.outcome,
        rows=st.rows,
        error=st.error,
        columns=columns,
        result_rows=rows,
        more=more,
        masked=masked,
    )


_Result = tuple[list[str] | None, list[list[str | None]], bool, dict[str, str]]


def _result(text: str | None) -> _Result:
    """{"columns": [...] | null, "rows": [[text | null, ...]], "more": bool, "masked"?:
    {column: rule}}; anything else gives no result (file operations record other keys)."""
    empty: _Result = (None, [], False, {})
    if not text:
        return empty
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return empty
    if not isinstance(data, dict) or "rows" not in data:
        return empty
    columns, rows, more = data.get("columns"), data.get("rows"), data.get("more", False)
    if columns is not None and not (
        isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    ):
        return empty
    if not isinstance(rows, list) or not all(
        isinstance(r, list) and all(v is None or isinstance(v, str) for v in r) for r in rows
    ):
        return empty
    masked = data.get("masked")
    if not (
        isinstance(masked, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in masked.items())
    ):
        masked = {}
    return columns, rows, more is True, masked
