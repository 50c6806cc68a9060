"""The central store: connection, schema migrations and the small repository used by central.

SQLite (a file, the embedded default) and PostgreSQL (teams, several replicas) behave the same
through this module:

- :meth:`Store.open` connects, applies SQLite pragmas, and brings the schema to the newest
  Alembic revision before anything else touches the database.
- Single-use and rotation rules are enforced by conditional ``UPDATE`` statements, so they hold
  across concurrent coroutines, processes and replicas, not only inside one event loop.
- On SQLite every transaction starts with ``BEGIN IMMEDIATE``: a writer waits for the lock
  (``busy_timeout``) when it starts instead of failing half-way with "database is locked" when
  a read turns into a write. Keep store sessions short; never hold one across network I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    LargeBinary,
    Select,
    and_,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from central.store.models import (
    AccessRequest,
    Approval,
    AuthCode,
    CommandReview,
    RefreshToken,
    RequestStatus,
    SessionRecord,
    StatementRecord,
    TerminalChunk,
    new_id,
)

__all__ = ["Store", "StoreError", "TerminalChannel", "within_budget"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"

_SQLITE_PRAGMAS: Final = (
    "PRAGMA busy_timeout=5000",  # first: switching to WAL may need to wait for a lock
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)
_SQLITE_SCHEMES: Final = frozenset({"sqlite", "sqlite+aiosqlite"})
_POSTGRESQL_SCHEMES: Final = frozenset({"postgresql", "postgresql+asyncpg", "postgres"})
_PG_CONNECT_TIMEOUT_SECONDS: Final = 10
# Key of the PostgreSQL advisory lock that serialises migrations of replicas starting together.
_PG_MIGRATION_LOCK: Final = 0x57617463_68676174  # "Watchgat"
# Of a cast read by `Store.terminal_cast`, per short store session: the recorder cuts a chunk
# at every flush with output (an hour of a busy shell is thousands of chunks), so the reads
# are in batches of many chunks, bounded in bytes too (a chunk may be hundreds of KiB).
CAST_BATCH: Final = 256  # chunks
CAST_BUDGET: Final = 4 * 1024 * 1024  # bytes (at least one chunk, whatever its size)


# What an approval decides: the evidence export reads both kinds alike.
_Decided = TypeVar("_Decided", AccessRequest, CommandReview)


class StoreError(Exception):
    """The store cannot be opened or used. The message is one line, fit for an operator.

    It names the database URL without its password, and the cause.
    """


@dataclass(frozen=True, slots=True)
class TerminalChannel:
    """One recorded terminal channel of a session: its cast's header line and size in bytes."""

    channel: int
    header: str
    size: int


def within_budget(sizes: Iterable[int], budget: int) -> int:
    """How many of the first rows of these sizes fit in `budget`: at least one (if any),
    whatever its size."""
    taken, total = 0, 0
    for size in sizes:
        if taken and total + size > budget:
            break
        taken, total = taken + 1, total + size
    return taken


