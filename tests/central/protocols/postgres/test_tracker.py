"""StatementTracker as a playbook: client messages told, target messages fed, records read.

No server here: these pin down which columns and formats each execution's kept rows are read
by, in the orders the extended protocol allows (a statement described once and executed many
times, a portal described in the same batch, Describes answered with NoData, a failed
Describe), how binary values are recorded, and the masked columns a plan names. The real
clients through the real gateway are in test_session.py and test_masking.py.
"""

from __future__ import annotations

import struct
from typing import cast

from central.masking.policy import CLEAN, ColumnAction, Plan
from central.protocols.postgres.codec import Frame, encode
from central.protocols.postgres.messages import (
    Bind,
    CommandComplete,
    DataRow,
    FieldDescription,
    NoData,
    ParameterDescription,
    Parse,
    PortalSuspended,
    ReadyForQuery,
    RowDescription,
    error_response,
)
from central.protocols.postgres.tracker import (
    DATA_ROW,
    TRACKED_BACKEND,
    StatementTracker,
    cell_text,
)
from central.recording import SessionLog, StatementRecordDraft

INT4, TEXT, NUMERIC, TIMESTAMPTZ, BYTEA, INT4_ARRAY = 23, 25, 1700, 1184, 17, 1007


class Drafts:
    """What the tracker hands the recording (its `statement` calls), kept in order."""

    def __init__(self) -> None:
        self.statements: list[StatementRecordDraft] = []

    def statement(self, draft: StatementRecordDraft) -> None:
        self.statements.append(draft)


def tracker(keep_rows: int = 20) -> tuple[StatementTracker, list[StatementRecordDraft]]:
    drafts = Drafts()
    return StatementTracker(cast(SessionLog, drafts), "I", keep_rows=keep_rows), drafts.statements


def answer(t: StatementTracker, *messages: object, plan: Plan | None = None) -> None:
    """The target's messages as the session hands them over: rows to `sample_row`, tracked
    messages to `backend` (a RowDescription with the masking plan of its rows)."""
    for message in messages:
        raw = encode(message)  # type: ignore[arg-type]
        frame = Frame(raw[0], raw)
        if frame.type == DATA_ROW:
            t.sample_row(raw)
        elif frame.type in TRACKED_BACKEND:
            t.backend(frame, plan if isinstance(message, RowDescription) else None)


def columns(*names_types: tuple[str, int], fmt: int = 0) -> RowDescription:
    return RowDescription(
        tuple(FieldDescription(n, type_oid=t, format=fmt) for n, t in names_types)
    )


def i4(n: int) -> bytes:
    return struct.pack("!i", n)


def numeric(digits: tuple[int, ...], weight: int, dscale: int) -> bytes:
    return struct.pack(f"!hhHh{len(digits)}h", len(digits), weight, 0, dscale, *digits)


AT = struct.pack("!q", 768_227_400_250_000)  # 2024-05-05 12:30:00.25 UTC, in µs since 2000


def test_a_statement_described_once_is_recorded_by_name_and_value_at_each_execution() -> None:
    # asyncpg: Parse + Describe once, then Bind (results in binary) + Execute per call.
    t, recorded = tracker()
    t.parse(Parse("s1", "SELECT id, name, at, amount FROM t WHERE id > $1"))
    t.describe("S", "s1")
    t.sync()
    answer(
        t,
        ParameterDescription((INT4,)),
        columns(("id", INT4), ("name", TEXT), ("at", TIMESTAMPTZ), ("amount", NUMERIC)),
        ReadyForQuery("I"),
    )
    for _ in range(2):
        t.bind(Bind("", "s1", (1,), (i4(0),), result_formats=(1,)))
        t.execute("")
        t.sync()
        answer(
            t,
            DataRow((i4(1), b"Ada", AT, numeric((10, 5000), 0, 2))),
            DataRow((i4(2), None, None, numeric((), 0, 0))),
            CommandComplete("SELECT 2"),
            ReadyForQuery("I"),
        )
    assert len(recorded) == 2
    for statement in recorded:
        assert statement.protocol == "extended" and statement.params == ["0"]
        assert statement.result == {
            "columns": ["id", "name", "at", "amount"],
            "rows": [
                ["1", "Ada", "2024-05-05 12:30:00.25+00", "10.50"],
                ["2", None, None, "0"],
            ],
            "more": False,
        }


