"""The PostgreSQL path end to end: real clients → local listener → tunnel → central → PostgreSQL.

Everything here is real: the machine's PostgreSQL as the target, asyncpg and psycopg as the
clients, central and the local listener in this process on loopback ports.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from central.protocols.postgres.codec import FrameReader, decode_backend, encode
from central.protocols.postgres.messages import (
    ErrorResponse,
    FunctionCall,
    PasswordMessage,
    ReadyForQuery,
    startup_message,
)
from central.protocols.postgres.params import render_params
from central.protocols.postgres.session import rows_from_tag
from tests.support.gateway import Gateway, gateway
from tests.support.pgtemp import temporary_database


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with temporary_database("wg_gw") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g"
        )
        await conn.close()
        yield url


@pytest.fixture
async def gw(tmp_path: Path, target: str) -> AsyncIterator[Gateway]:
    async with gateway(tmp_path, target) as running:
        yield running


async def statements(gw: Gateway) -> list[dict[str, object]]:
    """The recorded statements of the newest session, once the recorder has flushed."""
    await gw.central.recorder.flush()
    sessions = await gw.central.store.list_sessions(user=None, limit=1)
    found = await gw.central.store.session_with_statements(sessions[0].id)
    assert found is not None
    return [
        {
            "sql": s.sql,
            "params": s.params,
            "outcome": s.outcome,
            "rows": s.rows,
            "protocol": s.protocol,
            "error": s.error,
            "result": json.loads(s.result) if s.result else None,
        }
        for s in found[1]
    ]


# -- real clients -------------------------------------------------------------------------------


async def test_asyncpg_queries_prepared_statements_and_transactions(gw: Gateway) -> None:
    conn = await asyncpg.connect(gw.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM items") == 100
        rows = await conn.fetch("SELECT id, name FROM items WHERE id < $1 ORDER BY id", 4)
        assert [tuple(r) for r in rows] == [(1, "item 1"), (2, "item 2"), (3, "item 3")]
        async with conn.transaction():
            await conn.execute("INSERT INTO items VALUES ($1, $2)", 101, "new")
        await conn.executemany("INSERT INTO items VALUES ($1, $2)", [(102, "a"), (103, "b")])
        assert await conn.fetchval("SELECT count(*) FROM items") == 103
        # The session reports the target's server version and our own key, not the target's.
        assert conn.get_server_version().major >= 13
    finally:
        await conn.close()
    recorded = await statements(gw)
    insert = next(s for s in recorded if s["sql"].startswith("INSERT INTO items VALUES ($1"))
    assert json.loads(str(insert["params"])) == ["101", "new"]
    assert any(
        s["sql"] == "SELECT id, name FROM items WHERE id < $1 ORDER BY id" and s["rows"] == 3
        for s in recorded
    )


async def test_asyncpg_copy_in_and_out(gw: Gateway) -> None:
    conn = await asyncpg.connect(gw.dsn)
    try:
        await conn.copy_records_to_table("items", records=[(200, "copied"), (201, "too")])
        out = await conn.copy_from_query(
            "SELECT id, name FROM items WHERE id >= 200", output=_Sink()
        )
        assert out == "COPY 2"
        assert await conn.fetchval("SELECT name FROM items WHERE id = 201") == "too"
    finally:
        await conn.close()
    recorded = await statements(gw)
    assert any(s["sql"].startswith("COPY") and s["rows"] == 2 for s in recorded)


class _Sink:
    def __init__(self) -> None:
        self.data = b""

    async def __call__(self, chunk: bytes) -> None:
        self.data += chunk


async def test_asyncpg_notifications_pass_through(gw: Gateway) -> None:
    listener = await asyncpg.connect(gw.dsn)
    talker = await asyncpg.connect(gw.dsn)
    got: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener("news", lambda *args: got.put_nowait(args[3]))
        await talker.execute("NOTIFY news, 'hello through the gateway'")
        assert await asyncio.wait_for(got.get(), 5) == "hello through the gateway"
    finally:
        await listener.close()
        await talker.close()


async def test_cancel_request_reaches_the_target(gw: Gateway) -> None:
    conn = await asyncpg.connect(gw.dsn)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # asyncpg answers its own timeout with a CancelRequest on a new connection, which
        # goes local listener → tunnel → central → the target, with the target's real key.
        with pytest.raises(TimeoutError):
            await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
        # Had the cancel not reached the target, this would wait for the sleep to end.
        assert await conn.fetchval("SELECT 1") == 1
        assert loop.time() - started < 10
    finally:
        await conn.close()


async def test_psycopg_simple_extended_and_pipeline(gw: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        cur = await conn.execute("SELECT name FROM items WHERE id = %s", (7,))
        assert await cur.fetchone() == ("item 7",)
        async with conn.pipeline():
            c1 = await conn.execute("SELECT count(*) FROM items")
            c2 = await conn.execute("INSERT INTO items VALUES (%s, %s)", (300, "piped"))
            c3 = await conn.execute("SELECT name FROM items WHERE id = %s", (300,))
        assert await c1.fetchone() == (100,)
        assert c2.rowcount == 1
        assert await c3.fetchone() == ("piped",)
        async with conn.cursor() as cur:
            async with cur.copy("COPY items (id, name) FROM STDIN") as copy:
                await copy.write_row((400, "psycopg copy"))
            assert cur.rowcount == 1
    recorded = await statements(gw)
    assert any(s["params"] == '["300", "piped"]' and s["rows"] == 1 for s in recorded)


async def test_multi_statement_simple_query_and_errors_are_recorded(gw: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        await conn.execute(b"SELECT 1; SELECT 2")  # a simple query with two statements
        with pytest.raises(psycopg.errors.UndefinedTable):
            await conn.execute("SELECT * FROM no_such_table")
        cur = await conn.execute("SELECT 42")  # the session stays usable
        assert await cur.fetchone() == (42,)
    recorded = await statements(gw)
    failed = next(s for s in recorded if "no_such_table" in str(s["sql"]))
    assert failed["outcome"] == "error" and str(failed["error"]).startswith("42P01")


# -- recorded results: what the user saw, whatever format the client asked for ----------------

KINDS = (
    "CREATE TABLE kinds (id int PRIMARY KEY, flag bool, big int8, ratio float8,"
    " price numeric(10, 2), name varchar(20), code char(3), raw bytea, uid uuid, born date,"
    " at timestamptz, span interval, doc jsonb, tags text[], addr inet, empty text);"
    "INSERT INTO kinds VALUES (1, true, 9007199254740993, 0.1, 12.5, 'Ada', 'ab', '\\x00ff',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1815-12-10', '2024-05-01 12:30:00.25+02',"
    " '1 day -02:00:00', '{\"b\": [1, 2.50], \"a\": null}', '{x,\"y z\",NULL}',"
    " '10.0.0.1/24', NULL)"
)
KIND_COLUMNS = "id flag big ratio price name code raw uid born at span doc tags addr empty".split()
# psql's text for the row (the server's own output, TimeZone UTC).
KIND_TEXT = [
    "1",
    "t",
    "9007199254740993",
    "0.1",
    "12.50",
    "Ada",
    "ab ",
    "\\x00ff",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "1815-12-10",
    "2024-05-01 10:30:00.25+00",
    "1 day -02:00:00",
    '{"a": null, "b": [1, 2.50]}',
    '{x,"y z",NULL}',
    "10.0.0.1/24",
    None,
]


async def test_results_in_binary_are_recorded_by_column_name_as_psql_shows_them(
    gw: Gateway, target: str
) -> None:
    direct = await asyncpg.connect(target)
    await direct.execute(KINDS)
    await direct.close()
    # asyncpg: Describe of the statement once, then Bind/Execute with every result column in
    # binary (no RowDescription at execution); then a second statement the same way.
    conn = await asyncpg.connect(gw.dsn)
    try:
        stmt = await conn.prepare("SELECT * FROM kinds WHERE id = $1")
        assert (await stmt.fetchrow(1))["name"] == "Ada"
        assert (await stmt.fetchrow(1))["tags"] == ["x", "y z", None]
        await conn.fetch("SELECT * FROM kinds WHERE id >= $1", 1)
    finally:
        await conn.close()
    # psycopg, prepared on the server: binary and text results (Describe of the portal).
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as pconn:
        await pconn.execute("SET TimeZone = 'UTC'")  # for its text results
        for binary in (True, False):
            cur = await pconn.execute(
                "SELECT * FROM kinds WHERE id = %s", (1,), prepare=True, binary=binary
            )
            assert (await cur.fetchone() or ())[5] == "Ada"
    await gw.central.recorder.flush()
    results = []
    for session in await gw.central.store.list_sessions(user=None, limit=10):
        found = await gw.central.store.session_with_statements(session.id)
        assert found is not None
        results += [
            (s.sql, s.params, json.loads(s.result) if s.result else None)
            for s in found[1]
            if "FROM kinds" in s.sql
        ]
    assert len(results) == 5, results
    for sql, params, result in results:
        assert sql in ("SELECT * FROM kinds WHERE id = $1", "SELECT * FROM kinds WHERE id >= $1")
        assert json.loads(params or "null") == ["1"]
        assert result == {"columns": KIND_COLUMNS, "rows": [KIND_TEXT], "more": False}


# -- refusals and failures ----------------------------------------------------------------------


async def raw_session(gw: Gateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-driven client: start-up and local secret, then whatever bytes a test wants."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(encode(startup_message({"user": gw.user, "database": gw.database})))
    await reader.readexactly(9)  # AuthenticationCleartextPassword
    writer.write(encode(PasswordMessage(gw.secret.encode() + b"\0")))
    await read_until_ready(reader)
    return reader, writer


async def read_until_ready(reader: asyncio.StreamReader) -> list[object]:
    frames = FrameReader()
    seen: list[object] = []
    while True:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            return seen
        frames.receive_data(data)
        for frame in frames.frames():
            seen.append(decode_backend(frame))
            if isinstance(seen[-1], ReadyForQuery):
                return seen


async def test_the_target_cannot_speak_as_watchgate(gw: Gateway) -> None:
    """A database function can RAISE any text; what claims to be Watchgate's (clients trust
    those: the desktop app reads masked columns and held statements from them) is marked as
    the database's. Other notices and errors pass unchanged."""
    notices: list[str] = []
    conn = await asyncpg.connect(gw.dsn)
    conn.add_log_listener(lambda _c, m: notices.append(m.message))
    try:
        await conn.execute(
            "DO $$ BEGIN RAISE NOTICE 'Watchgate: masked columns'; RAISE NOTICE 'plain'; END $$"
        )
        with pytest.raises(asyncpg.PostgresError) as raised:
            await conn.execute("DO $$ BEGIN RAISE EXCEPTION 'watchgate: held for review'; END $$")
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
    assert notices == ["(from the database) Watchgate: masked columns", "plain"]
    assert str(raised.value) == "(from the database) watchgate: held for review"


