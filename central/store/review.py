"""What reviewers read of the recordings: sessions by filter, a session's rows in chain order,
and search across statements and terminal output. Plain queries on a `Store`, for both
backends; who may call them is the API's business (roles marked admin or auditor).

Every value that goes in comes from a reviewer's request and every value that comes out comes
from recorded traffic: search text is matched literally (LIKE wildcards escaped), pages are
bounded in rows and in bytes, and snippets carry no control characters.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from central.recording.textindex import line_at
from central.store.db import Store, within_budget
from central.store.models import SessionRecord, StatementRecord, TerminalChunk, TerminalText

__all__ = [
    "MAX_QUERY",
    "ContentPage",
    "Counts",
    "Cursor",
    "Hit",
    "ReviewRow",
    "SessionFilter",
    "check_query",
    "content_page",
    "review_sessions",
    "search",
    "session_counts",
]

MAX_QUERY = 200  # characters of a search text
SNIPPET = 240  # characters of a hit's snippet, around the match
PAGE_BYTES = 4 * 1024 * 1024  # of one content page (at least one row is always given)
FLAGGED = ("block", "review")  # decisions that make a session worth a look
_SEARCH_BATCH = 16  # terminal text rows read at a time (each up to a chunk's worth of text)
# Control characters and the bidi overrides that reorder what a reader sees.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Sessions of a user, on a resource, of a kind, active at some time in [since, until)."""

    user: str | None = None
    resource: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.user is not None:
            found.append(SessionRecord.user == self.user)
        if self.resource is not None:
            found.append(SessionRecord.resource == self.resource)
        if self.kind is not None:
            found.append(SessionRecord.kind == self.kind)
        # Active during the range: started before its end and not ended before its start (a
        # session that never ended is live, or was cut off by a crash: still active).
        if self.until is not None:
            found.append(SessionRecord.started_at < self.until)
        if self.since is not None:
            found.append(
                or_(SessionRecord.ended_at.is_(None), SessionRecord.ended_at >= self.since)
            )
        return found


@dataclass(frozen=True, slots=True)
class Counts:
    statements: int = 0
    blocked: int = 0  # decision "block"
    held: int = 0  # decision "review": held for a reviewer's approval


@dataclass(frozen=True, slots=True)
class ReviewRow:
    session: SessionRecord
    counts: Counts


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in the newest-first order of sessions: the last session of a page."""

    started_at: datetime
    id: str

    def encode(self) -> str:
        raw = json.dumps([self.started_at.isoformat(), self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """ValueError unless `text` is what `encode` made."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            when, session_id = json.loads(raw)
            started = datetime.fromisoformat(when)
        except (ValueError, TypeError, binascii.Error, RecursionError):
            raise ValueError("not the `next` of a previous page") from None
        if not isinstance(session_id, str) or started.tzinfo is None or len(session_id) > 64:
            raise ValueError("not the `next` of a previous page")
        return cls(started, session_id)


# -- sessions -------------------------------------------------------------------------------


async def review_sessions(
    store: Store,
    where: SessionFilter,
    *,
    flagged: bool | None = None,
    limit: int = 100,
    before: Cursor | None = None,
) -> tuple[list[ReviewRow], Cursor | None]:
    """One page of sessions, newest first, with what they did; and the cursor of the next
    (older) page, None on the last. `flagged` True: only sessions with a blocked or held
    statement; False: only those without."""
    query = select(SessionRecord).where(*where.clauses())
    if flagged is not None:
        risky = exists().where(
            StatementRecord.session_id == SessionRecord.id,
            StatementRecord.decision.in_(FLAGGED),
        )
        query = query.where(risky if flagged else ~risky)
    if before is not None:
        query = query.where(
            or_(
                SessionRecord.started_at < before.started_at,
                and_(SessionRecord.started_at == before.started_at, SessionRecord.id < before.id),
            )
        )
    query = query.order_by(SessionRecord.started_at.desc(), SessionRecord.id.desc())
    async with store.session() as s:
        rows = list((await s.scalars(query.limit(limit + 1))).all())
        more = len(rows) > limit
        rows = rows[:limit]
        counts = await _counts(s, [r.id for r in rows])
    page = [ReviewRow(r, counts.get(r.id, Counts())) for r in rows]
    last = rows[-1] if more else None
    return page, (Cursor(last.started_at, last.id) if last is not None else None)


async def session_counts(store: Store, session_id: str) -> Counts:
    async with store.session() as s:
        return (await _counts(s, [session_id])).get(session_id, Counts())


