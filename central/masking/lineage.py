"""Column lineage of PostgreSQL statements: where each result value comes from. Sans-io.

Inline masking rewrites result rows on their way to the client, and decides per result column:
a column whose values come from a masked base column is masked; a column lineage cannot trace
gets the content detectors (or is masked outright in strict mode). `analyze()` supplies what
that decision needs, per statement of a query string: for each result column the base columns
its values are made of (`ColumnOrigin`), and for the statement as a whole what it reads, writes
and calls, and the names, formats and bodies of cursors, prepared statements, COPY and DDL.

The one property that matters
-----------------------------
No column is ever reported clean (no sources, not unknown) when data of a base column can flow
into it. Every doubt resolves towards more sources or `unknown`: a name that could mean two
things means both, a function that is not a pg_catalog built-in is unknown (it can read any
table), a relation the catalog does not know has unknown columns, a statement that does not
parse is "unparsed" with every output unknown. Over-reporting costs a masked column too many;
under-reporting is a leak.

How a statement is read
-----------------------
`_lineage_text` cuts the string into statements with the policy's lexer (so lineage, the policy
and the server agree on where statements and strings end) and hands sqlglot a normalised text
of each. Statements with a query in them are walked by `_lineage_walk` (queries, expressions,
names, views) and `_lineage_dml` (the statement level, INSERT / UPDATE / DELETE / MERGE); the
others (COPY, cursors, prepared statements, EXPLAIN, DDL, transaction control, SET) are read
from their tokens here, which is both sturdier than sqlglot's generic Command and exact about
names as the server folds them.

A statement that may change what names mean -- DDL, a CREATE FUNCTION or DO block, a call of a
user function (which can run DDL) or of set_config, SET search_path or SET ROLE, anything
unparsed -- makes the catalog stale for the statements after it in the same string (`CREATE OR
REPLACE VIEW v AS SELECT ssn AS email ...; SELECT email FROM v` must not trust v's old
definition). Those are reported with rows of unknown shape that may read, write and pass on
any base column of the catalog. SET search_path / role / session authorization, and RESET and
DISCARD of them, are reported as "ddl" for the same reason: the caller drops its catalog after
DDL, and that is what they need too.

The parts (`_lineage_text`, `_lineage_scope`, `_lineage_walk`, `_lineage_dml`,
`_lineage_builtins`, `_lineage_copy`) are private to this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Generic, Literal, TypeAlias, TypeVar

from sqlglot import exp

from central.masking._lineage_copy import copy_format
from central.masking._lineage_dml import Outcome, Walker, sources
from central.masking._lineage_scope import UNKNOWN as _UNKNOWN_FLOW
from central.masking._lineage_scope import Flow, Unsupported
from central.masking._lineage_text import (
    ParseFailed,
    closing_paren,
    find_word,
    name_at,
    parse,
    punct_at,
    qualified_name,
    split,
    split_commas,
    text_of,
    word_at,
)
from central.masking.catalog import SYSTEM_SCHEMAS, Catalog
from central.masking.rows import CopyFormat
from central.policy.sql import Token

BaseColumn: TypeAlias = tuple[str, str, str]  # (schema, relation, column) of a base relation
NO_SOURCES: frozenset[BaseColumn] = frozenset()

Kind: TypeAlias = Literal[
    "select",  # SELECT, VALUES, TABLE, WITH ... SELECT, SHOW, EXPLAIN: returns rows
    "insert",
    "update",
    "delete",
    "merge",
    "copy_out",  # COPY ... TO STDOUT
    "copy_in",  # COPY ... FROM STDIN
    "copy_other",  # COPY to or from a file or program
    "declare",  # DECLARE name CURSOR FOR query
    "fetch",  # FETCH / MOVE ... FROM name
    "close",  # CLOSE name | CLOSE ALL (name None)
    "prepare",  # PREPARE name AS statement
    "execute",  # EXECUTE name(...)
    "deallocate",  # DEALLOCATE name | ALL (name None)
    "create_view",  # CREATE [OR REPLACE] [TEMP] [MATERIALIZED] VIEW name AS query
    "create_table_as",  # CREATE TABLE name AS query, SELECT ... INTO name
    "ddl",  # any other CREATE / ALTER / DROP / RENAME / COMMENT / TRUNCATE ...
    "code",  # DO, CREATE FUNCTION / PROCEDURE / TRIGGER: a body lineage does not follow
    "transaction",  # BEGIN, COMMIT, ROLLBACK, SAVEPOINT ...
    "other",  # SET, RESET, LISTEN, VACUUM, ... : returns no rows, reads nothing
    "unparsed",  # the parser could not read it: every output is of unknown origin
]


@dataclass(frozen=True, slots=True)
class ColumnOrigin:
    """Where one result column's values come from.

    `sources` are the base-relation columns whose values flow into it (through aliases,
    functions, casts, operators, CASE, aggregates, subqueries, CTEs, UNION, views, whole-row
    references). `direct` is True only when the value is one source column passed through
    unchanged (aliases, subqueries, CTEs, UNION branches and views that only pass it on; not
    even a cast). `unknown` is True when part of the value comes from something lineage cannot
    follow: a function that is not a pg_catalog built-in, a relation missing from the catalog,
    a table function, a system column of unknown meaning.
    """

    sources: frozenset[BaseColumn] = NO_SOURCES
    direct: bool = False
    unknown: bool = False


UNKNOWN = ColumnOrigin(unknown=True)


@dataclass(frozen=True, slots=True)
class Call:
    """A function call anywhere in the statement, with what flows into its arguments."""

    name: str  # lower-case, schema-qualified when written so: "upper", "public.f"
    volatile: bool  # not a pg_catalog built-in, or one whose provolatile is "v"
    sources: frozenset[BaseColumn] = NO_SOURCES
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Write:
    """Values stored into a relation's column (INSERT, UPDATE SET, CREATE TABLE AS, SELECT
    INTO, MERGE). `target` is (schema, relation, column); schema "" when the relation is not in
    the catalog (a new table) and it was written unqualified."""

    target: BaseColumn
    sources: frozenset[BaseColumn] = NO_SOURCES
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Analysis:
    """What one statement does with data, as far as masking is concerned."""

    kind: Kind
    # Result columns in order: the SELECT list, RETURNING, the COPY column list, a DECLAREd or
    # PREPAREd query's. None when the statement returns rows of a shape lineage cannot tell
    # (then every column is of unknown origin); () when it returns no rows.
    output: tuple[ColumnOrigin, ...] | None = ()
    reads: frozenset[BaseColumn] = NO_SOURCES  # every base column read anywhere (WHERE too)
    reads_unknown: bool = False  # reads something lineage cannot follow (UDF, unknown relation)
    writes: tuple[Write, ...] = ()
    calls: tuple[Call, ...] = ()
    name: str | None = None  # cursor or prepared-statement name (declare, fetch, close, ...)
    relations: frozenset[tuple[str, str]] = frozenset()  # ddl: relations created/altered/dropped
    view: tuple[str, str, str] | None = None  # create_view: (schema or "", name, query SQL)
    copy: CopyFormat | None = None  # copy_out / copy_in: the data format, None if unsupported
    body: str | None = None  # code: the body text (DO block, function source)


K = TypeVar("K")
V = TypeVar("V")

UNPARSED: Final = Analysis(kind="unparsed", output=None, reads_unknown=True)


def analyze(sql: str, catalog: Catalog, *, backslash_escapes: bool | None = None) -> list[Analysis]:
    """One Analysis per statement in `sql` (a Query may hold several), in order.

    `backslash_escapes` is as for `central.policy.sql.classify`: whether a backslash escapes a
    quote in an ordinary '' string (the server's standard_conforming_strings is off). None
    (unknown) reads the text both ways, and a text the two readings cut differently is
    unparsed.

    Empty statements (`;;`, a text of only comments) produce no Analysis: the server answers
    them with nothing, except a query string with no statement at all, which gets one
    EmptyQueryResponse -- and an empty list here. Text that cannot be cut into statements the
    way the server cuts it gives a single unparsed Analysis. Never raises.
    """
    found = _BY_TEXT.get(catalog, (backslash_escapes, sql))
    if found is None:
        found = _analyze(sql, catalog, backslash_escapes)
        _BY_TEXT.put(catalog, (backslash_escapes, sql), found)
    return found


def _analyze(sql: str, catalog: Catalog, backslash_escapes: bool | None) -> list[Analysis]:
    statements = split(sql, backslash_escapes)
    if statements is None:
        return [UNPARSED]
    out: list[Analysis] = []
    stale = False
    for statement in statements:
        try:
            analysis, changes = _cached_statement(sql, statement, catalog)
        except Exception:  # sqlglot, the walker, recursion: whatever it is, fail closed
            analysis, changes = UNPARSED, True
        out.append(_distrusted(analysis, catalog) if stale else analysis)
        stale = stale or changes
    return out


class _Memo(Generic[K, V]):
    """Results per catalog object, bounded (oldest out first). Keyed by the catalog's id and
    checked by identity, so a catalog that was dropped and whose id was reused never hits."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._found: dict[tuple[int, K], tuple[Catalog, V]] = {}

    def get(self, catalog: Catalog, key: K) -> V | None:
        hit = self._found.get((id(catalog), key))
        return hit[1] if hit is not None and hit[0] is catalog else None

    def put(self, catalog: Catalog, key: K, value: V) -> None:
        if len(self._found) >= self._size:
            self._found.pop(next(iter(self._found)))
        self._found[(id(catalog), key)] = (catalog, value)


# Whole texts, exactly: a repeated Query or Parse skips even the lexer.
_BY_TEXT: Final[_Memo[tuple[bool | None, str], list[Analysis]]] = _Memo()
# Statements by their tokens with numbers taken out: `... WHERE aid = 42` and `... WHERE aid
# = 43` have one lineage, and a workload of such statements should not pay the parser for
# each. Numbers never change where a column's values come from; strings can (COPY options,
# query_to_xml's query), so they stay in the key. Only plain queries and writes are kept:
# other kinds carry text cut from the statement (view and code bodies).
_BY_SHAPE: Final[_Memo[tuple[tuple[str, str], ...], Analysis]] = _Memo()
_CACHEABLE: Final = frozenset({"select", "insert", "update", "delete", "merge"})


def _cached_statement(sql: str, tokens: Sequence[Token], catalog: Catalog) -> tuple[Analysis, bool]:
    key = tuple((t[0], "1" if t[0] == "n" else t[1]) for t in tokens)
    hit = _BY_SHAPE.get(catalog, key)
    if hit is not None:
        return hit, False
    analysis, changes = _statement(sql, tokens, catalog, 0)
    if not changes and analysis.kind in _CACHEABLE and analysis.view is None:
        _BY_SHAPE.put(catalog, key, analysis)
    return analysis, changes


def _distrusted(a: Analysis, catalog: Catalog) -> Analysis:
    """A statement after one that may have changed the catalog (in the same string, so read
    against the catalog as it was): its names may mean anything now, so its rows are of
    unknown shape and it may read, write and pass on any base column there is. Kind and name
    stay, for the caller's bookkeeping of cursors and prepared statements."""
    anything = frozenset(
        (schema, name, column)
        for (schema, name), rel in catalog.relations.items()
        if rel.kind not in ("v", "m") or schema in SYSTEM_SCHEMAS
        for column in rel.column_names
    )
    return replace(
        a,
        output=None if a.output else a.output,
        reads=a.reads | anything,
        reads_unknown=True,
        writes=tuple(Write(w.target, w.sources | anything, True) for w in a.writes),
        calls=tuple(Call(c.name, c.volatile, c.sources | anything, True) for c in a.calls),
    )


# --------------------------------------------------------------------------------------------
# Dispatch on the statement's first words
# --------------------------------------------------------------------------------------------

_QUERY_VERBS: Final = frozenset(
    {"select", "with", "values", "table", "insert", "update", "delete", "merge"}
)
_TRANSACTION_VERBS: Final = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}
)
_DDL_VERBS: Final = frozenset(
    {
        "alter",
        "drop",
        "comment",
        "truncate",
        "grant",
        "revoke",
        "refresh",
        "security",
        "reassign",
        "import",
    }
)
_OTHER_VERBS: Final = frozenset(
    {
        "listen",
        "unlisten",
        "notify",
        "vacuum",
        "analyze",
        "analyse",
        "checkpoint",
        "lock",
        "reindex",
        "cluster",
    }
)
_CODE_OBJECTS: Final = frozenset(
    {"function", "procedure", "trigger", "rule", "language", "transform", "event"}
)
_CREATE_MODIFIERS: Final = frozenset(
    {
        "or",
        "replace",
        "temp",
        "temporary",
        "local",
        "global",
        "unlogged",
        "recursive",
        "materialized",
        "trusted",
        "procedural",
        "constraint",
        "unique",
        "default",
    }
)
_MAX_DEPTH: Final = 8  # PREPARE / EXPLAIN / DECLARE around a statement
_OFF: Final = frozenset({"false", "off", "0", "no"})