async def test_function_call_is_refused_and_the_session_stays_usable(gw: Gateway) -> None:
    reader, writer = await raw_session(gw)
    try:
        # pg_sleep's OID with one argument: never reaches the target.
        writer.write(encode(FunctionCall(struct.pack("!IHH", 2626, 0, 0) + struct.pack("!h", 0))))
        replies = await read_until_ready(reader)
        assert isinstance(replies[0], ErrorResponse)
        assert replies[0].code == "0A000" and "fast-path function call" in replies[0].message
        assert isinstance(replies[-1], ReadyForQuery)
    finally:
        writer.close()
    async with await psycopg.AsyncConnection.connect(gw.dsn) as conn:
        assert await (await conn.execute("SELECT 1")).fetchone() == (1,)


async def test_malformed_bytes_end_only_that_session(gw: Gateway) -> None:
    bystander = await asyncpg.connect(gw.dsn)
    reader, writer = await raw_session(gw)
    try:
        writer.write(b"Q\x00\x00\x00\x02")  # a length below the minimum of 4
        replies = await read_until_ready(reader)
        assert isinstance(replies[0], ErrorResponse)
        assert replies[0].code == "08P01" and "protocol error" in replies[0].message
        assert await reader.read() == b""  # the session is closed
        assert await bystander.fetchval("SELECT 2") == 2  # and nobody else noticed
    finally:
        writer.close()
        await bystander.close()


