"""Mask rules applied to lineage: which columns are masked, how, and what is refused."""

from __future__ import annotations

import pytest

from central.masking.catalog import Catalog, Relation
from central.masking.lineage import Analysis, Call, ColumnOrigin, Write
from central.masking.policy import CATALOG_RULE, ColumnAction, Masking, MaskRule, Plan, Refusal
from central.masking.rows import CopyFormat

KEY = b"k" * 32
SSN = ("public", "customers", "ssn")
EMAIL = ("public", "customers", "email")
NAME = ("public", "customers", "name")
NOTE = ("public", "orders", "note")
CATALOG = Catalog(
    {
        ("public", "customers"): Relation(
            "public", "customers", "r", (("id", 23), ("name", 25), ("email", 25), ("ssn", 25))
        ),
        ("public", "orders"): Relation("public", "orders", "r", (("id", 23), ("note", 25))),
    }
)
RULES = [
    MaskRule("pii", columns=("customers.ssn",), style="full"),
    MaskRule("contact", columns=("public.customers.email",), style="partial"),
    MaskRule("content", detectors=("email", "ssn"), style="hash"),
]


def masking(*rules: MaskRule) -> Masking:
    return Masking(rules or RULES, KEY)


def plan(a: Analysis, m: Masking | None = None) -> Plan:
    found = (m or masking()).plan(a, CATALOG)
    assert isinstance(found, Plan), found
    return found


def refusal(a: Analysis, m: Masking | None = None) -> Refusal:
    found = (m or masking()).plan(a, CATALOG)
    assert isinstance(found, Refusal), found
    return found


def test_columns_are_masked_by_lineage_with_the_strongest_matching_rule() -> None:
    m = masking(*RULES, MaskRule("lockdown", columns=("*.ssn",), style="null"))
    p = plan(
        Analysis(
            "select",
            output=(
                ColumnOrigin(frozenset({SSN}), direct=True),
                ColumnOrigin(frozenset({EMAIL}), direct=True),
                ColumnOrigin(frozenset({NAME}), direct=True),
                ColumnOrigin(frozenset({NAME, EMAIL})),
            ),
            reads=frozenset({SSN, EMAIL, NAME}),
        ),
        m,
    )
    assert p.columns == (  # direct columns carry their type from the catalog (25: text)
        ColumnAction("mask", "null", "lockdown", True, 25),
        ColumnAction("mask", "partial", "contact", True, 25),
        None,
        ColumnAction("mask", "partial", "contact", False),
    )
    assert p.scrub and p.masks


def test_unknown_origin_is_scanned_or_masked_outright_under_strict() -> None:
    a = Analysis("select", output=(ColumnOrigin(unknown=True),), reads_unknown=True)
    assert plan(a).columns == (ColumnAction("scan", "hash", "content"),)
    strict = masking(*RULES, MaskRule("strict", strict=True, style="null"))
    assert plan(a, strict).columns == (ColumnAction("mask", "null", "strict"),)
    assert plan(a, masking(RULES[0])).columns == (None,)  # no detector, not strict: passed


def test_a_result_of_unexpected_shape_is_masked_by_what_the_statement_read() -> None:
    a = Analysis("select", output=(ColumnOrigin(frozenset({NAME})),), reads=frozenset({SSN}))
    p = plan(a)
    assert p.actions(1) == (None,)
    assert p.actions(3) == (ColumnAction("mask", "full", "pii"),) * 3


def test_leaky_catalog_views_are_masked_whenever_there_are_rules() -> None:
    stats = ("pg_catalog", "pg_stats", "histogram_bounds")
    a = Analysis("select", output=(ColumnOrigin(frozenset({stats})),), reads=frozenset({stats}))
    assert plan(a).columns == (ColumnAction("mask", "full", CATALOG_RULE.name),)
    clean = ("pg_catalog", "pg_stats", "tablename")
    assert plan(Analysis("select", output=(ColumnOrigin(frozenset({clean})),))).columns == (None,)


def test_copying_masked_data_into_an_unmasked_column_is_refused() -> None:
    r = refusal(Analysis("insert", writes=(Write(NOTE, frozenset({SSN})),)))
    assert "customers.ssn" in r.reason and "orders.note" in r.reason and r.rule == "pii"
    # Into a masked column (the same rule's) it stays masked: allowed.
    assert plan(Analysis("update", writes=(Write(SSN, frozenset({SSN})),))).columns == ()


def test_masked_data_into_a_volatile_function_is_refused_but_not_into_a_pure_one() -> None:
    r = refusal(Analysis("select", calls=(Call("set_config", True, frozenset({SSN})),)))
    assert "set_config()" in r.reason
    plan(Analysis("select", calls=(Call("upper", False, frozenset({SSN})),)))


def test_ddl_on_masked_relations_and_code_naming_them_are_refused() -> None:
    r = refusal(Analysis("ddl", relations=frozenset({("public", "customers")})))
    assert "customers holds masked columns" in r.reason
    plan(Analysis("ddl", relations=frozenset({("public", "orders")})))
    body = "CREATE FUNCTION f() RETURNS text AS 'select SSN from people' LANGUAGE sql"
    assert refusal(Analysis("code", body=body)).rule == "pii"
    plan(Analysis("code", body="DO $$ BEGIN PERFORM 1; END $$"))


def test_unparsed_statements_naming_masked_things_mask_every_column() -> None:
    p = masking().plan(Analysis("unparsed", output=None), CATALOG, "SELECT weird ssn syntax")
    assert isinstance(p, Plan) and p.actions(2) == (ColumnAction("mask", "full", "pii"),) * 2
    p = masking().plan(Analysis("unparsed", output=None), CATALOG, "SELECT weird")
    assert isinstance(p, Plan) and p.actions(1) == (ColumnAction("scan", "hash", "content"),)


@pytest.mark.parametrize(
    ("copy", "refused"),
    [(CopyFormat(), False), (CopyFormat("csv", ","), False), (CopyFormat("binary"), True)],
)
def test_copy_of_masked_columns_needs_a_format_that_can_be_masked(
    copy: CopyFormat, refused: bool
) -> None:
    a = Analysis("copy_out", output=(ColumnOrigin(frozenset({SSN})),), copy=copy)
    assert isinstance(masking().plan(a, CATALOG), Refusal) is refused
    unparsable = Analysis("copy_out", output=(ColumnOrigin(frozenset({SSN})),), copy=None)
    assert isinstance(masking().plan(unparsable, CATALOG), Refusal)


def test_a_rule_can_refuse_copy_outright() -> None:
    m = masking(MaskRule("pii", columns=("customers.ssn",), on_copy="refuse"))
    a = Analysis("copy_out", output=(ColumnOrigin(frozenset({SSN})),), copy=CopyFormat())
    assert refusal(a, m).reason == "COPY of masked columns is refused (pii)"


def test_blind_statements_that_name_masked_data_mask_their_unknown_columns() -> None:
    a = Analysis("select", output=(ColumnOrigin(unknown=True),), reads_unknown=True)
    m = masking(RULES[0])  # a column rule only: no detectors, not strict
    named = m.plan(a, CATALOG, "SELECT query_to_xml('select ssn from customers', true, false, '')")
    assert isinstance(named, Plan) and named.columns == (ColumnAction("mask", "full", "pii"),)
    other = m.plan(a, CATALOG, "SELECT query_to_xml('select 1', true, false, '')")
    assert isinstance(other, Plan) and other.columns == (None,)
