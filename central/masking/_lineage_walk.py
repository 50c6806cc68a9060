"""The walker behind `central.masking.lineage`: where the values of a query's columns come from.

It reads one sqlglot tree the way PostgreSQL's analyser does, level by level, and computes a
`Flow` for every value: the base columns it is made from, whether it is one of them passed on
unchanged (`direct`), and whether something it cannot follow contributes (`unknown`).

Scopes and names
----------------
Each query level (a SELECT, a VALUES list, a DML statement) has a `Scope`: the FROM items it
can see (`Frame`), its CTEs, and a link to the enclosing level for correlated references. Names
resolve as PostgreSQL resolves them -- a bare name is a column of the nearest level that has
one, and only if no level has such a column is it a whole-row reference to a FROM item of that
name (`SELECT c FROM customers c`); `t.x` is column x of the nearest FROM item named t. A
non-LATERAL subquery in FROM does not see its sibling items (it sees the levels around its own
query), a LATERAL one and a function in FROM see the items before them. Getting these rules
right matters in both directions: resolving a name to the wrong item could report a clean
column where the server reads a masked one.

Where the walker cannot tell (a relation missing from the catalog, a function in FROM whose
columns it does not know, a column name it had to guess), the item carries a `rest` flow: a
name not found among its known columns may still be one of its columns, so the lookup takes
`rest` *and* keeps looking outwards, and reports the union.

Reads
-----
A query's select list is not read until something uses it: a subquery or view column counts
as read where the outer query refers to it, so `SELECT id FROM v` does not read every column
of `v`. Everything else a level evaluates (WHERE, JOIN ON, GROUP BY, ORDER BY, ...) is read
where it stands. An expression that holds a subquery depends on everything that subquery
reads: its filter decides the value row by row, as a CASE condition does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlglot import exp

from central.masking._lineage_builtins import (
    BUILTIN_TYPES,
    DATA_READERS,
    SRF_COLUMNS,
    SYNTAX_CALLS,
    SYNTAX_NAMES,
    SYSTEM_COLUMNS,
    figure_name,
)
from central.masking._lineage_scope import (
    BOTTOM,
    CLEAN,
    UNKNOWN,
    BaseColumn,
    CallRecord,
    Col,
    Flow,
    Frame,
    Item,
    Result,
    Scope,
    Unsupported,
    derived,
    either,
    find_cte,
    item_from_result,
    merge_using,
    rename,
)
from central.masking._lineage_text import ParseFailed, parse_query_text
from central.masking.catalog import SYSTEM_SCHEMAS, Catalog, Relation

_MAX_VIEW_DEPTH: Final = 16
_MAX_RECURSIVE_ROUNDS: Final = 16

_CONSTANTS: Final = (
    exp.Literal,
    exp.Null,
    exp.Boolean,
    exp.Parameter,
    exp.Placeholder,
    exp.DataType,
    exp.Star,
    exp.ObjectIdentifier,
)
_DML: Final = (exp.Insert, exp.Update, exp.Delete, exp.Merge)
# Select arguments handled by name; every other one is evaluated as something read.
_SELECT_OWN: Final = frozenset({"expressions", "with_", "from_", "joins", "windows", "into"})


def _name(node: exp.Expr | str | None) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    return node.name


def _dotted(node: exp.Expr) -> str | None:
    """`a` or `a.b` written as identifiers (a function's schema), else None."""
    if isinstance(node, (exp.Identifier, exp.Column)) and not isinstance(node.this, exp.Star):
        parts = [p.name for p in reversed(node.parts)] if isinstance(node, exp.Column) else []
        return ".".join(reversed(parts)) if parts else node.name
    if isinstance(node, exp.Dot):
        left, right = _dotted(node.this), _dotted(node.expression)
        return f"{left}.{right}" if left and right else None
    return None


def _alias(node: exp.Expr) -> tuple[str | None, list[str]]:
    """The table alias of a FROM item and its column aliases."""
    alias = node.args.get("alias")
    if not isinstance(alias, exp.TableAlias):
        return None, []
    return (alias.name or None), [_name(c) for c in alias.columns]


class QueryWalker:
    """Lineage of the queries and expressions of one statement against one catalog. Collects,
    as it goes, the calls made, the values written, and whether anything unknown was read.
    Data-modifying statements are the subclass's (`central.masking._lineage_dml.Walker`)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.functions = catalog.functions
        # Unqualified function names find pg_catalog first unless the search path puts another
        # schema before it; then any name might be a user's function.
        path = [s for s in catalog.search_path if not s.startswith("pg_temp")]
        self.builtins_first = not path or path[0] == "pg_catalog" or "pg_catalog" not in path
        self.calls: list[CallRecord] = []
        self.writes: list[tuple[BaseColumn, Flow]] = []
        self.unknown_read = False
        # What names mean may differ after this statement: a user function runs (it can do
        # anything, DDL included), or set_config (search_path, role) is called.
        self.changes_names = False
        self._views: dict[tuple[str, str], tuple[Item, set[BaseColumn]] | None] = {}
        self._view_depth = 0

    # ---------------------------------------------------------------- query levels

    def query(self, node: exp.Expr, parent: Scope | None) -> Result:
        if isinstance(node, exp.Subquery):
            res = self.query(node.this, parent)
            self._tail(node, res, parent, skip=("this", "alias"))
            return res
        if isinstance(node, exp.Select):
            return self._select(node, parent)
        if isinstance(node, exp.SetOperation):
            return self._set_operation(node, parent)
        if isinstance(node, exp.Values):
            return self._values(node, parent)
        if isinstance(node, _DML):
            return self.dml(node, parent)
        raise Unsupported(type(node).__name__)

    def _tail(
        self, node: exp.Expr, res: Result, parent: Scope | None, skip: tuple[str, ...]
    ) -> None:
        """ORDER BY / LIMIT attached around a query: read, against its output columns."""
        rest = [v for k, v in node.args.items() if k not in skip and isinstance(v, exp.Expr)]
        if not rest:
            return
        scope = Scope(parent, reads=res.reads)
        scope.outputs = [(c.name, c.flow) for c in res.columns]
        for value in rest:
            scope.read(self.expr(value, scope))

    def _select(self, node: exp.Select, parent: Scope | None) -> Result:
        scope = Scope(parent)
        self._with(node.args.get("with_"), scope)
        self._from(node.args.get("from_"), node.args.get("joins") or [], scope)
        for window in node.args.get("windows") or []:
            flow = self._window_spec(window, scope)
            scope.windows[_name(window.this)] = flow
            scope.read(flow)
        columns, rest = self._projection(node.expressions, scope)
        scope.outputs = [(c.name, c.flow) for c in columns]
        for key, value in node.args.items():
            if key in _SELECT_OWN:
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, exp.Expr):
                    scope.read(self.expr(v, scope))
        return Result(columns, rest, scope.reads)

    def _set_operation(self, node: exp.SetOperation, parent: Scope | None) -> Result:
        scope = Scope(parent)
        self._with(node.args.get("with_"), scope)
        left = self.query(node.this, scope)
        right = self.query(node.expression, scope)
        reads = scope.reads | left.reads | right.reads
        if left.rest or right.rest or len(left.columns) != len(right.columns):
            rest = derived(left.flows() + right.flows())
            res = Result([Col(c.name, rest, c.guessed) for c in left.columns], rest, reads)
        else:
            columns = [
                Col(a.name, either([a.flow, b.flow]), a.guessed)
                for a, b in zip(left.columns, right.columns, strict=True)
            ]
            res = Result(columns, None, reads)
        self._tail(node, res, parent, skip=("this", "expression", "with_", "distinct", "by_name"))
        return res

    def _values(self, node: exp.Values, parent: Scope | None) -> Result:
        scope = Scope(parent)
        rows = [
            [
                self.expr(v, scope)
                for v in (row.expressions if isinstance(row, exp.Tuple) else [row])
            ]
            for row in node.expressions
        ]
        width = max((len(r) for r in rows), default=0)
        columns = [
            Col(f"column{i + 1}", either([r[i] for r in rows if i < len(r)])) for i in range(width)
        ]
        return Result(columns, None, scope.reads)

    def _with(self, node: exp.With | None, scope: Scope) -> None:
        if node is None:
            return
        ctes = list(node.expressions)
        if not node.args.get("recursive"):
            for cte in ctes:
                scope.ctes[cte.alias_or_name] = self._cte(cte, scope)
            return
        # WITH RECURSIVE: a CTE may refer to itself and to any sibling. Start every one at
        # the bottom and evaluate them all until nothing changes; flows only grow, so this
        # ends, and a bound on the rounds covers what it does not foresee.
        for cte in ctes:
            _, names = _alias(cte)
            scope.ctes[cte.alias_or_name] = Result([Col(n, BOTTOM) for n in names], BOTTOM)
        for _ in range(_MAX_RECURSIVE_ROUNDS):
            changed = False
            for cte in ctes:
                res = self._cte(cte, scope)
                old = scope.ctes[cte.alias_or_name]
                if res.columns != old.columns or res.rest != old.rest:
                    changed = True
                scope.ctes[cte.alias_or_name] = res
            if not changed:
                return
        for cte in ctes:
            res = scope.ctes[cte.alias_or_name]
            res.columns = [Col(c.name, UNKNOWN) for c in res.columns]
            res.rest = UNKNOWN

    def _cte(self, cte: exp.CTE, scope: Scope) -> Result:
        res = self.query(cte.this, scope)
        scope.reads |= res.reads
        _, names = _alias(cte)
        renamed = rename([(c.name, c.flow) for c in res.columns], names)
        guessed = [c.guessed and i >= len(names) for i, c in enumerate(res.columns)]
        columns = [Col(n, f, g) for (n, f), g in zip(renamed, guessed, strict=False)]
        return Result(columns, res.rest, res.reads)

    def _projection(
        self, expressions: Sequence[exp.Expr], scope: Scope
    ) -> tuple[list[Col], Flow | None]:
        columns: list[Col] = []
        rests: list[Flow] = []
        for e in expressions:
            items: list[Item] | None = None
            if isinstance(e, exp.Star):
                columns += [Col(n, f) for n, f in scope.frame.columns]
                if scope.frame.rest is not None:
                    rests.append(scope.frame.rest)
                continue
            if isinstance(e, exp.Column) and isinstance(e.this, exp.Star):
                items = self._items(e.table, e.db or None, scope)
            elif isinstance(e, exp.Dot) and isinstance(e.expression, exp.Star):  # (x).*
                base = e.this.unnest() if isinstance(e.this, exp.Paren) else e.this
                if isinstance(base, exp.Column) and not base.table:
                    items = self._lookup(base.name, scope)[1]
                if not items:  # a composite column's fields: how many is unknown
                    rests.append(self.expr(base, scope))
                    continue
            if items is not None:
                if not items:
                    self.unknown_read = True
                    rests.append(UNKNOWN)
                for item in items:
                    columns += [Col(n, f) for n, f in item.columns]
                    if item.rest is not None:
                        rests.append(item.rest)
                continue
            if isinstance(e, exp.Alias):
                columns.append(Col(e.alias, self.expr(e.this, scope)))
            else:
                name, guessed = figure_name(e)
                columns.append(Col(name, self.expr(e, scope), guessed))
        return columns, (either(rests) if rests else None)

    # ---------------------------------------------------------------- FROM

    def _from(self, from_: exp.From | None, joins: list[exp.Join], scope: Scope) -> None:
        groups: list[list[tuple[str, Flow]]] = []
        if from_ is not None:
            self._join_step(None, from_.this, scope, groups, [])
        for join in joins:
            self._join_step(join, join.this, scope, groups, [])

    def _join_step(
        self,
        join: exp.Join | None,
        element: exp.Expr,
        scope: Scope,
        groups: list[list[tuple[str, Flow]]],
        prefix: list[tuple[str, Flow]],
        *,
        bare: bool = False,
    ) -> None:
        """Add one FROM element. Comma-separated elements are independent groups; an explicit
        JOIN binds to the group on its left only (`a, b JOIN c USING (x)` merges b.x and c.x,
        not a.x), which decides what `*` returns in which order."""
        items, columns, rest = self._element(element, scope, bare=bare)
        frame = scope.frame
        frame.items.extend(items)
        if rest is not None:
            frame.rest = rest if frame.rest is None else either([frame.rest, rest])
        comma = join is None or not any(
            join.args.get(k) for k in ("on", "using", "kind", "side", "method")
        )
        if comma or not groups:
            groups.append(columns)
        else:
            assert join is not None
            left = groups[-1]
            using = [_name(u) for u in join.args.get("using") or []]
            if not using and join.method.upper() == "NATURAL":
                right_names = {n for n, _ in columns}
                using = list(dict.fromkeys(n for n, _ in left if n in right_names))
            groups[-1] = merge_using(left, columns, using) if using else left + columns
        frame.columns = prefix + [c for g in groups for c in g]
        if join is not None:
            for key, value in join.args.items():
                if key not in ("this", "using", "kind", "side", "method") and isinstance(
                    value, exp.Expr
                ):
                    scope.read(self.expr(value, scope))

    def _element(
        self, node: exp.Expr, scope: Scope, *, bare: bool = False
    ) -> tuple[list[Item], list[tuple[str, Flow]], Flow | None]:
        """A FROM element: the items it adds (for qualified names), the columns it shows
        unqualified and to `*` in order, and the flow of columns it may have beyond those.
        `bare`: a table that carries joins (sqlglot's form of a parenthesized join), alone."""
        refname, names = _alias(node)
        if isinstance(node, exp.Table) and node.args.get("joins") and not bare:
            return self._nested_join(node, scope)
        if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Table):
            items, columns, rest = self._element(node.this, scope)  # (a JOIN b ...) [AS j]
            if refname is None:
                return items, columns, rest
            item = Item(refname, rename(columns, names), rest)  # AS j hides a and b
            return [item], item.columns, item.rest
        if isinstance(node, exp.Table) and node.args.get("rows_from"):
            item = self._rows_from(node, scope)
            return [item], item.columns, item.rest
        elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            item = self.relation(node, scope)
            return [item], item.columns, item.rest
        elif isinstance(node, exp.Table) and isinstance(node.this, (exp.Func, exp.Dot)):
            item = self._function_item([node.this], node, scope)
            return [item], item.columns, item.rest
        elif isinstance(node, exp.Unnest):
            item = self._function_item([node], node, scope)
            return [item], item.columns, item.rest
        elif isinstance(node, exp.Lateral) and isinstance(node.this, (exp.Func, exp.Dot)):
            item = self._function_item([node.this], node, scope)
            return [item], item.columns, item.rest
        elif isinstance(node, (exp.Subquery, exp.Lateral, exp.Values)):
            inner = node if isinstance(node, exp.Values) else node.this
            lateral = isinstance(node, exp.Lateral)
            res = self.query(inner, scope if lateral else scope.hidden())
            scope.reads |= res.reads
            item = item_from_result(refname, res, names)
            return [item], item.columns, item.rest
        raise Unsupported(f"FROM {type(node).__name__}")

    def _nested_join(
        self, node: exp.Table, scope: Scope
    ) -> tuple[list[Item], list[tuple[str, Flow]], Flow | None]:
        """A parenthesized join `(a JOIN b ON ...)`: joined on its own, its items visible."""
        inner = Scope(scope.parent, ctes=scope.ctes, reads=scope.reads)
        inner.frame = Frame(list(scope.frame.items), list(scope.frame.columns), scope.frame.rest)
        start = len(inner.frame.items)
        groups: list[list[tuple[str, Flow]]] = []
        prefix = list(scope.frame.columns)
        self._join_step(None, node, inner, groups, prefix, bare=True)
        for join in node.args["joins"]:
            self._join_step(join, join.this, inner, groups, prefix)
        items = inner.frame.items[start:]
        rests = [i.rest for i in items if i.rest is not None]
        return items, [c for g in groups for c in g], (derived(rests) if rests else None)

    def relation(self, node: exp.Table, scope: Scope | None, *, ctes: bool = True) -> Item:
        """A named relation: a CTE, or a catalog relation (views expanded)."""
        name, schema = node.name, node.db or None
        refname, names = _alias(node)
        if schema is None and ctes and scope is not None:
            res = find_cte(name, scope)
            if res is not None:
                return item_from_result(refname or name, res, names)
        rel = self.catalog.resolve(schema, name)
        if rel is None:  # a temp table, or something created since the catalog was read
            self.unknown_read = True
            return Item(refname or name, [(n, UNKNOWN) for n in names], UNKNOWN, schema=schema)
        rest = None
        if rel.kind in ("v", "m") and rel.schema not in SYSTEM_SCHEMAS:
            columns, rest = self._view(rel, scope)
            base = False
        else:
            columns = [
                (c, Flow(frozenset({(rel.schema, rel.name, c)}), True)) for c in rel.column_names
            ]
            base = True
        return Item(
            refname or name,
            rename(columns, names),
            rest,
            schema=None if refname else rel.schema,
            base=base,
        )

    def _view(
        self, rel: Relation, scope: Scope | None
    ) -> tuple[list[tuple[str, Flow]], Flow | None]:
        """A user view's columns through its definition (cached per statement), and the flow
        of any columns it may have beyond those listed."""
        key = (rel.schema, rel.name)
        if key not in self._views:
            self._views[key] = None  # being expanded: a cycle reads as unknown
            self._views[key] = self._expand(rel)
        cached = self._views[key]
        if cached is None:
            self.unknown_read = True
            # Without its columns (a view this session just created) even its shape is unknown.
            return [(n, UNKNOWN) for n in rel.column_names], (None if rel.columns else UNKNOWN)
        item, reads = cached
        if scope is not None:
            scope.reads |= reads
        return item.columns, item.rest

    def _expand(self, rel: Relation) -> tuple[Item, set[BaseColumn]] | None:
        """The view's definition walked on its own (it sees none of the query using it)."""
        if rel.definition is None or self._view_depth >= _MAX_VIEW_DEPTH:
            return None
        self._view_depth += 1
        try:
            res = self.query(parse_query_text(rel.definition), None)
        except (ParseFailed, Unsupported):
            return None
        finally:
            self._view_depth -= 1
        if not rel.columns:  # known by its text alone: the names are the query's own
            return item_from_result(rel.name, res, []), res.reads
        names = rel.column_names
        if res.rest is not None or len(res.columns) != len(names):
            return None
        columns = [(n, c.flow) for n, c in zip(names, res.columns, strict=True)]
        return Item(rel.name, columns), res.reads

    def _function_item(self, funcs: list[exp.Expr], node: exp.Expr, scope: Scope) -> Item:
        """Functions in FROM (implicitly LATERAL): every output column derives from every
        argument. The columns are known for the common set-returning built-ins; otherwise a
        name not listed may still be one of the function's columns."""
        refname, names = _alias(node)
        columns: list[tuple[str, Flow]] = []
        rests: list[Flow] = []
        first = ""
        for func in funcs:
            flow, fname, builtin = self._call(func, scope)
            short = fname.rsplit(".", 1)[-1]
            first = first or short
            if isinstance(func, (exp.XMLTable, exp.JSONTable)):
                cols = [_name(c) for c in func.args.get("columns") or []]
                columns += [(c, flow) for c in cols]
                continue
            if isinstance(func, exp.Unnest):
                width = len(func.expressions)
                own = refname if width == 1 and refname and len(funcs) == 1 else "unnest"
                columns += [(own, flow)] * width
                continue
            known = SRF_COLUMNS.get(short, ()) if builtin else ()
            if known is None:
                own = refname if refname and len(funcs) == 1 else short
                columns.append((own, flow))
            elif known:
                columns += [(c, flow) for c in known]
            else:  # a scalar, or a record whose columns are not known here
                own = refname if refname and len(funcs) == 1 else short
                columns.append((own, flow))
                rests.append(flow)
        ordinality = node.args.get("ordinality") or (
            isinstance(node, exp.Unnest) and node.args.get("offset")
        )
        if ordinality:
            columns.append(("ordinality", CLEAN))
        defines = any(
            isinstance(c, exp.ColumnDef) for c in getattr(node.args.get("alias"), "columns", [])
        )
        rest = None if defines or not rests else derived(rests)
        return Item(refname or first, rename(columns, names), rest)

    def _rows_from(self, node: exp.Table, scope: Scope) -> Item:
        funcs = [f.this if isinstance(f, exp.Table) else f for f in node.args["rows_from"]]
        return self._function_item(funcs, node, scope)

    # ---------------------------------------------------------------- names

    def _lookup(self, name: str, scope: Scope) -> tuple[Flow, list[Item]]:
        """A bare name: a column of the nearest level that has one, else a whole-row
        reference to the nearest FROM item of that name (returned with its items)."""
        extra: list[Flow] = []
        s: Scope | None = scope
        while s is not None:
            hits = [f for n, f in s.frame.columns if n == name]
            if s.outputs is not None:
                hits += [f for n, f in s.outputs if n == name]
            if hits:  # (several: ambiguous, the server refuses; both, to be safe)
                return either([*hits, *extra]), []
            if name in SYSTEM_COLUMNS and any(i.base for i in s.frame.items):
                return either([CLEAN, *extra]), []
            if s.frame.rest is not None:
                extra.append(s.frame.rest)
            s = s.parent
        items = self._items(name, None, scope)
        if items:
            return derived([i.whole() for i in items] + extra), items
        if extra:  # one of the columns lineage could not list
            return either(extra), []
        self.unknown_read = True
        return UNKNOWN, []

    def _items(self, name: str, schema: str | None, scope: Scope) -> list[Item]:
        s: Scope | None = scope
        while s is not None:
            found = [
                i
                for i in s.frame.items
                if i.refname == name and (schema is None or i.schema == schema)
            ]
            if found:
                return found
            s = s.parent
        return []

    def _column(self, node: exp.Column, scope: Scope) -> Flow:
        if not node.table:
            if isinstance(node.this, exp.Star):
                return CLEAN
            return self._lookup(node.name, scope)[0]
        items = self._items(node.table, node.db or None, scope)
        if not items:
            self.unknown_read = True
            return UNKNOWN
        if isinstance(node.this, exp.Star):
            return derived(i.whole() for i in items)
        flows: list[Flow] = []
        for item in items:
            hits = item.lookup(node.name)
            if hits:
                flows += hits
            elif node.name in SYSTEM_COLUMNS and item.base:
                flows.append(CLEAN)
            elif item.rest is not None:
                flows.append(item.rest)
            else:  # `c.f` is also how f(c) may be written
                self.unknown_read = True
                flows += [UNKNOWN, item.whole()]
        return flows[0] if len(flows) == 1 else derived(flows)

    # ---------------------------------------------------------------- expressions

    def expr(self, node: exp.Expr, scope: Scope) -> Flow:
        """The flow of an expression's value."""
        if isinstance(node, exp.Column):
            return self._column(node, scope)
        if isinstance(node, _CONSTANTS):
            return CLEAN
        if isinstance(node, (exp.Alias, exp.Paren)):
            return self.expr(node.this, scope)
        if isinstance(node, (exp.Subquery, exp.Query, exp.Values)):
            return self._sublink(node, scope)
        if isinstance(node, exp.Dot):
            return self._dot(node, scope)
        if isinstance(node, exp.Window):
            return self._window(node, scope)
        if isinstance(node, exp.Cast):
            return self._cast(node, scope)
        if isinstance(node, exp.Anonymous):
            return self._call(node, scope)[0]
        if isinstance(node, (exp.Identifier, exp.Var)):
            return self._bare(node.name, scope)
        flow = derived(self.expr(c, scope) for c in node.iter_expressions())
        if isinstance(node, exp.Func) and type(node) in SYNTAX_CALLS:
            self.calls.append(CallRecord(SYNTAX_CALLS[type(node)], False, flow))
        return flow

    def _sublink(self, node: exp.Expr, scope: Scope) -> Flow:
        """A subquery inside an expression: its output, and everything it reads."""
        res = self.query(node, scope)
        flows = res.flows()
        if len(flows) == 1 and res.reads <= flows[0].sources:
            return flows[0]
        return derived([*flows, Flow(frozenset(res.reads))])

    def _dot(self, node: exp.Dot, scope: Scope) -> Flow:
        if isinstance(node.expression, exp.Func):  # schema.function(...)
            schema = _dotted(node.this)
            if schema is None:
                raise Unsupported("function call on an expression")
            return self._call(node.expression, scope, schema)[0]
        base = node.this.unnest() if isinstance(node.this, exp.Paren) else node.this
        if (
            isinstance(base, exp.Column)
            and not base.table
            and isinstance(node.expression, exp.Identifier)
        ):
            flow, items = self._lookup(base.name, scope)
            if items:  # (c).email: one column of a whole row
                hits = [f for i in items for f in i.lookup(node.expression.name)]
                return hits[0] if len(hits) == 1 else derived(hits or [UNKNOWN, flow])
            return derived([flow])
        return derived([self.expr(base, scope)])  # a field of a composite value

    def _window(self, node: exp.Window, scope: Scope) -> Flow:
        """A window function depends on its arguments and on its window: the partition and
        the order decide which rows it sees (lag(x) OVER (ORDER BY ssn))."""
        return derived([self.expr(node.this, scope), self._window_spec(node, scope)])

    def _window_spec(self, node: exp.Window, scope: Scope) -> Flow:
        flows: list[Flow] = []
        for key in ("partition_by", "order", "spec"):
            value = node.args.get(key)
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, exp.Expr):
                    flows.append(self.expr(v, scope))
        named = node.args.get("alias")
        if isinstance(named, exp.Identifier):  # OVER w, OVER (w ...), WINDOW w2 AS (w ...)
            s: Scope | None = scope
            while s is not None and named.name not in s.windows:
                s = s.parent
            flows.append(s.windows[named.name] if s is not None else UNKNOWN)
        return derived(flows)

    def _cast(self, node: exp.Cast, scope: Scope) -> Flow:
        flow = derived(self.expr(c, scope) for c in node.iter_expressions())
        to = node.args.get("to")
        if isinstance(to, exp.DataType) and to.this == exp.DataType.Type.USERDEFINED:
            kind = to.args.get("kind")
            written = _dotted(kind) if isinstance(kind, exp.Expr) else None
            if written is None or written.removeprefix("pg_catalog.") not in BUILTIN_TYPES:
                # A domain's CHECK or a user type's input function sees the value.
                self.calls.append(CallRecord(f"::{written or 'unknown type'}", True, flow))
        return flow

    def _bare(self, name: str, scope: Scope) -> Flow:
        """An identifier sqlglot did not make a column (a keyword argument, a collation): if
        it names a column in reach, count it, in case the server reads it as one."""
        s: Scope | None = scope
        while s is not None:
            hits = [f for n, f in s.frame.columns if n == name]
            if hits:
                return derived(hits)
            s = s.parent
        return CLEAN

    def _call(
        self, node: exp.Expr, scope: Scope, schema: str | None = None
    ) -> tuple[Flow, str, bool]:
        """A function call: its flow, its name as written, and whether it is a built-in."""
        if isinstance(node, exp.Dot):
            schema = _dotted(node.this)
            if schema is None:
                raise Unsupported("function call on an expression")
            return self._call(node.expression, scope, schema)
        if not isinstance(node, exp.Anonymous):  # a typed node: built-in syntax
            flow = derived(self.expr(c, scope) for c in node.iter_expressions())
            name = SYNTAX_CALLS.get(type(node), node.key)
            self.calls.append(CallRecord(name, False, flow))
            return flow, name, True
        name = _name(node.this)
        args = derived(self.expr(a, scope) for a in node.expressions)
        if schema is None and name in ("row", "array"):
            return args, name, True
        if schema is not None:
            builtin = schema == "pg_catalog" and name in self.functions
        else:
            builtin = name in SYNTAX_NAMES or (self.builtins_first and name in self.functions)
        qualified = f"{schema}.{name}" if schema else name
        volatile = not builtin or self.functions.get(name) == "v"
        self.calls.append(CallRecord(qualified, volatile, args))
        if not builtin or name == "set_config":
            self.changes_names = True
        if not builtin:
            self.unknown_read = True
            return Flow(args.sources, False, True), qualified, False
        if name in DATA_READERS:
            self.unknown_read = True
            return Flow(args.sources, False, True), qualified, True
        if name == "count":  # it only counts: what it counts is read, not passed on
            scope.reads |= args.sources
            return Flow(unknown=args.unknown), qualified, True
        return Flow(args.sources, False, args.unknown), qualified, True

    # ---------------------------------------------------------------- DML

    def dml(self, node: exp.Expr, parent: Scope | None) -> Result:
        """INSERT / UPDATE / DELETE / MERGE (a data-modifying CTE): the subclass's."""
        raise Unsupported(type(node).__name__)
