"""The mask rules of one resource applied to what a statement does with data. Sans-io.

Given a statement's lineage (`central.masking.lineage.Analysis`), a `Masking` answers two
questions: which result columns are masked, and how (`Plan`); and whether the statement must be
refused (`Refusal`) because it would carry masked data somewhere masking cannot follow it:

- into a column that is not masked (`INSERT ... SELECT ssn`, `CREATE TEMP TABLE t AS SELECT
  ssn`, `UPDATE t SET note = ssn`): the copy would later read as clean;
- into a function with side effects (`set_config('x', ssn, false)`, `pg_notify`, `setval`, any
  function that is not a pg_catalog built-in): the value comes back through another door
  (`current_setting`, a notification, `currval`);
- through DDL on a relation that holds masked columns (renaming `customers.ssn` would make the
  rule miss it), or code whose body names one (a function or DO block that reads it where
  lineage cannot look);
- through COPY in a format that cannot be masked row by row (binary), or where the rule says
  COPY of masked data is refused.

A column is masked when any of its sources is masked: by the strongest style among the rules
that match (null > full > hash > partial). Partial keeps its last digits only for a column that
passes a masked value through unchanged; a transformed value could be shaped to show hidden
digits in that place. A column lineage cannot follow is masked outright under a `strict` rule,
scanned by the content detectors otherwise, and passed only when no rule has either.

What this cannot stop, and says so: predicates are not masked (`WHERE ssn LIKE '123%'` answers
yes or no, and enough questions reconstruct a value), and code that already exists in the
database runs with its own lineage unseen.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from central.config import RuleConfig
from central.masking.catalog import LEAKY_CATALOG, Catalog
from central.masking.detectors import Scanner, scanner
from central.masking.lineage import Analysis, BaseColumn, ColumnOrigin
from central.masking.rows import CopyFormat
from central.masking.styles import Style

_STRENGTH: dict[str, int] = {"partial": 0, "hash": 1, "full": 2, "null": 3}


@dataclass(frozen=True, slots=True)
class MaskRule:
    """One `action = "mask"` rule of the config, for one resource."""

    name: str
    columns: tuple[str, ...] = ()  # lower-case globs: "table.column" or "schema.table.column"
    detectors: tuple[str, ...] = ()
    style: Style = "full"
    strict: bool = False
    on_copy: Literal["mask", "refuse"] = "mask"


# Stands for the built-in LEAKY_CATALOG sources whenever a resource has any mask rule.
CATALOG_RULE = MaskRule("catalog statistics", style="full")


@dataclass(frozen=True, slots=True)
class ColumnAction:
    """What happens to one result column's cells."""

    action: Literal["mask", "scan"]  # the whole value, or the detected spans in it
    style: Style
    rule: str
    direct: bool = False  # the column passes a masked source through unchanged
    # The source column's type when `direct`, from the catalog: for rows that arrive without
    # a RowDescription (an Execute of a statement described long before, or never).
    type_oid: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """What masking does with one statement's results.

    `columns` has one entry per result column (None: passed unchanged); when it is None, or
    when the target's RowDescription has another number of columns than lineage expected,
    every column gets `fallback`. `scrub` says the statement reads masked data or something
    lineage cannot follow: its errors and notices may echo values and are scrubbed.
    """

    columns: tuple[ColumnAction | None, ...] | None
    fallback: ColumnAction | None
    scrub: bool = False
    copy: CopyFormat | None = None

    def actions(self, count: int) -> tuple[ColumnAction | None, ...]:
        if self.columns is not None and len(self.columns) == count:
            return self.columns
        return (self.fallback,) * count

    @property
    def masks(self) -> bool:
        """Whether any cell of the result may change."""
        return self.fallback is not None or any(self.columns or ())


CLEAN = Plan(columns=(), fallback=None)


@dataclass(frozen=True, slots=True)
class Refusal:
    """The statement may not run: `reason` is the client-facing text (after "Watchgate: ")."""

    reason: str
    rule: str


