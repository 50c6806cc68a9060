"""The statement level of lineage: SELECT, and the statements that write.

`Walker` adds to the query walker what a whole statement does: INSERT, UPDATE, DELETE and
MERGE (also as data-modifying CTEs), the values they store (`writes`) and the rows they return
(RETURNING), and the tables CREATE TABLE AS / SELECT INTO fill.

RETURNING sees each target row as it is after the statement, so a returned column carries
what was assigned to it as well as what the column held: `INSERT INTO notes (body) SELECT ssn
... RETURNING body` returns ssn values, whatever notes.body's own rules say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from sqlglot import exp

from central.masking._lineage_scope import (
    CLEAN,
    UNKNOWN,
    BaseColumn,
    Flow,
    Item,
    Result,
    Scope,
    Unsupported,
    derived,
    either,
)
from central.masking._lineage_walk import QueryWalker

StatementKind: TypeAlias = Literal[
    "select", "insert", "update", "delete", "merge", "create_table_as"
]
_KINDS: dict[type[exp.Expr], StatementKind] = {
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.Merge: "merge",
}
_Assigned = dict[str, list[Flow]]


@dataclass(slots=True)
class Outcome:
    """A statement's kind, its result columns (None: shape unknown; []: no rows), reads."""

    kind: StatementKind
    output: list[Flow] | None
    reads: set[BaseColumn]


def sources(flows: Iterable[Flow]) -> set[BaseColumn]:
    """Every base column in `flows`."""
    out: set[BaseColumn] = set()
    for f in flows:
        out |= f.sources
    return out