def _statement(
    sql: str, tokens: Sequence[Token], catalog: Catalog, depth: int
) -> tuple[Analysis, bool]:
    """One statement's Analysis, and whether it may change what names mean for the
    statements after it."""
    if not tokens or depth > _MAX_DEPTH:
        return UNPARSED, True
    verb = word_at(tokens, 0)
    if verb in _QUERY_VERBS or punct_at(tokens, 0, "("):
        walker = Walker(catalog)
        outcome = walker.statement(parse(tokens))
        return _analysis(outcome.kind, walker, outcome), walker.changes_names or (
            outcome.kind == "create_table_as"
        )
    if verb == "explain":
        return _explain(sql, tokens, catalog, depth)
    if verb == "show":
        width = 3 if word_at(tokens, 1) == "all" else 1  # SHOW ALL: name, setting, description
        return Analysis(kind="select", output=(ColumnOrigin(),) * width), False
    if verb == "copy":
        return _copy(tokens, catalog)
    if verb in ("declare", "prepare"):
        return _wrapper(sql, tokens, catalog, depth)
    if verb in ("fetch", "move"):
        name = name_at(tokens, len(tokens) - 1) if len(tokens) > 1 else None
        if name is None:
            return UNPARSED, True
        # FETCH returns the cursor's rows (the caller knows their shape); MOVE returns none.
        return Analysis(kind="fetch", output=None if verb == "fetch" else (), name=name), False
    if verb in ("close", "deallocate"):
        i = 2 if verb == "deallocate" and word_at(tokens, 1) == "prepare" else 1
        name = None if word_at(tokens, i) == "all" else name_at(tokens, i)
        if name is None and word_at(tokens, i) != "all":
            return UNPARSED, True
        return Analysis(kind="close" if verb == "close" else "deallocate", name=name), False
    if verb == "execute":
        return _execute(tokens, catalog)
    if verb in _TRANSACTION_VERBS:
        return Analysis(kind="transaction"), False
    if verb in ("do", "load"):  # procedural code, a shared library
        return Analysis(kind="code", body=text_of(sql, tokens)), True
    if verb == "call":  # a procedure: its body is code, and it may return a row
        walker = Walker(catalog)
        walker.statement(parse([("w", "select", 0, 0), *tokens[1:]]))
        return Analysis(
            kind="code",
            output=None,
            reads_unknown=True,
            calls=_calls(walker),
            body=text_of(sql, tokens),
        ), True
    if verb == "create":
        return _create(sql, tokens, catalog)
    if verb in _DDL_VERBS:
        return Analysis(kind="ddl", relations=_ddl_relations(tokens, catalog)), True
    if verb in ("set", "reset", "discard"):
        return _setting(tokens)
    if verb in _OTHER_VERBS:
        return Analysis(kind="other"), False
    return UNPARSED, True


