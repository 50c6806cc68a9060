"""Column lineage: exact origins for each construct, and no way to get ssn out as "clean"."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.masking.catalog import Catalog, Relation
from central.masking.lineage import (
    Analysis,
    Call,
    ColumnOrigin,
    Write,
    analyze,
)
from central.masking.rows import CopyFormat

CUSTOMER_COLUMNS = ("id", "name", "email", "ssn", "card", "phone", "notes")
FUNCTIONS = {
    "upper": "i",
    "lower": "i",
    "substr": "i",
    "concat": "s",
    "row_to_json": "s",
    "to_jsonb": "s",
    "json_agg": "i",
    "jsonb_agg": "i",
    "string_agg": "i",
    "array_agg": "i",
    "count": "i",
    "max": "i",
    "min": "i",
    "sum": "i",
    "coalesce": "i",
    "set_config": "v",
    "pg_notify": "v",
    "setval": "v",
    "nextval": "v",
    "now": "s",
    "md5": "i",
    "encode": "i",
    "unnest": "i",
    "generate_series": "i",
    "jsonb_each": "i",
    "lag": "i",
    "row_number": "i",
    "format": "s",
    "length": "i",
    "reverse": "i",
    "hstore": "i",
    "to_json": "s",
    "lo_from_bytea": "v",
    "dblink": "v",
    "query_to_xml": "v",
    "jsonb_build_object": "s",
    "array_to_string": "s",
    "regexp_replace": "i",
    "translate": "i",
}


def _rel(
    schema: str, name: str, columns: tuple[str, ...], kind: str = "r", body: str | None = None
):
    return (schema, name), Relation(schema, name, kind, tuple((c, 25) for c in columns), body)


RELATIONS = dict(
    [
        _rel("public", "customers", CUSTOMER_COLUMNS),
        _rel("public", "orders", ("id", "customer_id", "amount", "shipping_email")),
        _rel(
            "public",
            "v_customers",
            ("id", "e", "s"),
            "v",
            " SELECT customers.id,\n    customers.email AS e,\n    upper(customers.ssn) AS s\n"
            "   FROM customers\n  WHERE customers.phone IS NOT NULL;",
        ),
        _rel(
            "public",
            "v_nested",
            ("id", "e"),
            "v",
            " SELECT v_customers.id,\n    v_customers.e\n   FROM v_customers;",
        ),
        _rel(
            "public", "v_ssn", ("ident",), "v", " SELECT customers.ssn AS ident\n   FROM customers;"
        ),
        _rel("public", "m_ssn", ("ssn",), "m", " SELECT customers.ssn\n   FROM customers;"),
        _rel("public", "v_loop", ("x",), "v", " SELECT v_loop.x\n   FROM v_loop;"),
        _rel("public", "v_nodef", ("x",), "v"),
        _rel(
            "pg_catalog",
            "pg_stats",
            ("schemaname", "tablename", "attname", "most_common_vals"),
            "v",
            " SELECT n.nspname AS schemaname FROM pg_statistic s;",
        ),
    ]
)
CATALOG = Catalog(RELATIONS, functions=FUNCTIONS)

ALL_CUSTOMERS = frozenset(("public", "customers", c) for c in CUSTOMER_COLUMNS)
SSN = ("public", "customers", "ssn")


def c(*names: str) -> frozenset[tuple[str, str, str]]:
    return frozenset(("public", "customers", n) for n in names)


def o(*names: str) -> frozenset[tuple[str, str, str]]:
    return frozenset(("public", "orders", n) for n in names)


def one(sql: str, catalog: Catalog = CATALOG) -> Analysis:
    result = analyze(sql, catalog)
    assert len(result) == 1, result
    return result[0]


def output(sql: str, catalog: Catalog = CATALOG) -> tuple[ColumnOrigin, ...]:
    out = one(sql, catalog).output
    assert out is not None
    return out


def first(sql: str, catalog: Catalog = CATALOG) -> ColumnOrigin:
    return output(sql, catalog)[0]


def direct(*names: str) -> ColumnOrigin:
    return ColumnOrigin(c(*names), direct=True)


def derived(sources: frozenset[tuple[str, str, str]], unknown: bool = False) -> ColumnOrigin:
    return ColumnOrigin(sources, direct=False, unknown=unknown)


CLEAN = ColumnOrigin()


# --------------------------------------------------------------------------------------------
# Single constructs: exact origins
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT email AS e FROM customers", direct("email")),
        ('SELECT "email" FROM public.customers', direct("email")),
        ("SELECT c.email FROM customers AS c", direct("email")),
        ("SELECT public.customers.email FROM customers", direct("email")),
        ("SELECT upper(email) FROM customers", derived(c("email"))),
        ("SELECT concat(name, email) FROM customers", derived(c("name", "email"))),
        ("SELECT name || email FROM customers", derived(c("name", "email"))),
        ("SELECT substr(ssn, 1, 3) FROM customers", derived(c("ssn"))),
        ("SELECT substring(ssn FROM 1 FOR 3) FROM customers", derived(c("ssn"))),
        ("SELECT email::text FROM customers", derived(c("email"))),
        ("SELECT CAST(ssn AS int) FROM customers", derived(c("ssn"))),
        ("SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM customers", derived(c("ssn"))),
        (
            "SELECT CASE id WHEN 1 THEN name ELSE email END FROM customers",
            derived(c("id", "name", "email")),
        ),
        ("SELECT x FROM (SELECT email AS x FROM customers) s", direct("email")),
        ("SELECT s.x FROM (SELECT ssn FROM customers) AS s(x)", direct("ssn")),
        ("SELECT (SELECT ssn FROM customers LIMIT 1)", direct("ssn")),
        ("SELECT (SELECT max(ssn) FROM customers)", derived(c("ssn"))),
        (
            "SELECT (SELECT o.amount FROM orders o WHERE o.customer_id = c.id) FROM customers c",
            derived(o("amount", "customer_id") | c("id")),
        ),
        ("SELECT l.v FROM customers c, LATERAL (SELECT c.ssn AS v) l", direct("ssn")),
        ("SELECT l.v FROM customers c CROSS JOIN LATERAL (SELECT c.ssn AS v) AS l", direct("ssn")),
        (
            "WITH a AS (SELECT ssn AS x FROM customers), b AS (SELECT x AS y FROM a) "
            "SELECT y FROM b",
            direct("ssn"),
        ),
        ("WITH a(x) AS (SELECT ssn FROM customers) SELECT x FROM a", direct("ssn")),
        ("SELECT email FROM customers UNION SELECT email FROM customers", direct("email")),
        ("SELECT 'x' UNION ALL SELECT ssn FROM customers", derived(c("ssn"))),
        ("SELECT id FROM customers UNION SELECT ssn FROM customers", derived(c("id", "ssn"))),
        (
            "SELECT email FROM customers INTERSECT SELECT ssn FROM customers",
            derived(c("email", "ssn")),
        ),
        (
            "SELECT email FROM customers EXCEPT SELECT ssn FROM customers",
            derived(c("email", "ssn")),
        ),
        ("SELECT e FROM v_customers", direct("email")),
        ("SELECT s FROM v_customers", derived(c("ssn"))),
        ("SELECT e FROM v_nested", direct("email")),
        ("SELECT ident FROM v_ssn", direct("ssn")),
        ("SELECT ssn FROM m_ssn", direct("ssn")),
        ("SELECT lag(ssn) OVER (ORDER BY id) FROM customers", derived(c("ssn", "id"))),
        ("SELECT string_agg(email, ',') FROM customers", derived(c("email"))),
        ("SELECT array_agg(ssn ORDER BY id) FROM customers", derived(c("ssn", "id"))),
        ("SELECT json_agg(ssn) FROM customers", derived(c("ssn"))),
        ("SELECT max(ssn) FROM customers GROUP BY name ORDER BY 1", derived(c("ssn"))),
        ("SELECT count(ssn) FROM customers", CLEAN),
        ("SELECT count(DISTINCT ssn) FROM customers", CLEAN),
        ("SELECT count(*) FROM customers WHERE ssn LIKE '1%'", CLEAN),
        ("SELECT id FROM customers WHERE ssn = 'x' GROUP BY id, ssn ORDER BY ssn", direct("id")),
        ("SELECT 1", CLEAN),
        ("SELECT $1::text", CLEAN),
        ("SELECT ctid FROM customers", CLEAN),
        ("SELECT c.xmin FROM customers c", CLEAN),
    ],
)
def test_origin(sql: str, expected: ColumnOrigin) -> None:
    assert first(sql) == expected


def test_select_star_expands_in_catalog_order() -> None:
    assert output("SELECT * FROM customers") == tuple(direct(n) for n in CUSTOMER_COLUMNS)
    assert output("TABLE customers") == tuple(direct(n) for n in CUSTOMER_COLUMNS)
    assert output("SELECT o.*, c.id FROM orders o, customers c") == (
        *(ColumnOrigin(o(n), True) for n in ("id", "customer_id", "amount", "shipping_email")),
        direct("id"),
    )
    assert output("SELECT * FROM (SELECT ssn, 1 AS one FROM customers) s") == (direct("ssn"), CLEAN)
    assert output("WITH w AS (SELECT email FROM customers) SELECT * FROM w") == (direct("email"),)
    assert output("SELECT * FROM v_customers") == (
        direct("id"),
        direct("email"),
        derived(c("ssn")),
    )


def test_join_using_merges_both_sides_and_orders_star_like_postgres() -> None:
    star = output("SELECT * FROM customers JOIN orders USING (id)")
    assert star[0] == derived(c("id") | o("id"))
    assert len(star) == 7 + 3
    assert star[1:7] == tuple(direct(n) for n in CUSTOMER_COLUMNS[1:])
    assert first("SELECT id FROM customers NATURAL JOIN orders") == derived(c("id") | o("id"))
    # The join binds to the group on its left only: a.* first, then the merged column.
    star = output("SELECT * FROM orders a, customers b JOIN customers c2 USING (ssn)")
    assert star[:4] == tuple(
        ColumnOrigin(o(n), True) for n in ("id", "customer_id", "amount", "shipping_email")
    )
    assert star[4] == direct("ssn")  # both sides are the same column
    # A self-join on one column stays direct; qualified references see each side's own.
    assert output("SELECT a.id, b.email FROM customers a JOIN customers b USING (id)") == (
        direct("id"),
        direct("email"),
    )


def test_parenthesized_join() -> None:
    star = output("SELECT * FROM (customers JOIN orders USING (id)) JOIN orders o2 ON true")
    assert star[0] == derived(c("id") | o("id"))
    assert len(star) == 10 + 4
    aliased = output("SELECT j.* FROM (customers a JOIN orders b ON a.id = b.id) AS j")
    assert len(aliased) == 11
    assert aliased[3] == direct("ssn")


def test_system_relations_are_base_relations() -> None:
    assert first("SELECT most_common_vals FROM pg_stats") == ColumnOrigin(
        frozenset({("pg_catalog", "pg_stats", "most_common_vals")}), direct=True
    )


def test_recursive_cte_terminates_and_follows() -> None:
    sql = (
        "WITH RECURSIVE r(n, s) AS (SELECT 1, ssn FROM customers "
        "UNION ALL SELECT n + 1, s || 'x' FROM r WHERE n < 3) SELECT n, s FROM r"
    )
    assert output(sql) == (CLEAN, derived(c("ssn")))
    pass_on = (
        "WITH RECURSIVE r AS (SELECT ssn FROM customers UNION SELECT ssn FROM r) SELECT * FROM r"
    )
    assert output(pass_on) == (direct("ssn"),)


def test_views_are_bounded() -> None:
    assert first("SELECT x FROM v_loop").unknown
    nodef = one("SELECT x FROM v_nodef")
    assert nodef.output == (ColumnOrigin(unknown=True),)
    assert nodef.reads_unknown


def test_views_known_by_their_text_alone() -> None:
    # The session adds the views it creates before the catalog is read again: no columns yet.
    relations = dict(RELATIONS)
    relations[("pg_temp", "mine")] = Relation(
        "pg_temp", "mine", "v", (), "SELECT ssn AS x, email, upper(name) FROM customers"
    )
    relations[("pg_temp", "broken")] = Relation("pg_temp", "broken", "v", (), "SELECT FROM (")
    catalog = Catalog(relations, ("pg_temp", "pg_catalog", "public"), FUNCTIONS)
    assert first("SELECT x FROM mine", catalog) == direct("ssn")
    assert output("SELECT * FROM mine", catalog) == (
        direct("ssn"),
        direct("email"),
        derived(c("name")),
    )
    assert one("SELECT * FROM broken", catalog).output is None
    assert first("SELECT anything FROM broken", catalog).unknown


def test_deeply_nested_views_become_unknown() -> None:
    relations = dict(RELATIONS)
    relations[("public", "v0")] = Relation(
        "public", "v0", "v", (("x", 25),), "SELECT ssn AS x FROM customers"
    )
    for i in range(1, 20):
        relations[("public", f"v{i}")] = Relation(
            "public",
            f"v{i}",
            "v",
            (("x", 25),),
            f"SELECT v{i - 1}.x FROM v{i - 1}",  # noqa: S608
        )
    catalog = Catalog(relations, functions=FUNCTIONS)
    assert first("SELECT x FROM v10", catalog) == direct("ssn")
    assert first("SELECT x FROM v19", catalog).unknown


# --------------------------------------------------------------------------------------------
# Whole-row references
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "c",
        "customers",
        "row_to_json(c)",
        "to_json(c)",
        "to_jsonb(c)",
        "to_jsonb(c.*)",
        "json_agg(c)",
        "array_agg(c)",
        "c::text",
        "CAST(c AS text)",
        "hstore(c)",
        "format('%s', c)",
        "row(c.*)",
        "(c)::text",
        "md5(c::text)",
    ],
)
def test_whole_row_reference(expression: str) -> None:
    alias = "" if expression == "customers" else " c"
    sql = f"SELECT {expression} FROM customers{alias}"  # noqa: S608 - test constants
    assert first(sql).sources == ALL_CUSTOMERS


def test_whole_row_field_access() -> None:
    assert first("SELECT (c).email FROM customers c") == direct("email")
    assert output("SELECT (c).* FROM customers c") == tuple(direct(n) for n in CUSTOMER_COLUMNS)
    assert first("SELECT s FROM (SELECT ssn FROM customers) s") == derived(c("ssn"))
    assert first("SELECT row_to_json(s) FROM (SELECT ssn AS x FROM customers) s") == derived(
        c("ssn")
    )
    assert first("SELECT (SELECT c) FROM customers c").sources == ALL_CUSTOMERS
    assert first(
        "SELECT w FROM (WITH x AS (SELECT ssn FROM customers) SELECT * FROM x) w"
    ).sources == c("ssn")
    assert first("SELECT v FROM v_customers v").sources == c("id", "email", "ssn")


def test_a_column_wins_over_a_relation_of_the_same_name() -> None:
    assert first("SELECT id FROM customers id") == direct("id")


def test_row_constructor_is_a_function_of_its_arguments() -> None:
    assert first("SELECT row(id, email) FROM customers") == derived(c("id", "email"))


# --------------------------------------------------------------------------------------------
# FROM functions and VALUES
# --------------------------------------------------------------------------------------------


def test_table_functions() -> None:
    assert first("SELECT u FROM customers c, LATERAL unnest(array[c.ssn]) u") == derived(c("ssn"))
    assert first("SELECT u.x FROM customers c, unnest(array[c.ssn, c.email]) AS u(x)") == derived(
        c("ssn", "email")
    )
    assert output("SELECT * FROM generate_series(1, 3)") == (CLEAN,)
    assert output("SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS g(n, i)") == (
        CLEAN,
        CLEAN,
    )
    assert output("SELECT * FROM customers c, jsonb_each(c.notes::jsonb) j")[-2:] == (
        derived(c("notes")),
        derived(c("notes")),
    )
    assert first("SELECT j.value FROM customers c, jsonb_each(c.notes::jsonb) j") == derived(
        c("notes")
    )
    assert first("SELECT key FROM customers c, jsonb_each(c.notes::jsonb)") == derived(c("notes"))
    # A set-returning built-in whose columns are not known: any name may be one of them.
    assert first(
        "SELECT whatever FROM customers c, regexp_split_to_array(c.ssn, '-') r"
    ).sources == c("ssn")


def test_values() -> None:
    assert output("VALUES (1, 'a'), (2, 'b')") == (CLEAN, CLEAN)
    assert first("VALUES ((SELECT ssn FROM customers LIMIT 1))") == direct("ssn")
    sql = (
        "SELECT v.b, customers.ssn FROM (VALUES (1, 'a')) AS v(a, b) "
        "JOIN customers ON v.a = customers.id"
    )
    assert output(sql) == (CLEAN, direct("ssn"))
    assert first("SELECT x FROM customers c, LATERAL (VALUES (c.ssn)) AS v(x)") == direct("ssn")


def test_udf_in_from_is_unknown() -> None:
    analysis = one("SELECT * FROM customers c, LATERAL public.f(c.id) AS f")
    assert analysis.output is None
    assert analysis.reads_unknown
    assert first("SELECT f.x FROM my_srf(1) AS f(x)").unknown


# --------------------------------------------------------------------------------------------
# Unknown
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT my_func(email) FROM customers",
        "SELECT public.upper(email) FROM customers",
        'SELECT "Upper"(email) FROM customers',
        "SELECT x FROM temp_table",
        "SELECT t.x FROM temp_table t",
        "SELECT no_such_column FROM customers",
        "SELECT c.no_such_column FROM customers c",
        "SELECT nowhere.x FROM customers",
        "SELECT query_to_xml('select ssn from customers', true, true, '')",
    ],
)
def test_unknown(sql: str) -> None:
    analysis = one(sql)
    assert analysis.output is not None
    assert analysis.output[0].unknown
    assert analysis.reads_unknown


def test_star_over_an_unknown_relation_has_unknown_shape() -> None:
    assert one("SELECT * FROM temp_table").output is None
    assert one("SELECT * FROM customers, temp_table").output is None
    assert len(output("SELECT c.* FROM customers c, temp_table t")) == 7


def test_unknown_relation_next_to_a_known_one() -> None:
    # `x` may be temp_table's column or an outer customers.ssn: both.
    origin = first("SELECT (SELECT x FROM temp_table LIMIT 1) FROM customers x")
    assert origin.unknown and origin.sources == ALL_CUSTOMERS


def test_pg_catalog_after_another_schema_makes_every_function_unknown() -> None:
    catalog = Catalog(RELATIONS, search_path=("public", "pg_catalog"), functions=FUNCTIONS)
    assert first("SELECT upper(email) FROM customers", catalog).unknown
    assert first("SELECT pg_catalog.upper(email) FROM customers", catalog) == derived(c("email"))
    assert not first("SELECT coalesce(email, '') FROM customers", catalog).unknown


def test_cast_to_a_user_type_is_a_volatile_call() -> None:
    analysis = one("SELECT ssn::my_domain FROM customers")
    assert analysis.output == (derived(c("ssn")),)
    assert Call("::my_domain", True, c("ssn")) in analysis.calls
    assert not one("SELECT ssn::tsvector FROM customers").calls


# --------------------------------------------------------------------------------------------
# Bypasses: every way to get ssn out must carry ssn (or be unknown)
# --------------------------------------------------------------------------------------------

SMUGGLE = [
    "SELECT ssn AS harmless FROM customers",
    "SELECT upper(ssn) FROM customers",
    "SELECT lower(reverse(reverse(ssn))) FROM customers",
    "SELECT x FROM (SELECT y AS x FROM (SELECT ssn AS y FROM customers) a) b",
    "WITH a AS (SELECT ssn FROM customers), b AS (SELECT * FROM a), "
    "c AS (SELECT ssn AS z FROM b) SELECT z FROM c",
    "SELECT 'nothing' UNION ALL SELECT ssn FROM customers",
    "SELECT NULL::text UNION SELECT ssn FROM customers",
    "SELECT * FROM (SELECT 'a' UNION SELECT ssn FROM customers) u",
    "SELECT s FROM v_customers",
    "SELECT ident FROM v_ssn",
    "SELECT customers FROM customers",
    "SELECT c FROM customers c",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT to_json(c) FROM customers c",
    "SELECT to_jsonb(c) FROM customers c",
    "SELECT json_agg(c) FROM customers c",
    "SELECT array_agg(c) FROM customers c",
    "SELECT c::text FROM customers c",
    "SELECT (c).ssn FROM customers c",
    "SELECT hstore(c) FROM customers c",
    "SELECT format('%s', c) FROM customers c",
    "SELECT json_agg(ssn) FROM customers",
    "SELECT jsonb_agg(ssn) FROM customers",
    "SELECT array_agg(ssn) FROM customers",
    "SELECT string_agg(ssn, ',') FROM customers",
    "SELECT array_to_string(array_agg(ssn), ',') FROM customers",
    "SELECT u FROM customers c, LATERAL unnest(array[c.ssn]) u",
    "SELECT u FROM customers c, unnest(array[c.ssn]) u",
    "SELECT v.x FROM customers c, LATERAL (VALUES (c.ssn)) v(x)",
    "SELECT v.column1 FROM (VALUES (1)) t(n) "
    "JOIN LATERAL (SELECT ssn FROM customers) v(column1) ON true",
    "SELECT lag(ssn) OVER (ORDER BY id) FROM customers",
    "SELECT max(ssn) OVER (PARTITION BY id) FROM customers",
    "SELECT row_number() OVER (ORDER BY ssn) FROM customers",
    "SELECT ssn::bytea FROM customers",
    "SELECT CAST(ssn AS int) FROM customers",
    "SELECT encode(ssn::bytea, 'base64') FROM customers",
    "SELECT (SELECT ssn FROM customers LIMIT 1)",
    "SELECT (SELECT ssn FROM customers c2 WHERE c2.id = c.id) FROM customers c",
    "SELECT EXISTS (SELECT ssn FROM customers)",
    "SELECT (SELECT 1 FROM customers c2 WHERE c2.ssn LIKE '1%' AND c2.id = c.id) FROM customers c",
    "SELECT ssn IN (SELECT '123') FROM customers",
    "SELECT '123' IN (SELECT ssn FROM customers)",
    "SELECT '1' = ANY (SELECT ssn FROM customers)",
    "SELECT row(ssn) FROM customers",
    "SELECT ARRAY[ssn] FROM customers",
    "SELECT ARRAY(SELECT ssn FROM customers)",
    "SELECT coalesce(NULL, ssn) FROM customers",
    "SELECT greatest(ssn, '') FROM customers",
    "SELECT nullif(ssn, '') FROM customers",
    "SELECT ssn = 'x' FROM customers",
    "SELECT ssn LIKE '1%' FROM customers",
    "SELECT ssn IS NULL FROM customers",
    "SELECT length(ssn) FROM customers",
    "SELECT format('%s', ssn) FROM customers",
    "SELECT ('{\"a\": \"' || ssn || '\"}')::json ->> 'a' FROM customers",
    "SELECT jsonb_build_object('k', ssn) -> 'k' FROM customers",
    "SELECT CASE WHEN ssn LIKE '1%' THEN 1 ELSE 0 END FROM customers",
    "SELECT CASE WHEN substr(ssn, 1, 1) = '1' THEN 'one' END FROM customers",
    "SELECT translate(ssn, '0123456789', 'abcdefghij') FROM customers",
    "SELECT regexp_replace(ssn, '-', '') FROM customers",
    'SELECT ssn COLLATE "C" FROM customers',
    "SELECT (ssn) FROM customers",
    "SELECT customers.ssn FROM public.customers",
    'SELECT "ssn" FROM "customers"',
    "SELECT x FROM customers AS c(a, b, c, x)",
    "SELECT (SELECT x FROM (SELECT ssn AS x FROM customers) s LIMIT 1) FROM orders",
    "SELECT max(ssn) FILTER (WHERE id > 0) FROM customers",
    "SELECT count(*) FILTER (WHERE ssn LIKE '1%') FROM customers",
    "SELECT sum(length(ssn)) FROM customers",
    "SELECT most_common_vals FROM pg_stats",  # not ssn, but the catalog's own leaky column
    "SELECT a.ssn FROM (customers a JOIN orders b ON a.id = b.customer_id)",
    "SELECT j.ssn FROM (customers JOIN orders USING (id)) AS j",
    "WITH RECURSIVE r(x) AS (SELECT ssn FROM customers UNION SELECT x FROM r) SELECT x FROM r",
    "WITH d AS (UPDATE customers SET name = name RETURNING ssn) SELECT * FROM d",
    "SELECT ssn FROM customers ORDER BY 1 LIMIT 1 OFFSET 0 FOR UPDATE",
    "SELECT DISTINCT ON (id) ssn FROM customers",
    "SELECT x FROM (SELECT ssn AS x, ssn AS x2 FROM customers) s WHERE x2 = '1'",
    "SELECT xmlelement(name a, ssn) FROM customers",
    "SELECT pg_catalog.upper(ssn) FROM customers",
    "SELECT ssn FROM customers UNION ALL SELECT ssn FROM temp_table",
]


@pytest.mark.parametrize("sql", SMUGGLE)
def test_smuggling_ssn_out_is_never_clean(sql: str) -> None:
    origin_sources = ("pg_catalog", "pg_stats", "most_common_vals") if "pg_stats" in sql else SSN
    for analysis in analyze(sql, CATALOG):
        assert analysis.kind in ("select", "update"), analysis
        assert analysis.output is not None, analysis
        column = analysis.output[0]
        assert origin_sources in column.sources or column.unknown, (sql, column)


# The same, composed at random: expressions around ssn, then query constructs around that.
_EXPRESSIONS = [
    "{}",
    "upper({})",
    "({}) || 'x'",
    "({})::text",
    "CAST({} AS varchar)",
    "coalesce({}, 'a')",
    "CASE WHEN ({}) IS NULL THEN 'a' ELSE 'b' END",
    "format('%s', {})",
    "substr({}, 1, 3)",
    "md5(({})::text)",
    "row({})",
    "ARRAY[{}]",
    "({}) = 'x'",
    "concat({}, 'b')",
    "greatest({}, 'z')",
    "({}) IN ('a', 'b')",
]
_QUERIES = [
    "SELECT x FROM ({}) s",
    "WITH w AS ({}) SELECT x FROM w",
    "SELECT 'a' AS x UNION ALL ({})",
    "SELECT (SELECT x FROM ({}) s LIMIT 1) AS x",
    "SELECT row_to_json(s)::text AS x FROM ({}) s",
    "SELECT s::text AS x FROM ({}) s",
    "SELECT l.x FROM orders o, LATERAL ({}) l",
    "SELECT string_agg(x::text, ',') AS x FROM ({}) s",
    "SELECT json_agg(s)::text AS x FROM ({}) s",
    "SELECT 'a' IN (SELECT x::text FROM ({}) s) AS x",
    "SELECT EXISTS (SELECT x FROM ({}) s) AS x",
    "SELECT u AS x FROM ({}) s, unnest(ARRAY[s.x]) u",
    "SELECT max(x::text) OVER () AS x FROM ({}) s",
    "SELECT x FROM vq",
    "SELECT * FROM ({}) AS s(x)",
    "SELECT v.x FROM (VALUES (1)) AS t(n) CROSS JOIN LATERAL ({}) v",
]


@settings(max_examples=300, deadline=None)
@given(
    expressions=st.lists(st.sampled_from(_EXPRESSIONS), min_size=1, max_size=4),
    queries=st.lists(st.sampled_from(_QUERIES), min_size=0, max_size=4),
)
def test_composed_smuggling_is_never_clean(expressions: list[str], queries: list[str]) -> None:
    expression = "ssn"
    for wrapper in expressions:
        expression = wrapper.format(expression)
    sql = f"SELECT {expression} AS x FROM customers"  # noqa: S608 - test constants
    relations = dict(RELATIONS)
    for wrapper in queries:
        if wrapper == "SELECT x FROM vq":  # a view whose definition is the query so far
            relations[("public", "vq")] = Relation("public", "vq", "v", (("x", 25),), sql)
        sql = wrapper.format(sql)
    result = analyze(sql, Catalog(relations, functions=FUNCTIONS))
    assert len(result) == 1
    assert result[0].kind == "select", sql
    out = result[0].output
    assert out is None or SSN in out[0].sources or out[0].unknown, (sql, out)


# --------------------------------------------------------------------------------------------
# reads
# --------------------------------------------------------------------------------------------


def test_reads_cover_every_clause_but_not_unused_subquery_columns() -> None:
    sql = (
        "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.id "
        "WHERE c.ssn LIKE '1%' GROUP BY c.name, c.phone HAVING max(o.amount) > 1 ORDER BY c.email"
    )
    analysis = one(sql)
    assert analysis.output == (direct("name"),)
    assert analysis.reads == c("name", "id", "ssn", "phone", "email") | o("customer_id", "amount")
    assert not analysis.reads_unknown
    assert one("SELECT id FROM v_customers").reads == c("id", "phone")
    assert one("SELECT count(*) FROM (SELECT ssn FROM customers) s").reads == frozenset()
    assert one("SELECT count(ssn) FROM customers").reads == c("ssn")
    assert one("SELECT c FROM customers c").reads == ALL_CUSTOMERS
    assert one("UPDATE orders SET amount = (SELECT length(ssn) FROM customers LIMIT 1)").reads == c(
        "ssn"
    )


# --------------------------------------------------------------------------------------------
# writes
# --------------------------------------------------------------------------------------------


def test_insert_select_writes_positionally() -> None:
    analysis = one("INSERT INTO orders (id, shipping_email) SELECT id, ssn FROM customers")
    assert analysis.kind == "insert"
    assert analysis.output == ()
    assert analysis.writes == (
        Write(("public", "orders", "id"), c("id")),
        Write(("public", "orders", "shipping_email"), c("ssn")),
    )
    assert analysis.reads == c("id", "ssn")


def test_insert_without_column_list_uses_table_order() -> None:
    analysis = one(
        "INSERT INTO orders VALUES (1, 2, 3, 'x'), (2, 3, 4, (SELECT email FROM customers LIMIT 1))"
    )
    assert [w.target[2] for w in analysis.writes] == [
        "id",
        "customer_id",
        "amount",
        "shipping_email",
    ]
    assert analysis.writes[3].sources == c("email")


def test_insert_into_unknown_table() -> None:
    analysis = one("INSERT INTO scratch SELECT ssn FROM customers")
    assert analysis.writes == (Write(("", "scratch", "?1"), c("ssn")),)
    analysis = one("INSERT INTO scratch (a) SELECT ssn FROM customers")
    assert analysis.writes == (Write(("", "scratch", "a"), c("ssn")),)


def test_insert_returning_carries_what_was_inserted() -> None:
    analysis = one(
        "INSERT INTO orders (shipping_email) SELECT ssn FROM customers RETURNING shipping_email, id"
    )
    assert analysis.output == (derived(o("shipping_email") | c("ssn")), ColumnOrigin(o("id"), True))
    analysis = one("INSERT INTO orders (shipping_email) SELECT ssn FROM customers RETURNING *")
    assert analysis.output is not None and len(analysis.output) == 4
    assert SSN in analysis.output[3].sources


def test_on_conflict_do_update() -> None:
    analysis = one(
        "INSERT INTO orders (id, shipping_email) SELECT id, email FROM customers "
        "ON CONFLICT (id) DO UPDATE SET shipping_email = excluded.shipping_email || orders.amount"
    )
    assert Write(("public", "orders", "shipping_email"), c("email")) in analysis.writes
    assert (
        Write(("public", "orders", "shipping_email"), c("email") | o("amount")) in analysis.writes
    )


def test_update_set_and_from() -> None:
    analysis = one(
        "UPDATE orders o SET shipping_email = c.ssn, amount = 0 FROM customers c "
        "WHERE c.id = o.customer_id RETURNING o.shipping_email, c.name"
    )
    assert analysis.kind == "update"
    assert analysis.writes == (
        Write(("public", "orders", "shipping_email"), c("ssn")),
        Write(("public", "orders", "amount"), frozenset()),
    )
    assert analysis.output == (derived(o("shipping_email") | c("ssn")), direct("name"))
    assert analysis.reads >= c("id", "ssn", "name") | o("customer_id")
    multi = one(
        "UPDATE orders SET (amount, shipping_email) = (SELECT id, email FROM customers LIMIT 1)"
    )
    assert multi.writes == (
        Write(("public", "orders", "amount"), c("id")),
        Write(("public", "orders", "shipping_email"), c("email")),
    )
    assert one("UPDATE orders SET amount = DEFAULT").writes == (
        Write(("public", "orders", "amount")),
    )


def test_delete_returning() -> None:
    analysis = one(
        "DELETE FROM orders USING customers c WHERE c.ssn = 'x' RETURNING orders.shipping_email"
    )
    assert analysis.kind == "delete"
    assert analysis.writes == ()
    assert analysis.output == (ColumnOrigin(o("shipping_email"), True),)
    assert SSN in analysis.reads


def test_merge() -> None:
    analysis = one(
        "MERGE INTO orders o USING customers c ON o.customer_id = c.id "
        "WHEN MATCHED AND c.phone IS NULL THEN UPDATE SET shipping_email = c.ssn "
        "WHEN NOT MATCHED THEN INSERT (id, shipping_email) VALUES (c.id, c.email) "
        "WHEN NOT MATCHED BY SOURCE THEN DELETE"
    )
    assert analysis.kind == "merge"
    assert analysis.output == ()
    assert analysis.writes == (
        Write(("public", "orders", "shipping_email"), c("ssn")),
        Write(("public", "orders", "id"), c("id")),
        Write(("public", "orders", "shipping_email"), c("email")),
    )
    assert c("phone") <= analysis.reads


def test_merge_returning() -> None:
    sql = (
        "MERGE INTO orders o USING customers c ON o.customer_id = c.id "
        "WHEN MATCHED THEN UPDATE SET shipping_email = c.ssn RETURNING {}"
    )
    assert one(sql.format("merge_action(), o.shipping_email")).output == (
        CLEAN,
        derived(o("shipping_email") | c("ssn")),
    )
    assert one(sql.format("*")).output is None  # the order of source and target: not guessed


def test_create_table_as_and_select_into() -> None:
    analysis = one("CREATE TABLE copy AS SELECT ssn, email AS e FROM customers")
    assert analysis.kind == "create_table_as"
    assert analysis.output == ()
    assert analysis.writes == (
        Write(("", "copy", "ssn"), c("ssn")),
        Write(("", "copy", "e"), c("email")),
    )
    named = one("CREATE TEMP TABLE s.copy (a, b) AS SELECT ssn, email FROM customers WITH NO DATA")
    assert [w.target for w in named.writes] == [("s", "copy", "a"), ("s", "copy", "b")]
    into = one("SELECT ssn INTO TEMP copy FROM customers")
    assert into.kind == "create_table_as"
    assert into.output == ()
    assert into.writes == (Write(("", "copy", "ssn"), c("ssn")),)
    execute = one("CREATE TABLE copy AS EXECUTE p")
    assert execute.writes == (Write(("", "copy", "?"), unknown=True),)


def test_data_modifying_cte() -> None:
    analysis = one("WITH d AS (DELETE FROM orders RETURNING *) INSERT INTO orders SELECT * FROM d")
    assert analysis.kind == "insert"
    assert Write(("public", "orders", "shipping_email"), o("shipping_email")) in analysis.writes


# --------------------------------------------------------------------------------------------
# calls
# --------------------------------------------------------------------------------------------


def test_calls_everywhere() -> None:
    analysis = one(
        "SELECT upper(email) FROM customers c, generate_series(1, 2) g "
        "WHERE pg_notify('ch', c.ssn) IS NOT NULL AND length(lower(c.name)) > 0"
    )
    assert analysis.calls == (
        Call("generate_series", False),
        Call("upper", False, c("email")),
        Call("pg_notify", True, c("ssn")),
        Call("lower", False, c("name")),
        Call("length", False, c("name")),
    )


def test_calls_of_user_functions_and_views() -> None:
    assert one("SELECT public.f(c) FROM customers c").calls == (
        Call("public.f", True, ALL_CUSTOMERS),
    )
    assert one("SELECT id FROM v_customers").calls == (Call("upper", False, c("ssn")),)
    assert one("SELECT count(ssn) FROM customers").calls == (Call("count", False, c("ssn")),)
    assert one("SELECT set_config('a.b', ssn, false) FROM customers").calls == (
        Call("set_config", True, c("ssn")),
    )


# --------------------------------------------------------------------------------------------
# DDL, code, views
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "relations"),
    [
        ("ALTER TABLE customers RENAME COLUMN ssn TO x", {("public", "customers")}),
        ("ALTER TABLE customers RENAME TO c2", {("public", "customers"), ("public", "c2")}),
        ("DROP TABLE customers, orders", {("public", "customers"), ("public", "orders")}),
        ("DROP TABLE IF EXISTS scratch", {("", "scratch")}),
        ("ALTER VIEW v_customers RENAME TO w", {("public", "v_customers"), ("public", "w")}),
        ("CREATE INDEX ON customers (ssn)", {("public", "customers")}),
        ("COMMENT ON COLUMN customers.ssn IS 'x'", {("public", "customers")}),
        ("TRUNCATE orders", {("public", "orders")}),
        ("GRANT SELECT ON customers TO bob", {("public", "customers")}),
        ("REFRESH MATERIALIZED VIEW m_ssn", {("public", "m_ssn")}),
        ("CREATE POLICY p ON customers USING (true)", {("public", "customers")}),
        ("CREATE TABLE s.fresh (a int)", {("s", "fresh")}),
        ("DROP FUNCTION f(int)", set()),
    ],
)
def test_ddl_relations(sql: str, relations: set[tuple[str, str]]) -> None:
    analysis = one(sql)
    assert analysis.kind == "ddl"
    assert analysis.output == ()
    assert analysis.relations == relations


def test_create_view() -> None:
    analysis = one(
        "CREATE OR REPLACE VIEW public.vv AS SELECT ssn FROM customers WHERE id > 1 "
        "WITH CHECK OPTION"
    )
    assert analysis.kind == "create_view"
    assert analysis.output == ()
    assert analysis.view == ("public", "vv", "SELECT ssn FROM customers WHERE id > 1")
    assert analysis.reads == c("ssn", "id")
    mat = one("CREATE MATERIALIZED VIEW mv (a) AS SELECT upper(email) FROM customers WITH DATA")
    assert mat.kind == "create_view"
    assert mat.view == ("", "mv", "SELECT upper(email) FROM customers")
    assert mat.calls == (Call("upper", False, c("email")),)


@pytest.mark.parametrize(
    "sql",
    [
        "DO $$ BEGIN PERFORM 1; END $$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'",
        "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ select 1 $$",
        "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f()",
        "CREATE RULE r AS ON SELECT TO orders DO INSTEAD SELECT * FROM customers",
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
    ],
)
def test_code(sql: str) -> None:
    analysis = one(sql)
    assert analysis.kind == "code"
    assert analysis.body == sql


def test_call_is_code_with_unknown_output() -> None:
    analysis = one("CALL p((SELECT ssn FROM customers LIMIT 1))")
    assert analysis.kind == "code"
    assert analysis.output is None
    assert analysis.calls == (Call("p", True, c("ssn")),)


# --------------------------------------------------------------------------------------------
# COPY
# --------------------------------------------------------------------------------------------


def test_copy_out() -> None:
    analysis = one("COPY customers TO STDOUT")
    assert analysis.kind == "copy_out"
    assert analysis.output == tuple(direct(n) for n in CUSTOMER_COLUMNS)
    assert analysis.copy == CopyFormat()
    assert analysis.reads == ALL_CUSTOMERS
    assert one("COPY customers (email, ssn) TO STDOUT").output == (direct("email"), direct("ssn"))
    query = one("COPY (SELECT upper(ssn) FROM customers) TO STDOUT")
    assert query.output == (derived(c("ssn")),)
    assert one("COPY temp_table TO STDOUT").output is None


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("", CopyFormat()),
        (
            "WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'x', QUOTE '\"', "
            "ESCAPE E'\\\\', FORCE_QUOTE *)",
            CopyFormat("csv", ";", "x", '"', "\\", True, True),
        ),
        ("(FORMAT csv, HEADER false)", CopyFormat("csv", ",", "", '"', '"', False, False)),
        ("(FORMAT text, HEADER true)", CopyFormat(header=True)),
        ("(FORMAT binary)", CopyFormat(format="binary")),
        ("CSV HEADER", CopyFormat("csv", ",", "", '"', '"', True, False)),
        (
            "WITH CSV HEADER DELIMITER AS '|' QUOTE '''' FORCE QUOTE *",
            CopyFormat("csv", "|", "", "'", "'", True, True),
        ),
        ("DELIMITER ','", CopyFormat(delimiter=",")),
        ("NULL AS ''", CopyFormat(null="")),
        ("BINARY", CopyFormat(format="binary")),
        ("(ENCODING 'UTF8')", CopyFormat()),
        ("(ENCODING 'LATIN1')", None),
        ("(FORMAT csv, FORCE_QUOTE (ssn))", CopyFormat("csv", ",", "", '"', '"', False, True)),
        ("(OIDS true)", None),
        ("(FORMAT json)", None),
        ("(DELIMITER ';;')", None),
        ("(FORMAT text, QUOTE '\"')", None),
        ("(FORCE_NOT_NULL *)", None),  # COPY FROM only
        ("(HEADER match)", None),
    ],
)
def test_copy_formats(options: str, expected: CopyFormat | None) -> None:
    analysis = one(f"COPY customers TO STDOUT {options}")
    assert analysis.kind == "copy_out"
    assert analysis.copy == expected


def test_copy_in_and_to_files() -> None:
    analysis = one(
        "COPY orders (id, amount) FROM STDIN WITH (FORMAT csv, HEADER match, FORCE_NOT_NULL *)"
    )
    assert analysis.kind == "copy_in"
    assert analysis.writes == (
        Write(("public", "orders", "id")),
        Write(("public", "orders", "amount")),
    )
    assert analysis.copy == CopyFormat("csv", ",", "", '"', '"', True, False)
    assert one("COPY BINARY orders FROM STDIN").copy == CopyFormat(format="binary")
    to_file = one("COPY customers TO '/tmp/out'")
    assert to_file.kind == "copy_other"
    assert to_file.output == ()
    assert to_file.reads == ALL_CUSTOMERS
    from_program = one("COPY orders FROM PROGRAM 'cat x'")
    assert from_program.kind == "copy_other"
    assert all(w.unknown for w in from_program.writes)


# --------------------------------------------------------------------------------------------
# Cursors, prepared statements, EXPLAIN, SHOW, other kinds
# --------------------------------------------------------------------------------------------


def test_cursors() -> None:
    declare = one("DECLARE Cur BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT ssn FROM customers")
    assert (declare.kind, declare.name, declare.output) == ("declare", "cur", (direct("ssn"),))
    assert declare.reads == c("ssn")
    assert one('FETCH FORWARD 5 FROM "Cur"') == Analysis(kind="fetch", output=None, name="Cur")
    assert one("FETCH cur") == Analysis(kind="fetch", output=None, name="cur")
    assert one("MOVE LAST IN cur") == Analysis(kind="fetch", output=(), name="cur")
    assert one("CLOSE cur") == Analysis(kind="close", name="cur")
    assert one("CLOSE ALL") == Analysis(kind="close", name=None)


def test_prepared_statements() -> None:
    prepare = one("PREPARE P (int) AS SELECT ssn FROM customers WHERE id = $1")
    assert (prepare.kind, prepare.name, prepare.output) == ("prepare", "p", (direct("ssn"),))
    assert prepare.reads == c("ssn", "id")
    insert = one("PREPARE ins AS INSERT INTO orders (shipping_email) SELECT ssn FROM customers")
    assert insert.kind == "prepare"
    assert insert.writes == (Write(("public", "orders", "shipping_email"), c("ssn")),)
    assert one("EXECUTE p(1)") == Analysis(kind="execute", output=None, name="p")
    execute = one('EXECUTE "P"(public.f())')
    assert (execute.name, execute.reads_unknown) == ("P", True)
    assert one("DEALLOCATE PREPARE p") == Analysis(kind="deallocate", name="p")
    assert one("DEALLOCATE ALL") == Analysis(kind="deallocate", name=None)
    assert one("PREPARE TRANSACTION 'x'").kind == "transaction"


def test_explain_and_show() -> None:
    plain = one("EXPLAIN (FORMAT json) SELECT ssn FROM customers")
    assert (plain.kind, plain.output, plain.writes) == ("select", (CLEAN,), ())
    assert plain.reads == c("ssn")
    analyze_ = one("EXPLAIN ANALYZE INSERT INTO orders (shipping_email) SELECT ssn FROM customers")
    assert analyze_.kind == "select"
    assert analyze_.writes == (Write(("public", "orders", "shipping_email"), c("ssn")),)
    assert one("EXPLAIN (ANALYZE false) DELETE FROM orders").writes == ()
    assert one("SHOW search_path") == Analysis(kind="select", output=(CLEAN,))
    assert one("SHOW ALL").output == (CLEAN, CLEAN, CLEAN)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("BEGIN", "transaction"),
        ("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", "transaction"),
        ("COMMIT", "transaction"),
        ("ROLLBACK TO SAVEPOINT s", "transaction"),
        ("SET statement_timeout = 5", "other"),
        ("RESET work_mem", "other"),
        ("LISTEN ch", "other"),
        ("NOTIFY ch, 'x'", "other"),
        ("VACUUM customers", "other"),
        ("DISCARD PLANS", "other"),
        ("SET search_path = evil, public", "ddl"),  # names resolve elsewhere from now on
        ("SET LOCAL search_path TO DEFAULT", "ddl"),
        ("SET ROLE admin", "ddl"),
        ("SET SESSION AUTHORIZATION bob", "ddl"),
        ("RESET ALL", "ddl"),
        ("DISCARD ALL", "ddl"),
        ("FROBNICATE everything", "unparsed"),
        ("SELECT FROM WHERE", "unparsed"),
    ],
)
def test_kinds(sql: str, kind: str) -> None:
    assert one(sql).kind == kind


# --------------------------------------------------------------------------------------------
# Statements in a string
# --------------------------------------------------------------------------------------------


def test_multi_statement() -> None:
    result = analyze("SELECT 1; SELECT ssn FROM customers", CATALOG)
    assert [a.output for a in result] == [(CLEAN,), (direct("ssn"),)]
    # Empty statements produce nothing; an empty string produces no Analysis at all.
    assert len(analyze("SELECT 1;; ;SELECT 2;", CATALOG)) == 2
    assert analyze(";;", CATALOG) == []
    assert analyze("  -- nothing\n", CATALOG) == []
    assert len(analyze("SELECT ';' AS a; SELECT $$;$$ /* ; */", CATALOG)) == 2


def test_statements_after_a_catalog_change_are_not_trusted() -> None:
    result = analyze(
        "CREATE OR REPLACE VIEW v_customers AS SELECT id, ssn AS e, ssn AS s FROM customers; "
        "SELECT e FROM v_customers",
        CATALOG,
    )
    assert [a.kind for a in result] == ["create_view", "select"]
    assert result[1].output is None and result[1].reads_unknown
    assert SSN in result[1].reads  # anything may be read: the caller's fallback masks it
    copied = analyze(
        "CREATE VIEW x AS SELECT 1; "
        "INSERT INTO orders (shipping_email) SELECT email FROM customers",
        CATALOG,
    )
    assert copied[1].kind == "insert"
    assert all(SSN in w.sources and w.unknown for w in copied[1].writes)
    declare = analyze("DROP VIEW x; DECLARE c CURSOR FOR SELECT 1", CATALOG)[1]
    assert (declare.kind, declare.name, declare.output) == ("declare", "c", None)
    after_udf = analyze("SELECT public.f(); SELECT email FROM customers", CATALOG)
    assert after_udf[1].output is None
    after_set = analyze("SET search_path = evil, public; SELECT email FROM customers", CATALOG)
    assert after_set[1].output is None
    fine = analyze("BEGIN; SELECT email FROM customers; COMMIT", CATALOG)
    assert fine[1].output == (direct("email"),)


def test_unparsed() -> None:
    assert analyze("SELECT 'unterminated", CATALOG) == [
        Analysis(kind="unparsed", output=None, reads_unknown=True)
    ]
    result = analyze("SELECT 1; SELECT ((( ; SELECT 2", CATALOG)
    assert [a.kind for a in result] == ["select", "unparsed", "select"]
    assert result[2].output is None  # after an unparsed statement nothing is trusted
    deep = "SELECT " + "(" * 3000 + "1" + ")" * 3000
    assert one(deep).kind in ("select", "unparsed")


def test_lexing_follows_the_server() -> None:
    # Nested comments: the server sees SELECT 1 FROM customers.
    assert output("SELECT 1 /* /* */ , ssn AS x */ FROM customers") == (CLEAN,)
    # String continuation across a newline is one literal.
    assert output("SELECT 'a'\n'b' FROM customers") == (CLEAN,)
    # Whether a backslash ends a string depends on a setting: unknown means unparsed.
    sql = "SELECT 'a\\' , ssn -- '\nFROM customers"
    assert one(sql).kind == "unparsed"
    plain = analyze(sql, CATALOG, backslash_escapes=False)
    assert plain[0].output == (CLEAN, direct("ssn"))
    assert analyze(sql, CATALOG, backslash_escapes=True)[0].output == (CLEAN,)


def test_long_names_are_cut_like_the_server_cuts_them() -> None:
    long = "x" * 63
    relations = {("public", long): Relation("public", long, "r", (("ssn", 25),))}
    catalog = Catalog(relations, functions=FUNCTIONS)
    origin = first(f"SELECT ssn FROM {long}zzz", catalog)  # noqa: S608 - test constants
    assert origin == ColumnOrigin(frozenset({("public", long, "ssn")}), direct=True)


def test_analyze_never_raises() -> None:
    for sql in [
        "",
        "(",
        ")",
        "SELECT",
        "COPY",
        "COPY (",
        "FETCH",
        "PREPARE p AS",
        "EXPLAIN",
        "\x00",
        "SELECT 1 +",
    ]:
        analyze(sql, CATALOG)


_FRAGMENTS = [
    "SELECT",
    "ssn",
    "c",
    "customers",
    "FROM",
    "WHERE",
    "(",
    ")",
    ",",
    ".",
    "*",
    "'x'",
    "1",
    "UNION",
    "JOIN",
    "USING",
    "LATERAL",
    "AS",
    "WITH",
    "RECURSIVE",
    "::",
    "text",
    "upper",
    "row_to_json",
    "COPY",
    "TO",
    "STDOUT",
    "INSERT",
    "INTO",
    "VALUES",
    "RETURNING",
    ";",
    "DECLARE",
    "CURSOR",
    "FOR",
    "PREPARE",
    "EXPLAIN",
    "CREATE",
    "VIEW",
    "TABLE",
    "/*",
    "*/",
    "--",
    "\n",
    "$$",
    "E'\\'",
    '"Q"',
    "$1",
    "ORDER",
    "BY",
    "OVER",
    "count",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=25))
def test_arbitrary_text_never_raises(fragments: list[str]) -> None:
    for analysis in analyze(" ".join(fragments), CATALOG):
        assert isinstance(analysis, Analysis)


def test_statements_differing_only_in_numbers_share_one_analysis() -> None:
    first = analyze("SELECT ssn FROM customers WHERE id = 1", CATALOG)[0]
    second = analyze("SELECT ssn FROM customers WHERE id = 2.5e3", CATALOG)[0]
    assert second is first  # from the cache, not parsed again
    # Strings stay in the key: they can change lineage (here, which COPY format applies).
    csv = analyze("COPY customers TO STDOUT (FORMAT 'csv')", CATALOG)[0]
    text = analyze("COPY customers TO STDOUT (FORMAT 'text')", CATALOG)[0]
    assert csv.copy is not None and text.copy is not None
    assert (csv.copy.format, text.copy.format) == ("csv", "text")
