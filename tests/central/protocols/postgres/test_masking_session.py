"""SessionMasking as a playbook: client messages told, target bytes fed, bytes asserted.

No server here: these pin down which RowDescription goes with which statement, in the orders
the protocol allows (several statements in one Query, Describe now and Execute later, portals
read in pieces, COPY, errors), and that whatever cannot be matched is masked, not passed.
"""

from __future__ import annotations

import pytest

from central.masking.catalog import Catalog, Relation
from central.masking.policy import Masking, MaskRule, Refusal
from central.masking.rows import RowError
from central.protocols.postgres.catalog import CatalogCache
from central.protocols.postgres.codec import FrameReader, decode_backend, encode
from central.protocols.postgres.masking import SessionMasking
from central.protocols.postgres.messages import (
    Bind,
    CommandComplete,
    CopyData,
    CopyDone,
    CopyOutResponse,
    DataRow,
    FieldDescription,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
    error_response,
)
from central.protocols.postgres.target import TargetSpec

SSN = b"123-45-6789"
CATALOG = Catalog(
    {
        ("public", "customers"): Relation(
            "public", "customers", "r", (("id", 23), ("name", 25), ("ssn", 25))
        )
    },
    functions={"upper": "i", "length": "i"},
)
RULES = [
    MaskRule("pii", columns=("customers.ssn",)),
    MaskRule("content", detectors=("ssn", "email")),
]


def session() -> SessionMasking:
    spec = TargetSpec("db", "127.0.0.1", 5432, "db", "u", None)
    masking = SessionMasking(Masking(RULES, b"k" * 32), CatalogCache(), spec)
    masking.base = masking.catalog = CATALOG
    return masking


def feed(masking: SessionMasking, *messages: object) -> list[object]:
    """The target's messages through masking, decoded again as the client would see them."""
    reader = FrameReader()
    reader.receive_data(b"".join(encode(m) for m in messages))  # type: ignore[arg-type]
    out = b""
    while True:
        run = reader.take_run(ord("D"))
        if run is not None:
            out += masking.data_rows(run[0], run[1], run[2])
            continue
        frame = reader.next_frame()
        if frame is None:
            break
        out += masking.backend(frame)
    again = FrameReader()
    again.receive_data(out)
    return [decode_backend(f) for f in again.frames()]


def fields(*names_types: tuple[str, int], fmt: int = 0) -> RowDescription:
    return RowDescription(
        tuple(FieldDescription(n, type_oid=t, format=fmt) for n, t in names_types)
    )


def test_each_statement_of_a_query_gets_its_own_rowdescription() -> None:
    m = session()
    assert m.query("SELECT id, ssn FROM customers; SELECT ssn AS x, name FROM customers") is None
    out = feed(
        m,
        fields(("id", 25), ("ssn", 25)),
        DataRow((b"1", SSN)),
        CommandComplete("SELECT 1"),
        fields(("x", 25), ("name", 25)),
        DataRow((SSN, b"Ada")),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
    )
    rows = [o.values for o in out if isinstance(o, DataRow)]
    assert rows == [(b"1", b"****"), (b"****", b"Ada")]


def test_a_statement_described_earlier_is_masked_by_bind_formats_without_a_rowdescription() -> None:
    m = session()
    assert m.parse("s1", "SELECT name, ssn, length(ssn) FROM customers") is None
    m.describe("S", "s1")
    m.sync()
    feed(
        m,
        ParameterDescription(()),
        fields(("name", 25), ("ssn", 25), ("n", 23)),
        ReadyForQuery("I"),
    )
    m.bind(Bind("", "s1", result_formats=(1,)))
    m.execute("")
    m.sync()
    out = feed(
        m,
        DataRow((b"Ada", SSN, b"\x00\x00\x00\x0b")),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
    )
    rows = [o.values for o in out if isinstance(o, DataRow)]
    assert rows == [(b"Ada", b"****", None)]  # a masked int becomes NULL


def test_a_portal_read_in_pieces_stays_masked_after_portal_suspended() -> None:
    m = session()
    m.parse("", "SELECT ssn FROM customers")
    m.bind(Bind("p", ""))
    for _ in range(2):
        m.execute("p")
    m.sync()
    out = feed(
        m,
        DataRow((SSN,)),
        PortalSuspended(),
        DataRow((SSN,)),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
    )
    assert [o.values for o in out if isinstance(o, DataRow)] == [(b"****",), (b"****",)]


def test_rows_of_unknown_origin_are_scanned_and_unmatched_rows_masked() -> None:
    m = session()
    m.query("SELECT secret_function()")
    out = feed(m, fields(("f", 25)), DataRow((b"mail me: a@b.example, " + SSN,)))
    assert [o.values for o in out if isinstance(o, DataRow)] == [(b"mail me: ****, ****",)]
    stray = session()  # rows nobody asked for: every column of unknown origin
    out = feed(stray, fields(("x", 25)), DataRow((SSN,)))
    assert [o.values for o in out if isinstance(o, DataRow)] == [(b"****",)]


def test_copy_rows_are_masked() -> None:
    m = session()
    m.query("COPY customers TO STDOUT")
    out = feed(
        m,
        CopyOutResponse(0, (0, 0, 0)),
        CopyData(b"1\tAda\t" + SSN + b"\n"),
        CopyDone(),
        CommandComplete("COPY 1"),
        ReadyForQuery("I"),
    )
    assert [o.data for o in out if isinstance(o, CopyData)] == [b"1\tAda\t****\n"]


def test_errors_of_statements_reading_masked_data_withhold_values() -> None:
    m = session()
    m.query("SELECT ssn::int FROM customers")
    err = error_response(
        "22P02",
        'invalid input syntax for type integer: "123-45-6789"',
        detail="Key (ssn)=(123-45-6789) already exists.",
    )
    (out,) = feed(m, err)
    assert out.fields["M"] == 'invalid input syntax for type integer: "****"'  # type: ignore[attr-defined]
    assert "123" not in out.fields["D"]  # type: ignore[attr-defined]
    clean = session()
    clean.query("SELECT 1")
    (out,) = feed(clean, error_response("22012", "division by zero"))
    assert out.fields["M"] == "division by zero"  # type: ignore[attr-defined]


def test_malformed_rows_in_a_masked_result_are_an_error_not_a_pass() -> None:
    m = session()
    m.query("SELECT ssn FROM customers")
    feed(m, fields(("ssn", 25)))
    with pytest.raises(RowError):
        m.data_rows(b"D\x00\x00\x00\x0a\x00\x01\x00\x00\x00\x09", 0, 11)


def test_refusals_commit_nothing_and_the_target_reports_string_rules() -> None:
    m = session()
    refused = m.query("DECLARE c CURSOR FOR SELECT 1; CREATE TABLE t AS SELECT ssn FROM customers")
    assert isinstance(refused, Refusal)
    assert m.plan("FETCH ALL FROM c") is not None and not m._cursors
    feed(m, ParameterStatus("standard_conforming_strings", "off"))
    assert m.backslash_escapes


def test_notification_payloads_go_through_the_detectors() -> None:
    m = session()
    (out,) = feed(m, NotificationResponse(7, "orders", "new order from a@b.example"))
    assert isinstance(out, NotificationResponse)
    assert (out.pid, out.channel, out.payload) == (7, "orders", "new order from ****")
    (same,) = feed(m, NotificationResponse(7, "orders", "order 42 shipped"))
    assert isinstance(same, NotificationResponse) and same.payload == "order 42 shipped"