async def test_wrong_local_secret_is_refused(gw: Gateway) -> None:
    bad = gw.dsn.replace(gw.secret, "guessed")
    with pytest.raises(asyncpg.InvalidPasswordError, match="use the secret printed"):
        await asyncpg.connect(bad)


async def test_target_down_names_the_resource(tmp_path: Path) -> None:
    async with gateway(tmp_path, "postgresql://postgres@127.0.0.1:1/nothing") as gw:
        with pytest.raises(asyncpg.PostgresError) as info:
            await asyncpg.connect(gw.dsn)
        assert "db: cannot connect to 127.0.0.1:1" in str(info.value)


async def test_token_expiry_ends_the_session(tmp_path: Path, target: str) -> None:
    async with gateway(tmp_path, target, token_ttl=2) as gw:
        conn = await asyncpg.connect(gw.dsn)
        await asyncio.sleep(3)
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await conn.fetchval("SELECT 1")
        await conn.close()
        await gw.central.recorder.flush()
        rows = await gw.central.store.list_sessions(user=None, limit=1)
        assert rows[0].end_reason == "access token expired"


# -- pieces -------------------------------------------------------------------------------------


def test_rows_from_tag() -> None:
    assert rows_from_tag("SELECT 5") == 5
    assert rows_from_tag("INSERT 0 3") == 3
    assert rows_from_tag("COPY 10") == 10
    assert rows_from_tag("CREATE TABLE") is None
    assert rows_from_tag("BEGIN") is None


def test_render_params() -> None:
    assert render_params((b"abc", None, b"\x00\x01"), (0, 0, 1)) == ["abc", None, "\\x0001"]
    assert render_params((b"\x00\x00\x00\x65", b"\x01"), (1,), (23, 16)) == ["101", "t"]
    assert render_params((b"x" * 5000,), ()) == ["x" * 1024 + "…[3976 more]"]
