"""QueryRunner through the real path: a local-proxy child -> central -> PostgreSQL.

alice signs in through the browser and connects `db` with a ProxyController; the runner is an
asyncpg client of the printed URI. Central blocks DROP and holds DELETE for review (carol, of
dba-leads, decides through the API). Central masks customers.ssn and .email for the masked
test and names them in its "Watchgate: masked columns" notice; the parser of that notice is
also fuzzed on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.services.account import Account
from app.services.proxies import ProxyController
from app.services.query import (
    APPLICATION_NAME,
    Blocked,
    Cancelled,
    Column,
    ColumnMask,
    Completed,
    Denied,
    Failed,
    MaskNoticeError,
    Notice,
    QueryRunner,
    Row,
    held_request_id,
    parse_masked_columns,
    rule_of,
)
from localproxy.api import CentralClient
from localproxy.tokens import TokenStore
from tests.app.services.conftest import MemoryKeyring, eventually, mint, person
from tests.support.central import Running, running_central
from tests.support.gateway import resource_for
from tests.support.pgtemp import temporary_database

ROLES = [
    {
        "name": "db-users",
        "groups": ["analysts"],
        "resources": ["db"],
        "access": "direct",
        "reviewers": ["dba-leads"],
    }
]
RULES = [
    {"resources": ["db"], "action": "block", "statements": ["drop"]},
    {"name": "deletes-reviewed", "resources": ["db"], "action": "review", "statements": ["delete"]},
]


@dataclass
class Calls:
    """What a run handed its callbacks, in order."""

    order: list[str] = field(default_factory=list)
    columns: list[list[Column]] = field(default_factory=list)
    batches: list[list[Row]] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def on_columns(self, columns: list[Column]) -> None:
        self.order.append("columns")
        self.columns.append(columns)

    def on_rows(self, rows: list[Row]) -> None:
        self.order.append("rows")
        self.batches.append(rows)

    def on_notice(self, notice: Notice) -> None:
        self.order.append("notice")
        self.notices.append(notice)


async def run(runner: QueryRunner, sql: str) -> tuple[Any, Calls]:
    calls = Calls()
    outcome = await runner.run(sql, calls.on_columns, calls.on_rows, calls.on_notice)
    return outcome, calls


@dataclass
class Setup:
    running: Running
    target: str  # the database itself, for looking behind central's back
    runner: QueryRunner


@contextlib.asynccontextmanager
async def connected(
    tmp_path: Path, schema: str, rules: list[dict[str, Any]]
) -> AsyncIterator[Setup]:
    """alice signed in, `db` (a throw-away database made with `schema`) connected through a
    local-proxy child, and a runner on it."""
    async with temporary_database("wg_app_query") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(schema)
        await conn.close()
        async with running_central(
            tmp_path / "central", resources=[resource_for(url)], roles=ROLES, rules=rules
        ) as running:
            account = Account(
                running.url, TokenStore(MemoryKeyring()), open_browser=person("alice")
            )
            await account.sign_in()
            controller = ProxyController(account)
            async with account.client() as api:
                [resource] = await api.resources()
            connection = await controller.connect(resource)
            runner = QueryRunner(connection, batch_size=1000)
            try:
                yield Setup(running, url, runner)
            finally:
                await runner.aclose()
                await controller.aclose()
                await account.aclose()


@pytest.fixture
async def setup(tmp_path: Path, profile: Path) -> AsyncIterator[Setup]:
    async with connected(
        tmp_path,
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g",
        RULES,
    ) as found:
        yield found


async def target_fetchval(setup: Setup, sql: str) -> Any:
    conn = await asyncpg.connect(setup.target)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


# -- streaming ---------------------------------------------------------------------------------


async def test_100k_rows_arrive_in_batches_after_the_columns(setup: Setup) -> None:
    outcome, calls = await run(
        setup.runner, "SELECT g AS n, 'row ' || g AS label FROM generate_series(1, 100000) g"
    )

    assert outcome == Completed(100000, None, outcome.elapsed)
    assert calls.columns == [[Column("n", "int4"), Column("label", "text")]]
    assert calls.order == ["columns"] + ["rows"] * 100
    assert [len(batch) for batch in calls.batches] == [1000] * 100
    assert calls.batches[0][0] == (1, "row 1")
    assert calls.batches[-1][-1] == (100000, "row 100000")
    assert calls.notices == []


async def test_a_short_result_is_one_batch_and_an_empty_one_has_columns_only(
    setup: Setup,
) -> None:
    outcome, calls = await run(setup.runner, "SELECT id, name FROM items ORDER BY id")
    assert isinstance(outcome, Completed) and outcome.rows == 10
    assert [len(b) for b in calls.batches] == [10]

    outcome, calls = await run(setup.runner, "SELECT id FROM items WHERE id > 100")
    assert isinstance(outcome, Completed) and outcome.rows == 0
    assert calls.columns == [[Column("id", "int4")]]
    assert calls.batches == []


async def test_a_statement_without_rows_reports_its_command_tag(setup: Setup) -> None:
    outcome, calls = await run(setup.runner, "INSERT INTO items VALUES (11, 'item 11')")

    assert isinstance(outcome, Completed)
    assert (outcome.rows, outcome.status) == (0, "INSERT 0 1")
    assert calls.order == []
    assert await target_fetchval(setup, "SELECT name FROM items WHERE id = 11") == "item 11"


async def test_a_script_of_several_statements_runs_whole(setup: Setup) -> None:
    outcome, _ = await run(
        setup.runner,
        "INSERT INTO items VALUES (12, 'a'); UPDATE items SET name = 'b' WHERE id = 12",
    )

    assert isinstance(outcome, Completed) and outcome.status == "UPDATE 1"
    assert await target_fetchval(setup, "SELECT name FROM items WHERE id = 12") == "b"


async def test_the_databases_own_error_is_failed_and_the_session_goes_on(setup: Setup) -> None:
    outcome, _ = await run(setup.runner, "SELECT * FROM no_such_table")

    assert isinstance(outcome, Failed)
    assert outcome.sqlstate == "42P01"
    assert "no_such_table" in outcome.message
    outcome, calls = await run(setup.runner, "SELECT 1 AS one")
    assert isinstance(outcome, Completed) and calls.batches == [[(1,)]]


async def test_the_runner_names_itself_to_the_database(setup: Setup) -> None:
    outcome, calls = await run(setup.runner, "SELECT current_setting('application_name')")

    assert isinstance(outcome, Completed)
    assert calls.batches == [[(APPLICATION_NAME,)]]


# -- cancel ------------------------------------------------------------------------------------


async def test_cancel_stops_a_running_statement_in_the_database(setup: Setup) -> None:
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"
    task = asyncio.ensure_future(run(setup.runner, "SELECT pg_sleep(60)"))
    for _ in range(200):
        if await target_fetchval(setup, sleeping + " AND state = 'active'") == 1:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the statement never started")
    assert setup.runner.running

    setup.runner.cancel()
    outcome, calls = await asyncio.wait_for(task, 10)

    assert isinstance(outcome, Cancelled)
    assert outcome.elapsed < 10
    assert not setup.runner.running
    assert await target_fetchval(setup, sleeping + " AND state = 'active'") == 0
    outcome, calls = await run(setup.runner, "SELECT 2 AS two")  # the session goes on
    assert isinstance(outcome, Completed) and calls.batches == [[(2,)]]


async def test_cancel_between_batches_keeps_what_was_delivered(setup: Setup) -> None:
    calls = Calls()

    def on_rows(rows: list[Row]) -> None:
        calls.on_rows(rows)
        if len(calls.batches) == 3:
            setup.runner.cancel()

    outcome = await setup.runner.run(
        "SELECT g FROM generate_series(1, 100000) g", calls.on_columns, on_rows, calls.on_notice
    )

    assert outcome == Cancelled(3000, outcome.elapsed)
    assert len(calls.batches) == 3
    outcome, _ = await run(setup.runner, "SELECT count(*) FROM items")
    assert isinstance(outcome, Completed)


async def test_cancel_when_nothing_runs_does_nothing(setup: Setup) -> None:
    setup.runner.cancel()
    outcome, _ = await run(setup.runner, "SELECT 1")
    assert isinstance(outcome, Completed)


# -- central's decisions -----------------------------------------------------------------------


async def test_a_blocked_statement_is_blocked_with_the_rules_message(setup: Setup) -> None:
    outcome, calls = await run(setup.runner, "DROP TABLE items")

    assert isinstance(outcome, Blocked)
    assert outcome.kind == "blocked"
    assert outcome.message.startswith("Watchgate: ")
    assert "blocked by rule rules[0]" in outcome.message
    assert outcome.rule == "rules[0]"
    assert calls.order == []
    assert await target_fetchval(setup, "SELECT count(*) FROM items") == 10  # still there
    outcome, _ = await run(setup.runner, "SELECT 1")
    assert isinstance(outcome, Completed)  # the session stays usable


async def decide(setup: Setup, calls: Calls, approve: bool) -> str:
    """Wait for the held notice and have carol decide the request it names."""
    await eventually(lambda: any(n.request_id for n in calls.notices), "the held notice")
    [held] = [n for n in calls.notices if n.request_id]
    assert held.request_id is not None
    async with CentralClient(setup.running.url, mint(setup.running, "carol")) as api:
        item = await api.approval(held.request_id)
        assert item.kind == "command" and item.statement == "DELETE FROM items WHERE id = 1"
        if approve:
            await api.approve(held.request_id, "go ahead")
        else:
            await api.deny(held.request_id, "not today")
    return held.request_id


async def test_a_held_statement_runs_once_approved(setup: Setup) -> None:
    calls = Calls()
    task = asyncio.ensure_future(
        setup.runner.run(
            "DELETE FROM items WHERE id = 1", calls.on_columns, calls.on_rows, calls.on_notice
        )
    )
    request_id = await decide(setup, calls, approve=True)
    outcome = await asyncio.wait_for(task, 15)

    assert outcome == Completed(0, "DELETE 1", outcome.elapsed, request_id)
    assert calls.notices[0].message.startswith("Watchgate: this statement is held for review")
    assert await target_fetchval(setup, "SELECT count(*) FROM items") == 9


async def test_a_held_statement_that_is_denied_is_denied(setup: Setup) -> None:
    calls = Calls()
    task = asyncio.ensure_future(
        setup.runner.run(
            "DELETE FROM items WHERE id = 1", calls.on_columns, calls.on_rows, calls.on_notice
        )
    )
    request_id = await decide(setup, calls, approve=False)
    outcome = await asyncio.wait_for(task, 15)

    assert isinstance(outcome, Denied)
    assert outcome.request_id == request_id
    assert "denied by carol" in outcome.message and "not today" in outcome.message
    assert await target_fetchval(setup, "SELECT count(*) FROM items") == 10


# -- masked columns ----------------------------------------------------------------------------

MASK_RULES = [
    {"name": "pii", "resources": ["db"], "action": "mask", "columns": ["customers.ssn"]},
    {
        "name": "contact",
        "resources": ["db"],
        "action": "mask",
        "columns": ["customers.email"],
        "style": "partial",
    },
]


async def test_central_masks_cells_and_the_runner_marks_their_columns(
    tmp_path: Path, profile: Path
) -> None:
    """The whole path: central masks ssn and email and, the runner being watchgate-desktop,
    names them with their rules before the rows; the marks reach on_columns, and every batch
    of a result larger than one batch comes masked."""
    schema = (
        "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, ssn text);"
        "INSERT INTO customers SELECT g, 'name ' || g, 'person' || g || '@example.com',"
        " lpad(g::text, 3, '0') || '-45-6789' FROM generate_series(1, 2500) g"
    )
    async with connected(tmp_path, schema, MASK_RULES) as setup:
        outcome, calls = await run(
            setup.runner, "SELECT id, name, email, ssn FROM customers ORDER BY id"
        )
        _, plain = await run(setup.runner, "SELECT id, name FROM customers WHERE id = 1")

    assert isinstance(outcome, Completed) and outcome.rows == 2500
    assert calls.columns == [
        [
            Column("id", "int4"),
            Column("name", "text"),
            Column("email", "text", ColumnMask("contact", "partial", "mask")),
            Column("ssn", "text", ColumnMask("pii", "full", "mask")),
        ]
    ]
    assert [len(b) for b in calls.batches] == [1000, 1000, 500]
    rows = [row for batch in calls.batches for row in batch]
    assert rows[0][:2] == (1, "name 1")
    assert all(row[3] != f"{row[0]:03d}-45-6789" and "6789" not in row[3] for row in rows)
    assert all(row[2].endswith("@example.com") and "person" not in row[2] for row in rows)
    assert calls.notices == []  # the masks came as marks, not as a notice to show
    assert plain.columns == [[Column("id", "int4"), Column("name", "text")]]


MASKED_DETAIL = json.dumps(
    {
        "columns": [
            {"index": 1, "name": "email", "rule": "pii", "style": "partial", "action": "mask"},
            {"index": 2, "name": "ssn", "rule": "rules[3]", "style": "full", "action": "scan"},
        ]
    }
)


async def test_the_masked_columns_notice_marks_the_columns() -> None:
    """PostgreSQL itself raises the notice central will send (same message, same detail),
    during the statement and before the rows, as central does: the runner must attach it
    to the columns it announces, and not pass it on as an ordinary notice."""
    async with temporary_database("wg_app_mask") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            f"""
            CREATE FUNCTION people() RETURNS TABLE(id int, email text, ssn text)
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE NOTICE 'Watchgate: masked columns' USING DETAIL = '{MASKED_DETAIL}';
                RETURN QUERY SELECT 1, 'a***@example.com', '***';
            END $$
            """
        )
        await conn.close()
        runner = QueryRunner(url)
        try:
            outcome, calls = await run(runner, "SELECT * FROM people()")
            again, plain = await run(runner, "SELECT 1 AS id, 'x' AS email")
        finally:
            await runner.aclose()

    assert isinstance(outcome, Completed) and outcome.rows == 1
    assert calls.columns == [
        [
            Column("id", "int4"),
            Column("email", "text", ColumnMask("pii", "partial")),
            Column("ssn", "text", ColumnMask("rules[3]", "full", "scan")),
        ]
    ]
    assert calls.notices == []
    # The next statement starts unmasked.
    assert isinstance(again, Completed)
    assert plain.columns == [[Column("id", "int4"), Column("email", "text")]]


def test_parse_masked_columns_reads_the_documented_detail() -> None:
    assert parse_masked_columns("Watchgate: masked columns", MASKED_DETAIL) == {
        1: ColumnMask("pii", "partial"),
        2: ColumnMask("rules[3]", "full", "scan"),
    }
    assert parse_masked_columns("Watchgate: masked columns", '{"columns": []}') == {}
    # Without "action" (the first form of the notice) a column counts as masked.
    assert parse_masked_columns(
        "Watchgate: masked columns", '{"columns": [{"index": 0, "rule": "r", "style": "s"}]}'
    ) == {0: ColumnMask("r", "s", "mask")}


def test_other_notices_are_not_masked_columns() -> None:
    assert parse_masked_columns("Watchgate: this statement is held", MASKED_DETAIL) is None
    assert parse_masked_columns("masked columns", MASKED_DETAIL) is None
    assert parse_masked_columns("Watchgate: masked columns ", MASKED_DETAIL) is None


@pytest.mark.parametrize(
    "detail",
    [
        None,
        "",
        "not json",
        "[]",
        '{"columns": {}}',
        '{"columns": [1]}',
        '{"columns": [{"index": -1, "rule": "r", "style": "s"}]}',
        '{"columns": [{"index": true, "rule": "r", "style": "s"}]}',
        '{"columns": [{"index": 1.0, "rule": "r", "style": "s"}]}',
        '{"columns": [{"index": 0, "style": "s"}]}',
        '{"columns": [{"index": 0, "rule": "r", "style": 3}]}',
        '{"columns": [{"index": 0, "rule": "r", "style": "s", "name": 7}]}',
        '{"columns": [{"index": 0, "rule": "r", "style": "s", "action": null}]}',
        '{"columns": [{"index": 0, "rule": "r", "style": "s"}, '
        '{"index": 0, "rule": "r", "style": "s"}]}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_a_malformed_masked_columns_detail_is_refused(detail: str | None) -> None:
    with pytest.raises(MaskNoticeError):
        parse_masked_columns("Watchgate: masked columns", detail)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.text())
def test_any_text_detail_is_parsed_or_refused(detail: str) -> None:
    try:
        masks = parse_masked_columns("Watchgate: masked columns", detail)
    except MaskNoticeError:
        return
    assert isinstance(masks, dict)


@given(
    st.one_of(
        _json,
        st.fixed_dictionaries({"columns": st.lists(_json, max_size=5)}),
        st.fixed_dictionaries(
            {
                "columns": st.lists(
                    st.fixed_dictionaries(
                        {"index": _json, "rule": _json, "style": _json},
                        optional={"name": _json, "action": _json},
                    ),
                    max_size=5,
                )
            }
        ),
    )
)
def test_any_json_detail_is_parsed_or_refused(data: object) -> None:
    try:
        masks = parse_masked_columns("Watchgate: masked columns", json.dumps(data))
    except MaskNoticeError:
        return
    assert masks is not None
    for index, mask in masks.items():
        assert isinstance(index, int) and index >= 0
        assert isinstance(mask.rule, str) and isinstance(mask.style, str)
        assert isinstance(mask.action, str)


# -- central's messages ------------------------------------------------------------------------


def test_the_held_notice_names_its_request() -> None:
    text = (
        "Watchgate: this statement is held for review (statement kind 'delete' needs approval "
        "under rule r); request 0b7e9d2a-3c41-4f7e-9a55-1d2c3b4a5f60. A reviewer approves it "
        "with `watchgate approve 0b7e9d2a-3c41-4f7e-9a55-1d2c3b4a5f60`; it runs once when "
        "approved."
    )
    assert held_request_id(text) == "0b7e9d2a-3c41-4f7e-9a55-1d2c3b4a5f60"
    assert held_request_id("Watchgate: statement kind 'drop table' is blocked by rule r") is None


@pytest.mark.parametrize(
    ("message", "rule"),
    [
        ("Watchgate: statement kind 'drop table' is blocked by rule rules[0]", "rules[0]"),
        ("Watchgate: function pg_read_file is blocked by rule no-files", "no-files"),
        ("Watchgate: statement 2 of 2: statement kind 'drop' is blocked by rule x", "x"),
        ("Watchgate: masking refused the statement", None),
    ],
)
def test_rule_of_a_refusal(message: str, rule: str | None) -> None:
    assert rule_of(message) == rule