def _analysis(
    kind: Kind,
    walker: Walker,
    outcome: Outcome,
    relations: frozenset[tuple[str, str]] = frozenset(),
) -> Analysis:
    """The Analysis of a statement the walker read."""
    output = None if outcome.output is None else tuple(_origin(f) for f in outcome.output)
    return Analysis(
        kind=kind,
        output=output,
        reads=frozenset(outcome.reads),
        reads_unknown=walker.unknown_read,
        writes=_writes(walker),
        calls=_calls(walker),
        relations=relations,
    )


def _origin(flow: Flow) -> ColumnOrigin:
    direct = flow.direct and len(flow.sources) == 1 and not flow.unknown
    return ColumnOrigin(flow.sources, direct, flow.unknown)


def _calls(walker: Walker) -> tuple[Call, ...]:
    calls = (Call(c.name, c.volatile, c.flow.sources, c.flow.unknown) for c in walker.calls)
    return tuple(dict.fromkeys(calls))  # a view used twice, a recursive CTE's rounds


def _writes(walker: Walker) -> tuple[Write, ...]:
    writes = (Write(target, f.sources, f.unknown) for target, f in walker.writes)
    return tuple(dict.fromkeys(writes))


def _explain(
    sql: str, tokens: Sequence[Token], catalog: Catalog, depth: int
) -> tuple[Analysis, bool]:
    """EXPLAIN returns one column of plan text. Only with ANALYZE does the statement run (and
    write); what it reads and calls is reported either way, as planning may call functions."""
    i, analyzes = 1, False
    if punct_at(tokens, 1, "("):
        end = closing_paren(tokens, 1)
        for option in split_commas(tokens[2:end]):
            value = word_at(option, 1)
            if word_at(option, 0) in ("analyze", "analyse") and value not in _OFF:
                analyzes = True
        i = end + 1
    else:
        while word_at(tokens, i) in ("analyze", "analyse", "verbose"):
            analyzes = analyzes or word_at(tokens, i) != "verbose"
            i += 1
    inner, changes = _statement(sql, tokens[i:], catalog, depth + 1)
    return Analysis(
        kind="select",
        output=(ColumnOrigin(),),
        reads=inner.reads,
        reads_unknown=inner.reads_unknown,
        writes=inner.writes if analyzes else (),
        calls=inner.calls,
    ), changes


