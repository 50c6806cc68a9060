"""The central store on SQLite and PostgreSQL: migrations, access requests, OIDC codes/tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import event, inspect, select, text, update
from sqlalchemy.engine import Connection

from central.store import (
    AccessRequest,
    Approval,
    AuthCode,
    Base,
    CommandReview,
    RefreshToken,
    RequestStatus,
    SessionRecord,
    StatementRecord,
    Store,
    StoreError,
    new_id,
    sha256_hex,
)
from central.store.db import MIGRATIONS_DIR, TerminalChannel, _create_engine, _parse_url
from central.store.models import TerminalChunk
from tests.support.pgtemp import admin_url

NOW = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)


# -- helpers ------------------------------------------------------------------------------------


def auth_code(raw: str = "code-1", *, expires_in: int = 60, **overrides: Any) -> AuthCode:
    fields: dict[str, Any] = {
        "code_hash": sha256_hex(raw),
        "client_id": "watchgate-desktop",
        "redirect_uri": "http://127.0.0.1:53124/callback",
        "subject": "alice",
        "scope": "openid profile offline_access",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "nonce": "n-0S6_WzA2Mj",
        "created_at": NOW,
        "expires_at": NOW + timedelta(seconds=expires_in),
    }
    fields.update(overrides)
    return AuthCode(**fields)


def refresh_token(
    raw: str, *, family_id: str = "", expires_in: int = 3600, **overrides: Any
) -> RefreshToken:
    fields: dict[str, Any] = {
        "token_hash": sha256_hex(raw),
        "family_id": family_id or new_id(),
        "subject": "alice",
        "client_id": "watchgate-desktop",
        "scope": "openid offline_access",
        "created_at": NOW,
        "expires_at": NOW + timedelta(seconds=expires_in),
    }
    fields.update(overrides)
    return RefreshToken(**fields)


def successor(raw: str) -> RefreshToken:
    """What the token endpoint passes on rotation: the store fills in the family."""
    return RefreshToken(
        token_hash=sha256_hex(raw),
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


async def set_request(store: Store, request_id: str, **values: Any) -> None:
    async with store.session() as session, session.begin():
        await session.execute(
            update(AccessRequest).where(AccessRequest.id == request_id).values(**values)
        )


async def family_tokens(store: Store, family_id: str) -> list[RefreshToken]:
    async with store.session() as session:
        rows = await session.scalars(
            select(RefreshToken).where(RefreshToken.family_id == family_id)
        )
        return list(rows)


# -- migrations ---------------------------------------------------------------------------------


async def test_migrations_reach_head_and_reopening_is_idempotent(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        request = await store.create_access_request("alice", "orders-db", "incident", 600, NOW)
    finally:
        await store.close()

    for _ in range(2):
        store = await Store.open(store_url)
        try:
            async with store.session() as session:
                versions = await session.execute(text("SELECT version_num FROM alembic_version"))
                assert versions.scalars().all() == ["0007"]
                kept = await session.get(AccessRequest, request.id)
            assert kept is not None and kept.reason == "incident"
        finally:
            await store.close()


async def test_schema_matches_the_models(store: Store) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    def layout(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        return {
            "tables": sorted(inspector.get_table_names()),
            "request_indexes": sorted(
                (ix["name"], ix["column_names"]) for ix in inspector.get_indexes("access_requests")
            ),
            "token_indexes": [
                (ix["name"], ix["column_names"]) for ix in inspector.get_indexes("refresh_tokens")
            ],
            "chunk_indexes": [
                (ix["name"], ix["column_names"]) for ix in inspector.get_indexes("terminal_chunks")
            ],
            # PostgreSQL lists the index behind a unique constraint among the indexes too.
            "session_indexes": sorted(
                (ix["name"], ix["column_names"])
                for ix in inspector.get_indexes("sessions")
                if not str(ix["name"]).startswith("uq_")
            ),
            "session_uniques": [
                (uq["name"], uq["column_names"])
                for uq in inspector.get_unique_constraints("sessions")
            ],
        }

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        found = await conn.run_sync(layout)
    assert found == {
        "tables": [
            "access_requests",
            "alembic_version",
            "approvals",
            "auth_codes",
            "command_reviews",
            "recorders",
            "refresh_tokens",
            "sessions",
            "statements",
            "terminal_chunks",
            "terminal_text",
        ],
        "request_indexes": [
            ("ix_access_requests_requester_resource", ["requester", "resource"]),
            ("ix_access_requests_status", ["status"]),
        ],
        "token_indexes": [("ix_refresh_tokens_family_id", ["family_id"])],
        "chunk_indexes": [
            ("ix_terminal_chunks_session_id_channel", ["session_id", "channel"]),
        ],
        "session_indexes": [
            ("ix_sessions_resource_started_at", ["resource", "started_at"]),
            ("ix_sessions_started_at", ["started_at"]),
            ("ix_sessions_user_started_at", ["user", "started_at"]),
        ],
        "session_uniques": [("uq_sessions_chain_seq", ["chain_seq"])],
    }


async def test_upgrade_from_0002_keeps_access_requests(store_url: str) -> None:
    """Rows written before the approvals migration need one approval and have no decider."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def upgrade_to_0002(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")

    parsed, _ = _parse_url(store_url)
    engine = _create_engine(parsed)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to_0002)
            await conn.execute(
                text(
                    "INSERT INTO access_requests (id, requester, resource, reason, "
                    "duration_seconds, status, created_at) VALUES ('r-old', 'alice', 'db', "
                    "'before', 60, 'pending', :at)"
                ),
                {"at": NOW.replace(tzinfo=None) if "sqlite" in store_url else NOW},
            )
    finally:
        await engine.dispose()

    store = await Store.open(store_url)
    try:
        async with store.session() as session:
            old = await session.get(AccessRequest, "r-old")
    finally:
        await store.close()
    assert old is not None
    assert (old.required_approvals, old.requester_groups, old.decided_by, old.comment) == (
        1,
        "[]",
        None,
        None,
    )


