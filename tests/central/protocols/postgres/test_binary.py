"""Binary result values read as PostgreSQL prints them, checked against PostgreSQL itself.

Every comparison runs on the machine's PostgreSQL: a value goes to the server as a parameter
(in binary, or as text where building the binary form is the server's job), comes back once in
text format and once in binary, and `to_text` of the binary must be exactly the text. The
session uses the output settings `to_text` assumes (DateStyle ISO, IntervalStyle postgres,
TimeZone UTC). Hypothesis draws the values; a fuzzer feeds every decoder arbitrary bytes.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.pq import ExecStatus

from central.protocols.postgres.binary import ARRAY_ELEMENTS, MAX_ARRAY_ITEMS, TYPES, to_text
from tests.support.pgtemp import admin_url

CHECK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None)

I16, I32, I64 = (-(2**15), 2**15 - 1), (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
EPOCH_JDATE = 2_451_545
DATE_RANGE = (-EPOCH_JDATE, 2_147_483_494 - EPOCH_JDATE - 1)
TIMESTAMP_RANGE = (-211_813_488_000_000_000, 9_223_371_331_200_000_000 - 1)
USECS_PER_DAY = 86_400_000_000


class Server:
    """One connection to the real PostgreSQL, asked for a value in both formats."""

    def __init__(self, conn: psycopg.Connection[object]) -> None:
        self.pgconn = conn.pgconn

    def formats(self, type_name: str, oid: int, value: bytes, fmt: int) -> tuple[bytes, bytes]:
        """`value` (in format `fmt`) as the server prints it (text) and sends it (binary)."""
        sql = f"SELECT $1::{type_name}".encode()
        out = []
        for result_format in (0, 1):
            res = self.pgconn.exec_params(
                sql, [value], param_types=[oid], param_formats=[fmt], result_format=result_format
            )
            assert res.status == ExecStatus.TUPLES_OK, res.error_message
            cell = res.get_value(0, 0)
            assert cell is not None
            out.append(bytes(cell))
        return out[0], out[1]

    def accepts(self, type_name: str, oid: int, value: bytes) -> tuple[bytes, bytes] | None:
        """Both formats of a binary `value`, or None when the server refuses the bytes."""
        res = self.pgconn.exec_params(
            f"SELECT $1::{type_name}".encode(), [value], param_types=[oid], param_formats=[1]
        )
        if res.status != ExecStatus.TUPLES_OK:
            return None
        return self.formats(type_name, oid, value, 1)

    def literal(self, sql: str) -> list[tuple[int, bytes | None, bytes | None]]:
        """Each column of `sql`'s one row: (type oid, text, binary)."""
        text = self.pgconn.exec_params(sql.encode(), [], result_format=0)
        binary = self.pgconn.exec_params(sql.encode(), [], result_format=1)
        assert text.status == binary.status == ExecStatus.TUPLES_OK, text.error_message
        return [
            (binary.ftype(i), _bytes(text.get_value(0, i)), _bytes(binary.get_value(0, i)))
            for i in range(text.nfields)
        ]


def _bytes(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    try:
        conn = psycopg.connect(admin_url(), autocommit=True)
    except psycopg.OperationalError as e:
        pytest.fail(f"the machine's PostgreSQL is required: {e}", pytrace=False)
    with conn:
        conn.execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres';"
            " SET extra_float_digits = 1; SET bytea_output = 'hex'"
        )
        yield Server(conn)


def same(server_text: bytes, binary: bytes, oid: int) -> None:
    assert to_text(oid, binary) == server_text.decode(), (oid, binary)


# -- values named one by one: the corners of each type -------------------------------------------