def test_bind_formats_say_which_columns_are_binary() -> None:
    t, recorded = tracker()
    t.parse(Parse("s", "SELECT id, n FROM t"))
    t.describe("S", "s")
    t.sync()
    answer(t, ParameterDescription(()), columns(("id", INT4), ("n", INT4)), ReadyForQuery("I"))
    t.bind(Bind("p", "s", result_formats=(0, 1)))  # one format per column
    t.execute("p")
    t.bind(Bind("q", "s"))  # none: every column in text
    t.execute("q")
    t.sync()
    answer(
        t,
        DataRow((b"7", i4(8))),
        CommandComplete("SELECT 1"),
        DataRow((b"9", b"10")),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
    )
    assert [s.result and s.result["rows"] for s in recorded] == [[["7", "8"]], [["9", "10"]]]


def test_a_portal_described_in_its_batch_gives_the_columns() -> None:
    # psycopg and pgbench -M extended: Parse, Bind, Describe the portal, Execute, Sync.
    t, recorded = tracker()
    t.parse(Parse("", "SELECT id FROM t"))
    t.bind(Bind("", "", result_formats=(1,)))
    t.describe("P", "")
    t.execute("")
    t.sync()
    answer(t, columns(("id", INT4), fmt=1), DataRow((i4(5),)), CommandComplete("SELECT 1"))
    answer(t, ReadyForQuery("I"))
    assert recorded[0].result == {"columns": ["id"], "rows": [["5"]], "more": False}


def test_describes_answered_with_nodata_keep_each_statement_its_own_columns() -> None:
    t, recorded = tracker()
    t.parse(Parse("ins", "INSERT INTO t VALUES (1)"))
    t.parse(Parse("sel", "SELECT n FROM t"))
    t.describe("S", "ins")
    t.describe("S", "sel")
    t.sync()
    answer(
        t,
        ParameterDescription(()),
        NoData(),  # the INSERT returns no rows
        ParameterDescription(()),
        columns(("n", INT4)),
        ReadyForQuery("I"),
    )
    t.bind(Bind("", "ins"))
    t.execute("")
    t.bind(Bind("", "sel", result_formats=(1,)))
    t.execute("")
    t.sync()
    answer(
        t,
        CommandComplete("INSERT 0 1"),
        DataRow((i4(1),)),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
    )
    assert [(s.sql, s.result) for s in recorded] == [
        ("INSERT INTO t VALUES (1)", None),
        ("SELECT n FROM t", {"columns": ["n"], "rows": [["1"]], "more": False}),
    ]


def test_a_failed_describe_skips_the_rest_of_its_batch() -> None:
    t, recorded = tracker()
    t.parse(Parse("ok", "SELECT 1"))
    t.describe("S", "missing")
    t.bind(Bind("", "ok"))
    t.execute("")
    t.sync()
    answer(t, error_response("26000", 'prepared statement "missing" does not exist'))
    answer(t, ReadyForQuery("I"))
    assert [(s.sql, s.outcome) for s in recorded] == [("SELECT 1", "skipped")]
    assert t.owed == 0


def test_a_portal_read_in_pieces_records_each_piece_with_the_columns() -> None:
    t, recorded = tracker()
    t.parse(Parse("", "SELECT n FROM t"))
    t.bind(Bind("c", "", result_formats=(1,)))
    t.describe("P", "c")
    t.execute("c")
    t.execute("c")
    t.sync()
    answer(
        t,
        columns(("n", INT4), fmt=1),
        DataRow((i4(1),)),
        PortalSuspended(),
        DataRow((i4(2),)),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
    )
    assert [s.result for s in recorded] == [
        {"columns": ["n"], "rows": [["1"]], "more": False},
        {"columns": ["n"], "rows": [["2"]], "more": False},
    ]


def test_an_undescribed_execution_keeps_binary_cells_as_hex() -> None:
    t, recorded = tracker()
    t.parse(Parse("", "SELECT n FROM t"))
    t.bind(Bind("", "", result_formats=(1,)))
    t.execute("")
    t.sync()
    answer(t, DataRow((i4(1),)), CommandComplete("SELECT 1"), ReadyForQuery("I"))
    assert recorded[0].result == {"columns": None, "rows": [["\\x00000001"]], "more": False}


def test_a_simple_query_reads_its_rowdescription_formats() -> None:
    # FETCH from a cursor declared BINARY: binary rows in the simple protocol.
    t, recorded = tracker(keep_rows=1)
    t.query("FETCH 2 FROM c")
    answer(
        t,
        columns(("n", INT4), ("s", TEXT), fmt=1),
        DataRow((i4(-3), b"x")),
        DataRow((i4(4), b"y")),
        CommandComplete("FETCH 2"),
        ReadyForQuery("T"),
    )
    assert recorded[0].result == {"columns": ["n", "s"], "rows": [["-3", "x"]], "more": True}


