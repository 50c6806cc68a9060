"""Rewriting result rows with masked cells: bytes in, bytes out.

Cell functions per style and type, DataRow rewriting (and its refusal of every malformed row),
COPY text and CSV against real PostgreSQL output, and the property that no sensitive value
survives a rewrite.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import struct
from collections.abc import Callable, Sequence

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.masking.detectors import ALL_NAMES, scanner
from central.masking.rows import (
    CellFn,
    CopyFormat,
    CopyRows,
    RowError,
    mask_cell,
    rewrite_data_rows,
    scan_cell,
)
from central.masking.styles import FULL_MASK, STYLES, Style, hash_token
from central.protocols.postgres.codec import FrameReader, decode_backend
from central.protocols.postgres.messages import DataRow
from tests.central.masking.test_styles import cards, emails, ibans, phones, ssns
from tests.support.pgtemp import admin_url

KEY = b"k" * 32
TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN, JSON, JSONB = 25, 1043, 1042, 19, 705, 114, 3802
INT4, INT8, BYTEA, XML, CHAR, INT4_ARRAY = 23, 20, 17, 142, 18, 1007
SCANNER = scanner(ALL_NAMES)
TOKEN = re.compile(rb"h:[0-9a-f]{16}")


def full(type_oid: int = TEXT, binary: bool = False) -> CellFn:
    return mask_cell("full", KEY, type_oid=type_oid, binary=binary, direct=True)


def row(*values: bytes | None) -> bytes:
    """One DataRow message."""
    body = [struct.pack("!h", len(values))]
    for v in values:
        body.append(b"\xff\xff\xff\xff" if v is None else struct.pack("!i", len(v)) + v)
    payload = b"".join(body)
    return b"D" + struct.pack("!I", len(payload) + 4) + payload


def rows_of(data: bytes) -> list[tuple[bytes | None, ...]]:
    """The values of the DataRows in `data`, read by the protocol codec (an independent parser,
    which also checks every recomputed length)."""
    reader = FrameReader()
    reader.receive_data(data)
    out = []
    for frame in reader.frames():
        message = decode_backend(frame)
        assert isinstance(message, DataRow)
        out.append(message.values)
    assert reader.buffered == 0
    return out


def rewrite(cells: Sequence[CellFn | None], *rows: tuple[bytes | None, ...]) -> list:
    data = b"".join(row(*r) for r in rows)
    return rows_of(rewrite_data_rows(data, 0, len(data), cells))


# --- mask_cell ---------------------------------------------------------------------------------

CARD = b"4242 4242 4242 4242"
EMAIL = b"jane.doe@example.com"


@pytest.mark.parametrize(
    ("type_oid", "binary", "expected"),
    [
        (TEXT, False, b"****"),
        (VARCHAR, False, b"****"),
        (BPCHAR, False, b"****"),
        (NAME, False, b"****"),
        (UNKNOWN, False, b"****"),
        (TEXT, True, b"****"),
        (JSON, False, b'"****"'),
        (JSONB, False, b'"****"'),
        (JSONB, True, b'\x01"****"'),
        (INT4, False, None),
        (INT4, True, None),
        (0, False, None),  # type not known: never guess it is text
        (BYTEA, False, None),
        (XML, False, None),
        (CHAR, False, None),
        (INT4_ARRAY, False, None),
    ],
)
def test_full_by_type(type_oid: int, binary: bool, expected: bytes | None) -> None:
    cell = mask_cell("full", KEY, type_oid=type_oid, binary=binary, direct=True)
    assert cell(CARD) == expected
    assert rewrite([None, cell], (b"1", CARD), (b"2", None)) == [(b"1", expected), (b"2", None)]


@pytest.mark.parametrize("type_oid", [TEXT, JSON, JSONB, INT4, 0])
@pytest.mark.parametrize("binary", [False, True])
def test_null_style_is_null_for_every_type(type_oid: int, binary: bool) -> None:
    cell = mask_cell("null", KEY, type_oid=type_oid, binary=binary, direct=True)
    assert cell(b"\x01" + EMAIL if binary and type_oid == JSONB else EMAIL) is None


def test_hash_normalises_by_detected_kind() -> None:
    cell = mask_cell("hash", KEY, type_oid=TEXT, binary=False, direct=False)
    token = hash_token("4242424242424242", "credit_card", key=KEY).encode()
    assert cell(CARD) == cell(b"4242-4242-4242-4242") == cell(b"4242424242424242") == token
    assert cell(b"Jane.Doe@Example.com") == cell(EMAIL)
    assert cell(b"plain words") == hash_token("plain words", None, key=KEY).encode()
    assert cell(b"plain words") != cell(b"plain words!")


def test_hash_in_json_hashes_the_string_content() -> None:
    text_token = hash_token("jane.doe@example.com", "email", key=KEY)
    expected = json.dumps(text_token).encode()
    assert (
        mask_cell("hash", KEY, type_oid=JSON, binary=False, direct=True)(b'"Jane.Doe@example.com"')
        == expected
    )
    assert (
        mask_cell("hash", KEY, type_oid=JSONB, binary=True, direct=True)(
            b'\x01"jane.doe@example.com"'
        )
        == b"\x01" + expected
    )
    obj = b'{"a": 1}'  # not a string: the JSON text is the value
    assert (
        mask_cell("hash", KEY, type_oid=JSONB, binary=False, direct=True)(obj)
        == json.dumps(hash_token('{"a": 1}', None, key=KEY)).encode()
    )


def test_hash_of_padded_bpchar_equals_text() -> None:
    text = mask_cell("hash", KEY, type_oid=TEXT, binary=False, direct=True)
    bpchar = mask_cell("hash", KEY, type_oid=BPCHAR, binary=False, direct=True)
    assert bpchar(b"ABC123      ") == text(b"ABC123")


def test_hash_of_other_types_is_null_and_invalid_utf8_is_fine() -> None:
    assert mask_cell("hash", KEY, type_oid=INT8, binary=False, direct=True)(b"42") is None
    token = mask_cell("hash", KEY, type_oid=TEXT, binary=False, direct=True)(b"\xff\xfe ok")
    assert token is not None and TOKEN.fullmatch(token)


@pytest.mark.parametrize(
    ("type_oid", "binary", "value", "expected"),
    [
        (TEXT, False, CARD, b"**** **** **** 4242"),
        (VARCHAR, False, b"+1 (415) 555-2671", b"+* (***) ***-2671"),
        (TEXT, False, EMAIL, b"****@example.com"),
        (BPCHAR, False, b"123-45-6789   ", b"***-**-6789   "),  # padding is not the value
        (TEXT, False, b"  " + EMAIL + b"\n", b"****@example.com\n"),
        (JSON, False, b'"4242424242424242"', b'"************4242"'),
        (JSONB, True, b'\x01"' + EMAIL + b'"', b'\x01"****@example.com"'),
        (TEXT, False, b"hello world", b"****"),  # no kind: like full
        (TEXT, False, b"card " + CARD, b"****"),  # no single kind covers the value
        (TEXT, False, b"10.1.2.3", b"****"),  # a kind partial does not show
        (INT8, False, b"4242424242424242", None),
    ],
)
def test_partial_direct(type_oid: int, binary: bool, value: bytes, expected: bytes) -> None:
    cell = mask_cell("partial", KEY, type_oid=type_oid, binary=binary, direct=True)
    assert cell(value) == expected


def test_partial_of_a_transformed_value_is_full() -> None:
    cell = mask_cell("partial", KEY, type_oid=TEXT, binary=False, direct=False)
    assert cell(CARD) == cell(EMAIL) == b"****"


def test_partial_with_bytes_that_are_not_utf8() -> None:
    cell = mask_cell("partial", KEY, type_oid=TEXT, binary=False, direct=True)
    assert cell(b"+44 20 7946 0958\xff") == b"****"  # the odd byte breaks the phone: no kind
    # The kind comes from the shape: still an email, whatever the odd byte in its local part.
    assert cell(b"\xffjane@example.com") == b"****@example.com"


@pytest.mark.parametrize("factory", ["mask", "scan"])
def test_bad_config_fails_at_build_time(factory: str) -> None:
    def build(style: Style, key: bytes) -> CellFn:
        if factory == "mask":
            return mask_cell(style, key, type_oid=TEXT, binary=False, direct=True)
        return scan_cell(SCANNER, style, key, type_oid=TEXT, binary=False)

    with pytest.raises(ValueError, match="unknown masking style"):
        build("redact", KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16 bytes"):
        build("hash", b"short")
    build("full", b"")  # no key needed when nothing is hashed


# --- scan_cell ---------------------------------------------------------------------------------


def scan(style: Style = "full", type_oid: int = TEXT, binary: bool = False) -> CellFn:
    return scan_cell(SCANNER, style, KEY, type_oid=type_oid, binary=binary)


@pytest.mark.parametrize("style", STYLES)
def test_scan_without_findings_returns_the_input_object(style: Style) -> None:
    for type_oid in (TEXT, JSON, INT8, 0):
        value = b"nothing to see, 42"
        assert scan(style, type_oid)(value) is value


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("full", b"mail **** or call ****"),
        ("partial", b"mail ****@example.com or call +* (***) ***-2671"),
        ("null", None),
    ],
)
def test_scan_text(style: Style, expected: bytes | None) -> None:
    cell = scan(style)
    assert cell(b"mail " + EMAIL + b" or call +1 (415) 555-2671") == expected


def test_scan_hash_tokens_each_finding() -> None:
    out = scan("hash")(b"mail " + EMAIL + b" or " + CARD)
    assert out is not None and re.fullmatch(rb"mail h:[0-9a-f]{16} or h:[0-9a-f]{16}", out)


@pytest.mark.parametrize("style", ["full", "partial", "hash"])
def test_scan_other_types_become_null_when_something_is_found(style: Style) -> None:
    assert scan(style, INT8)(b"4242424242424242") is None
    assert scan(style, INT4_ARRAY)(b'{"' + EMAIL + b'",x}') is None
    assert scan(style, 0)(EMAIL) is None


def test_scan_cannot_read_binary_non_text_and_passes_it() -> None:
    raw = b"4242424242424242"  # as a bytea in binary format: opaque bytes
    assert scan("full", BYTEA, binary=True)(raw) is raw
    assert rewrite([scan("null", INT8, binary=True)], (raw,)) == [(raw,)]


def test_scan_binary_text_and_jsonb() -> None:
    assert scan("full", TEXT, binary=True)(b"x " + EMAIL) == b"x ****"
    assert scan("full", JSONB, binary=True)(b'\x01{"e": "' + EMAIL + b'"}') == b'\x01{"e": "****"}'


@pytest.mark.parametrize("style", ["full", "partial", "hash"])
@pytest.mark.parametrize("type_oid", [JSON, JSONB])
def test_scan_json_stays_valid_json(style: Style, type_oid: int) -> None:
    doc = {
        "email": "jane.doe@example.com",
        "cards": ["4242 4242 4242 4242", {"n": "5555555555554444"}],
        "note": "call\n415-555-2671\tor +44 20 7946 0958",  # escapes right before the values
        "ip": "10.1.2.3",
        "n": 42,
    }
    out = scan(style, type_oid)(json.dumps(doc).encode())
    assert out is not None
    masked = json.loads(out)
    assert masked["n"] == 42 and masked["note"].startswith("call\n")
    for secret in ("jane.doe", "4242 4242 4242 4242", "5555555555554444", "555-2671", "10.1.2.3"):
        assert secret not in out.decode()
    assert "7946 0958" not in out.decode()


def test_scan_json_that_masking_would_break_becomes_a_masked_string() -> None:
    # An unterminated PEM block is masked to the end of the text, closing quote and brace too.
    doc = b'{"key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC"}'
    out = scan("full", JSON)(doc)
    assert out == b'"****"'


# --- rewrite_data_rows -------------------------------------------------------------------------


def test_passthrough_columns_are_byte_identical() -> None:
    values = (b"1", b"", None, b"\x00\xff binary \xff", b"x" * 70_000)
    data = row(*values) + row(b"2", None, None, None, None)
    out = rewrite_data_rows(data, 0, len(data), [None] * 5)
    assert out == data
    masked = rewrite_data_rows(data, 0, len(data), [None, full(), None, None, full()])
    assert rows_of(masked) == [
        (b"1", b"****", None, b"\x00\xff binary \xff", b"****"),
        (b"2", None, None, None, None),
    ]


def test_null_cells_stay_null_without_a_call() -> None:
    calls: list[bytes] = []

    def spy(raw: bytes) -> bytes:
        calls.append(raw)
        return raw + b"!"

    assert rewrite([spy, spy], (None, b"a"), (b"", None)) == [(None, b"a!"), (b"!", None)]
    assert calls == [b"a", b""]


def test_cell_function_results_change_lengths() -> None:
    grow = lambda raw: raw * 3  # noqa: E731
    to_null = lambda raw: None  # noqa: E731
    got = rewrite(
        [grow, None, to_null, grow], (b"ab", b"keep", b"gone", b""), (b"x", None, b"", None)
    )
    assert got == [(b"ababab", b"keep", None, b""), (b"xxx", None, None, None)]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_buffers_and_offsets(kind: Callable[[bytes], bytes | bytearray | memoryview]) -> None:
    data = b"junk" + row(b"a", CARD) + row(b"b", CARD) + b"more junk"
    start, end = 4, len(data) - 9
    out = rewrite_data_rows(kind(data), start, end, [None, full()])
    assert rows_of(out) == [(b"a", b"****"), (b"b", b"****")]
    assert rewrite_data_rows(kind(data), 4, 4, [None, full()]) == b""


def test_zero_columns() -> None:
    data = row() * 3
    assert rewrite_data_rows(data, 0, len(data), []) == data


GOOD = row(b"abc", None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"T" + GOOD[1:], "expected a DataRow \\('D'\\), got 'T'"),
        (row(b"abc"), "has 1 fields, expected 2"),
        (row(b"a", b"b", b"c"), "has 3 fields, expected 2"),
        (GOOD[:7] + b"\xff\xff\xff\xfe" + GOOD[11:], "field 0 has length -2"),
        (GOOD[:7] + b"\x80\x00\x00\x00" + GOOD[11:], "field 0 has length -2147483648"),
        (GOOD[:7] + b"\x00\x00\x00\x09" + GOOD[11:], r"field 0 \(9 bytes\) overruns"),
        (GOOD[:1] + struct.pack("!I", len(GOOD) - 1 + 2) + GOOD[5:] + b"zz", "2 bytes left"),
        (GOOD[:1] + struct.pack("!I", len(GOOD) - 1 - 3) + GOOD[5:-3], "field 1 length overruns"),
        (GOOD[:1] + struct.pack("!I", len(GOOD)) + GOOD[5:], "does not fit"),
        (GOOD[:1] + struct.pack("!I", 5) + GOOD[5:], "length 5 is too short"),
        (GOOD + GOOD[:6], "truncated DataRow header"),
        (GOOD + GOOD[:-1], "does not fit"),
        (b"D", "truncated"),
    ],
)
@pytest.mark.parametrize("cells", [[None, None], [full(), None], [None, lambda raw: raw]])
def test_malformed_rows_raise_row_error(
    data: bytes, message: str, cells: list[CellFn | None]
) -> None:
    with pytest.raises(RowError, match=message):
        rewrite_data_rows(data, 0, len(data), cells)


def test_a_field_past_the_range_is_an_overrun_even_if_the_buffer_goes_on() -> None:
    data = GOOD + GOOD
    broken = data[:7] + b"\x00\x00\x00\x0c" + data[11:]  # the first field reaches into row 2
    with pytest.raises(RowError, match="overruns"):
        rewrite_data_rows(broken, 0, len(GOOD), [full(), None])


@st.composite
def damaged_rows(draw: st.DrawFn) -> bytes:
    """Valid DataRows with a few bytes overwritten, cut short, or extended."""
    values = st.one_of(st.none(), st.binary(max_size=12))
    data = bytearray(
        b"".join(row(*r) for r in draw(st.lists(st.tuples(values, values), max_size=3)))
    )
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    data = data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data
    return bytes(data + draw(st.binary(max_size=4)))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=40), damaged_rows()), st.sampled_from([0, 1, 2, 3]))
def test_fuzz_only_row_errors(data: bytes, masked: int) -> None:
    cells: list[CellFn | None] = [None, None]
    if masked & 1:
        cells[0] = full()
    if masked & 2:
        cells[1] = lambda raw: raw[::-1]
    try:
        out = rewrite_data_rows(data, 0, len(data), cells)
    except RowError:
        return
    assert len(rows_of(out)) == len(rows_of(data))  # what it accepts, PostgreSQL's parser does


# --- COPY against real PostgreSQL --------------------------------------------------------------

# Values that exercise every escape of both formats. Column b is NULL in one row and the
# string "\N" in another; "" in another: the formats must keep the three apart.
TRICKY = [
    "plain",
    "tab\there",
    "new\nline",
    "cr\rhere",
    "back\\slash",
    'quote"d',
    "apos'trophe",
    "comma,here",
    "pipe|here",
    "",
    None,
    "\\N",
    "\\.",
    "NULL",
    "é ünïcödé 日本",
    "\b\f\v controls \x01",
    '"',
    "",
]


def copy_payloads(sql: str) -> list[bytes]:
    """The CopyData payloads PostgreSQL sends for `sql` (a COPY ... TO STDOUT), one per row.

    Fails, never skips, when PostgreSQL is not reachable."""
    try:
        conn = psycopg.connect(admin_url(), connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required for these tests: {exc}", pytrace=False)
    with conn, conn.cursor() as cur, cur.copy(sql) as copy:
        return [bytes(data) for data in copy]


def copy_back(payloads: Sequence[bytes], options: str) -> list[tuple[int, str | None, str | None]]:
    """Load rewritten COPY data into PostgreSQL, to see that it reads it as intended."""
    conn = psycopg.connect(admin_url(), connect_timeout=10, autocommit=True)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE back (id int, a text, b text)")
        with cur.copy(f"COPY back FROM STDIN {options}") as copy:
            for data in payloads:
                copy.write(data)
        cur.execute("SELECT id, a, b FROM back ORDER BY id")
        return cur.fetchall()


def values_sql() -> str:
    def lit(v: str | None) -> str:
        if v is None:
            return "NULL"
        return "E'" + v.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"

    rows = ", ".join(f"({i}, {lit(v)}, {lit(TRICKY[-1 - i])})" for i, v in enumerate(TRICKY))
    return f"SELECT * FROM (VALUES {rows}) v(id, a, b) ORDER BY id"  # noqa: S608 - constants


# name: (format, options of the COPY TO, options to load its output back with COPY FROM)
FORMATS = {
    "text": (CopyFormat(), "", ""),
    "text pipe": (
        CopyFormat(delimiter="|", null="<null>"),
        "(DELIMITER '|', NULL '<null>')",
        "(DELIMITER '|', NULL '<null>')",
    ),
    "text header": (CopyFormat(header=True), "(HEADER)", "(HEADER)"),
    "csv": (CopyFormat("csv", ",", ""), "(FORMAT csv)", "(FORMAT csv)"),
    "csv header": (
        CopyFormat("csv", ",", "", header=True),
        "(FORMAT csv, HEADER)",
        "(FORMAT csv, HEADER)",
    ),
    "csv semicolon": (
        CopyFormat("csv", ";", "\\N", quote="'", escape="\\"),
        "(FORMAT csv, DELIMITER ';', NULL '\\N', QUOTE '''', ESCAPE '\\')",
        "(FORMAT csv, DELIMITER ';', NULL '\\N', QUOTE '''', ESCAPE '\\')",
    ),
    "csv force quote": (
        CopyFormat("csv", ",", "", force_quote=True),
        "(FORMAT csv, FORCE_QUOTE *)",
        "(FORMAT csv)",  # FORCE_QUOTE is for COPY TO only
    ),
}


def expected_rows(
    a: Callable[[str], str | None], b: Callable[[str], str | None]
) -> list[tuple[int, str | None, str | None]]:
    return [
        (i, None if v is None else a(v), None if w is None else b(w))
        for i, (v, w) in enumerate(zip(TRICKY, reversed(TRICKY), strict=True))
    ]


def copy_rows(fmt: CopyFormat, cells: Sequence[CellFn | None]) -> CopyRows:
    return CopyRows(fmt, cells, type_oids=[INT4, TEXT, TEXT])


def copied(value: bytes) -> bytes:
    """An equal value in a new object: the rewriter decodes and re-encodes the field."""
    return bytes(bytearray(value))


@pytest.mark.parametrize("name", FORMATS)
def test_copy_passthrough_and_reencoding_reproduce_the_server_bytes(name: str) -> None:
    fmt, to_options, _ = FORMATS[name]
    payloads = copy_payloads(f"COPY ({values_sql()}) TO STDOUT {to_options}")
    assert len(payloads) == len(TRICKY) + fmt.header
    passing = copy_rows(fmt, [None, None, None])
    assert [passing.rewrite(p) for p in payloads] == payloads
    copying = copy_rows(fmt, [copied, copied, copied])
    assert [copying.rewrite(p) for p in payloads] == payloads
    # ...and all the rows at once, in one payload.
    everything = b"".join(payloads)
    assert copy_rows(fmt, [copied] * 3).rewrite(everything) == everything


ODD_TAIL = "\t\n\r\\,;|'\"\\.\b"  # every character some format must escape or quote


@pytest.mark.parametrize("name", FORMATS)
def test_copy_masking_changes_only_the_masked_fields(name: str) -> None:
    fmt, to_options, from_options = FORMATS[name]
    payloads = copy_payloads(f"COPY ({values_sql()}) TO STDOUT {to_options}")
    seen: list[bytes] = []

    def awkward(value: bytes) -> bytes:
        seen.append(value)
        return ("<" + value.decode()[::-1] + ">" + ODD_TAIL).encode()

    rewriter = copy_rows(fmt, [None, full(), awkward])
    out = [rewriter.rewrite(p) for p in payloads]
    if fmt.header:
        assert out[0] == payloads[0]
    # The functions saw decoded values, NULL never.
    assert seen == [w.encode() for w in reversed(TRICKY) if w is not None]
    # PostgreSQL reads it back: ids as they were, "****" and the odd values, NULL kept apart.
    assert copy_back(out, from_options) == expected_rows(
        lambda v: FULL_MASK, lambda w: "<" + w[::-1] + ">" + ODD_TAIL
    )


@pytest.mark.parametrize("name", ["text", "csv semicolon", "csv force quote"])
def test_copy_null_style_and_constants_keep_null(name: str) -> None:
    fmt, to_options, from_options = FORMATS[name]
    payloads = copy_payloads(f"COPY ({values_sql()}) TO STDOUT {to_options}")
    null = mask_cell("null", KEY, type_oid=TEXT, binary=False, direct=True)
    rewriter = copy_rows(fmt, [None, null, full(JSON)])
    out = [rewriter.rewrite(p) for p in payloads]
    assert copy_back(out, from_options) == expected_rows(lambda v: None, lambda w: '"****"')


def test_copy_scan_masks_inside_values() -> None:
    sql = (
        "COPY (SELECT 1, E'mail jane.doe@example.com\\tnow', '4242 4242 4242 4242') "
        "TO STDOUT (FORMAT csv)"
    )
    (payload,) = copy_payloads(sql)
    rewriter = copy_rows(
        CopyFormat("csv", ",", ""),
        [scan("full", INT4), scan("partial"), scan("hash", INT8)],
    )
    assert rewriter.rewrite(payload) == b"1,mail ****@example.com\tnow,\n"  # int8 card: NULL


# --- COPY edge cases ---------------------------------------------------------------------------

CSV = CopyFormat("csv", ",", "")


def test_copy_csv_null_and_empty_string() -> None:
    calls: list[bytes] = []

    def spy(value: bytes) -> bytes:
        calls.append(value)
        return b"[" + value + b"]"

    rewriter = CopyRows(CSV, [spy, spy], type_oids=[TEXT, TEXT])
    assert rewriter.rewrite(b',""\n') == b",[]\n"
    assert calls == [b""]  # the unquoted empty field is NULL: no call
    assert CopyRows(CSV, [lambda v: b""] * 2, type_oids=[TEXT] * 2).rewrite(b"a,b\n") == b'"",""\n'


def test_copy_csv_quotes_what_needs_it() -> None:
    rewriter = CopyRows(CSV, [lambda v: v.upper()], type_oids=[TEXT])
    assert rewriter.rewrite(b'"a,b"\n') == b'"A,B"\n'
    assert rewriter.rewrite(b'"say ""hi"""\n') == b'"SAY ""HI"""\n'
    assert rewriter.rewrite(b'"x\ny"\n') == b'"X\nY"\n'
    assert rewriter.rewrite(b'a"b,c"d\n') == b'"AB,CD"\n'  # a quote may open mid-field
    one = CopyRows(CSV, [lambda v: b"\\."], type_oids=[TEXT])
    assert one.rewrite(b"x\n") == b'"\\."\n'  # alone on a line it would end the data