def _wrapper(
    sql: str, tokens: Sequence[Token], catalog: Catalog, depth: int
) -> tuple[Analysis, bool]:
    """DECLARE name ... CURSOR ... FOR query, PREPARE name [(types)] AS statement: the inner
    statement's lineage under the wrapper's name."""
    verb = word_at(tokens, 0)
    if verb == "prepare" and word_at(tokens, 1) == "transaction":
        return Analysis(kind="transaction"), False
    name = name_at(tokens, 1)
    start = find_word(tokens, "cursor" if verb == "declare" else "as", 2)
    if verb == "declare" and start is not None:
        start = find_word(tokens, "for", start + 1)
    if name is None or start is None:
        return UNPARSED, True
    inner, changes = _statement(sql, tokens[start + 1 :], catalog, depth + 1)
    kind: Kind = "declare" if verb == "declare" else "prepare"
    # PREPARE runs nothing yet; DECLARE runs its query (a user function in it may do DDL).
    return replace(inner, kind=kind, name=name), changes and verb == "declare"


def _execute(tokens: Sequence[Token], catalog: Catalog) -> tuple[Analysis, bool]:
    """EXECUTE name [(params)]: what runs is the prepared statement the caller remembers;
    the parameters are expressions, and may call functions."""
    name = name_at(tokens, 1)
    if name is None:
        return UNPARSED, True
    walker = Walker(catalog)
    if punct_at(tokens, 2, "(") and closing_paren(tokens, 2) > 3:
        walker.statement(parse([("w", "select", 0, 0), *tokens[3 : closing_paren(tokens, 2)]]))
    return Analysis(
        kind="execute",
        output=None,
        reads_unknown=walker.unknown_read,
        calls=_calls(walker),
        name=name,
    ), True