class Masking:
    """The mask rules in force for one resource, compiled, with the key of the hash style."""

    def __init__(self, rules: Sequence[MaskRule], key: bytes) -> None:
        self.rules = tuple(rules)
        self.key = key
        strict = [r for r in self.rules if r.strict]
        detecting = [r for r in self.rules if r.detectors]
        self.unknown: ColumnAction | None = None
        if strict:
            rule = strongest(strict)
            self.unknown = ColumnAction("mask", rule.style, rule.name)
        elif detecting:
            rule = strongest(detecting)
            self.unknown = ColumnAction("scan", rule.style, rule.name)
        names = sorted({d for r in detecting for d in r.detectors})
        self.scanner: Scanner | None = scanner(tuple(names)) if names else None
        self.detect_style: Style = strongest(detecting).style if detecting else "full"
        self._column_rules = [r for r in self.rules if r.columns]
        self._by_column: dict[BaseColumn, MaskRule | None] = {}
        self._by_catalog: tuple[Catalog, _Masked] | None = None

    # -- which base columns are masked -------------------------------------------------------

    def rule_for(self, column: BaseColumn) -> MaskRule | None:
        """The strongest rule that masks this base column, if any."""
        try:
            return self._by_column[column]
        except KeyError:
            pass
        schema, relation, name = column
        leaky = LEAKY_CATALOG.get((schema, relation), ())
        if leaky is None or name in (leaky or ()):
            found: MaskRule | None = CATALOG_RULE
        else:
            short = f"{relation}.{name}".lower()
            full = f"{schema}.{short}".lower()
            matching = [
                r
                for r in self._column_rules
                if any(
                    fnmatch.fnmatchcase(full if p.count(".") == 2 else short, p) for p in r.columns
                )
            ]
            found = strongest(matching) if matching else None
        if len(self._by_column) > 100_000:
            self._by_column.clear()
        self._by_column[column] = found
        return found

    def _masked_of(self, columns: Iterable[BaseColumn]) -> list[tuple[BaseColumn, MaskRule]]:
        return [(c, rule) for c in columns if (rule := self.rule_for(c)) is not None]

    def masked(self, catalog: Catalog) -> _Masked:
        """The relations of `catalog` holding masked columns, and the names that betray them."""
        if self._by_catalog is None or self._by_catalog[0] is not catalog:
            self._by_catalog = (catalog, _Masked.of(self, catalog))
        return self._by_catalog[1]

    # -- one statement ------------------------------------------------------------------------

    def column_action(
        self, origin: ColumnOrigin, catalog: Catalog, unknown: ColumnAction | None = None
    ) -> ColumnAction | None:
        masked = self._masked_of(origin.sources)
        if masked:
            rule = strongest([r for _, r in masked])
            type_oid = 0
            if origin.direct and len(masked) == 1:
                (schema, name, column), _ = masked[0]
                relation = catalog.relations.get((schema, name))
                type_oid = dict(relation.columns).get(column, 0) if relation else 0
            return ColumnAction("mask", rule.style, rule.name, origin.direct, type_oid)
        return (unknown or self.unknown) if origin.unknown else None

    def plan(self, analysis: Analysis, catalog: Catalog, sql: str = "") -> Plan | Refusal:
        """The Plan for one statement, or why it is refused. `sql` is the text the statement
        came in (its Query or Parse)."""
        refusal = self._refusal(analysis, catalog)
        if refusal is not None:
            return refusal
        read_masked = self._masked_of(analysis.reads)
        scrub = bool(read_masked) or analysis.reads_unknown
        unknown = self.unknown
        if analysis.reads_unknown or analysis.kind == "unparsed":
            # Lineage is blind somewhere in this statement (text it could not parse, a
            # function that runs a query given as a string, like query_to_xml): if the text
            # names anything masked, a value of unknown origin is masked by the strongest
            # such rule, detectors or not.
            hits = self.masked(catalog).named_in(sql)
            if hits and (unknown is None or unknown.action == "scan"):
                rule = strongest(hits)
                unknown = ColumnAction("mask", rule.style, rule.name)
        if analysis.kind == "unparsed":
            return Plan(None, unknown, scrub=True)
        if analysis.output is None:
            return Plan(None, self._fallback(read_masked, unknown), scrub=scrub)
        columns = tuple(self.column_action(o, catalog, unknown) for o in analysis.output)
        plan = Plan(columns, self._fallback(read_masked, unknown), scrub=scrub, copy=analysis.copy)
        if analysis.kind == "copy_out" and any(columns):
            rules = {a.rule for a in columns if a is not None}
            for rule in self.rules:
                if rule.name in rules and rule.on_copy == "refuse":
                    return Refusal(f"COPY of masked columns is refused ({rule.name})", rule.name)
            if analysis.copy is None or analysis.copy.format == "binary":
                first = next(a for a in columns if a is not None)
                return Refusal(
                    "COPY of masked columns works only in text or csv format with the options "
                    "Watchgate can parse; use COPY ... TO STDOUT (FORMAT csv) or a SELECT",
                    first.rule,
                )
        return plan

    def _fallback(
        self, read_masked: list[tuple[BaseColumn, MaskRule]], unknown: ColumnAction | None
    ) -> ColumnAction | None:
        # When the result has a shape lineage did not predict, a statement that read masked
        # columns gets every column masked by the strongest of them.
        if read_masked:
            rule = strongest([r for _, r in read_masked])
            return ColumnAction("mask", rule.style, rule.name)
        return unknown

    def _refusal(self, a: Analysis, catalog: Catalog) -> Refusal | None:
        for write in a.writes:
            masked = self._masked_of(write.sources)
            if masked and self.rule_for(write.target) is None:
                (source, rule), target = masked[0], write.target
                return Refusal(
                    f"this statement would copy masked data ({_name(source)}) into "
                    f"{_name(target)}, which is not masked ({rule.name})",
                    rule.name,
                )
        for call in a.calls:
            masked = self._masked_of(call.sources)
            if masked and call.volatile:
                source, rule = masked[0]
                return Refusal(
                    f"this statement would pass masked data ({_name(source)}) to {call.name}(), "
                    f"which is not a side-effect-free built-in ({rule.name})",
                    rule.name,
                )
        if a.kind == "copy_other":
            masked = self._masked_of(a.reads)
            if masked:
                source, rule = masked[0]
                return Refusal(
                    f"COPY to a file or program of masked data ({_name(source)}) is refused "
                    f"({rule.name})",
                    rule.name,
                )
        info = self.masked(catalog)
        if a.kind == "ddl":
            for relation in sorted(a.relations):
                held = info.relations.get(relation) or info.relations.get(("", relation[1]))
                if held is not None:
                    return Refusal(
                        f"{relation[1]} holds masked columns; it cannot be changed through "
                        f"a masked session ({held.name})",
                        held.name,
                    )
        if a.kind == "code":
            hits = info.named_in(a.body or "")
            if hits:
                rule = strongest(hits)
                return Refusal(
                    "code that names a relation or column holding masked data cannot be "
                    f"created or run through a masked session ({rule.name})",
                    rule.name,
                )
        return None