def test_copy_text_escapes() -> None:
    rewriter = CopyRows(CopyFormat(), [lambda v: v], type_oids=[TEXT])
    decoded: list[bytes] = []

    def spy(value: bytes) -> bytes:
        decoded.append(value)
        return value + b"\x00"

    out = CopyRows(CopyFormat(), [spy], type_oids=[TEXT]).rewrite(
        b"\\101\\x42\\x4g\\q\\\\\\N\\t\\777\n"
    )
    assert decoded == [b"AB\x04gq\\N\t\xff"]  # octal, hex (one digit will do), plain chars
    assert out == b"AB\x04gq\\\\N\\t\xff\x00\n"  # written back as PostgreSQL writes it
    assert rewriter.rewrite(b"\\101\n") == b"\\101\n"  # unchanged: the server's spelling


def test_copy_text_escaped_delimiter_does_not_split() -> None:
    fmt = CopyFormat(delimiter="|")
    rewriter = CopyRows(fmt, [None, lambda v: v + b"|"], type_oids=[TEXT, TEXT])
    assert rewriter.rewrite(b"a\\|b|c\\\\\n") == b"a\\|b|c\\\\\\|\n"


def test_copy_end_marker_and_header() -> None:
    rewriter = CopyRows(CopyFormat(header=True), [full(), None], type_oids=[TEXT, TEXT])
    assert rewriter.rewrite(b"a\tb\n") == b"a\tb\n"
    assert rewriter.rewrite(b"x\ty\n") == b"****\ty\n"
    assert rewriter.rewrite(b"\\.\n") == b"\\.\n"
    assert rewriter.rewrite(b"\\.") == b"\\."
    assert rewriter.rewrite(b"x\ty\n\\.") == b"****\ty\n\\."
    assert rewriter.rewrite(b"") == b""