def test_masked_and_scanned_columns_are_named_with_their_rules() -> None:
    plan = Plan(
        (
            None,
            ColumnAction("mask", "full", "pii"),
            ColumnAction("scan", "full", "content"),
        ),
        None,
    )
    t, recorded = tracker()
    t.query("SELECT id, ssn, notes FROM customers")
    answer(
        t,
        columns(("id", INT4), ("ssn", TEXT), ("notes", TEXT)),
        DataRow((b"1", b"****", b"call ****")),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
        plan=plan,
    )
    # The extended protocol: the plan comes with the Execute.
    t.parse(Parse("s", "SELECT id, ssn, notes FROM customers"))
    t.describe("S", "s")
    t.sync()
    answer(
        t,
        ParameterDescription(()),
        columns(("id", INT4), ("ssn", TEXT), ("notes", TEXT)),
        ReadyForQuery("I"),
    )
    t.bind(Bind("", "s"))
    t.execute("", plan)
    t.sync()
    answer(t, DataRow((b"1", b"****", b"x")), CommandComplete("SELECT 1"), ReadyForQuery("I"))
    for statement in recorded:
        assert statement.result is not None
        assert statement.result["masked"] == {"ssn": "pii", "notes": "content"}
        assert statement.result["scanned"] == ["notes"]


def test_a_result_without_masks_has_no_masked_key() -> None:
    t, recorded = tracker()
    t.query("SELECT 1 AS one")
    answer(
        t,
        columns(("one", INT4)),
        DataRow((b"1",)),
        CommandComplete("SELECT 1"),
        ReadyForQuery("I"),
        plan=CLEAN,
    )
    assert recorded[0].result == {"columns": ["one"], "rows": [["1"]], "more": False}


def test_only_the_first_result_of_a_query_is_kept_with_its_own_plan() -> None:
    masked = Plan((ColumnAction("mask", "full", "pii"),), None)
    t, recorded = tracker()
    t.query("SELECT name FROM a; SELECT ssn FROM b")
    answer(
        t,
        columns(("name", TEXT)),
        DataRow((b"Ada",)),
        CommandComplete("SELECT 1"),
        plan=CLEAN,
    )
    answer(t, columns(("ssn", TEXT)), DataRow((b"****",)), CommandComplete("SELECT 1"), plan=masked)
    answer(t, ReadyForQuery("I"))
    assert recorded[0].result == {"columns": ["name"], "rows": [["Ada"]], "more": True}


def test_keep_rows_zero_keeps_no_result_even_for_a_described_statement() -> None:
    t, recorded = tracker(keep_rows=0)
    t.parse(Parse("s", "SELECT n FROM t"))
    t.describe("S", "s")
    t.bind(Bind("", "s", result_formats=(1,)))
    t.execute("")
    t.sync()
    answer(t, ParameterDescription(()), columns(("n", INT4)), DataRow((i4(1),)))
    answer(t, CommandComplete("SELECT 1"), ReadyForQuery("I"))
    assert recorded[0].result is None and recorded[0].rows == 1


def test_cells_are_recorded_as_postgresql_prints_them_or_as_hex() -> None:
    assert cell_text(None, INT4, True) is None
    assert cell_text(i4(42), INT4, True) == "42"
    assert cell_text(b"42", INT4, False) == "42"  # text format: as sent
    assert cell_text(i4(42), 0, True) == "\\x0000002a"  # a type not read here
    assert cell_text(b"\x00\x01", INT4, True) == "\\x0001"  # not a valid int4
    assert cell_text(b"\xff\xfe", TEXT, False) == "\\xfffe"  # not UTF-8
    long_bytes = bytes(range(256)) * 20
    # bytea: the same text as PostgreSQL's hex output, cut
    assert cell_text(long_bytes, BYTEA, True) == "\\x" + long_bytes[:64].hex() + "…"
    # A long text in binary is text, clipped as text is.
    assert cell_text(b"a" * 5000, TEXT, True) == "a" * 200 + "…[4800 more]"
    # A big array is not decoded (its cost would fall on the event loop): hex.
    many = struct.pack("!iiIii", 1, 0, INT4, 600, 1) + b"".join(
        struct.pack("!i", 4) + i4(n) for n in range(600)
    )
    assert cell_text(many, INT4_ARRAY, True) == "\\x" + many[:64].hex() + "…"
    small = struct.pack("!iiIii", 1, 0, INT4, 2, 1) + struct.pack("!i", 4) + i4(1) + b"\xff" * 4
    assert cell_text(small, INT4_ARRAY, True) == "{1,NULL}"