LITERALS = [
    "1::int2, '-32768'::int2, 2147483647::int4, '-9223372036854775808'::int8, 4294967295::oid",
    "true, false, 'a'::\"char\", '\\303'::\"char\", ''::\"char\"",
    "1.5::float8, 1e15::float8, 1e14::float8, 1e-5::float8, 5e-324::float8, 1.7976931348623157e308",
    "'-0'::float8, 'NaN'::float8, '-Infinity'::float8, 0.1::float4, 16777216::float4",
    "3.4028235e38::float4, 1e-45::float4, '1e6'::float4, 123456.7::float4, '-0'::float4",
    "'NaN'::numeric, 0::numeric, 0.000::numeric, -12345.678900::numeric, 1e100::numeric",
    "0.00001::numeric, 'Infinity'::numeric, '-Infinity'::numeric, 10000::numeric, 9999.9999",
    "'x'::text, 'é'::varchar, 'ab'::char(5), 'nm'::name, '\\x00ff'::bytea, ''::bytea",
    "'00000000-0000-0000-0000-000000000000'::uuid, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
    '\'{"a":  [1, 2.50, null]}\'::json, \'{"b": 1, "a": "é"}\'::jsonb, \'null\'::jsonb',
    "'2024-02-29'::date, '4713-11-24 BC'::date, 'infinity'::date, '-infinity'::date",
    "'5874897-12-31'::date, '0001-01-01 BC'::date, '1999-12-31'::date",
    "'24:00'::time, '00:00'::time, '12:34:56.789'::time, '23:59:59.999999'::time",
    "'2024-01-01 12:00:00.5'::timestamp, '294276-12-31 23:59:59.999999'::timestamp",
    "'4713-11-24 00:00 BC'::timestamptz, '-infinity'::timestamptz, 'infinity'::timestamp",
    "'2000-01-01 00:00:00.000001+05:30'::timestamptz, '1900-06-30 23:59:59'::timestamptz",
    "'1 year 2 mons -3 days 04:05:06.5'::interval, '-1 day 2 hours'::interval, '0'::interval",
    "'-1.5 sec'::interval, '1 mon -1 sec'::interval, '-1 year -1 mon'::interval, '1 day'::interval",
    "'12:00+05:30'::timetz, '12:00-03:00:15'::timetz, '00:00+15:59'::timetz",
    "'::1'::inet, '::ffff:1.2.3.4'::inet, '::1.2.3.4'::inet, '1:0:0:1::/64'::cidr, '::'::inet",
    "'10.0.0.0/8'::cidr, '10.1.2.3/8'::inet, '2001:db8::1'::inet, '1:0:1:0:1:0:1:0'::inet",
    "'0:0:1::1'::inet, '::ffff:0:0/96'::cidr, '1::'::inet, '0.0.0.0/0'::cidr",
    "'08:00:2b:01:02:03'::macaddr, '08:00:2b:01:02:03:04:05'::macaddr8",
    "'{1,2,NULL}'::int4[], '{{a,\"b c\"},{\"\",NULL}}'::text[], '[0:1]={1.5,2}'::float8[]",
    "'{}'::int[], ARRAY['\\x01'::bytea], ARRAY[E'a\\u000bb', 'null', 'x\"y', 'a\\b', '{', ' ']",
    "ARRAY['2024-01-01'::date, 'infinity'], ARRAY['{\"a\": 1}'::jsonb], ARRAY[1.50::numeric]",
    "'[2:3][-1:0]={{1,2},{3,4}}'::int8[], ARRAY[true, false], ARRAY['10.0.0.0/8'::cidr]",
    "ARRAY[gen_random_uuid() IS NULL], ARRAY['1 day'::interval], ARRAY['12:00'::time]",
]


@pytest.mark.parametrize("columns", LITERALS)
def test_named_values_read_as_postgres_prints_them(server: Server, columns: str) -> None:
    for oid, text, binary in server.literal(f"SELECT {columns}"):
        assert oid in TYPES
        assert text is not None and binary is not None
        same(text, binary, oid)


# -- values drawn by Hypothesis ------------------------------------------------------------------


def packed(fmt: str, lo: int, hi: int) -> st.SearchStrategy[bytes]:
    return st.integers(lo, hi).map(lambda n: struct.pack(fmt, n))


