"""The values lineage computes with, and the namespaces it resolves names in.

A `Flow` is where a value comes from (the walker's own ColumnOrigin). Query levels produce a
`Result` (their output columns); a FROM clause is a `Frame` of `Item`s; a `Scope` is one query
level with its frame, its CTEs, what it reads and the level around it. `rest` (on an item, a
frame or a result) stands for columns lineage could not list: a relation missing from the
catalog, a function whose columns it does not know, a column whose name it had to guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeAlias

BaseColumn: TypeAlias = tuple[str, str, str]


class Unsupported(Exception):
    """A construct the walker does not know: the statement is reported unparsed."""


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a value comes from (the walker's ColumnOrigin): the base columns it is made of,
    whether it is one of them unchanged, whether something unknown contributes."""

    sources: frozenset[BaseColumn] = frozenset()
    direct: bool = False
    unknown: bool = False


CLEAN: Final = Flow()
UNKNOWN: Final = Flow(unknown=True)
# Where a recursive CTE starts: nothing yet, but passing it on keeps a column direct.
BOTTOM: Final = Flow(direct=True)


def derived(flows: Iterable[Flow]) -> Flow:
    """A value computed from all of `flows`."""
    sources: set[BaseColumn] = set()
    unknown = False
    for f in flows:
        sources |= f.sources
        unknown = unknown or f.unknown
    return Flow(frozenset(sources), False, unknown)


def either(flows: Sequence[Flow]) -> Flow:
    """A value that is one of `flows`, unchanged (UNION branches, a JOIN USING column). Still
    direct only when every branch is and they all pass on the same single column."""
    if len(flows) <= 1:
        return flows[0] if flows else CLEAN
    out = derived(flows)
    if all(f.direct for f in flows) and len(out.sources) <= 1 and not out.unknown:
        return Flow(out.sources, True, False)
    return out


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A function call (the walker's Call)."""

    name: str
    volatile: bool
    flow: Flow  # what flows into the arguments


@dataclass(frozen=True, slots=True)
class Col:
    """An output column of a query level. `guessed`: the name is an approximation of the one
    PostgreSQL gives (`1::int` is "int4" there), so a reference by name may miss it."""

    name: str
    flow: Flow
    guessed: bool = False


@dataclass(slots=True)
class Result:
    """A query level's output. `rest` is set when the list of columns is not known exactly (a
    `*` over a relation missing from the catalog): the shape is unknown, and any column not
    listed has that flow."""

    columns: list[Col]
    rest: Flow | None = None
    reads: set[BaseColumn] = field(default_factory=set)

    def flows(self) -> list[Flow]:
        return [c.flow for c in self.columns] + ([self.rest] if self.rest else [])


@dataclass(slots=True)
class Item:
    """A FROM item: a relation, subquery, CTE, function or VALUES list, by the name (alias)
    the query gives it. `schema` is set for catalog relations without alias (`public.t.x`)."""

    refname: str | None
    columns: list[tuple[str, Flow]]
    rest: Flow | None = None
    schema: str | None = None
    base: bool = False  # a table: system columns (ctid, xmin, ...) exist and carry no data

    def lookup(self, name: str) -> list[Flow]:
        return [f for n, f in self.columns if n == name]

    def whole(self) -> Flow:
        return derived([f for _, f in self.columns] + ([self.rest] if self.rest else []))


@dataclass(slots=True)
class Frame:
    """A query level's FROM clause: its items (for qualified names and whole-row references)
    and the columns it shows unqualified, in the order `*` returns them."""

    items: list[Item] = field(default_factory=list)
    columns: list[tuple[str, Flow]] = field(default_factory=list)  # unqualified names, `*` order
    rest: Flow | None = None


@dataclass(slots=True, eq=False)
class Scope:
    """One query level: what it sees, what it has read so far, the level around it."""

    parent: Scope | None
    frame: Frame = field(default_factory=Frame)
    ctes: dict[str, Result] = field(default_factory=dict)
    reads: set[BaseColumn] = field(default_factory=set)
    outputs: list[tuple[str, Flow]] | None = None  # ORDER BY / GROUP BY may name outputs
    windows: dict[str, Flow] = field(default_factory=dict)

    def read(self, flow: Flow) -> None:
        self.reads |= flow.sources

    def hidden(self) -> Scope:
        """What a non-LATERAL subquery in this level's FROM sees: the CTEs and the levels
        around, not the sibling FROM items."""
        return Scope(self.parent, ctes=self.ctes)


def rename(columns: list[tuple[str, Flow]], names: list[str]) -> list[tuple[str, Flow]]:
    """Column aliases rename the first columns, in order; a longer list (a column definition
    list of a record-returning function) adds columns with the flow of the others."""
    if not names:
        return columns
    out = [(names[i] if i < len(names) else n, f) for i, (n, f) in enumerate(columns)]
    extra = derived(f for _, f in columns) if columns else UNKNOWN
    return out + [(n, extra) for n in names[len(columns) :]]


def find_cte(name: str, scope: Scope) -> Result | None:
    """The CTE an unqualified relation name means, in the nearest level that has one."""
    s: Scope | None = scope
    while s is not None:
        if name in s.ctes:
            return s.ctes[name]
        s = s.parent
    return None


def item_from_result(refname: str | None, res: Result, names: list[str]) -> Item:
    """A subquery, CTE or VALUES list as a FROM item; a guessed column name makes any other
    name possibly that column."""
    columns = rename([(c.name, c.flow) for c in res.columns], names)
    guessed = [c.flow for i, c in enumerate(res.columns) if c.guessed and i >= len(names)]
    rests = ([res.rest] if res.rest else []) + guessed
    return Item(refname, columns, either(rests) if rests else None)


def merge_using(
    left: list[tuple[str, Flow]], right: list[tuple[str, Flow]], using: list[str]
) -> list[tuple[str, Flow]]:
    """JOIN USING / NATURAL: each merged column first (one of the two sides' values), then
    the other columns of the left and of the right."""
    merged = []
    for name in using:
        flows = [f for n, f in left if n == name] + [f for n, f in right if n == name]
        merged.append((name, either(flows) if flows else UNKNOWN))
    names = set(using)
    return (
        merged
        + [(n, f) for n, f in left if n not in names]
        + [(n, f) for n, f in right if n not in names]
    )