@pytest.mark.parametrize(
    ("fmt", "data", "message"),
    [
        (CopyFormat(), b"a\tb\tc\n", "3 fields, expected 2"),
        (CopyFormat(), b"a\n", "1 fields, expected 2"),
        (CopyFormat(), b"a\tb", "does not end with a newline"),
        (CopyFormat(), b"a\tb\\\n", "lone backslash"),
        (CSV, b'a,"b\n', "unterminated quoted field"),
        (CSV, b'a,"b"c"\n', "unterminated quoted field"),
        (CSV, b"a,b,c\n", "3 fields, expected 2"),
        (CSV, b'"a",b', "does not end with a newline"),
    ],
)
def test_copy_malformed(fmt: CopyFormat, data: bytes, message: str) -> None:
    with pytest.raises(RowError, match=message):
        CopyRows(fmt, [full(), None], type_oids=[TEXT, TEXT]).rewrite(data)


def test_copy_config_errors() -> None:
    with pytest.raises(ValueError, match="binary"):
        CopyRows(CopyFormat("binary"), [full()], type_oids=[TEXT])
    with pytest.raises(ValueError, match="2 cell functions for 1 columns"):
        CopyRows(CopyFormat(), [full(), None], type_oids=[TEXT])
    with pytest.raises(ValueError, match="delimiter must be a single one-byte"):
        CopyRows(CopyFormat(delimiter="§"), [full()], type_oids=[TEXT])