@pytest.mark.parametrize(
    ("type_name", "oid", "size"),
    [
        ("bool", 16, 1),
        ("int2", 21, 2),
        ("int4", 23, 4),
        ("int8", 20, 8),
        ("oid", 26, 4),
        ("xid", 28, 4),
        ("cid", 29, 4),
        ("float4", 700, 4),
        ("float8", 701, 8),
        ("uuid", 2950, 16),
        ("macaddr", 829, 6),
        ("macaddr8", 774, 8),
        ('"char"', 18, 1),
    ],
)
@CHECK
@given(data=st.data())
def test_fixed_size_values_from_any_bytes(
    server: Server, type_name: str, oid: int, size: int, data: st.DataObject
) -> None:
    # Any bit pattern is a value of these types (floats: NaNs with payloads, subnormals).
    value = data.draw(st.binary(min_size=size, max_size=size))
    text, binary = server.formats(type_name, oid, value, 1)
    same(text, binary, oid)


@CHECK
@given(x=st.floats(width=32) | st.floats(width=32, min_value=1e5, max_value=1e10))
def test_float4_values(server: Server, x: float) -> None:
    text, binary = server.formats("float4", 700, struct.pack("!f", x), 1)
    same(text, binary, 700)


@CHECK
@given(x=st.floats() | st.integers(-(2**60), 2**60).map(float))
def test_float8_values(server: Server, x: float) -> None:
    text, binary = server.formats("float8", 701, struct.pack("!d", x), 1)
    same(text, binary, 701)


NUMERIC_TEXT = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=False, allow_infinity=False, places=12),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "0.0000", "1e-300", "1e1000"]),
).map(str)


@CHECK
@given(number=NUMERIC_TEXT)
def test_numeric_values(server: Server, number: str) -> None:
    text, binary = server.formats("numeric", 1700, number.encode(), 0)
    same(text, binary, 1700)


@CHECK
@given(
    ndigits=st.integers(0, 6),
    weight=st.integers(-8, 8),
    negative=st.booleans(),
    dscale=st.integers(0, 30),
    data=st.data(),
)
def test_numeric_from_its_binary_parts(
    server: Server, ndigits: int, weight: int, negative: bool, dscale: int, data: st.DataObject
) -> None:
    digits = data.draw(st.lists(st.integers(0, 9999), min_size=ndigits, max_size=ndigits))
    value = struct.pack(
        f"!hhHh{ndigits}h", ndigits, weight, 0x4000 if negative else 0, dscale, *digits
    )
    found = server.accepts("numeric", 1700, value)
    if found is not None:  # the server normalises what it accepts; its own bytes are read
        same(*found, 1700)


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@pytest.mark.parametrize(
    ("type_name", "oid"),
    [("text", 25), ("varchar", 1043), ("bpchar", 1042), ("name", 19), ("bytea", 17)],
)
@CHECK
@given(text=TEXT, raw=st.binary(max_size=40))
def test_text_like_values_and_bytea(
    server: Server, type_name: str, oid: int, text: str, raw: bytes
) -> None:
    # A name is at most 63 bytes: 15 characters of at most 4 bytes each.
    value = raw if oid == 17 else (text[:15] if oid == 19 else text).encode()
    found = server.formats(type_name, oid, value, 1)
    same(*found, oid)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.parametrize(("type_name", "oid"), [("json", 114), ("jsonb", 3802)])
@CHECK
@given(doc=JSON, spaced=st.booleans())
def test_json_values(server: Server, type_name: str, oid: int, doc: object, spaced: bool) -> None:
    source = json.dumps(doc, indent=1 if spaced else None)
    same(*server.formats(type_name, oid, source.encode(), 0), oid)


SPECIAL_DATES = st.sampled_from([I32[0], I32[1], DATE_RANGE[0], DATE_RANGE[1], 0, -1])


@CHECK
@given(days=st.integers(*DATE_RANGE) | SPECIAL_DATES)
def test_date_values(server: Server, days: int) -> None:
    same(*server.formats("date", 1082, struct.pack("!i", days), 1), 1082)