class Walker(QueryWalker):
    """Lineage of a whole statement (see the module docstring)."""

    def statement(self, tree: exp.Expr) -> Outcome:
        into = tree.find(exp.Into) if isinstance(tree, exp.Query) else None
        if into is not None:  # SELECT ... INTO new_table: no rows, a table filled
            res = self.query(tree, None)
            table = into.this
            if not isinstance(table, exp.Table):
                raise Unsupported("SELECT INTO target")
            self.store(table.db, table.name, [], res)
            return Outcome("create_table_as", [], res.reads | sources(res.flows()))
        if isinstance(tree, (exp.Query, exp.Values)):
            res = self.query(tree, None)
            rows = None if res.rest is not None else [c.flow for c in res.columns]
            return Outcome("select", rows, res.reads | sources(res.flows()))
        kind = _KINDS.get(type(tree))
        if kind is None:
            raise Unsupported(type(tree).__name__)
        res = self.dml(tree, None)
        output: list[Flow] | None = []
        if tree.args.get("returning") is not None:
            output = None if res.rest is not None else [c.flow for c in res.columns]
        return Outcome(kind, output, res.reads | sources(res.flows()))

    def store(self, schema: str, name: str, names: list[str], res: Result) -> None:
        """CREATE TABLE name [(names)] AS / SELECT INTO: a write per column of `res`."""
        for i, col in enumerate(res.columns):
            self.writes.append(((schema, name, names[i] if i < len(names) else col.name), col.flow))
        if res.rest is not None:  # columns whose names lineage does not know
            self.writes.append(((schema, name, "?"), res.rest))

    def dml(self, node: exp.Expr, parent: Scope | None) -> Result:
        scope = Scope(parent)
        self._with(node.args.get("with_"), scope)
        if isinstance(node, exp.Insert):
            item, assigned = self._insert(node, scope)
        elif isinstance(node, exp.Update):
            item, assigned = self._update(node, scope)
        elif isinstance(node, exp.Delete):
            item, assigned = self._delete(node, scope)
        elif isinstance(node, exp.Merge):
            item, assigned = self._merge(node, scope)
        else:
            raise Unsupported(type(node).__name__)
        return self._returning(node, scope, item, assigned)

    # ---------------------------------------------------------------- targets and values

    def _target(self, table: exp.Expr, scope: Scope) -> tuple[str, str, Item]:
        """The relation written to (never a CTE), as schema and name for `writes`, and as a
        FROM item for the rest of the statement."""
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise Unsupported("DML target")
        rel = self.catalog.resolve(table.db or None, table.name)
        schema, name = (rel.schema, rel.name) if rel else (table.db, table.name)
        item = self.relation(table, scope, ctes=False)
        scope.frame.items.append(item)
        scope.frame.columns = list(item.columns)
        scope.frame.rest = item.rest
        return schema, name, item

    def _write(
        self, target: tuple[str, str], column: str, flow: Flow, assigned: _Assigned, scope: Scope
    ) -> None:
        """`flow` is stored into `column`: a write, a value RETURNING sees, a read."""
        self.writes.append(((target[0], target[1], column), flow))
        assigned.setdefault(column, []).append(flow)
        scope.read(flow)

    def _assign(
        self, eq: exp.Expr, scope: Scope, target: tuple[str, str], assigned: _Assigned
    ) -> None:
        """One SET item: `col = expr`, `(a, b) = (x, y)`, `(a, b) = (SELECT ...)`."""
        if not isinstance(eq, exp.EQ):
            raise Unsupported("SET item")
        lhs, rhs = eq.this, eq.expression
        if not isinstance(lhs, exp.Tuple):
            self._write(target, _set_column(lhs), self._value(rhs, scope), assigned, scope)
            return
        columns = [_set_column(c) for c in lhs.expressions]
        flows: list[Flow]
        inner = rhs.this if isinstance(rhs, exp.Subquery) else rhs
        if isinstance(inner, exp.Query):
            res = self.query(inner, scope)
            filtered = Flow(frozenset(res.reads))  # its WHERE picks the row
            if res.rest is None and len(res.columns) == len(columns):
                flows = [derived([c.flow, filtered]) for c in res.columns]
            else:
                flows = [derived([*res.flows(), filtered])] * len(columns)
        elif isinstance(rhs, exp.Tuple) or (isinstance(rhs, exp.Anonymous) and rhs.name == "row"):
            flows = [self._value(e, scope) for e in rhs.expressions]
        else:
            flows = [self._value(rhs, scope)] * len(columns)
        for column, flow in zip(columns, flows, strict=False):
            self._write(target, column, flow, assigned, scope)

    def _value(self, node: exp.Expr, scope: Scope) -> Flow:
        """An assigned value; the keyword DEFAULT (a column to sqlglot in SET) is clean."""
        if isinstance(node, exp.Var) and node.name.lower() == "default":
            return CLEAN
        if isinstance(node, exp.Column) and not node.table and node.name == "default":
            if not node.this.args.get("quoted"):  # "default" quoted is a column
                return CLEAN
        return self.expr(node, scope)

    def _others(self, node: exp.Expr, scope: Scope, handled: set[str]) -> None:
        """Everything else a statement holds (WHERE, ON CONFLICT keys, ...) is read."""
        for key, value in node.args.items():
            if key in handled:
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, exp.Expr):
                    scope.read(self.expr(v, scope))

    # ---------------------------------------------------------------- statements

    def _insert(self, node: exp.Insert, scope: Scope) -> tuple[Item, _Assigned]:
        table, written = node.this, None
        if isinstance(table, exp.Schema):
            written = [c.name for c in table.expressions]
            table = table.this
        schema, name, item = self._target(table, scope)
        values: list[Flow] = []
        source = node.args.get("expression")
        if source is not None:
            res = self.query(source, scope.hidden())  # it does not see the target
            scope.reads |= res.reads
            values = [c.flow for c in res.columns]
            if res.rest is not None:
                width = max(len(written or item.columns), len(values), 1)
                values = [derived(res.flows())] * width
        columns = written if written is not None else [n for n, _ in item.columns]
        if written is None and item.rest is not None:  # a table the catalog does not know
            columns = [f"?{i + 1}" for i in range(len(values))]
        assigned: _Assigned = {}
        for column, flow in zip(columns, values, strict=False):
            self._write((schema, name), column, flow, assigned, scope)
        conflict = node.args.get("conflict")
        if isinstance(conflict, exp.OnConflict):
            inserted = [(n, either(assigned.get(n, [CLEAN]))) for n, _ in item.columns]
            excluded = Item("excluded", inserted, item.rest)
            scope.frame.items.append(excluded)
            for eq in conflict.expressions:
                self._assign(eq, scope, (schema, name), assigned)
            self._others(conflict, scope, {"expressions", "action"})
            scope.frame.items.remove(excluded)
        self._others(node, scope, {"this", "expression", "conflict", "returning", "with_"})
        return item, assigned

    def _update(self, node: exp.Update, scope: Scope) -> tuple[Item, _Assigned]:
        schema, name, item = self._target(node.this, scope)
        from_ = node.args.get("from_")
        if isinstance(from_, exp.From):
            self._join_step(None, from_.this, scope, [], list(item.columns))
        assigned: _Assigned = {}
        for eq in node.expressions:
            self._assign(eq, scope, (schema, name), assigned)
        self._others(node, scope, {"this", "expressions", "from_", "returning", "with_"})
        return item, assigned

    def _delete(self, node: exp.Delete, scope: Scope) -> tuple[Item, _Assigned]:
        _, _, item = self._target(node.this, scope)
        groups: list[list[tuple[str, Flow]]] = []
        for element in node.args.get("using") or []:
            self._join_step(None, element, scope, groups, list(item.columns))
        self._others(node, scope, {"this", "using", "returning", "with_"})
        return item, {}

    def _merge(self, node: exp.Merge, scope: Scope) -> tuple[Item, _Assigned]:
        schema, name, item = self._target(node.this, scope)
        source = node.args.get("using")
        if not isinstance(source, exp.Expr):
            raise Unsupported("MERGE source")
        self._join_step(None, source, scope, [], list(item.columns))
        assigned: _Assigned = {}
        whens = node.args.get("whens")
        for when in whens.expressions if isinstance(whens, exp.Whens) else []:
            then = when.args.get("then")
            if isinstance(then, exp.Update):
                for eq in then.expressions:
                    self._assign(eq, scope, (schema, name), assigned)
            elif isinstance(then, exp.Insert):
                names = then.this
                columns = (
                    [_set_column(c) for c in names.expressions]
                    if isinstance(names, exp.Tuple)
                    else [n for n, _ in item.columns]
                )
                values = then.expression
                flows = [self._value(v, scope) for v in values.expressions] if values else []
                for column, flow in zip(columns, flows, strict=False):
                    self._write((schema, name), column, flow, assigned, scope)
            elif not isinstance(then, exp.Var):  # DELETE, DO NOTHING
                raise Unsupported("MERGE action")
            self._others(when, scope, {"then", "matched", "source"})
        self._others(node, scope, {"this", "using", "whens", "returning", "with_"})
        return item, assigned

    def _returning(self, node: exp.Expr, scope: Scope, item: Item, assigned: _Assigned) -> Result:
        returning = node.args.get("returning")
        if not isinstance(returning, exp.Returning):
            return Result([], None, scope.reads)
        # The target row as the statement leaves it: what was there, or what was assigned.
        after = [(n, either([f, *assigned.get(n, [])])) for n, f in item.columns]
        width = len(item.columns)
        item.columns = after
        scope.frame.columns = after + scope.frame.columns[width:]
        columns, rest = self._projection(returning.expressions, scope)
        if isinstance(node, exp.Merge) and any(
            isinstance(e, exp.Star) for e in returning.expressions
        ):
            # MERGE's `*` lists the source's and the target's columns in the order the
            # server's namespace holds them; rather than guess that order, the shape is unknown.
            rest = derived([*(f for _, f in scope.frame.columns), UNKNOWN])
        return Result(columns, rest, scope.reads)


def _set_column(node: exp.Expr) -> str:
    """The column a SET target writes: `col`, `col[1]`, `col.field` (a composite's field)."""
    while isinstance(node, exp.Bracket):
        node = node.this
    if isinstance(node, exp.Column):
        return node.table or node.name
    if isinstance(node, exp.Dot):
        return _set_column(node.this)
    if isinstance(node, exp.Identifier):
        return node.name
    raise Unsupported("SET target")
