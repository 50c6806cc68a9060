"""Policy on the PostgreSQL path, with real clients and the real target: block and review on
both protocols, the approval flow with two users, and an evasion suite that checks on the
target that nothing forbidden happened."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from localproxy.api import CentralClient, CentralError
from tests.support.gateway import Gateway, gateway, resource_for
from tests.support.pgtemp import temporary_database

RULES = [
    {
        "name": "no-destructive-ddl",
        "resources": ["db"],
        "action": "block",
        "statements": ["drop", "truncate", "alter role"],
    },
    {
        "name": "no-file-access",
        "resources": ["db"],
        "action": "block",
        "functions": ["pg_read_file", "lo_export", "dblink_exec", "pg_ls_dir"],
    },
    {
        "name": "deletes-need-review",
        "resources": ["db"],
        "action": "review",
        "statements": ["delete", "update"],
    },
]
ROLES = [
    {
        "name": "analyst",
        "groups": ["analysts"],
        "resources": ["db"],
        "access": "direct",
        "reviewers": ["dba-leads"],
    },
    {
        "name": "dba",
        "groups": ["dba-leads"],
        "resources": ["db"],
        "access": "direct",
        "reviewers": ["admins"],
    },
]


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with temporary_database("wg_enf") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g"
        )
        await conn.close()
        yield url


@pytest.fixture
async def gw(tmp_path: Path, target: str) -> AsyncIterator[Gateway]:
    async with gateway(
        tmp_path,
        target,
        resources=[resource_for(target)],
        roles=ROLES,
        rules=RULES,
        server={"review_timeout": 20},
    ) as running:
        yield running


async def items(target: str) -> int:
    """Straight at the target, not through the gateway: what really happened."""
    conn = await asyncpg.connect(target)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM items"))
    finally:
        await conn.close()


async def table_exists(target: str) -> bool:
    conn = await asyncpg.connect(target)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('items') IS NOT NULL"))
    finally:
        await conn.close()


# -- block ----------------------------------------------------------------------------------


async def test_block_on_the_simple_protocol_names_the_rule_and_keeps_the_session(
    gw: Gateway, target: str
) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as info:
            await conn.execute(b"DROP TABLE items")
        assert "no-destructive-ddl" in str(info.value)
        cur = await conn.execute(b"SELECT count(*) FROM items")
        assert await cur.fetchone() == (10,)
    assert await table_exists(target)


async def test_block_on_the_extended_protocol(gw: Gateway, target: str) -> None:
    conn = await asyncpg.connect(gw.dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="no-file-access"):
            await conn.fetch("SELECT pg_read_file($1)", "/etc/passwd")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="no-destructive-ddl"):
            await conn.fetch("TRUNCATE items")
        assert await conn.fetchval("SELECT count(*) FROM items WHERE id > $1", 5) == 5
    finally:
        await conn.close()
    assert await items(target) == 10


async def test_a_blocked_statement_in_a_transaction_keeps_the_transaction_state(
    gw: Gateway, target: str
) -> None:
    # The statement never reached the server, so the server's transaction is still good;
    # the client is told exactly that (status T), and COMMIT commits the work before.
    async with await psycopg.AsyncConnection.connect(gw.dsn) as conn:
        await conn.execute("INSERT INTO items VALUES (11, 'kept')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("DROP TABLE items")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await conn.commit()
    assert await items(target) == 11


async def test_block_inside_a_pipeline_keeps_the_order_of_answers(gw: Gateway, target: str) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with conn.pipeline():
                first = await conn.execute("SELECT count(*) FROM items WHERE id < %s", (4,))
                await conn.execute("DROP TABLE items")
        assert await first.fetchone() == (3,)
        cur = await conn.execute("SELECT 1")
        assert await cur.fetchone() == (1,)
    assert await table_exists(target)


async def test_blocked_statements_are_recorded_with_the_rule(gw: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(b"DROP TABLE items")
    await gw.central.recorder.flush()
    session = (await gw.central.store.list_sessions(user=None, limit=1))[0]
    found = await gw.central.store.session_with_statements(session.id)
    assert found is not None
    blocked = [s for s in found[1] if s.sql == "DROP TABLE items"]
    assert [(s.decision, s.rule, s.outcome) for s in blocked] == [
        ("block", "no-destructive-ddl", "refused")
    ]


# -- the insider's evasion suite --------------------------------------------------------------

EVASIONS = [
    "/* harmless */ DROP /* really */ TABLE items",
    "dRoP\tTaBlE\n\fitems",
    "SELECT 1; DROP TABLE items",
    "SELECT 1;\nDROP TABLE items; SELECT 2",
    'DROP TABLE "items"',
    'DROP TABLE U&"\\0069tems"',
    "DO $$ BEGIN EXECUTE 'DROP TABLE items'; END $$",
    "DO $body$ BEGIN EXECUTE 'TRUNC' || 'ATE items'; END $body$",
    "WITH gone AS (DELETE FROM items RETURNING *) SELECT count(*) FROM gone",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM items WHERE name = pg_catalog.pg_read_file('/etc/hostname')",
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT (SELECT pg_ls_dir('.') LIMIT 1)",
    "PREPARE sneaky AS DELETE FROM items",
    "COPY items TO PROGRAM 'id > /tmp/wg-pwned'",
    "CREATE FUNCTION boom() RETURNS void LANGUAGE sql AS $$ DELETE FROM items $$",
    "EXPLAIN ANALYZE DELETE FROM items",
    "TRUNCATE items",
    "ALTER ROLE postgres PASSWORD 'x'",
    "ALTER USER postgres PASSWORD 'x'",
    "SET ROLE postgres",
]


@pytest.mark.parametrize("attempt", EVASIONS)
async def test_evasion_attempt_is_refused_and_does_not_happen(
    tmp_path: Path, target: str, attempt: str
) -> None:
    # Review off for this suite (timeout 1 s, nobody approves): every attempt must be refused.
    async with gateway(
        tmp_path,
        target,
        resources=[resource_for(target)],
        roles=ROLES,
        rules=RULES,
        server={"review_timeout": 1},
    ) as gw:
        async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(attempt.encode(), prepare=False)  # simple protocol
            if ";" not in attempt:  # the extended protocol carries one statement per Parse
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    await conn.execute(attempt.encode(), prepare=True)
            cur = await conn.execute(b"SELECT 1")  # the session is still usable
            assert await cur.fetchone() == (1,)
    assert await table_exists(target)
    assert await items(target) == 10


async def test_prepared_statement_execute_is_judged_by_what_it_runs(
    gw: Gateway, target: str
) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        await conn.execute(b"PREPARE harmless AS SELECT count(*) FROM items")
        cur = await conn.execute(b"EXECUTE harmless")
        assert await cur.fetchone() == (10,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(b"EXECUTE never_prepared")  # unknown text: fail closed


# -- review ---------------------------------------------------------------------------------


async def run_held(gw: Gateway, sql: str) -> tuple[asyncio.Task[Any], asyncio.Queue[str]]:
    """Run `sql` as alice on a fresh connection in the background; notices go to the queue."""
    notices: asyncio.Queue[str] = asyncio.Queue()

    async def go() -> Any:
        conn = await asyncpg.connect(gw.dsn)
        conn.add_log_listener(lambda c, msg: notices.put_nowait(str(msg)))
        try:
            return await conn.execute(sql)
        finally:
            await conn.close()

    return asyncio.ensure_future(go()), notices


async def request_id(notices: asyncio.Queue[str]) -> str:
    notice = await asyncio.wait_for(notices.get(), 10)
    assert "held for review" in notice and "deletes-need-review" in notice
    return notice.split("request ")[1].split(".")[0]


async def test_review_approved_by_another_user_runs_the_statement_once(
    gw: Gateway, target: str
) -> None:
    task, notices = await run_held(gw, "DELETE FROM items WHERE id = 1")
    rid = await request_id(notices)
    assert await items(target) == 10  # held: nothing ran yet
    async with CentralClient(gw.url, gw.token("carol")) as carol:
        inbox = await carol.approvals()
        held = next(i for i in inbox if i.id == rid)
        assert held.statement == "DELETE FROM items WHERE id = 1"  # type: ignore[union-attr]
        assert held.requester == "alice"
        await carol.approve(rid, "looks fine")
    assert await asyncio.wait_for(task, 10) == "DELETE 1"
    assert await items(target) == 9
    # The approval was for that one execution: the same text is held again.
    again, notices = await run_held(gw, "DELETE FROM items WHERE id = 1")
    second = await request_id(notices)
    assert second != rid
    async with CentralClient(gw.url, gw.token("carol")) as carol:
        await carol.deny(second, "once is enough")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="denied by carol: once is enough"):
        await asyncio.wait_for(again, 10)


async def test_nobody_approves_their_own_statement(gw: Gateway, target: str) -> None:
    async with gateway(
        gw.central.config.path.parent / "carol",
        target,
        user="carol",
        resources=[resource_for(target)],
        roles=ROLES,
        rules=RULES,
        server={"review_timeout": 2},
    ) as carol_gw:
        task, notices = await run_held(carol_gw, "UPDATE items SET name = 'x'")
        rid = await request_id(notices)
        async with CentralClient(carol_gw.url, carol_gw.token("carol")) as carol:
            with pytest.raises(CentralError, match="own"):
                await carol.approve(rid, "mine")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="not decided in time"):
            await asyncio.wait_for(task, 15)
    assert await items(target) == 10


async def test_blocks_are_in_the_audit_log(gw: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute(b"TRUNCATE items")
    await gw.central.audit.drain()
    lines = (gw.central.config.data_dir / "audit.jsonl").read_text().splitlines()
    blocked = [json.loads(line) for line in lines if '"statement.blocked"' in line]
    assert [(b["user"], b["rule"], b["statement"]) for b in blocked] == [
        ("alice", "no-destructive-ddl", "TRUNCATE items")
    ]


# -- fail closed must not mean unusable -------------------------------------------------------


async def test_real_clients_pass_without_friction_under_the_policy(gw: Gateway) -> None:
    """psql's catalog queries, asyncpg's type introspection, psycopg's and pgbench's start-up
    and workload: nothing of it is blocked or held by a policy with block and review rules."""
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    for command in (
        r"\d",
        r"\d items",
        r"\dt",
        r"\l",
        r"\du",
        "SHOW server_version",
        "BEGIN; SELECT 1; COMMIT",
        "SET application_name = 'x'; SELECT 1",
    ):
        proc = await asyncio.create_subprocess_exec(
            "psql",
            gw.dsn,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            command,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, (command, err.decode())
        assert b"Watchgate" not in err
    conn = await asyncpg.connect(gw.dsn)
    try:
        # A json column makes asyncpg run its type introspection query through the gateway.
        assert await conn.fetchval("SELECT '{\"a\": 1}'::jsonb -> 'a'") == "1"
        assert await conn.fetchval("SELECT $1::int[]", [1, 2]) == [1, 2]
    finally:
        await conn.close()
    async with await psycopg.AsyncConnection.connect(gw.dsn) as pconn:
        cur = await pconn.execute("SELECT name FROM items WHERE id = %s", (3,))
        assert await cur.fetchone() == ("item 3",)
    bench = await asyncio.create_subprocess_exec(
        "pgbench",
        "-n",
        "-c",
        "2",
        "-T",
        "2",
        "-f",
        "-",
        gw.dsn,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    script = b"\\set id random(1, 10)\nSELECT name FROM items WHERE id = :id;\n"
    out, err = await asyncio.wait_for(bench.communicate(script), 60)
    assert bench.returncode == 0, err.decode()
    assert b"number of transactions actually processed" in out, out.decode()
    await gw.central.recorder.flush()
    sessions = await gw.central.store.list_sessions(user=None, limit=50)
    decisions = set()
    for session in sessions:
        found = await gw.central.store.session_with_statements(session.id)
        assert found is not None
        decisions |= {(s.decision, s.outcome) for s in found[1]}
    assert decisions <= {("forward", "ok")}, decisions


async def test_review_on_the_extended_protocol(gw: Gateway, target: str) -> None:
    notices: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(gw.dsn)
    conn.add_log_listener(lambda c, msg: notices.put_nowait(str(msg)))
    try:
        task = asyncio.ensure_future(conn.execute("DELETE FROM items WHERE id = $1", 2))
        rid = await request_id(notices)
        assert await items(target) == 10
        async with CentralClient(gw.url, gw.token("carol")) as carol:
            await carol.approve(rid)
        assert await asyncio.wait_for(task, 10) == "DELETE 1"
        assert await items(target) == 9
        # The approval covered that execution: asyncpg reuses its prepared statement for the
        # same text, and that second execution is refused.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="one execution"):
            await conn.execute("DELETE FROM items WHERE id = $1", 3)
        assert await conn.fetchval("SELECT count(*) FROM items") == 9  # still usable
    finally:
        await conn.close()
    assert await items(target) == 9