async def _counts(s: AsyncSession, ids: list[str]) -> dict[str, Counts]:
    if not ids:
        return {}
    found = await s.execute(
        select(
            StatementRecord.session_id,
            func.count(),
            func.sum(case((StatementRecord.decision == "block", 1), else_=0)),
            func.sum(case((StatementRecord.decision == "review", 1), else_=0)),
        )
        .where(StatementRecord.session_id.in_(ids))
        .group_by(StatementRecord.session_id)
    )
    return {
        session_id: Counts(int(total), int(blocked or 0), int(held or 0))
        for session_id, total, blocked, held in found
    }


# -- a session's content --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentPage:
    """Rows of a session's chain in seq order; `next_after` the seq to continue after, None
    when there were no more rows."""

    rows: list[StatementRecord | TerminalChunk]
    next_after: int | None


async def content_page(
    store: Store,
    session_id: str,
    *,
    after: int,
    limit: int,
    budget: int = PAGE_BYTES,
    only: str | None = None,
) -> ContentPage:
    """The session's statements and terminal chunks after seq `after`, merged in seq order:
    at most `limit` rows and about `budget` bytes (at least one row, whatever its size); with
    `only` ("statement" or "terminal"), rows of that kind alone. The sizes are read first, so
    that rows past the budget are never loaded."""
    kinds: list[tuple[type[StatementRecord] | type[TerminalChunk], ColumnElement[int]]] = []
    if only in (None, "statement"):
        kinds.append((StatementRecord, _statement_size(store)))
    if only in (None, "terminal"):
        kinds.append((TerminalChunk, _size(store, TerminalChunk.data)))
    if not kinds:
        raise ValueError(f"content of type {only!r}: statement or terminal")
    async with store.session() as s:
        sizes: list[Iterable[tuple[int, int]]] = []
        for model, measure in kinds:
            found = await s.execute(
                select(model.seq, measure)
                .where(model.session_id == session_id, model.seq > after)
                .order_by(model.seq)
                .limit(limit + 1)
            )
            sizes.append([(int(seq), int(n or 0)) for seq, n in found])
        merged = list(heapq.merge(*sizes))
        taken = within_budget((nbytes for _, nbytes in merged[:limit]), budget)
        if not taken:
            return ContentPage([], None)
        last = merged[taken - 1][0]
        rows: list[StatementRecord | TerminalChunk] = []
        for model, _ in kinds:
            found_rows = await s.scalars(
                select(model)
                .where(model.session_id == session_id, model.seq > after, model.seq <= last)
                .order_by(model.seq)
            )
            rows += [r for r in found_rows.all() if isinstance(r, StatementRecord | TerminalChunk)]
    rows.sort(key=lambda row: row.seq)
    return ContentPage(rows, last if len(merged) > taken else None)


def _size(store: Store, column: Any) -> ColumnElement[int]:
    """A text column's size without fetching it (PostgreSQL: bytes, read from the TOAST
    header; SQLite: characters)."""
    if store.engine.dialect.name == "postgresql":
        return func.coalesce(func.octet_length(column), 0)
    return func.coalesce(func.length(column), 0)


def _statement_size(store: Store) -> ColumnElement[int]:
    parts = [
        _size(store, c)
        for c in (
            StatementRecord.sql,
            StatementRecord.params,
            StatementRecord.error,
            StatementRecord.result,
        )
    ]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