class Store:
    """Handle on the central database: engine, sessions and repository methods.

    Create it with :meth:`open`; close it with :meth:`close` (or ``async with``).
    """

    def __init__(self, engine: AsyncEngine, display_url: str) -> None:
        self._engine = engine
        self._display_url = display_url
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str) -> Store:
        """Connect to ``url`` and migrate the schema to the newest revision.

        ``url`` is ``sqlite:///ABS/PATH.db`` or ``postgresql://user@host:port/db`` (the
        ``+aiosqlite`` / ``+asyncpg`` forms are accepted too). Raises :class:`StoreError`
        when the database cannot be reached, configured or migrated.
        """
        parsed, display = _parse_url(url)
        engine = _create_engine(parsed)
        try:
            await _migrate(engine)
        except Exception as exc:
            await engine.dispose()
            raise StoreError(
                f"cannot open store {display}: {_describe(exc, parsed.password)}"
            ) from exc
        log.info("store opened: %s", display)
        return cls(engine, display)

    async def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        await self._engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The database URL without its password, for logs and messages."""
        return self._display_url

    @property
    def engine(self) -> AsyncEngine:
        """The underlying async engine (for callers that need Core-level access)."""
        return self._engine

    def session(self) -> AsyncSession:
        """A new ORM session; use it as ``async with store.session() as s:``.

        Objects stay readable after commit (``expire_on_commit=False``).
        """
        return self._sessions()

    # -- access requests --------------------------------------------------------------------

    async def create_access_request(
        self,
        requester: str,
        resource: str,
        reason: str,
        duration_seconds: int,
        now: datetime,
    ) -> AccessRequest:
        """Record a new ``pending`` request by ``requester`` for ``resource``."""
        _require_aware(now)
        if duration_seconds <= 0:
            raise ValueError(f"duration_seconds must be positive, got {duration_seconds}")
        request = AccessRequest(
            id=new_id(),
            requester=requester,
            resource=resource,
            reason=reason,
            duration_seconds=duration_seconds,
            status=RequestStatus.PENDING.value,
            created_at=now,
        )
        async with self._sessions.begin() as session:
            session.add(request)
        return request

    async def requests_in_force(self, requester: str, now: datetime) -> dict[str, AccessRequest]:
        """Per resource, the request that governs ``requester``'s access at ``now``.

        An approved request that has not expired wins (the one lasting longest); otherwise the
        newest pending request is returned, so the caller can answer "pending". Denied,
        expired and cancelled requests, and approved ones past their expiry, are ignored.
        """
        _require_aware(now)
        query = select(AccessRequest).where(
            AccessRequest.requester == requester,
            or_(
                AccessRequest.status == RequestStatus.PENDING.value,
                and_(
                    AccessRequest.status == RequestStatus.APPROVED.value,
                    AccessRequest.expires_at > now,
                ),
            ),
        )
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return _governing_requests(rows)

    # -- authorization codes ----------------------------------------------------------------

    async def save_auth_code(self, code: AuthCode) -> None:
        """Store a newly issued authorization code (its hash, never the code itself)."""
        _require_aware(code.created_at, code.expires_at)
        async with self._sessions.begin() as session:
            session.add(code)

    async def consume_auth_code(self, code_hash: str, now: datetime) -> AuthCode | None:
        """Redeem a code once: the code's row if this call used it, else ``None``.

        A conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at > now`` marks it used;
        only the caller whose update changed the row gets the code. Unknown, expired, already
        used, or concurrently used codes give ``None``.
        """
        _require_aware(now)
        mark_used = (
            update(AuthCode)
            .where(
                AuthCode.code_hash == code_hash,
                AuthCode.used_at.is_(None),
                AuthCode.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            if _rowcount(await session.execute(mark_used)) != 1:
                return None
            return await session.get(AuthCode, code_hash)

    # -- refresh tokens ---------------------------------------------------------------------

    async def save_refresh_token(self, token: RefreshToken) -> None:
        """Store a refresh token issued at sign-in (the first of its family)."""
        _require_aware(token.created_at, token.expires_at)
        async with self._sessions.begin() as session:
            session.add(token)

    async def rotate_refresh_token(
        self, old_hash: str, new: RefreshToken, now: datetime
    ) -> RefreshToken | None:
        """Exchange a presented refresh token for ``new``; the OLD row if it was valid.

        Valid means known, not expired, not rotated and not revoked. Then, in one
        transaction, the old token is marked rotated and ``new`` is inserted into the same
        family: ``new`` inherits ``family_id``, ``subject`` and ``client_id`` from the old
        token (and ``scope`` when it is left ``None``); the caller sets ``token_hash``,
        ``created_at`` and ``expires_at``. The caller must still check the returned token's
        ``client_id`` against the requesting client.

        A token presented after it was rotated or revoked is a replay of a stolen copy (or of
        a copy the thief already used): every token of its family is revoked and ``None`` is
        returned. Unknown or expired tokens give ``None``.
        """
        _require_aware(now, new.created_at, new.expires_at)
        mark_rotated = (
            update(RefreshToken)
            .where(
                RefreshToken.token_hash == old_hash,
                RefreshToken.rotated_at.is_(None),
                RefreshToken.revoked_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .values(rotated_at=now)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            rotated = _rowcount(await session.execute(mark_rotated)) == 1
            old = await session.get(RefreshToken, old_hash)
            if old is None:
                return None
            if rotated:
                new.family_id = old.family_id
                new.subject = old.subject
                new.client_id = old.client_id
                if new.scope is None:
                    new.scope = old.scope
                session.add(new)
                return old
            if old.rotated_at is not None or old.revoked_at is not None:
                revoked = await _revoke_family(session, old.family_id, now)
                log.warning(
                    "refresh token reuse detected: family %s revoked (%d tokens)",
                    old.family_id,
                    revoked,
                )
            return None

    async def revoke_refresh_family(self, family_id: str, now: datetime) -> int:
        """Revoke every not-yet-revoked token of a family (sign-out); how many were revoked."""
        _require_aware(now)
        async with self._sessions.begin() as session:
            return await _revoke_family(session, family_id, now)

    # -- recordings ---------------------------------------------------------------------------

    async def list_sessions(self, *, user: str | None, limit: int) -> list[SessionRecord]:
        """The newest recorded sessions, of one user or (user None) of everyone."""
        query = select(SessionRecord).order_by(SessionRecord.started_at.desc()).limit(limit)
        if user is not None:
            query = query.where(SessionRecord.user == user)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def session_with_statements(
        self, session_id: str
    ) -> tuple[SessionRecord, list[StatementRecord]] | None:
        async with self._sessions() as session:
            row = await session.get(SessionRecord, session_id)
            if row is None:
                return None
            statements = await session.scalars(
                select(StatementRecord)
                .where(StatementRecord.session_id == session_id)
                .order_by(StatementRecord.seq)
            )
            return row, list(statements.all())

    async def session_record(self, session_id: str) -> SessionRecord | None:
        async with self._sessions() as session:
            return await session.get(SessionRecord, session_id)

    async def session_chain(self, session_id: str) -> list[StatementRecord | TerminalChunk]:
        """A session's statements and terminal chunks merged in seq order: the rows of its
        hash chain, for a verifier. Loads every chunk: meant for checking, not for replay."""
        async with self._sessions() as session:
            statements = await session.scalars(
                select(StatementRecord)
                .where(StatementRecord.session_id == session_id)
                .order_by(StatementRecord.seq)
            )
            chunks = await session.scalars(
                select(TerminalChunk)
                .where(TerminalChunk.session_id == session_id)
                .order_by(TerminalChunk.seq)
            )
            merged: Iterable[StatementRecord | TerminalChunk] = heapq.merge(
                statements.all(), chunks.all(), key=lambda row: row.seq
            )
            return list(merged)

    async def terminal_channels(self, session_id: str) -> list[TerminalChannel]:
        """The session's recorded terminal channels, by channel number."""
        size = self._chunk_size()
        async with self._sessions() as session:
            totals = (
                await session.execute(
                    select(TerminalChunk.channel, func.min(TerminalChunk.seq), func.sum(size))
                    .where(TerminalChunk.session_id == session_id)
                    .group_by(TerminalChunk.channel)
                    .order_by(TerminalChunk.channel)
                )
            ).all()
            firsts = [int(first) for _, first, _ in totals]
            found = await session.execute(
                select(TerminalChunk.seq, TerminalChunk.data).where(
                    TerminalChunk.session_id == session_id, TerminalChunk.seq.in_(firsts)
                )
            )
            headers = {int(seq): str(data) for seq, data in found}
        return [
            TerminalChannel(int(channel), headers[int(first)], int(total or 0))
            for channel, first, total in totals
        ]

    async def terminal_cast(
        self,
        session_id: str,
        channel: int,
        *,
        batch: int = CAST_BATCH,
        budget: int = CAST_BUDGET,
    ) -> AsyncIterator[str]:
        """The channel's cast, chunk by chunk in seq order, read per short store session: up
        to `batch` chunks and about `budget` bytes (at least one chunk). The sizes are read
        first, so that chunks past the budget are never loaded; a batch is handed out only
        after its store session has ended, so a slow consumer holds no connection."""
        of_channel = (TerminalChunk.session_id == session_id, TerminalChunk.channel == channel)
        size = self._chunk_size()
        after = -1
        while True:
            async with self._sessions() as session:
                sizes = (
                    await session.execute(
                        select(TerminalChunk.seq, size)
                        .where(*of_channel, TerminalChunk.seq > after)
                        .order_by(TerminalChunk.seq)
                        .limit(batch)
                    )
                ).all()
                taken = within_budget([int(n or 0) for _, n in sizes], budget)
                if not taken:
                    return
                last = int(sizes[taken - 1][0])
                rows = (
                    await session.execute(
                        select(TerminalChunk.data)
                        .where(*of_channel, TerminalChunk.seq > after, TerminalChunk.seq <= last)
                        .order_by(TerminalChunk.seq)
                    )
                ).all()
            for (data,) in rows:
                yield data
            if taken == len(sizes) and len(sizes) < batch:
                return  # all there was
            after = last

    def _chunk_size(self) -> ColumnElement[int]:
        """A terminal chunk's size in bytes, without fetching it on PostgreSQL (read from the
        TOAST header)."""
        if self._engine.dialect.name == "postgresql":
            return func.octet_length(TerminalChunk.data)
        return func.length(sql_cast(TerminalChunk.data, LargeBinary))

    # -- seals and evidence -------------------------------------------------------------------

    async def sessions_started(self, since: datetime, until: datetime) -> list[SessionRecord]:
        """Sessions started in [since, until), oldest first."""
        _require_aware(since, until)
        query = (
            select(SessionRecord)
            .where(SessionRecord.started_at >= since, SessionRecord.started_at < until)
            .order_by(SessionRecord.started_at, SessionRecord.id)
        )
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def sessions_by_id(self, ids: Iterable[str]) -> list[SessionRecord]:
        wanted = sorted(set(ids))
        found: list[SessionRecord] = []
        async with self._sessions() as session:
            for start in range(0, len(wanted), 500):
                batch = wanted[start : start + 500]
                found += (
                    await session.scalars(select(SessionRecord).where(SessionRecord.id.in_(batch)))
                ).all()
        return found

    async def sealed_between(self, first: int, last: int) -> list[SessionRecord]:
        """Sealed sessions at chain positions first..last, in chain order."""
        query = (
            select(SessionRecord)
            .where(SessionRecord.chain_seq >= first, SessionRecord.chain_seq <= last)
            .order_by(SessionRecord.chain_seq)
        )
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def chain_rows(
        self, session_id: str, *, after: int, limit: int
    ) -> list[StatementRecord | TerminalChunk]:
        """Up to `limit` rows of a session's chain with seq > `after`, in seq order: page
        through a long recording without loading it (`session_chain` loads it all)."""
        async with self._sessions() as session:
            statements = await session.scalars(
                select(StatementRecord)
                .where(StatementRecord.session_id == session_id, StatementRecord.seq > after)
                .order_by(StatementRecord.seq)
                .limit(limit)
            )
            chunks = await session.scalars(
                select(TerminalChunk)
                .where(TerminalChunk.session_id == session_id, TerminalChunk.seq > after)
                .order_by(TerminalChunk.seq)
                .limit(limit)
            )
            merged: Iterable[StatementRecord | TerminalChunk] = heapq.merge(
                statements.all(), chunks.all(), key=lambda row: row.seq
            )
            return list(merged)[:limit]

    async def decisions_between(
        self, since: datetime, until: datetime
    ) -> tuple[list[AccessRequest], list[CommandReview], list[Approval]]:
        """Access requests and command reviews created, decided or approved in [since, until),
        with every reviewer's decision on them."""
        _require_aware(since, until)
        touched = select(Approval.item_id).where(Approval.at >= since, Approval.at < until)

        def items(model: type[_Decided]) -> Select[_Decided]:
            return (
                select(model)
                .where(
                    or_(
                        and_(model.created_at >= since, model.created_at < until),
                        and_(model.decided_at >= since, model.decided_at < until),
                        model.id.in_(touched),
                    )
                )
                .order_by(model.created_at, model.id)
            )

        async with self._sessions() as session:
            requests = list((await session.scalars(items(AccessRequest))).all())
            reviews = list((await session.scalars(items(CommandReview))).all())
            ids = [r.id for r in requests] + [r.id for r in reviews]
            approvals = await self._approvals_of(session, ids)
        return requests, reviews, approvals

    async def session_reviews(self, session_id: str) -> tuple[list[CommandReview], list[Approval]]:
        """The command reviews held on one session, with every reviewer's decision on them."""
        async with self._sessions() as session:
            reviews = list(
                (
                    await session.scalars(
                        select(CommandReview)
                        .where(CommandReview.session_id == session_id)
                        .order_by(CommandReview.created_at, CommandReview.id)
                    )
                ).all()
            )
            approvals = await self._approvals_of(session, [r.id for r in reviews])
        return reviews, approvals

    @staticmethod
    async def _approvals_of(session: AsyncSession, item_ids: list[str]) -> list[Approval]:
        found: list[Approval] = []
        for start in range(0, len(item_ids), 500):
            found += (
                await session.scalars(
                    select(Approval)
                    .where(Approval.item_id.in_(item_ids[start : start + 500]))
                    .order_by(Approval.at, Approval.item_id, Approval.reviewer)
                )
            ).all()
        return found