# --- property: nothing sensitive survives ------------------------------------------------------


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


ipv4s = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6s = st.integers(1, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n).exploded)
aws_keys = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(
    lambda s: "AKIA" + s
)
JWT_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')
jwts = st.tuples(st.binary(min_size=4, max_size=30), st.binary(min_size=8, max_size=32)).map(
    lambda t: f"{JWT_HEADER}.{_b64url(t[0])}.{_b64url(t[1])}"
)
sensitive = st.one_of(cards(), ssns(), phones(), emails(), ibans(), ipv4s, ipv6s, aws_keys, jwts)
noise = st.text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=20)
# (No ": ": the IPv6 detector does not match an address followed by a colon.)
delimiter = st.sampled_from([", ", " | ", "; ", "\n", " (", ") ", " - ", "\t"])


@st.composite
def free_text_cells(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A cell of free text with zero or more sensitive values set off by punctuation."""
    values = draw(st.lists(sensitive, max_size=3))
    parts = [draw(noise)]
    for v in values:
        parts += [draw(delimiter), v, draw(delimiter), draw(noise)]
    return "".join(parts), values


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdecimal())


def _cell_text(raw: bytes | None, type_oid: int) -> str:
    assert raw is not None
    text = raw.decode()
    return json.loads(text) if type_oid == JSON else text


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(free_text_cells(), st.sampled_from([TEXT, JSON, INT8])), max_size=4),
    st.sampled_from(STYLES),
    st.integers(1, 3),
)
def test_no_detected_value_survives_scan(
    cells: list[tuple[tuple[str, list[str]], int]], style: Style, nrows: int
) -> None:
    def encode(text: str, type_oid: int) -> bytes:
        return (json.dumps(text) if type_oid == JSON else text).encode()

    values = tuple(encode(text, t) for (text, _), t in cells)
    fns: list[CellFn | None] = [scan(style, t) for _, t in cells]
    data = row(*values) * nrows
    out = rewrite_data_rows(data, 0, len(data), fns)
    for v in (v for (_, found), _ in cells for v in found):
        assert v.encode() not in out
    for out_row in rows_of(out):
        for raw, ((text, found), type_oid) in zip(out_row, cells, strict=True):
            if found and (style == "null" or type_oid == INT8):
                assert raw is None
            if raw is None:
                continue
            masked = _cell_text(raw, type_oid)
            if not found:
                assert masked == text
            for v in found:
                assert v not in masked
                if len(_digits(v)) >= 7:  # not even with its separators gone
                    assert _digits(v) not in masked


# (value, whether it is a detector-shaped sensitive value)
whole_values = st.one_of(
    sensitive.map(lambda v: (v, True)),
    st.text(st.characters(codec="utf-8", exclude_characters="*"), min_size=8, max_size=30).map(
        lambda v: (v, False)
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(whole_values, st.sampled_from([TEXT, JSON, INT4])), min_size=1, max_size=5),
    st.sampled_from(STYLES),
    st.booleans(),
)
def test_mask_cell_shows_nothing_but_partial_tails(
    cells: list[tuple[tuple[str, bool], int]], style: Style, direct: bool
) -> None:
    data = row(*((json.dumps(v) if t == JSON else v).encode() for (v, _), t in cells))
    fns: list[CellFn | None] = [
        mask_cell(style, KEY, type_oid=t, binary=False, direct=direct) for _, t in cells
    ]
    out = rewrite_data_rows(data, 0, len(data), fns)
    for (v, shaped), _ in cells:
        if shaped:  # (random text could be spelled by length bytes around a mask, by chance)
            assert v.encode() not in out
    (out_row,) = rows_of(out)
    for raw, ((v, _), type_oid) in zip(out_row, cells, strict=True):
        if style == "null" or type_oid == INT4:
            assert raw is None
            continue
        assert raw is not None
        masked = json.loads(raw) if type_oid == JSON else raw.decode()
        assert v not in masked
        if style == "hash":
            assert TOKEN.fullmatch(masked.encode())
        elif style == "full" or not direct:
            assert masked == FULL_MASK
        else:  # partial of an untouched value: the last four alphanumerics or the domain
            shown = [c for c in masked if c.isalnum()]
            assert (
                masked == FULL_MASK
                or masked == FULL_MASK + v[v.rfind("@") :]
                or shown == [c for c in v if c.isalnum()][-4:]
            ), (v, masked)


def _kind_over_all_detectors(value: str) -> str | None:
    stripped = value.strip()
    spans = SCANNER.find_all(stripped)
    if len(spans) == 1 and spans[0][:2] == (0, len(stripped)):
        return spans[0][2]
    return None


@settings(max_examples=300, deadline=None)
@given(sensitive)
def test_a_whole_sensitive_value_hashes_as_the_detectors_would_hash_it(value: str) -> None:
    """mask_cell takes the kind from the value's shape, the detector path from detection: a
    card, SSN, phone, email or IBAN must get the same token both ways, so that a value masked
    in a column joins with the same value found inside free text."""
    kind = _kind_over_all_detectors(value)
    raw = value.encode("utf-8", "surrogatepass")
    hashed = mask_cell("hash", KEY, type_oid=TEXT, binary=False, direct=True)(raw)
    assert hashed == hash_token(value, kind, key=KEY).encode()