# --------------------------------------------------------------------------------------------
# CREATE, DDL, SET
# --------------------------------------------------------------------------------------------


def _create(sql: str, tokens: Sequence[Token], catalog: Catalog) -> tuple[Analysis, bool]:
    i = 1
    while word_at(tokens, i) in _CREATE_MODIFIERS:
        i += 1
    obj = word_at(tokens, i)
    if obj in _CODE_OBJECTS:  # its body runs later, where lineage does not follow
        return Analysis(kind="code", body=text_of(sql, tokens)), True
    if obj not in ("view", "table"):
        return Analysis(kind="ddl", relations=_ddl_relations(tokens, catalog)), True
    i += 1
    if word_at(tokens, i) == "if":  # IF NOT EXISTS
        i += 3
    schema, name, i = qualified_name(tokens, i)
    names: list[str] = []
    if punct_at(tokens, i, "("):
        end = closing_paren(tokens, i)
        names = [t[1] for t in tokens[i + 1 : end] if t[0] in "wq"]
        i = end + 1
    start = find_word(tokens, "as", i)
    if name is None or start is None:  # CREATE TABLE t (a int, ...): plain DDL
        return Analysis(kind="ddl", relations=_ddl_relations(tokens, catalog)), True
    query = _strip_with_suffix(tokens[start + 1 :])
    target = _resolved(schema, name, catalog)
    walker = Walker(catalog)
    if obj == "view":
        try:
            reads = walker.statement(parse(query)).reads
        except (ParseFailed, Unsupported):
            reads, walker.unknown_read = set(), True
        return Analysis(
            kind="create_view",
            reads=frozenset(reads),
            reads_unknown=walker.unknown_read,
            calls=_calls(walker),
            relations=frozenset({target}),
            view=(schema or "", name, text_of(sql, query)),
        ), True
    # A new table: written as it is named (schema "" when unqualified), like SELECT INTO's.
    if word_at(query, 0) == "execute":  # CREATE TABLE t AS EXECUTE p: rows of unknown origin
        walker.writes.append(((schema or "", name, "?"), _UNKNOWN_FLOW))
        walker.unknown_read = True
        outcome = Outcome("create_table_as", [], set())
    else:
        res = walker.query(parse(query), None)
        walker.store(schema or "", name, names, res)
        outcome = Outcome("create_table_as", [], res.reads | sources(res.flows()))
    return _analysis("create_table_as", walker, outcome, frozenset({target})), True


