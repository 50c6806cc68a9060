"""Inline masking on the PostgreSQL path, through real clients and the real target.

The bypass suite is written as an analyst who wants the raw values out: every attempt runs in
real psql through the gateway, and the test searches psql's raw output (stdout and stderr) for
the real values. Each attempt must either return rows with the values masked, or be refused
by Watchgate with a message saying why; an attempt that fails for any other reason (a typo in
the attack) fails the test, so a refusal can never be mistaken for a pass.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from tests.support.clients import Psql, client_binary, client_env, run
from tests.support.gateway import Gateway, gateway
from tests.support.pgtemp import temporary_database

CUSTOMERS = [
    # id, name, email, ssn, card, phone, notes
    (
        1,
        "Ada",
        "ada.lovelace@example.com",
        "123-45-6789",
        "4242424242424242",
        "+1 415 555 0134",
        "prefers email",
    ),
    (
        2,
        "Brian",
        "brian.kernighan@bell.example",
        "987-65-4320",
        "5555555555554444",
        "+44 20 7946 0958",
        "call after 5",
    ),
    (
        3,
        "Grace",
        "grace.hopper@navy.example",
        "078-05-1120",
        "4000056655665556",
        "+1 202 555 0199",
        "vip",
    ),
]
# What must never appear in a masked client's output: the SSNs and cards whole and as bare
# digits, the local parts of the emails (partial style keeps the domain), the phone digits.
SECRETS = [
    *(c[3] for c in CUSTOMERS),
    *(c[3].replace("-", "") for c in CUSTOMERS),
    *(c[4] for c in CUSTOMERS),
    *(c[2].split("@")[0] for c in CUSTOMERS),
    *(c[2].split("@")[0].upper() for c in CUSTOMERS),
    "4155550134",
    "555 0134",
    "7946 0958",
    "79460958",
    "2025550199",
]

RULES = [
    {
        "name": "pii",
        "resources": ["db"],
        "action": "mask",
        "columns": ["customers.ssn", "*.card"],
        "style": "full",
    },
    {
        "name": "contact",
        "resources": ["db"],
        "action": "mask",
        "columns": ["public.customers.email"],
        "style": "partial",
    },
    {
        "name": "phones",
        "resources": ["db"],
        "action": "mask",
        "columns": ["customers.phone"],
        "style": "hash",
    },
    {
        "name": "content",
        "resources": ["db"],
        "action": "mask",
        "detectors": ["email", "credit_card", "ssn", "phone", "iban", "ip", "secret"],
        "style": "full",
    },
]


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with temporary_database("wg_mask") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text,"
            " card varchar(19), phone text, notes text);"
            "CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric,"
            " note text);"
            "CREATE TABLE scratch (id serial, v text);"
            "CREATE VIEW customer_contacts AS SELECT id, name AS who, email AS mail, ssn AS tax"
            " FROM customers;"
            "CREATE VIEW contacts_again AS SELECT who, tax AS t FROM customer_contacts;"
            "CREATE SEQUENCE counter;"
            "CREATE FUNCTION leak_ssn(i int) RETURNS text LANGUAGE sql AS"
            " 'SELECT ssn FROM customers WHERE id = i';"
        )
        await conn.executemany(
            "INSERT INTO customers VALUES ($1, $2, $3, $4, $5, $6, $7)", CUSTOMERS
        )
        await conn.execute(
            "INSERT INTO orders VALUES (1, 1, 10.5, 'first'), (2, 3, 99, 'second');"
            "ANALYZE customers"
        )
        await conn.close()
        yield url


@pytest.fixture
async def gw(tmp_path: Path, target: str) -> AsyncIterator[Gateway]:
    async with gateway(tmp_path / "central", target, rules=RULES) as running:
        yield running


@pytest.fixture
def psql(gw: Gateway, tmp_path: Path) -> Psql:
    return Psql(gw, tmp_path / "home")


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


# -- the bypass suite ---------------------------------------------------------------------------

# Each returns rows, all masked.
MASKED = [
    "SELECT * FROM customers",
    "TABLE customers",
    "SELECT c.* FROM customers c",
    "SELECT ssn, email, phone, card FROM customers",
    "SELECT ssn AS s, email AS e FROM customers",
    "SELECT upper(email), lower(ssn), initcap(email) FROM customers",
    "SELECT concat(name, ':', ssn), name || '/' || email FROM customers",
    "SELECT substr(ssn, 1, 3), substring(card from 1 for 8), right(ssn, 4) FROM customers",
    "SELECT left(email, strpos(email, '@') - 1) FROM customers",
    "SELECT ssn::varchar, CAST(card AS text), ssn::bytea, card::numeric FROM customers",
    "SELECT translate(ssn, '0123456789', 'abcdefghij') FROM customers",
    "SELECT regexp_replace(ssn, '-', '', 'g'), replace(card, '4', 'x') FROM customers",
    "SELECT encode(convert_to(ssn, 'UTF8'), 'base64'), encode(ssn::bytea, 'hex') FROM customers",
    "SELECT reverse(ssn), md5(ssn) FROM customers",
    "SELECT s FROM (SELECT ssn AS s FROM customers) sub",
    "SELECT x FROM (SELECT s AS x FROM (SELECT ssn AS s FROM customers) a) b",
    "WITH c AS (SELECT ssn FROM customers) SELECT * FROM c",
    "WITH a AS (SELECT email AS m FROM customers), b AS (SELECT m AS n FROM a) SELECT n FROM b",
    "SELECT 'none' UNION ALL SELECT ssn FROM customers",
    "SELECT name FROM customers UNION SELECT card FROM customers",
    "SELECT * FROM customer_contacts",
    "SELECT t FROM contacts_again",
    "SELECT c FROM customers c",
    "SELECT customers FROM customers",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT to_jsonb(c) ->> 'ssn' FROM customers c",
    "SELECT to_json(c)::text FROM customers c",
    "SELECT c::text FROM customers c",
    "SELECT (c).ssn FROM customers c",
    "SELECT (c).* FROM customers c",
    "SELECT json_agg(c) FROM customers c",
    "SELECT jsonb_agg(c.*) FROM customers c",
    "SELECT string_agg(ssn, ',') FROM customers",
    "SELECT array_agg(email) FROM customers",
    "SELECT array_to_string(array_agg(card), ';') FROM customers",
    "SELECT json_agg(ssn) FROM customers",
    "SELECT json_build_object('s', ssn) FROM customers",
    "SELECT format('%s %s', ssn, card) FROM customers",
    "SELECT row(ssn, card)::text FROM customers",
    "SELECT ARRAY[ssn, card] FROM customers",
    "SELECT ARRAY(SELECT ssn FROM customers)",
    "SELECT (SELECT ssn FROM customers ORDER BY id LIMIT 1)",
    "SELECT (SELECT c2.ssn FROM customers c2 WHERE c2.id = c.id) FROM customers c",
    "SELECT CASE WHEN id > 0 THEN ssn END FROM customers",
    "SELECT coalesce(NULL, ssn), greatest(ssn, '0'), nullif(card, 'x') FROM customers",
    "SELECT lag(ssn) OVER (ORDER BY id), first_value(card) OVER () FROM customers",
    "SELECT u FROM customers, LATERAL unnest(ARRAY[ssn, card]) u",
    "SELECT * FROM customers, LATERAL (SELECT ssn AS s2) l",
    "SELECT v FROM customers c JOIN LATERAL (VALUES (c.ssn)) t(v) ON true",
    "SELECT x.* FROM customers c, jsonb_each_text(to_jsonb(c)) x",
    "SELECT xmlelement(name x, ssn)::text FROM customers",
    'SELECT ssn COLLATE "C" FROM customers',
    "SELECT ssn FROM customers WHERE ssn LIKE '%'",
    "SELECT o.id, c.card FROM orders o JOIN customers c ON c.id = o.customer_id",
    "SELECT * FROM orders NATURAL JOIN (SELECT id, ssn FROM customers) c",
    "SELECT 1; SELECT ssn FROM customers; SELECT 2",
    "SELECT leak_ssn(1)",
    "SELECT most_common_vals::text, histogram_bounds::text FROM pg_stats"
    " WHERE tablename = 'customers'",
    "EXPLAIN (VERBOSE, COSTS OFF) SELECT ssn FROM customers WHERE ssn > ''",
    'SELECT "ssn", "public"."customers"."card" FROM "public"."customers"',
    "SELECT x4 FROM customers AS c(x1, x2, x3, x4)",
    "SELECT d FROM (SELECT * FROM customers) AS t(a, b, c, d)",
    "SELECT t.ssn FROM (TABLE customers) t",
    "WITH RECURSIVE r AS (SELECT ssn FROM customers UNION SELECT ssn FROM r) SELECT * FROM r",
    "SELECT jsonb_path_query(to_jsonb(c), '$.ssn') FROM customers c",
    "SELECT (SELECT array_agg(ssn) FROM customers)[1]",
    "VALUES ((SELECT card FROM customers LIMIT 1))",
    "SELECT r.ssn FROM customers c, json_to_record(row_to_json(c)) AS r(ssn text)",
    "SELECT (json_populate_record(null::customers, row_to_json(c))).ssn FROM customers c",
    "SELECT min(ssn), max(card) FROM customers",
    "SELECT split_part(ssn, '-', 1) || split_part(ssn, '-', 3) FROM customers",
    "SELECT query_to_xml('SELECT ssn FROM customers', true, false, '')",
    "SELECT table_to_xml('customers', true, false, '')",
]


@pytest.mark.parametrize("attempt", MASKED)
async def test_bypass_attempt_returns_only_masked_data(psql: Psql, attempt: str) -> None:
    result = await psql("-A", "-c", attempt)
    output = result.stdout + result.stderr
    assert leaks(output) == [], output
    result.check(attempt)
    assert "row" in result.stdout  # rows came back: masked, not refused


# Each is refused by Watchgate, with the reason.
REFUSED = [
    "CREATE TEMP TABLE loot AS SELECT ssn FROM customers",
    "SELECT ssn INTO TEMP loot FROM customers",
    "INSERT INTO scratch (v) SELECT ssn FROM customers",
    "INSERT INTO orders VALUES (9, 1, 1, (SELECT card FROM customers LIMIT 1))",
    "UPDATE orders SET note = (SELECT ssn FROM customers WHERE id = 1)",
    "WITH x AS (INSERT INTO scratch (v) SELECT email FROM customers RETURNING v) SELECT 1",
    "SELECT set_config('wg.loot', ssn, false) FROM customers",
    "SELECT pg_notify('loot', ssn) FROM customers",
    "SELECT setval('counter', ascii(substr(ssn, 1, 1))) FROM customers",
    "ALTER TABLE customers RENAME COLUMN ssn TO tax_id",
    "ALTER TABLE customers RENAME TO people",
    "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM customers'",
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$",
    "COPY customers TO STDOUT (FORMAT binary)",
    "COPY (SELECT ssn FROM customers) TO '/tmp/wg-loot'",
]


@pytest.mark.parametrize("attempt", REFUSED)
async def test_bypass_attempt_is_refused_with_a_reason(psql: Psql, attempt: str) -> None:
    result = await psql("-A", "-c", attempt)
    output = result.stdout + result.stderr
    assert leaks(output) == [], output
    assert result.code != 0 and "Watchgate:" in result.stderr, output


async def test_copy_to_stdout_masks_rows_in_text_and_csv(psql: Psql) -> None:
    for copy, shown in (
        ("COPY customers TO STDOUT", "1\tAda\t****@example.com\t****\t****\th:"),
        (
            "COPY customers (id, ssn, email) TO STDOUT WITH (FORMAT csv, HEADER)",
            "id,ssn,email\n1,****,****@example.com\n",
        ),
        ("COPY (SELECT name, card FROM customers) TO STDOUT CSV", "Ada,****\nBrian,****\n"),
        ("\\copy customers to stdout", "1\tAda\t****@example.com\t****\t****\th:"),
    ):
        result = (await psql("-c", copy)).check(copy)
        assert leaks(result.stdout) == [], result.stdout
        assert shown in result.stdout, result.stdout


async def test_cursors_and_prepared_statements_are_masked(psql: Psql) -> None:
    script = (
        "BEGIN;\n"
        "DECLARE cur CURSOR FOR SELECT name, ssn FROM customers ORDER BY id;\n"
        "FETCH 2 FROM cur;\n"
        "FETCH ALL FROM cur;\n"
        "COMMIT;\n"
        "PREPARE p(int) AS SELECT card, email FROM customers WHERE id > $1;\n"
        "EXECUTE p(0);\n"
    )
    result = (await psql("-v", "ON_ERROR_STOP=1", stdin=script)).check("script")
    assert leaks(result.stdout + result.stderr) == [], result.stdout
    assert result.stdout.count("****") >= 6 and "Ada" in result.stdout


async def test_protocol_level_statements_portals_and_cursors_are_masked(gw: Gateway) -> None:
    # asyncpg: Parse + Describe once, then Bind/Execute without a RowDescription; a cursor
    # reads a portal two rows at a time (PortalSuspended between).
    conn = await asyncpg.connect(gw.dsn)
    try:
        stmt = await conn.prepare("SELECT name, ssn, card FROM customers WHERE id >= $1")
        first = await stmt.fetch(1)
        again = await stmt.fetch(2)
        async with conn.transaction():
            cursor = await conn.cursor("SELECT ssn, email FROM customers ORDER BY id")
            chunks = [await cursor.fetch(2), await cursor.fetch(2)]
    finally:
        await conn.close()
    assert [tuple(r) for r in first] == [
        ("Ada", "****", "****"),
        ("Brian", "****", "****"),
        ("Grace", "****", "****"),
    ]
    assert len(again) == 2
    assert [tuple(r) for c in chunks for r in c] == [
        ("****", "****@example.com"),
        ("****", "****@bell.example"),
        ("****", "****@navy.example"),
    ]
    # psycopg: server-side cursors (DECLARE/FETCH) and prepared statements, text and binary.
    async with await psycopg.AsyncConnection.connect(gw.dsn) as pconn:
        async with pconn.cursor(name="walk") as named:
            await named.execute("SELECT id, ssn FROM customers ORDER BY id")
            walked = await named.fetchall()
        for binary in (False, True):
            cur = await pconn.execute(
                "SELECT ssn, card FROM customers WHERE id = %s", (2,), prepare=True, binary=binary
            )
            assert await cur.fetchall() == [("****", "****")]
    assert walked == [(1, "****"), (2, "****"), (3, "****")]


async def test_a_view_created_in_the_session_is_followed(psql: Psql) -> None:
    script = (
        "BEGIN;\n"
        "CREATE TEMP VIEW mine AS SELECT name AS n, ssn AS harmless FROM customers;\n"
        "SELECT harmless FROM mine;\n"
        "ROLLBACK;\n"
    )
    result = (await psql("-v", "ON_ERROR_STOP=1", stdin=script)).check("script")
    assert leaks(result.stdout) == [] and "****" in result.stdout


async def test_returning_and_error_texts_are_masked(psql: Psql) -> None:
    returning = await psql("-A", "-c", "UPDATE customers SET name = name RETURNING ssn, email")
    assert leaks(returning.stdout) == [] and "****" in returning.check("returning").stdout
    cast = await psql("-c", "SELECT ssn::int FROM customers")
    assert cast.code != 0 and "invalid input syntax" in cast.stderr
    assert leaks(cast.stderr) == [], cast.stderr
    dup = await psql("-c", "INSERT INTO customers (id, ssn) SELECT 10, ssn FROM customers")
    assert dup.code != 0 and leaks(dup.stderr) == [], dup.stderr


# -- the styles, through drivers in both formats ------------------------------------------------


async def test_styles_reach_asyncpg_in_binary_format(gw: Gateway) -> None:
    conn = await asyncpg.connect(gw.dsn)
    try:
        rows = await conn.fetch(
            "SELECT id, name, ssn, email, phone, card, length(ssn) AS n FROM customers ORDER BY id"
        )
    finally:
        await conn.close()
    assert [r["name"] for r in rows] == ["Ada", "Brian", "Grace"]
    assert {r["ssn"] for r in rows} == {"****"}
    assert rows[0]["email"] == "****@example.com"  # partial keeps the domain
    assert {r["card"] for r in rows} == {"****"}
    assert rows[0]["n"] is None  # a masked value of a non-text type becomes NULL
    phones = [r["phone"] for r in rows]
    assert all(p.startswith("h:") for p in phones) and len(set(phones)) == 3


async def test_hash_tokens_join_and_group_across_queries(gw: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(gw.dsn, autocommit=True) as conn:
        first = await (await conn.execute("SELECT phone FROM customers ORDER BY id")).fetchall()
        again = await (
            await conn.execute("SELECT phone FROM customers ORDER BY id", prepare=True)
        ).fetchall()
        binary = await (
            await conn.execute("SELECT phone FROM customers ORDER BY id", binary=True)
        ).fetchall()
    assert first == again == binary
    assert all(str(p).startswith("h:") for (p,) in first)


async def test_unmasked_columns_and_other_tables_pass_unchanged(gw: Gateway) -> None:
    conn = await asyncpg.connect(gw.dsn)
    try:
        orders = await conn.fetch("SELECT id, customer_id, amount, note FROM orders ORDER BY id")
        names = await conn.fetch("SELECT id, name, notes FROM customers ORDER BY id")
    finally:
        await conn.close()
    assert [tuple(r) for r in orders] == [(1, 1, 10.5, "first"), (2, 3, 99, "second")]
    assert [r["notes"] for r in names] == ["prefers email", "call after 5", "vip"]


async def test_recordings_hold_what_the_client_saw_and_no_raw_value(
    gw: Gateway, psql: Psql
) -> None:
    await psql("-c", "SELECT ssn::int FROM customers")
    await psql("-c", "SELECT id, name, ssn, email FROM customers ORDER BY id")
    conn = await asyncpg.connect(gw.dsn)  # binary format, rows without a RowDescription
    try:
        stmt = await conn.prepare("SELECT card, phone FROM customers WHERE id = $1")
        await stmt.fetch(1)
    finally:
        await conn.close()
    await gw.central.recorder.flush()
    store = gw.central.store
    dumped, results = [], {}
    for session in await store.list_sessions(user=None, limit=100):
        found = await store.session_with_statements(session.id)
        assert found is not None
        dumped += [f"{s.sql} {s.params} {s.error} {s.result}" for s in found[1]]
        results |= {s.sql: json.loads(s.result) for s in found[1] if s.result}
    assert any("invalid input syntax" in d for d in dumped)
    assert leaks("\n".join(dumped)) == []
    shown = results["SELECT id, name, ssn, email FROM customers ORDER BY id"]
    assert shown["columns"] == ["id", "name", "ssn", "email"]
    assert shown["rows"][0] == ["1", "Ada", "****", "****@example.com"]
    binary = results["SELECT card, phone FROM customers WHERE id = $1"]
    assert binary["rows"][0][0] == "****" and binary["rows"][0][1].startswith("h:")


async def test_recorded_results_name_the_masked_columns_and_their_rules(
    gw: Gateway, psql: Psql, tmp_path: Path
) -> None:
    await psql("-c", "SELECT id, name, ssn, email FROM customers ORDER BY id")
    await psql("-c", "SELECT leak_ssn(1) AS x")  # lineage cannot see inside: detectors scan
    await psql("-c", "SELECT id, amount FROM orders")  # nothing masked
    conn = await asyncpg.connect(gw.dsn)  # described once, executed in binary
    try:
        await (await conn.prepare("SELECT id, card, phone FROM customers WHERE id = $1")).fetch(1)
    finally:
        await conn.close()
    # The desktop app gets a notice before each RowDescription with masked columns; the
    # recording still reads the RowDescription, in the simple and the extended protocol.
    desktop = Psql(gw, tmp_path / "desktop")
    desktop.env["PGAPPNAME"] = "watchgate-desktop 0.1"
    shown = (await desktop("-At", "-c", "SELECT id, ssn AS tax FROM customers")).check("psql")
    assert shown.stdout.splitlines() == ["1|****", "2|****", "3|****"]
    async with await psycopg.AsyncConnection.connect(
        gw.dsn, application_name="watchgate-desktop 0.1"
    ) as pconn:
        cur = await pconn.execute("SELECT ssn, notes FROM customers WHERE id = %s", (2,))
        assert await cur.fetchall() == [("****", "call after 5")]

    await gw.central.recorder.flush()
    results: dict[str, dict[str, Any]] = {}
    for session in await gw.central.store.list_sessions(user=None, limit=100):
        found = await gw.central.store.session_with_statements(session.id)
        assert found is not None
        results |= {s.sql: json.loads(s.result) for s in found[1] if s.result}
    assert results["SELECT id, name, ssn, email FROM customers ORDER BY id"] == {
        "columns": ["id", "name", "ssn", "email"],
        "rows": [
            ["1", "Ada", "****", "****@example.com"],
            ["2", "Brian", "****", "****@bell.example"],
            ["3", "Grace", "****", "****@navy.example"],
        ],
        "more": False,
        "masked": {"ssn": "pii", "email": "contact"},
    }
    assert results["SELECT leak_ssn(1) AS x"] == {
        "columns": ["x"],
        "rows": [["****"]],
        "more": False,
        "masked": {"x": "content"},
        "scanned": ["x"],
    }
    assert "masked" not in results["SELECT id, amount FROM orders"]
    prepared = results["SELECT id, card, phone FROM customers WHERE id = $1"]
    assert prepared["columns"] == ["id", "card", "phone"]
    assert prepared["masked"] == {"card": "pii", "phone": "phones"}
    [[ident, card, phone]] = prepared["rows"]
    assert (ident, card) == ("1", "****") and phone.startswith("h:")
    assert results["SELECT id, ssn AS tax FROM customers"]["masked"] == {"tax": "pii"}
    by_desktop = results["SELECT ssn, notes FROM customers WHERE id = $1"]
    assert by_desktop["rows"] == [["****", "call after 5"]]
    assert by_desktop["masked"] == {"ssn": "pii"}


async def test_a_failing_masker_withholds_the_result_and_says_so(
    gw: Gateway, psql: Psql, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        def cell(raw: bytes) -> bytes:
            raise RuntimeError("masker bug")

        return cell

    monkeypatch.setattr("central.protocols.postgres.masking.mask_cell", broken)
    result = await psql("-A", "-c", "SELECT name, ssn FROM customers")
    output = result.stdout + result.stderr
    assert result.code != 0 and leaks(output) == [], output
    assert "masking failed, the result was withheld" in result.stderr
    assert "Ada" not in result.stdout  # not even the unmasked columns of the row


async def test_column_rules_alone_hold_where_lineage_is_blind(tmp_path: Path, target: str) -> None:
    """No detectors and no strict rule: a value lineage cannot follow is still masked when the
    statement (or the cursor or prepared statement it reaches by name) names masked data."""
    only_columns = [r for r in RULES if "columns" in r]
    async with gateway(tmp_path / "central", target, rules=only_columns) as gw:
        psql = Psql(gw, tmp_path / "home")
        script = (
            "SELECT query_to_xml('SELECT ssn FROM customers', true, false, '');\n"
            "SELECT table_to_xml('customers', true, false, '');\n"
            "BEGIN;\n"
            "DECLARE c CURSOR FOR SELECT ssn FROM customers;\n"
            "SELECT cursor_to_xml('c', 10, true, false, '');\n"
            "COMMIT;\n"
        )
        result = (await psql("-A", "-v", "ON_ERROR_STOP=1", stdin=script)).check("script")
    # Each returned its row, masked whole: xml is not text-like, so the value is NULL.
    assert leaks(result.stdout + result.stderr) == [], result.stdout
    assert result.stdout.count("(1 row)") == 3


async def test_a_moved_search_path_cannot_swap_a_clean_name_for_masked_data(
    psql: Psql, target: str
) -> None:
    conn = await asyncpg.connect(target)
    try:  # the clean decoy, made by someone else
        await conn.execute("CREATE TABLE public.x (y text); INSERT INTO public.x VALUES ('plain')")
    finally:
        await conn.close()
    script = (
        "CREATE SCHEMA evil;\n"
        "CREATE VIEW evil.x AS SELECT ssn AS y FROM customers;\n"
        "SET search_path = evil, public;\n"
        "SELECT y FROM x;\n"
    )
    result = (await psql("-A", "-v", "ON_ERROR_STOP=1", stdin=script)).check("script")
    assert leaks(result.stdout) == [], result.stdout
    assert result.stdout.count("****") == 3


async def test_psql_meta_commands_work_on_a_masked_resource(psql: Psql) -> None:
    """Engineers must not notice masking where there is nothing to mask: psql's catalog
    queries (regex operators, pg_catalog functions, format_type, ...) pass unrefused."""
    for command, shown in (
        ("\\dt", "customers"),
        ("\\d customers", "ssn"),
        ("\\dv", "customer_contacts"),
        ("\\df leak_ssn", "leak_ssn"),
        ("\\l", "Name"),
        ("\\dn", "public"),
    ):
        result = (await psql("-c", command)).check(command)
        assert shown in result.stdout, (command, result.stdout)
        assert leaks(result.stdout) == []


async def test_pg_dump_of_a_masked_table_holds_masked_values(gw: Gateway, tmp_path: Path) -> None:
    result = await run(
        client_binary("pg_dump"),
        "--data-only",
        "--table=customers",
        "-d",
        gw.dsn,
        env=client_env(tmp_path / "home"),
    )
    result.check("pg_dump")
    assert "COPY public.customers" in result.stdout and "****" in result.stdout
    assert leaks(result.stdout) == [], result.stdout


async def test_a_notification_carrying_masked_data_is_scanned(psql: Psql, target: str) -> None:
    conn = await asyncpg.connect(target)
    try:  # an existing trigger, made by someone else, that announces orders with an email
        await conn.execute(
            "CREATE FUNCTION announce() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " PERFORM pg_notify('orders', (SELECT email FROM customers"
            " WHERE id = NEW.customer_id)); RETURN NEW; END $$;"
            "CREATE TRIGGER announce AFTER INSERT ON orders"
            " FOR EACH ROW EXECUTE FUNCTION announce()"
        )
    finally:
        await conn.close()
    script = "LISTEN orders;\nINSERT INTO orders VALUES (5, 1, 1, 'new');\n"
    result = (await psql("-v", "ON_ERROR_STOP=1", stdin=script)).check("script")
    assert 'Asynchronous notification "orders" with payload "****"' in result.stdout, result
    assert leaks(result.stdout) == []


async def test_the_desktop_app_is_told_which_columns_are_masked_and_by_which_rule(
    gw: Gateway,
) -> None:
    """A client that calls itself watchgate-desktop gets a notice naming the masked columns
    before their rows (the app marks those cells); other clients get nothing extra."""
    notices: list[Any] = []
    conn = await asyncpg.connect(
        gw.dsn, server_settings={"application_name": "watchgate-desktop 0.1"}
    )
    conn.add_log_listener(lambda _conn, message: notices.append(message))
    try:
        rows = await conn.fetch("SELECT id, name, email, ssn, notes FROM customers ORDER BY id")
        await conn.fetch("SELECT id, amount FROM orders")  # clean except the detectors' scan
    finally:
        await conn.close()
    assert rows[0]["ssn"] == "****"
    announced = [n for n in notices if n.message == "Watchgate: masked columns"]
    assert announced
    # notes and name come from clean columns (lineage proves it), so only two are named
    assert json.loads(announced[0].detail)["columns"] == [
        {"index": 2, "name": "email", "rule": "contact", "style": "partial", "action": "mask"},
        {"index": 3, "name": "ssn", "rule": "pii", "style": "full", "action": "mask"},
    ]
    assert len(announced) == 1  # orders: nothing masked, nothing said

    quiet: list[Any] = []
    conn = await asyncpg.connect(gw.dsn)
    conn.add_log_listener(lambda _conn, message: quiet.append(message))
    try:
        await conn.fetch("SELECT email, ssn FROM customers")
    finally:
        await conn.close()
    assert quiet == []