async def test_sqlite_connections_get_the_pragmas(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        async with store.engine.connect() as conn:
            found = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
            }
    finally:
        await store.close()
    assert found == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "synchronous": 2,
        "busy_timeout": 5000,
    }


async def test_url_property_is_the_given_url(store_url: str) -> None:
    store = await Store.open(store_url)
    try:
        assert store.url == store_url
    finally:
        await store.close()


# -- errors -------------------------------------------------------------------------------------


async def test_unreachable_postgresql_gives_a_clear_store_error() -> None:
    with pytest.raises(StoreError) as caught:
        await Store.open("postgresql://watchgate:hunter2-secret@127.0.0.1:1/central")
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "postgresql://watchgate@127.0.0.1:1/central" in message
    assert "hunter2-secret" not in message
    assert "\n" not in message
    assert "refused" in message.lower()


async def test_missing_postgresql_database_is_named() -> None:
    missing = admin_url().rsplit("/", 1)[0] + "/wg_no_such_database"
    with pytest.raises(StoreError, match=r"wg_no_such_database.*does not exist"):
        await Store.open(missing)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://root@127.0.0.1/central", "only sqlite:// and postgresql://"),
        ("sqlite://", "not in-memory"),
        ("sqlite:////nonexistent-dir/x/central.db", "unable to open database file"),
    ],
)
async def test_unusable_urls_give_store_error(url: str, reason: str) -> None:
    with pytest.raises(StoreError, match=reason):
        await Store.open(url)


# -- access requests ----------------------------------------------------------------------------


