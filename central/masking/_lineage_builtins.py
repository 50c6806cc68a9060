"""What lineage knows of PostgreSQL itself: function-like syntax, built-ins that read data
their arguments do not show, set-returning functions' columns, type names sqlglot does not
know, system columns, and how the server names an unaliased result column.
"""

from __future__ import annotations

from typing import Final

from sqlglot import exp

SYSTEM_COLUMNS: Final = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"})

# Function-like syntax PostgreSQL's grammar turns into its own constructs (never looked up on
# the search path), which sqlglot leaves as exp.Anonymous.
SYNTAX_NAMES: Final = frozenset(
    {
        "array",
        "coalesce",
        "greatest",
        "grouping",
        "json",
        "json_array",
        "json_arrayagg",
        "json_exists",
        "json_object",
        "json_objectagg",
        "json_query",
        "json_scalar",
        "json_serialize",
        "json_value",
        "least",
        "merge_action",
        "nullif",
        "row",
        "xmlconcat",
        "xmlelement",
        "xmlexists",
        "xmlforest",
        "xmlparse",
        "xmlpi",
        "xmlroot",
        "xmlserialize",
    }
)
# Built-ins whose result holds data their arguments do not show: SQL text run from a string,
# files, large objects, replication changes, other sessions' statement text. Their output
# is of unknown origin.
DATA_READERS: Final = frozenset(
    {
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "database_to_xml",
        "database_to_xml_and_xmlschema",
        "database_to_xmlschema",
        "lo_get",
        "loread",
        "pg_logical_slot_get_binary_changes",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_peek_binary_changes",
        "pg_logical_slot_peek_changes",
        "pg_mcv_list_items",
        "pg_read_binary_file",
        "pg_read_file",
        "pg_stat_get_activity",
        "pg_stat_get_backend_activity",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "schema_to_xml",
        "schema_to_xml_and_xmlschema",
        "schema_to_xmlschema",
        "table_to_xml",
        "table_to_xml_and_xmlschema",
        "table_to_xmlschema",
        "ts_rewrite",
        "ts_stat",
    }
)
# Typed sqlglot nodes that stand for a built-in function call (for `calls`).
SYNTAX_CALLS: Final[dict[type[exp.Expr], str]] = {
    exp.Substring: "substring",
    exp.Trim: "trim",
    exp.Extract: "extract",
    exp.StrPosition: "position",
    exp.Overlay: "overlay",
    exp.Normalize: "normalize",
    exp.Unnest: "unnest",
    exp.XMLElement: "xmlelement",
    exp.XMLTable: "xmltable",
}
# Set-returning built-ins and the columns they return, where PostgreSQL names them itself;
# `None` for a single column named after the alias or the function.
SRF_COLUMNS: Final[dict[str, tuple[str, ...] | None]] = {
    "generate_series": None,
    "generate_subscripts": None,
    "regexp_split_to_table": None,
    "regexp_matches": None,
    "string_to_table": None,
    "json_object_keys": None,
    "jsonb_object_keys": None,
    "json_each": ("key", "value"),
    "jsonb_each": ("key", "value"),
    "json_each_text": ("key", "value"),
    "jsonb_each_text": ("key", "value"),
    "json_array_elements": ("value",),
    "jsonb_array_elements": ("value",),
    "json_array_elements_text": ("value",),
    "jsonb_array_elements_text": ("value",),
}
# Built-in types sqlglot does not know (it calls them USERDEFINED). A cast to any other type
# it does not know may run a user's code: a domain's CHECK, a user type's input function.
BUILTIN_TYPES: Final = frozenset(
    {
        "aclitem",
        "bit",
        "box",
        "char",
        "cidr",
        "circle",
        "int2vector",
        "jsonpath",
        "line",
        "lseg",
        "macaddr8",
        "oidvector",
        "path",
        "pg_lsn",
        "pg_snapshot",
        "point",
        "polygon",
        "record",
        "refcursor",
        "regconfig",
        "regdictionary",
        "tsquery",
        "tsvector",
        "txid_snapshot",
        "varbit",
    }
)


def _name(node: exp.Expr | str | None) -> str:
    if node is None:
        return ""
    return node if isinstance(node, str) else node.name


def figure_name(node: exp.Expr) -> tuple[str, bool]:
    """The column name PostgreSQL gives an unaliased select-list expression (FigureColname),
    and whether it is only a guess."""
    if isinstance(node, exp.Column):
        return node.name, False
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Identifier):
        return node.expression.name, False
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        return figure_name(node.expression)
    if isinstance(node, (exp.Paren, exp.Window, exp.Filter, exp.WithinGroup, exp.Collate)):
        return figure_name(node.this)
    if isinstance(node, exp.Anonymous):
        return _name(node.this), False
    if isinstance(node, exp.Cast):
        name, guessed = figure_name(node.this)
        if name != "?column?":
            return name, guessed
        return node.to.sql("postgres").lower(), True
    if isinstance(node, exp.Case):
        return "case", False
    if isinstance(node, exp.Exists):
        return "exists", False
    if isinstance(node, exp.Array):
        return "array", False
    if isinstance(node, exp.Boolean):
        return "bool", False
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select):
        first = node.this.expressions[0] if node.this.expressions else None
        if isinstance(first, exp.Alias):
            return first.alias, False
        return figure_name(first) if first is not None else ("?column?", False)
    if isinstance(node, exp.Func):
        return SYNTAX_CALLS.get(type(node), node.key), True
    return "?column?", False