@pytest.mark.parametrize(("type_name", "oid"), [("timestamp", 1114), ("timestamptz", 1184)])
@CHECK
@given(
    usecs=st.integers(*TIMESTAMP_RANGE)
    | st.integers(-(10**12), 10**12)
    | st.sampled_from([I64[0], I64[1], TIMESTAMP_RANGE[0], TIMESTAMP_RANGE[1]])
)
def test_timestamp_values(server: Server, type_name: str, oid: int, usecs: int) -> None:
    same(*server.formats(type_name, oid, struct.pack("!q", usecs), 1), oid)


@CHECK
@given(usecs=st.integers(0, USECS_PER_DAY), zone=st.integers(-16 * 3600 + 1, 16 * 3600 - 1))
def test_time_and_timetz_values(server: Server, usecs: int, zone: int) -> None:
    same(*server.formats("time", 1083, struct.pack("!q", usecs), 1), 1083)
    same(*server.formats("timetz", 1266, struct.pack("!qi", usecs, zone), 1), 1266)


@CHECK
@given(
    usecs=st.integers(*I64) | st.integers(-(10**11), 10**11),
    days=st.integers(*I32) | st.integers(-40, 40),
    months=st.integers(*I32) | st.integers(-40, 40),
)
def test_interval_values(server: Server, usecs: int, days: int, months: int) -> None:
    # Each field at its limit at once is PostgreSQL 17's infinity, printed as such there.
    if (usecs, days, months) in ((I64[1], I32[1], I32[1]), (I64[0], I32[0], I32[0])):
        return
    value = struct.pack("!qii", usecs, days, months)
    same(*server.formats("interval", 1186, value, 1), 1186)


def test_infinite_intervals_read_as_postgresql_17_prints_them() -> None:
    assert to_text(1186, struct.pack("!qii", *(n[1] for n in (I64, I32, I32)))) == "infinity"
    assert to_text(1186, struct.pack("!qii", *(n[0] for n in (I64, I32, I32)))) == "-infinity"


ADDRESSES = st.one_of(
    st.ip_addresses(),
    st.sampled_from(["::", "::1", "::ffff:1.2.3.4", "::1.2.3.4", "1::", "0:0:1::"]).map(
        ipaddress.ip_address
    ),
    # Runs of zero words of every length and place, the :: shorthand's corner cases.
    st.lists(st.sampled_from([0, 0, 1, 0xFFFF]), min_size=8, max_size=8).map(
        lambda words: ipaddress.IPv6Address(b"".join(w.to_bytes(2, "big") for w in words))
    ),
)


@CHECK
@given(address=ADDRESSES, data=st.data())
def test_inet_and_cidr_values(server: Server, address: object, data: st.DataObject) -> None:
    assert isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address)
    bits = data.draw(st.integers(0, address.max_prefixlen))
    same(*server.formats("inet", 869, f"{address}/{bits}".encode(), 0), 869)
    network = ipaddress.ip_network(f"{address}/{bits}", strict=False)
    same(*server.formats("cidr", 650, str(network).encode(), 0), 650)


def array_bytes(
    element: int, items: list[bytes | None], dims: list[tuple[int, int]] | None = None
) -> bytes:
    """The binary form of an array: one dimension of `items` unless `dims` (size, lower)."""
    dims = dims if dims is not None else [(len(items), 1)]
    head = struct.pack("!iiI", len(dims), int(None in items), element)
    head += b"".join(struct.pack("!ii", size, lower) for size, lower in dims)
    body = b"".join(
        struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in items
    )
    return head + body


ELEMENTS = {
    "text": (25, TEXT.map(str.encode)),
    "int4": (23, packed("!i", *I32)),
    "float8": (701, st.floats().map(lambda x: struct.pack("!d", x))),
    "bytea": (17, st.binary(max_size=8)),
    "date": (1082, packed("!i", *DATE_RANGE)),
    "jsonb": (3802, JSON.map(lambda d: b"\x01" + json.dumps(d).encode())),
    "bool": (16, st.sampled_from([b"\x00", b"\x01"])),
}
ARRAYS = {element: oid for oid, element in ARRAY_ELEMENTS.items()}