@dataclass(frozen=True, slots=True)
class _Masked:
    """Per catalog: relations holding masked columns (by (schema, name) and by ("", name)),
    and a pattern matching their names and the masked columns' names as words."""

    relations: dict[tuple[str, str], MaskRule]
    words: dict[str, MaskRule]
    pattern: re.Pattern[str] | None

    @classmethod
    def of(cls, masking: Masking, catalog: Catalog) -> _Masked:
        relations: dict[tuple[str, str], MaskRule] = {}
        words: dict[str, MaskRule] = {}
        for (schema, name), relation in catalog.relations.items():
            if schema in ("pg_catalog", "information_schema"):
                continue
            for column, _ in relation.columns:
                rule = masking.rule_for((schema, name, column))
                if rule is None:
                    continue
                for key in ((schema, name), ("", name)):
                    if key not in relations or _stronger(rule, relations[key]):
                        relations[key] = rule
                for word in (name.lower(), column.lower()):
                    if word not in words or _stronger(rule, words[word]):
                        words[word] = rule
        # Rules whose column globs name no column in the catalog yet still name their words.
        for rule in masking.rules:
            for pattern in rule.columns:
                for part in pattern.split("."):
                    if not any(c in part for c in "*?[") and part not in words:
                        words[part] = rule
        found: re.Pattern[str] | None = None
        if words:
            alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            found = re.compile(rf"(?<![\w$])(?:{alternatives})(?![\w$])", re.IGNORECASE)
        return cls(relations, words, found)

    def named_in(self, text: str) -> list[MaskRule]:
        if self.pattern is None:
            return []
        return [self.words[m.group(0).lower()] for m in self.pattern.finditer(text)]


def rules_for(resource: str, config_rules: Iterable[RuleConfig]) -> list[MaskRule]:
    """The mask rules of the config that apply to `resource`, in config order."""
    found = []
    for i, rule in enumerate(config_rules):
        if rule.action != "mask":
            continue
        if not any(fnmatch.fnmatchcase(resource, p) for p in rule.resources):
            continue
        found.append(
            MaskRule(
                name=rule.name or f"rules[{i}]",
                columns=tuple(c.lower() for c in rule.columns),
                detectors=tuple(rule.detectors),
                style=rule.style,
                strict=rule.strict,
                on_copy=rule.on_copy,
            )
        )
    return found


def strongest(rules: Sequence[MaskRule]) -> MaskRule:
    best = rules[0]
    for rule in rules[1:]:
        if _stronger(rule, best):
            best = rule
    return best


def _stronger(a: MaskRule, b: MaskRule) -> bool:
    return _STRENGTH[a.style] > _STRENGTH[b.style]


def _name(column: BaseColumn) -> str:
    schema, relation, name = column
    return f"{relation}.{name}" if schema in ("", "public") else f"{schema}.{relation}.{name}"