def _strip_with_suffix(tokens: Sequence[Token]) -> Sequence[Token]:
    """Drop a view's `WITH [CASCADED | LOCAL] CHECK OPTION`, a table's `WITH [NO] DATA`."""
    words = [t[1] if t[0] == "w" else "" for t in tokens[-4:]]
    if words[-2:] == ["with", "data"]:
        return tokens[:-2]
    if words[-3:] in (["with", "no", "data"], ["with", "check", "option"]):
        return tokens[:-3]
    if (
        len(words) == 4
        and words[0] == "with"
        and words[1:]
        in (
            ["cascaded", "check", "option"],
            ["local", "check", "option"],
        )
    ):
        return tokens[:-4]
    return tokens


def _resolved(schema: str | None, name: str, catalog: Catalog) -> tuple[str, str]:
    rel = catalog.resolve(schema, name)
    return (rel.schema, rel.name) if rel is not None else (schema or "", name)


def _ddl_relations(tokens: Sequence[Token], catalog: Catalog) -> frozenset[tuple[str, str]]:
    """The relations a DDL statement creates, alters, drops, renames, truncates, comments on
    or grants on, as far as they can be told: from sqlglot's tree, or from the words after
    TABLE / VIEW / SEQUENCE / INDEX / ON where sqlglot cannot read the statement."""
    found: set[tuple[str, str]] = set()
    try:
        tree = parse(tokens)
    except ParseFailed:
        return _ddl_relations_by_words(tokens, catalog)
    kind = str(tree.args.get("kind") or "").upper()
    if isinstance(tree, (exp.Create, exp.Drop)) and kind not in ("TABLE", "VIEW", "INDEX"):
        if kind not in ("SEQUENCE", "MATERIALIZED VIEW", "FOREIGN TABLE", ""):
            return frozenset()  # a function, schema, type, role ...: not a relation
    renamed = {id(r.this) for r in tree.find_all(exp.AlterRename)}
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Identifier) and id(table) not in renamed:
            found.add(_resolved(table.db or None, table.name, catalog))
    if isinstance(tree, exp.Alter) and isinstance(tree.this, exp.Table):
        schema = _resolved(tree.this.db or None, tree.this.name, catalog)[0]
        for rename in tree.find_all(exp.AlterRename):  # RENAME TO: same schema, new name
            found.add((schema, rename.this.name))
    if isinstance(tree, exp.Comment) and isinstance(tree.this, exp.Column) and tree.this.table:
        found.add(_resolved(tree.this.db or None, tree.this.table, catalog))
    return frozenset(found)


_NOT_RELATION_AFTER_ON: Final = frozenset(
    {
        "all",
        "schema",
        "function",
        "procedure",
        "routine",
        "database",
        "type",
        "domain",
        "language",
        "tablespace",
        "foreign",
        "large",
        "sequence",
        "event",
        "role",
    }
)