@pytest.mark.parametrize("element", sorted(ELEMENTS))
@CHECK
@given(data=st.data(), rows=st.integers(1, 3), lower=st.integers(-3, 3))
def test_array_values(
    server: Server, element: str, data: st.DataObject, rows: int, lower: int
) -> None:
    elem_oid, values = ELEMENTS[element]
    if element == "text":  # words array_out must quote: empty, NULL in any case, braces, ...
        values = values | st.sampled_from(
            [b"", b"NULL", b"nUlL", b"{", b"}", b'"', b"\\", b" ", b"\x0b", b"a,b"]
        )
    width = data.draw(st.integers(0, 4))
    items = data.draw(st.lists(values | st.none(), min_size=rows * width, max_size=rows * width))
    dims = [(rows, lower), (width, 1)] if rows > 1 else [(width, lower)]
    array_oid = ARRAYS[elem_oid]
    found = server.accepts(f"{element}[]", array_oid, array_bytes(elem_oid, items, dims))
    assert found is not None
    same(*found, array_oid)


def test_an_array_without_dimensions(server: Server) -> None:
    found = server.accepts("int4[]", 1007, array_bytes(23, [], []))
    assert found is not None and found[0] == b"{}"
    same(*found, 1007)


# -- untrusted bytes -----------------------------------------------------------------------------


@FUZZ
@given(oid=st.sampled_from(sorted(TYPES)), value=st.binary(max_size=80))
def test_any_bytes_give_text_or_none_never_an_exception(oid: int, value: bytes) -> None:
    assert isinstance(to_text(oid, value), str | None)


@FUZZ
@given(
    array_oid=st.sampled_from(sorted(ARRAY_ELEMENTS)),
    ndim=st.integers(-1, 7),
    flags=st.integers(-1, 2),
    sizes=st.lists(st.tuples(st.integers(-2, 5), st.integers(*I32)), max_size=7),
    body=st.binary(max_size=120),
)
def test_malformed_arrays_give_none_never_an_exception(
    array_oid: int, ndim: int, flags: int, sizes: list[tuple[int, int]], body: bytes
) -> None:
    value = struct.pack("!iiI", ndim, flags, ARRAY_ELEMENTS[array_oid])
    value += b"".join(struct.pack("!ii", size, lower) for size, lower in sizes) + body
    assert isinstance(to_text(array_oid, value), str | None)


def test_what_postgresql_would_not_send_is_none() -> None:
    assert to_text(23, b"\x00\x00\x01") is None  # an int4 of three bytes
    assert to_text(16, b"") is None
    assert to_text(1082, struct.pack("!i", DATE_RANGE[1] + 1)) is None  # past the last date
    assert to_text(1083, struct.pack("!q", USECS_PER_DAY + 1)) is None  # after 24:00:00
    assert to_text(1700, struct.pack("!hhHhh", 1, 0, 0, 0, 10000)) is None  # a digit > 9999
    assert to_text(1700, struct.pack("!hhHh", 0, 0, 0x1234, 0)) is None  # no such sign
    assert to_text(25, b"a\x00b") is None  # text never holds NUL
    assert to_text(25, b"\xff") is None  # nor bytes that are not UTF-8
    assert to_text(3802, b"\x02{}") is None  # a jsonb version we do not know
    assert to_text(869, bytes([2, 33, 0, 4, 1, 2, 3, 4])) is None  # an IPv4 mask of 33
    assert to_text(1007, array_bytes(25, [b"x"])) is None  # int4[] claiming text elements
    assert to_text(1007, array_bytes(23, [b"\x00\x00\x00\x01"])[:-1]) is None  # cut short
    assert to_text(600, b"\x00" * 16) is None  # point: a type not read here


def test_huge_arrays_are_not_decoded() -> None:
    many = array_bytes(23, [None] * (MAX_ARRAY_ITEMS + 1))
    assert to_text(1007, many) is None
    assert to_text(1007, array_bytes(23, [None] * MAX_ARRAY_ITEMS)) is not None