async def test_access_request_round_trip(store: Store) -> None:
    created = await store.create_access_request("alice", "orders-db", "fix invoice 42", 900, NOW)
    assert len(created.id) == 36
    assert created.status == RequestStatus.PENDING

    async with store.session() as session:
        loaded = await session.get(AccessRequest, created.id)
    assert loaded is not None
    assert (loaded.requester, loaded.resource, loaded.reason, loaded.duration_seconds) == (
        "alice",
        "orders-db",
        "fix invoice 42",
        900,
    )
    assert loaded.status == "pending"
    assert loaded.created_at == NOW
    assert loaded.created_at.tzinfo is UTC
    assert loaded.decided_at is None and loaded.expires_at is None


async def test_times_come_back_as_aware_utc(store: Store) -> None:
    plus_two = datetime(2030, 5, 17, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    created = await store.create_access_request("alice", "db", "r", 60, plus_two)
    async with store.session() as session:
        loaded = await session.get(AccessRequest, created.id)
    assert loaded is not None
    assert loaded.created_at == datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
    assert loaded.created_at.utcoffset() == timedelta(0)


async def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await store.create_access_request("alice", "db", "r", 60, datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        await store.create_access_request("alice", "db", "r", 0, NOW)


async def test_requests_in_force_precedence(store: Store) -> None:
    earlier = NOW - timedelta(hours=1)

    # orders-db: a pending request and an approved one still running → the approved one.
    await store.create_access_request("alice", "orders-db", "older pending", 600, earlier)
    approved = await store.create_access_request("alice", "orders-db", "approved", 600, earlier)
    await set_request(
        store,
        approved.id,
        status="approved",
        decided_at=earlier,
        expires_at=NOW + timedelta(minutes=5),
    )
    newer_pending = await store.create_access_request("alice", "orders-db", "newer", 600, NOW)

    # billing-db: the approval ran out → only the pending request governs.
    ran_out = await store.create_access_request("alice", "billing-db", "ran out", 60, earlier)
    await set_request(
        store, ran_out.id, status="approved", decided_at=earlier, expires_at=NOW - timedelta(1)
    )
    billing_pending = await store.create_access_request("alice", "billing-db", "again", 60, NOW)

    # hr-db: approved but now expired, and denied → nothing.
    expired = await store.create_access_request("alice", "hr-db", "expired", 60, earlier)
    await set_request(store, expired.id, status="approved", expires_at=NOW)  # == now: over
    denied = await store.create_access_request("alice", "hr-db", "denied", 60, earlier)
    await set_request(store, denied.id, status="denied", decided_at=earlier)
    cancelled = await store.create_access_request("alice", "hr-db", "cancelled", 60, earlier)
    await set_request(store, cancelled.id, status="cancelled")
    swept = await store.create_access_request("alice", "hr-db", "swept", 60, earlier)
    await set_request(store, swept.id, status="expired")

    # Other people's requests never show up.
    bobs = await store.create_access_request("bob", "payroll-db", "bob's", 60, earlier)
    await set_request(store, bobs.id, status="approved", expires_at=NOW + timedelta(hours=1))
    await store.create_access_request("bob", "orders-db", "bob pending", 60, NOW)

    in_force = await store.requests_in_force("alice", NOW)

    assert {resource: r.id for resource, r in in_force.items()} == {
        "orders-db": approved.id,
        "billing-db": billing_pending.id,
    }
    assert in_force["orders-db"].status == "approved"
    assert in_force["billing-db"].status == "pending"

    # Once the approval is over, the newest pending request governs orders-db.
    later = NOW + timedelta(minutes=5)
    assert (await store.requests_in_force("alice", later))["orders-db"].id == newer_pending.id
    assert set(await store.requests_in_force("bob", NOW)) == {"payroll-db", "orders-db"}
    assert await store.requests_in_force("carol", NOW) == {}


# -- authorization codes ------------------------------------------------------------------------


async def test_auth_code_is_single_use(store: Store) -> None:
    await store.save_auth_code(auth_code("code-1"))

    used = await store.consume_auth_code(sha256_hex("code-1"), NOW)

    assert used is not None
    assert used.subject == "alice"
    assert used.client_id == "watchgate-desktop"
    assert used.nonce == "n-0S6_WzA2Mj"
    assert used.used_at == NOW
    assert await store.consume_auth_code(sha256_hex("code-1"), NOW) is None
    assert await store.consume_auth_code(sha256_hex("never issued"), NOW) is None


async def test_raw_auth_code_is_not_stored(store: Store) -> None:
    await store.save_auth_code(auth_code("very-secret-code"))
    async with store.session() as session:
        rows = (await session.execute(select(AuthCode.code_hash))).scalars().all()
    assert rows == [sha256_hex("very-secret-code")]
    assert len(rows[0]) == 64


async def test_concurrent_consumers_exactly_one_wins(store: Store) -> None:
    await store.save_auth_code(auth_code("raced"))

    results = await asyncio.gather(
        *(store.consume_auth_code(sha256_hex("raced"), NOW) for _ in range(2))
    )

    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert winners[0].code_hash == sha256_hex("raced")


async def test_many_concurrent_consumers_exactly_one_wins(store: Store) -> None:
    await store.save_auth_code(auth_code("stampede"))

    results = await asyncio.gather(
        *(store.consume_auth_code(sha256_hex("stampede"), NOW) for _ in range(8))
    )

    assert sum(r is not None for r in results) == 1


async def test_expired_auth_code_is_refused(store: Store) -> None:
    await store.save_auth_code(auth_code("late", expires_in=60))

    assert await store.consume_auth_code(sha256_hex("late"), NOW + timedelta(seconds=60)) is None
    assert await store.consume_auth_code(sha256_hex("late"), NOW + timedelta(hours=1)) is None
    # Refusing an expired code does not burn it retroactively: it was simply never used.
    async with store.session() as session:
        row = await session.get(AuthCode, sha256_hex("late"))
    assert row is not None and row.used_at is None


# -- refresh tokens -----------------------------------------------------------------------------


async def test_refresh_rotation_then_reuse_revokes_the_family(store: Store) -> None:
    first = refresh_token("rt-1")
    await store.save_refresh_token(first)

    old = await store.rotate_refresh_token(sha256_hex("rt-1"), successor("rt-2"), NOW)

    assert old is not None
    assert old.token_hash == sha256_hex("rt-1")
    assert old.rotated_at == NOW
    assert (old.subject, old.client_id) == ("alice", "watchgate-desktop")
    tokens = {t.token_hash: t for t in await family_tokens(store, first.family_id)}
    second = tokens[sha256_hex("rt-2")]
    assert (second.subject, second.client_id, second.scope) == (
        "alice",
        "watchgate-desktop",
        "openid offline_access",
    )
    assert second.rotated_at is None and second.revoked_at is None

    # The stolen first token is presented again: refused, and the new token dies with it.
    later = NOW + timedelta(minutes=1)
    assert await store.rotate_refresh_token(sha256_hex("rt-1"), successor("rt-x"), later) is None

    tokens = {t.token_hash: t for t in await family_tokens(store, first.family_id)}
    assert set(tokens) == {sha256_hex("rt-1"), sha256_hex("rt-2")}
    assert all(t.revoked_at == later for t in tokens.values())
    # ... so the legitimate holder of rt-2 has to sign in again.
    assert await store.rotate_refresh_token(sha256_hex("rt-2"), successor("rt-3"), later) is None


async def test_rotation_chain_keeps_the_family(store: Store) -> None:
    first = refresh_token("a1", scope="openid offline_access profile")
    await store.save_refresh_token(first)
    narrowed = successor("a2")
    narrowed.scope = "openid offline_access"

    assert await store.rotate_refresh_token(sha256_hex("a1"), narrowed, NOW) is not None
    assert await store.rotate_refresh_token(sha256_hex("a2"), successor("a3"), NOW) is not None

    tokens = {t.token_hash: t for t in await family_tokens(store, first.family_id)}
    assert len(tokens) == 3
    assert tokens[sha256_hex("a2")].scope == "openid offline_access"
    assert tokens[sha256_hex("a3")].scope == "openid offline_access"
    assert [t.revoked_at for t in tokens.values()] == [None, None, None]


async def test_concurrent_rotations_of_one_token(store: Store) -> None:
    first = refresh_token("twice")
    await store.save_refresh_token(first)

    results = await asyncio.gather(
        store.rotate_refresh_token(sha256_hex("twice"), successor("twice-a"), NOW),
        store.rotate_refresh_token(sha256_hex("twice"), successor("twice-b"), NOW),
    )

    # One rotation wins; the other is a reuse of a rotated token and revokes the family.
    assert sum(r is not None for r in results) == 1
    tokens = await family_tokens(store, first.family_id)
    assert len(tokens) == 2
    assert all(t.revoked_at is not None for t in tokens)


async def test_expired_or_unknown_refresh_token_is_refused(store: Store) -> None:
    first = refresh_token("old", expires_in=60)
    await store.save_refresh_token(first)

    expiry = NOW + timedelta(seconds=60)
    assert await store.rotate_refresh_token(sha256_hex("old"), successor("n1"), expiry) is None
    assert await store.rotate_refresh_token(sha256_hex("nope"), successor("n2"), NOW) is None

    (token,) = await family_tokens(store, first.family_id)
    assert token.rotated_at is None and token.revoked_at is None  # expiry alone revokes nothing
    async with store.session() as session:
        assert (await session.get(RefreshToken, sha256_hex("n1"))) is None


async def test_revoke_refresh_family(store: Store) -> None:
    family = new_id()
    await store.save_refresh_token(refresh_token("f1", family_id=family))
    await store.rotate_refresh_token(sha256_hex("f1"), successor("f2"), NOW)
    other = refresh_token("g1")
    await store.save_refresh_token(other)

    assert await store.revoke_refresh_family(family, NOW) == 2
    assert await store.revoke_refresh_family(family, NOW) == 0

    assert await store.rotate_refresh_token(sha256_hex("f2"), successor("f3"), NOW) is None
    assert all(t.revoked_at == NOW for t in await family_tokens(store, family))
    (untouched,) = await family_tokens(store, other.family_id)
    assert untouched.revoked_at is None


# -- recordings ---------------------------------------------------------------------------------


async def recorded_ssh_session(store: Store) -> str:
    """A session whose chain interleaves statements and the chunks of two terminal channels."""
    session_id = new_id()
    kinds = ["chunk 0", "statement", "chunk 3", "chunk 0", "chunk 3", "statement", "chunk 0"]
    data = {
        0: ['{"version": 3, "term": {"cols": 80, "rows": 24}}\n', '[0.1, "o", "a"]\n', "x"],
        3: ['{"version": 3, "term": {"cols": 9, "rows": 9}}\n', '[0.2, "o", "é€"]\n'],
    }
    async with store.session() as session, session.begin():
        session.add(
            SessionRecord(
                id=session_id,
                user="alice",
                resource="lab-host",
                kind="ssh",
                client="c",
                format_version=1,
                started_at=NOW,
            )
        )
        await session.flush()
        for seq, kind in enumerate(kinds, start=1):
            links = {"session_id": session_id, "seq": seq, "prev_hash": "p", "hash": "h"}
            if kind == "statement":
                session.add(
                    StatementRecord(
                        **links,
                        started_at=NOW,
                        duration_us=1,
                        protocol="line",
                        sql=f"cmd {seq}",
                        outcome="ok",
                        decision="forward",
                    )
                )
            else:
                channel = int(kind.split()[1])
                session.add(TerminalChunk(**links, channel=channel, data=data[channel].pop(0)))
    return session_id


async def test_session_chain_merges_statements_and_chunks_by_seq(store: Store) -> None:
    session_id = await recorded_ssh_session(store)
    rows = await store.session_chain(session_id)
    assert [(r.seq, type(r).__name__) for r in rows] == [
        (1, "TerminalChunk"),
        (2, "StatementRecord"),
        (3, "TerminalChunk"),
        (4, "TerminalChunk"),
        (5, "TerminalChunk"),
        (6, "StatementRecord"),
        (7, "TerminalChunk"),
    ]
    assert await store.session_chain(new_id()) == []


async def test_terminal_channels_name_each_cast_with_its_header_and_byte_size(
    store: Store,
) -> None:
    session_id = await recorded_ssh_session(store)
    channels = await store.terminal_channels(session_id)
    header_0 = '{"version": 3, "term": {"cols": 80, "rows": 24}}\n'
    header_3 = '{"version": 3, "term": {"cols": 9, "rows": 9}}\n'
    assert channels == [
        TerminalChannel(0, header_0, len(header_0) + len('[0.1, "o", "a"]\n') + 1),
        # Bytes, not characters: "é€" is five bytes of UTF-8.
        TerminalChannel(3, header_3, len(header_3) + len('[0.2, "o", ""]\n') + 5),
    ]
    assert await store.terminal_channels(new_id()) == []


@pytest.mark.parametrize("batch", [1, 2, 16])
async def test_terminal_cast_streams_one_channel_in_order(store: Store, batch: int) -> None:
    session_id = await recorded_ssh_session(store)
    chunks = [c async for c in store.terminal_cast(session_id, 0, batch=batch)]
    assert chunks == [
        '{"version": 3, "term": {"cols": 80, "rows": 24}}\n',
        '[0.1, "o", "a"]\n',
        "x",
    ]
    assert [c async for c in store.terminal_cast(session_id, 1)] == []
    assert await store.session_record(session_id) is not None
    assert await store.session_record(new_id()) is None


# Channel 0 of `longer_cast`: its sizes in bytes are 50, 16, 1, 10, 10, 15 and 1 ("é" is two
# bytes of UTF-8, "€" three): a budget counted in characters would cut other batches.
HEADER_0 = '{"version": 3, "term": {"cols": 80, "rows": 24}}\n'
LONGER_0 = [HEADER_0, '[0.1, "o", "a"]\n', "x", "é€é€", "b" * 10, "€" * 5, "d"]


async def longer_cast(store: Store) -> str:
    """`recorded_ssh_session`'s, with four more chunks on channel 0, each followed by one on
    channel 3."""
    session_id = await recorded_ssh_session(store)
    async with store.session() as session, session.begin():
        for i, data in enumerate(LONGER_0[3:]):
            for seq, channel, text in ((8 + 2 * i, 0, data), (9 + 2 * i, 3, f"other {i}")):
                session.add(
                    TerminalChunk(
                        session_id=session_id,
                        seq=seq,
                        prev_hash="p",
                        hash="h",
                        channel=channel,
                        data=text,
                    )
                )
    return session_id


@pytest.mark.parametrize(
    ("batch", "budget", "reads"),
    [
        (1, 2**20, 7),
        (3, 2**20, 3),  # 3 + 3 + 1
        (7, 2**20, 1),  # all at once; the next batch finds nothing
        (256, 1, 7),  # each chunk alone: at least one a batch, whatever its size
        (256, 25, 4),  # 50 | 16 + 1 | 10 + 10 | 15 + 1
        (256, 4 * 2**20, 1),
    ],
)
async def test_terminal_cast_reads_batches_bounded_in_chunks_and_bytes(
    store: Store, batch: int, budget: int, reads: int
) -> None:
    session_id = await longer_cast(store)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        chunks = [c async for c in store.terminal_cast(session_id, 0, batch=batch, budget=budget)]
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert chunks == LONGER_0
    data_reads = [s for s in statements if s.startswith("SELECT terminal_chunks.data ")]
    assert len(data_reads) == reads
    other = [c async for c in store.terminal_cast(session_id, 3, batch=batch, budget=budget)]
    assert other[2:] == [f"other {i}" for i in range(4)]


async def test_terminal_cast_holds_no_store_session_between_batches(store: Store) -> None:
    session_id = await longer_cast(store)
    chunks = store.terminal_cast(session_id, 0, batch=2)
    got = [await anext(chunks), await anext(chunks)]
    # While the consumer dawdles, the recorder appends: the next batch, in a store session of
    # its own, sees it.
    async with store.session() as session, session.begin():
        session.add(
            TerminalChunk(
                session_id=session_id, seq=99, prev_hash="p", hash="h", channel=0, data="late"
            )
        )
    got += [c async for c in chunks]
    assert got == [*LONGER_0, "late"]


# -- seals and evidence ---------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
async def test_chain_rows_page_through_a_session_in_seq_order(store: Store, limit: int) -> None:
    session_id = await recorded_ssh_session(store)
    pages, after = [], 0
    while page := await store.chain_rows(session_id, after=after, limit=limit):
        assert len(page) <= limit
        pages.append([(r.seq, type(r).__name__) for r in page])
        after = page[-1].seq
    assert [row for page in pages for row in page] == [
        (r.seq, type(r).__name__) for r in await store.session_chain(session_id)
    ]
    assert len(pages) == -(-7 // limit)


async def test_sessions_by_time_by_id_and_by_chain_position(store: Store) -> None:
    ids = []
    async with store.session() as s, s.begin():
        for n in range(4):
            ids.append(new_id())
            s.add(
                SessionRecord(
                    id=ids[-1],
                    user="alice",
                    resource="db",
                    kind="postgres",
                    client="c",
                    format_version=1,
                    started_at=NOW + timedelta(minutes=n),
                    chain_seq=None if n == 3 else 10 + n,
                )
            )
    started = await store.sessions_started(NOW + timedelta(minutes=1), NOW + timedelta(minutes=3))
    assert [r.id for r in started] == ids[1:3]  # [since, until)
    assert {r.id for r in await store.sessions_by_id([ids[0], ids[3], "nope"])} == {
        ids[0],
        ids[3],
    }
    assert [r.chain_seq for r in await store.sealed_between(11, 20)] == [11, 12]


async def test_decisions_between_are_the_items_created_decided_or_approved_in_the_range(
    store: Store,
) -> None:
    before, inside, after = NOW - timedelta(days=1), NOW, NOW + timedelta(days=1)
    old = await store.create_access_request("bob", "db", "old", 600, before)
    approved_now = await store.create_access_request("bob", "db", "approved now", 600, before)
    new = await store.create_access_request("bob", "db", "new", 600, inside)
    await store.create_access_request("bob", "db", "later", 600, after)
    review = CommandReview(
        requester="alice",
        resource="db",
        session_id=new_id(),
        statement="DROP TABLE t",
        rule="no-drop",
        reason="held",
        created_at=before,
        decided_at=inside,
        expires_at=after,
    )
    async with store.session() as s, s.begin():
        s.add(review)
        s.add(Approval(item_id=approved_now.id, reviewer="carol", decision="approve", at=inside))
        s.add(Approval(item_id=old.id, reviewer="carol", decision="deny", at=before))
    requests, reviews, approvals = await store.decisions_between(inside, inside + timedelta(1))
    assert [r.id for r in requests] == [approved_now.id, new.id]
    assert [r.id for r in reviews] == [review.id]
    assert [(a.item_id, a.reviewer) for a in approvals] == [(approved_now.id, "carol")]
    held, decided = await store.session_reviews(review.session_id)
    assert ([r.id for r in held], decided) == ([review.id], [])