def _ddl_relations_by_words(
    tokens: Sequence[Token], catalog: Catalog
) -> frozenset[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for i in range(len(tokens)):
        word = word_at(tokens, i)
        if word not in ("table", "view", "sequence", "index", "on"):
            continue
        j = i + 1
        if word == "on" and word_at(tokens, j) in ("table", "view", "sequence"):
            continue  # the next iteration reads it
        if word == "on" and word_at(tokens, j) in _NOT_RELATION_AFTER_ON:
            continue
        while word_at(tokens, j) in ("if", "not", "exists", "only", "concurrently"):
            j += 1
        while True:
            schema, name, j = qualified_name(tokens, j)
            if name is None or name in ("materialized",):
                break
            found.add(_resolved(schema, name, catalog))
            if not punct_at(tokens, j, ","):
                break
            j += 1
    return frozenset(found)


def _setting(tokens: Sequence[Token]) -> tuple[Analysis, bool]:
    """SET / RESET / DISCARD. Those that change how names resolve (the search path, the role
    and with it `$user` and what is visible, temporary tables) are reported as DDL, so the
    caller reads its catalog again; the rest are "other"."""
    verb = word_at(tokens, 0)
    i = 2 if word_at(tokens, 1) in ("session", "local") and word_at(tokens, 2) != "" else 1
    target = word_at(tokens, i)
    if word_at(tokens, 1) == "session" and target == "authorization":
        target = "role"
    changes = {
        "set": ("search_path", "role", "schema"),
        "reset": ("all", "search_path", "role", "session"),
        "discard": ("all", "temp", "temporary"),
    }[verb]
    if target in changes:
        return Analysis(kind="ddl"), True
    return Analysis(kind="other"), False


# --------------------------------------------------------------------------------------------
# COPY
# --------------------------------------------------------------------------------------------


def _copy(tokens: Sequence[Token], catalog: Catalog) -> tuple[Analysis, bool]:
    """COPY { table [(columns)] | (query) } { TO | FROM } { STDOUT | STDIN | 'file' | PROGRAM
    'command' } [options]. Only STDOUT / STDIN move data over the connection; a file or
    program on the server is "copy_other" (what it reads is still reported)."""
    i, binary = 1, False
    if word_at(tokens, 1) == "binary":  # the pre-7.3 form COPY BINARY t
        i, binary = 2, True
    walker = Walker(catalog)
    flows: list[Flow] | None
    target: tuple[str, str] | None = None
    columns: list[str] = []
    if punct_at(tokens, i, "("):
        end = closing_paren(tokens, i)
        res = walker.query(parse(tokens[i + 1 : end]), None)
        flows = None if res.rest is not None else [c.flow for c in res.columns]
        reads = res.reads | sources(res.flows())
        i = end + 1
    else:
        schema, name, i = qualified_name(tokens, i)
        if name is None:
            return UNPARSED, True
        table = exp.Table(this=exp.to_identifier(name), db=exp.to_identifier(schema))
        item = walker.relation(table, None, ctes=False)
        target = _resolved(schema, name, catalog)
        if punct_at(tokens, i, "("):
            end = closing_paren(tokens, i)
            columns = [t[1] for t in tokens[i + 1 : end] if t[0] in "wq"]
            i = end + 1
            flows = [_copy_column(item.lookup(c), item.rest) for c in columns]
        else:
            columns = [n for n, _ in item.columns]
            flows = None if item.rest is not None else [f for _, f in item.columns]
        reads = sources(flows or [])
    direction = word_at(tokens, i)
    i += 1
    if word_at(tokens, i) in ("stdout", "stdin"):  # either word means the connection
        stream, i = True, i + 1
    elif word_at(tokens, i) == "program" and i + 1 < len(tokens) and tokens[i + 1][0] == "s":
        stream, i = False, i + 2
    elif i < len(tokens) and tokens[i][0] == "s":  # a file on the server
        stream, i = False, i + 1
    else:
        return UNPARSED, True
    if direction not in ("to", "from"):
        return UNPARSED, True
    stop = find_word(tokens, "where", i)  # COPY FROM ... WHERE: filters the input
    copy = copy_format(tokens[i:stop], binary, direction == "from")
    if direction == "to":
        output = None if flows is None else tuple(_origin(f) for f in flows)
        return Analysis(
            kind="copy_out" if stream else "copy_other",
            output=output if stream else (),
            reads=frozenset(reads),
            reads_unknown=walker.unknown_read,
            writes=_writes(walker),  # COPY (INSERT ... RETURNING ...) TO STDOUT
            calls=_calls(walker),
            copy=copy if stream else None,
        ), walker.changes_names
    if target is None:
        return UNPARSED, True
    # Rows from the client are the client's own; from a server file they could be anything.
    names = columns or ["?"]
    return Analysis(
        kind="copy_in" if stream else "copy_other",
        writes=tuple(Write((*target, c), unknown=not stream) for c in names),
        copy=copy if stream else None,
    ), not stream


def _copy_column(flows: list[Flow], rest: Flow | None) -> Flow:
    """A column named in COPY's column list: its flow, or an unknown one."""
    if flows:
        return flows[0]
    return rest if rest is not None else _UNKNOWN_FLOW