# -- search ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a text was found: a statement (`seq`), or a line of a terminal channel's output
    (`seq` of its chunk, `channel`, `at` seconds from the start of the channel's cast)."""

    session_id: str
    user: str
    resource: str
    kind: str
    started_at: datetime
    where: str  # "statement" | "terminal"
    seq: int
    snippet: str
    channel: int | None = None
    at: float | None = None


def check_query(q: str) -> str:
    """The search text, or ValueError saying what is wrong with it."""
    if not q.strip():
        raise ValueError("q: give the text to search for")
    if len(q) > MAX_QUERY:
        raise ValueError(f"q: at most {MAX_QUERY} characters")
    if _UNSAFE.search(q):
        raise ValueError("q: control characters cannot be searched for")
    return q


async def search(store: Store, q: str, where: SessionFilter, *, limit: int = 100) -> list[Hit]:
    """Statements (their SQL or command, and their error) and terminal output lines that
    contain `q`, case-insensitively and literally: newest sessions first, then in seq order.

    The store picks candidates with LIKE (`_like`), which folds ASCII case on every backend
    and locale; the exact, Unicode-aware match is made here on the candidates."""
    check_query(q)
    needle = q.lower()
    pattern = _like_pattern(needle)
    sessions = (
        SessionRecord.id,
        SessionRecord.user,
        SessionRecord.resource,
        SessionRecord.kind,
        SessionRecord.started_at,
    )
    order = (SessionRecord.started_at.desc(), SessionRecord.id.desc())
    statements = (
        select(*sessions, StatementRecord.seq, StatementRecord.sql, StatementRecord.error)
        .join(SessionRecord, SessionRecord.id == StatementRecord.session_id)
        .where(
            *where.clauses(),
            or_(_like(StatementRecord.sql, pattern), _like(StatementRecord.error, pattern)),
        )
        .order_by(*order, StatementRecord.seq)
    )
    terminals = (
        select(*sessions, TerminalText.seq, TerminalText.channel, TerminalText.text)
        .add_columns(TerminalText.times)
        .join(SessionRecord, SessionRecord.id == TerminalText.session_id)
        .where(*where.clauses(), _like(TerminalText.text, pattern))
        .order_by(*order, TerminalText.seq)
    )
    async with store.session() as s:
        statement_hits = await _collect(s, statements, limit, lambda r: _statement_hit(r, needle))
        terminal_hits = await _collect(s, terminals, limit, lambda r: _terminal_hits(r, needle))
    # Both lists are in the queries' order: newest session first, then seq. Merged by the
    # rank of their session in that order.
    newest = sorted(
        {(h.started_at, h.session_id) for h in (*statement_hits, *terminal_hits)}, reverse=True
    )
    rank = {session_id: i for i, (_, session_id) in enumerate(newest)}
    merged = heapq.merge(statement_hits, terminal_hits, key=lambda h: (rank[h.session_id], h.seq))
    return list(merged)[:limit]


async def _collect(
    s: AsyncSession,
    query: Select[*tuple[Any, ...]],
    limit: int,
    hits_of: Callable[[Sequence[Any]], list[Hit]],
) -> list[Hit]:
    """Hits from the candidate rows of `query`, read a batch at a time until `limit` hits
    (a terminal row holds up to a chunk's worth of text: never all of them at once)."""
    hits: list[Hit] = []
    offset = 0
    while len(hits) < limit:
        batch = (await s.execute(query.limit(_SEARCH_BATCH).offset(offset))).all()
        for row in batch:
            hits += hits_of(row)
        if len(batch) < _SEARCH_BATCH:
            break
        offset += _SEARCH_BATCH
    return hits[:limit]


def _statement_hit(row: Sequence[Any], needle: str) -> list[Hit]:
    sid, user, resource, kind, started, seq, sql, error = row
    snippet = _snippet(sql, needle) or _snippet(error or "", needle)
    return [Hit(sid, user, resource, kind, started, "statement", seq, snippet)] if snippet else []


def _terminal_hits(row: Sequence[Any], needle: str) -> list[Hit]:
    """One hit per matching line of a chunk's text, with the time the line began."""
    sid, user, resource, kind, started, seq, channel, text, times = row
    hits = []
    for index, line in enumerate(text.split("\n")):
        snippet = _snippet(line, needle)
        if snippet:
            at = line_at(text, times, index)
            hits.append(
                Hit(sid, user, resource, kind, started, "terminal", seq, snippet, channel, at)
            )
    return hits


def _like_pattern(needle: str) -> str:
    """A LIKE pattern (escape character "/") for the candidates containing `needle`: its %,
    _ and / matched literally, and each non-ASCII character matched by any one character,
    since the backends' lower() may leave those unfolded (SQLite, PostgreSQL in the C locale)."""
    escaped = re.sub(r"([%_/])", r"/\1", needle)
    return "%" + re.sub(r"[^\x00-\x7f]", "_", escaped) + "%"


def _like(column: InstrumentedAttribute[Any], pattern: str) -> ColumnElement[bool]:
    return func.lower(column).like(pattern, escape="/")


def _snippet(text: str, q: str) -> str:
    """The line of `text` where `q` is, cut to SNIPPET characters around it; "" if absent."""
    at = text.lower().find(q.lower())
    if at < 0:
        return ""
    start = text.rfind("\n", 0, at) + 1
    end = text.find("\n", at)
    end = len(text) if end < 0 else end
    before = max(start, at - (SNIPPET - len(q)) // 3)
    after = min(end, before + SNIPPET)
    cut = text[before:after]
    return _clean(("…" if before > start else "") + cut + ("…" if after < end else ""))


def _clean(text: str) -> str:
    return _UNSAFE.sub(" ", text).strip()
