"""Real clients pass through the gateway unchanged: psql, pgbench and node-postgres.

Each client is the real binary, run as a subprocess against `gw.dsn` (the local listener of an
in-process central, see `tests/support/gateway.py`). Subprocesses are awaited with asyncio so
that central keeps serving them. A missing binary or npm package fails the test with the
command that provisions it; nothing here is skipped.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.clients import Psql, client_env, pgbench_binary, psql_binary, run
from tests.support.gateway import Gateway, gateway
from tests.support.pgtemp import temporary_database

REPO = Path(__file__).resolve().parents[4]
NODE_CLIENTS = REPO / "tests" / "node_clients"


# -- fixtures and recording helpers ---------------------------------------------------------------


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with temporary_database("wg_clients") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g"
        )
        await conn.close()
        yield url


@pytest.fixture
async def gw(tmp_path: Path, target: str) -> AsyncIterator[Gateway]:
    async with gateway(tmp_path / "central", target) as running:
        yield running


@pytest.fixture
def psql(gw: Gateway, tmp_path: Path) -> Psql:
    return Psql(gw, tmp_path / "home")


@dataclass(frozen=True)
class Recorded:
    session: str
    sql: str
    params: list[str | None] | None
    protocol: str
    outcome: str
    rows: int | None
    error: str | None


async def recorded(gw: Gateway) -> list[Recorded]:
    """Every statement of every recorded session, oldest session first, once flushed."""
    await gw.central.recorder.flush()
    store = gw.central.store
    out: list[Recorded] = []
    for session in reversed(await store.list_sessions(user=None, limit=1000)):
        found = await store.session_with_statements(session.id)
        assert found is not None
        out += [
            Recorded(
                session.id,
                s.sql,
                json.loads(s.params) if s.params else None,
                s.protocol,
                s.outcome,
                s.rows,
                s.error,
            )
            for s in found[1]
        ]
    return out


# -- psql ---------------------------------------------------------------------------------------


async def test_psql_runs_queries_given_with_c(psql: Psql, gw: Gateway) -> None:
    result = await psql(
        "-At",
        "-c",
        "SELECT count(*) FROM items",
        "-c",
        "SELECT name FROM items WHERE id = 7",
        "-c",
        "SELECT current_database()",
    )
    assert result.check("psql -c").stdout.splitlines() == ["100", "item 7", gw.database]
    sqls = [r.sql for r in await recorded(gw)]
    assert "SELECT count(*) FROM items" in sqls
    assert "SELECT name FROM items WHERE id = 7" in sqls


async def test_the_first_rows_of_each_result_are_recorded_as_sent(psql: Psql, gw: Gateway) -> None:
    script = "SELECT id, name FROM items ORDER BY id;\nSELECT 1 AS one, NULL AS nothing;\n"
    (await psql("-At", stdin=script)).check("psql")
    await gw.central.recorder.flush()
    store = gw.central.store
    session = (await store.list_sessions(user=None, limit=1))[0]
    found = await store.session_with_statements(session.id)
    assert found is not None
    results = {s.sql.strip(): json.loads(s.result) for s in found[1] if s.result}
    items = results["SELECT id, name FROM items ORDER BY id;"]
    assert items["columns"] == ["id", "name"]
    assert items["rows"] == [[str(i), f"item {i}"] for i in range(1, 21)]  # SAMPLE_ROWS
    assert items["more"] is True  # 100 rows were sent; 20 are kept
    assert results["SELECT 1 AS one, NULL AS nothing;"] == {
        "columns": ["one", "nothing"],
        "rows": [["1", None]],
        "more": False,
    }


async def test_psql_describe_lists_tables_and_describes_one(psql: Psql, gw: Gateway) -> None:
    listing = (await psql("-c", r"\d")).check(r"psql \d").stdout
    assert re.search(r"public\s*\|\s*items\s*\|\s*table\s*\|", listing), listing
    described = (await psql("-c", r"\d items")).check(r"psql \d items").stdout
    assert 'Table "public.items"' in described
    assert re.search(r"id\s*\|\s*integer\s*\|\s*\|\s*not null", described), described
    assert re.search(r"name\s*\|\s*text\s*\|\s*\|\s*not null", described), described
    assert '"items_pkey" PRIMARY KEY, btree (id)' in described
    # The catalog queries psql runs behind \d went through the gateway and were recorded.
    catalog = [r for r in await recorded(gw) if "pg_catalog.pg_class" in r.sql]
    assert len(catalog) >= 3
    assert all(r.outcome == "ok" for r in catalog)
    assert any("c.relname OPERATOR(pg_catalog.~) '^(items)$'" in r.sql for r in catalog)


async def test_psql_copy_to_and_from_a_file_round_trips(
    psql: Psql, gw: Gateway, target: str, tmp_path: Path
) -> None:
    async def target_rows() -> list[tuple[object, ...]]:
        conn = await asyncpg.connect(target)  # the target itself, not through the gateway
        try:
            return [tuple(r) for r in await conn.fetch("SELECT id, name FROM items ORDER BY id")]
        finally:
            await conn.close()

    original = await target_rows()
    dump = tmp_path / "items.tsv"
    out = await psql("-c", f"\\copy items to '{dump}'")
    assert out.check(r"psql \copy to").stdout.strip() == "COPY 100"
    lines = dump.read_text().splitlines()
    assert len(lines) == 100 and lines[6] == "7\titem 7"

    loaded = await psql("-c", "DELETE FROM items", "-c", f"\\copy items from '{dump}'")
    assert loaded.check(r"psql \copy from").stdout.splitlines() == ["DELETE 100", "COPY 100"]
    assert await target_rows() == original

    copies = [r for r in await recorded(gw) if r.sql.upper().startswith("COPY")]
    assert [(r.sql, r.rows, r.outcome) for r in copies] == [
        ("COPY  items TO STDOUT ", 100, "ok"),
        ("COPY  items FROM STDIN ", 100, "ok"),
    ]


async def test_psql_watch_reruns_the_query_until_interrupted(psql: Psql, gw: Gateway) -> None:
    # psql 15's \watch has no iteration count: let it run, then interrupt it like a user would.
    proc = await asyncio.create_subprocess_exec(
        psql.binary,
        "-X",
        "-d",
        gw.dsn,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=psql.env,
    )
    assert proc.stdin is not None
    # On standard input, as typed: \watch re-runs the query buffer (not possible with -c).
    proc.stdin.write(b"SELECT count(*) AS watched_items FROM items \\watch 0.2\n")
    await proc.stdin.drain()
    proc.stdin.close()  # after the interrupt psql reads end of input and exits
    try:
        await asyncio.sleep(2.0)
        assert proc.returncode is None, "psql ended before it was interrupted"
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stdout = out.decode()
    blocks = stdout.count("(every 0.2s)")
    assert blocks >= 4, f"{blocks} result blocks:\n{stdout}\n{err.decode()}"
    assert stdout.count(" watched_items ") == blocks
    assert stdout.count("   100\n") >= blocks
    assert proc.returncode == 0, err.decode()  # an interrupted \watch is a normal end
    runs = [r for r in await recorded(gw) if "watched_items" in r.sql]
    done = [r for r in runs if r.outcome == "ok"]
    # One recorded execution per printed block; an interrupt that lands while the query
    # runs makes psql cancel it, which leaves at most one execution that failed.
    assert len(done) >= blocks
    assert all(r.sql == "SELECT count(*) AS watched_items FROM items " for r in runs)
    assert all(r.rows == 1 for r in done)
    assert len(runs) - len(done) <= 1


async def test_psql_on_error_stop_script_gets_the_targets_error(
    psql: Psql, gw: Gateway, tmp_path: Path
) -> None:
    script = tmp_path / "script.sql"
    script.write_text(
        "\\set ON_ERROR_STOP on\n"
        "SELECT 'before' AS step;\n"
        "SELECT * FROM no_such_table;\n"
        "SELECT 'not reached' AS step;\n"
    )
    result = await psql("-At", "-f", str(script))
    assert result.code == 3, result  # psql: a script stopped by ON_ERROR_STOP
    assert result.stdout.splitlines() == ["before"]
    assert 'ERROR:  relation "no_such_table" does not exist' in result.stderr
    assert "LINE 1: SELECT * FROM no_such_table;" in result.stderr
    statements = await recorded(gw)
    failed = next(r for r in statements if "no_such_table" in r.sql)
    assert failed.outcome == "error" and failed.error is not None
    assert failed.error.startswith('42P01 relation "no_such_table" does not exist')
    assert not any("not reached" in r.sql for r in statements)


# -- pgbench ------------------------------------------------------------------------------------


def pgbench_env(gw: Gateway, home: Path) -> tuple[list[str], dict[str, str]]:
    """Connection options for pgbench through the gateway: host/port/user/db, the local
    secret in PGPASSWORD (the other way clients take a password)."""
    opts = ["-h", "127.0.0.1", "-p", str(gw.port), "-U", gw.user]
    return opts, client_env(home, {"PGPASSWORD": gw.secret})


def tps_of(output: str) -> float:
    found = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)$", output, re.M)
    assert found, output
    return float(found.group(1))


async def test_pgbench_initializes_through_the_gateway(gw: Gateway, tmp_path: Path) -> None:
    opts, env = pgbench_env(gw, tmp_path / "home")
    init = await run(pgbench_binary(), "-i", "-s", "1", *opts, gw.database, env=env)
    init.check("pgbench -i")
    assert "done in" in init.stderr  # pgbench reports its init steps on stderr
    statements = await recorded(gw)
    assert all(r.outcome == "ok" for r in statements), [r for r in statements if r.error]
    sqls = [r.sql for r in statements]
    # dtgvp: drop, create tables, client-side generate (COPY FROM STDIN), vacuum, primary keys.
    assert any(s.startswith("drop table if exists pgbench_accounts") for s in sqls)
    assert any(s.startswith("create table pgbench_accounts") for s in sqls)
    copy = next(r for r in statements if r.sql.startswith("copy pgbench_accounts"))
    assert "from stdin" in copy.sql and copy.rows == 100_000
    assert any(s.startswith("vacuum analyze pgbench_accounts") for s in sqls)
    assert any(s.startswith("alter table pgbench_accounts add primary key") for s in sqls)
    check = await run(
        psql_binary(),
        "-X",
        "-At",
        "-d",
        gw.dsn,
        "-c",
        "SELECT count(*) FROM pgbench_accounts",
        env=client_env(tmp_path / "home"),
    )
    assert check.check("psql").stdout.strip() == "100000"


@pytest.mark.parametrize("mode", ["simple", "prepared", "extended"])
async def test_pgbench_select_only_run_through_the_gateway(
    gw: Gateway, target: str, tmp_path: Path, mode: str
) -> None:
    binary = pgbench_binary()
    home = tmp_path / "home"
    # Load the tables directly (loading through the gateway is the test above).
    parts = urlsplit(target)
    direct = ["-h", parts.hostname or "", "-p", str(parts.port or 5432)]
    direct += ["-U", parts.username or "postgres"]
    (await run(binary, "-i", "-s", "1", "-q", *direct, gw.database, env=client_env(home))).check(
        "pgbench -i (direct)"
    )

    opts, env = pgbench_env(gw, home)
    bench = await run(
        binary, "-S", "-c", "4", "-j", "2", "-T", "3", "-M", mode, *opts, gw.database, env=env
    )
    bench.check(f"pgbench -S -M {mode}")
    tps = tps_of(bench.stdout)
    print(f"pgbench -S -c 4 -j 2 -T 3 -M {mode} through the gateway: tps = {tps:.0f}")
    assert tps > 0
    assert f"query mode: {mode}" in bench.stdout
    assert "number of failed transactions: 0 (0.000%)" in bench.stdout
    found = re.search(r"number of transactions actually processed: (\d+)", bench.stdout)
    assert found, bench.stdout
    processed = int(found.group(1))
    assert processed > 0

    selects = [r for r in await recorded(gw) if "FROM pgbench_accounts WHERE aid" in r.sql]
    assert all(r.outcome == "ok" and r.rows == 1 for r in selects)
    # Every transaction pgbench counted was recorded; at most one per client was still in
    # flight when the run ended.
    assert processed <= len(selects) <= processed + 4
    assert len({r.session for r in selects}) == 4
    if mode == "simple":
        assert all(r.protocol == "simple" and r.params is None for r in selects)
        assert re.fullmatch(
            r"SELECT abalance FROM pgbench_accounts WHERE aid = \d+;", selects[0].sql
        )
    else:
        assert all(r.protocol == "extended" for r in selects)
        assert all(
            r.sql == "SELECT abalance FROM pgbench_accounts WHERE aid = $1;" for r in selects
        )
        assert all(r.params and r.params[0] and r.params[0].isdigit() for r in selects)


# -- a driver outside Python: node-postgres -----------------------------------------------------


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "Node.js is required for the node-postgres client: install nodejs and npm, then run "
            "`npm ci --prefix tests/node_clients` from the repository root",
            pytrace=False,
        )
    if not (NODE_CLIENTS / "node_modules" / "pg" / "package.json").is_file():
        pytest.fail(
            f"{NODE_CLIENTS / 'node_modules'} is missing: run "
            "`npm ci --prefix tests/node_clients` from the repository root",
            pytrace=False,
        )
    return node


async def test_node_postgres_parameterized_simple_and_transaction(
    gw: Gateway, tmp_path: Path
) -> None:
    result = await run(
        node_binary(),
        str(NODE_CLIENTS / "query.mjs"),
        gw.dsn,
        env=client_env(tmp_path / "home"),
        cwd=NODE_CLIENTS,
    )
    out = json.loads(result.check("node query.mjs").stdout)
    assert out["parameterized"] == [
        {"id": 2, "name": "item 2"},
        {"id": 3, "name": "item 3"},
        {"id": 5, "name": "item 5"},
    ]
    assert out["simple"] == [[{"n": 100}], [{"second": "two"}]]
    assert out["transaction"] == {
        "inserted": [{"id": 9001, "name": "from node"}],
        "inside": 1,
        "after_rollback": 0,
    }
    assert re.match(r"\d+\.\d+", out["server_version"])

    statements = await recorded(gw)
    by_sql = {r.sql: r for r in statements}
    param = by_sql["SELECT id, name FROM items WHERE id = ANY($1::int[]) ORDER BY id"]
    assert param.protocol == "extended" and param.params == ['{"2","3","5"}'] and param.rows == 3
    simple = by_sql["SELECT count(*)::int AS n FROM items; SELECT 'two' AS second"]
    assert simple.protocol == "simple" and simple.params is None and simple.outcome == "ok"
    insert = by_sql["INSERT INTO items (id, name) VALUES ($1, $2) RETURNING id, name"]
    assert insert.params == ["9001", "from node"] and insert.rows == 1
    assert [r.sql for r in statements if r.sql in ("BEGIN", "ROLLBACK")] == ["BEGIN", "ROLLBACK"]


async def test_record_rows_zero_keeps_no_result(tmp_path: Path, target: str) -> None:
    async with gateway(tmp_path / "central", target, server={"record_rows": 0}) as gw:
        (await Psql(gw, tmp_path / "home")("-At", "-c", "SELECT id FROM items")).check("psql")
        await gw.central.recorder.flush()
        store = gw.central.store
        session = (await store.list_sessions(user=None, limit=1))[0]
        found = await store.session_with_statements(session.id)
    assert found is not None
    [statement] = [s for s in found[1] if s.sql == "SELECT id FROM items"]
    assert statement.rows == 100 and statement.result is None
