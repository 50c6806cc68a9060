"""What central knows of a target's schema, for lineage: relations, their columns, view bodies.

Read from the target with the held credential (so it is exactly what the session's user can
see), cached per target, and dropped when a session sees DDL. Pure data here; the reader that
fills it lives with the PostgreSQL path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Catalog views whose columns hold sample values of other tables' columns: the planner's
# statistics (most common values, histogram bounds) and the text of running statements. They are
# treated as masked sources whenever a resource has mask rules: through them an analyst could
# read a masked column's values without ever naming it.
LEAKY_CATALOG: Mapping[tuple[str, str], frozenset[str] | None] = {
    ("pg_catalog", "pg_statistic"): None,  # None: every column
    ("pg_catalog", "pg_statistic_ext_data"): None,
    ("pg_catalog", "pg_stats"): frozenset(
        {"most_common_vals", "histogram_bounds", "most_common_elems"}
    ),
    ("pg_catalog", "pg_stats_ext"): frozenset({"most_common_vals"}),
    ("pg_catalog", "pg_stats_ext_exprs"): frozenset(
        {"most_common_vals", "histogram_bounds", "most_common_elems"}
    ),
    ("pg_catalog", "pg_stat_activity"): frozenset({"query"}),
    ("public", "pg_stat_statements"): frozenset({"query"}),
}

SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema"})


@dataclass(frozen=True, slots=True)
class Relation:
    """A table, view, materialized view, partitioned or foreign table the user can see."""

    schema: str
    name: str
    kind: str  # pg_class.relkind: "r" table, "v" view, "m" matview, "p" partitioned, "f" foreign
    columns: tuple[tuple[str, int], ...]  # (name, type oid), in attnum order, dropped ones left out
    definition: str | None = None  # views and matviews: pg_get_viewdef(oid), a SELECT

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


@dataclass(frozen=True, slots=True)
class Catalog:
    relations: Mapping[tuple[str, str], Relation] = field(default_factory=dict)
    # current_schemas(true) of the target's session: where unqualified names are looked up,
    # pg_catalog (and pg_temp where present) included, in order.
    search_path: tuple[str, ...] = ("pg_catalog", "public")
    # Functions in pg_catalog by name, with the most volatile pg_proc.provolatile of their
    # overloads: "i" immutable, "s" stable, "v" volatile.
    functions: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, schema: str | None, name: str) -> Relation | None:
        """The relation a (possibly unqualified) name refers to, as the server would find it."""
        if schema is not None:
            return self.relations.get((schema, name))
        for candidate in self.search_path:
            found = self.relations.get((candidate, name))
            if found is not None:
                return found
        return None