# -- helpers ------------------------------------------------------------------------------


def _parse_url(url: str) -> tuple[URL, str]:
    """The URL with its async driver, and the password-free form shown in messages."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid store URL {url.split('@')[-1]!r}: {exc}") from exc
    display = URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).render_as_string(hide_password=False)
    if parsed.drivername in _SQLITE_SCHEMES:
        if parsed.database in (None, "", ":memory:"):
            raise StoreError(f"cannot open store {display}: give a file path, not in-memory")
        return parsed.set(drivername="sqlite+aiosqlite"), display
    if parsed.drivername in _POSTGRESQL_SCHEMES:
        return parsed.set(drivername="postgresql+asyncpg"), display
    raise StoreError(f"cannot open store {display}: only sqlite:// and postgresql:// URLs work")


def _create_engine(url: URL) -> AsyncEngine:
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,
        connect_args={"timeout": _PG_CONNECT_TIMEOUT_SECONDS},
    )


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy emit BEGIN itself (see _sqlite_on_begin) instead of the sqlite3 module,
    # which would skip it before SELECT and DDL; then set the per-connection pragmas.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
            if pragma == "PRAGMA journal_mode=WAL":
                mode = cursor.fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("SQLite refused WAL journal mode (using %s)", mode)
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


async def _migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (nothing to do when it is already there)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Reading the migration scripts is file I/O: do it off the event loop.
    heads = await asyncio.to_thread(lambda: set(ScriptDirectory.from_config(config).get_heads()))
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together migrate one at a time (SQLite: BEGIN IMMEDIATE).
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        await conn.run_sync(_upgrade_if_behind, config, heads)


def _upgrade_if_behind(connection: Connection, config: Config, heads: set[str]) -> None:
    current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return
    log.info("migrating store schema from %s to %s", sorted(current) or "empty", sorted(heads))
    config.attributes["connection"] = connection
    try:
        command.upgrade(config, "head")
    finally:
        del config.attributes["connection"]


async def _revoke_family(session: AsyncSession, family_id: str, now: datetime) -> int:
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


def _governing_requests(rows: Iterable[AccessRequest]) -> dict[str, AccessRequest]:
    def rank(request: AccessRequest) -> tuple[int, datetime]:
        if request.status == RequestStatus.APPROVED.value and request.expires_at is not None:
            return (1, request.expires_at)
        return (0, request.created_at)

    governing: dict[str, AccessRequest] = {}
    for request in rows:
        current = governing.get(request.resource)
        if current is None or rank(request) > rank(current):
            governing[request.resource] = request
    return governing


def _rowcount(result: Any) -> int:
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected a CursorResult from a DML statement, got {type(result)!r}")
    return int(result.rowcount)


def _require_aware(*times: datetime | None) -> None:
    for value in times:
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise ValueError(f"naive datetime {value!r} refused: pass a timezone-aware time")


def _describe(exc: BaseException, password: str | None) -> str:
    """One line naming the cause of ``exc``, without the password."""
    cause: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        cause = exc.orig
        # SQLAlchemy's driver adapters wrap the driver's own exception: name that one.
        inner = cause.__cause__ or cause.__context__
        if inner is not None:
            cause = inner
    message = " ".join(str(cause).split()) or "no details"
    if password:
        message = message.replace(password, "***")
    return f"{type(cause).__name__}: {message}"
