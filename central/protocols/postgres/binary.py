"""Binary-format result values as the text PostgreSQL would print for them. Sans-io.

Drivers such as asyncpg, and psycopg or JDBC with prepared statements, ask for results in
binary format, so a recorded row would read `\\x00000001` where psql shows `1`. `to_text`
turns a binary value of a common type into PostgreSQL's own text output, so that the
recording shows what the user saw whichever client they used. The text is that of a server
with the default output settings: DateStyle ISO, IntervalStyle postgres, bytea_output hex,
extra_float_digits above zero (shortest exact floats), and timestamptz in UTC (`+00`).

The bytes come from the target and are not trusted: every decoder checks lengths and ranges
(those PostgreSQL's own receive functions check) and answers None for anything it would not
have sent, never an exception. None also answers a type that is not read here; the caller
then shows the bytes as hex.

Only the few rows a recording keeps are decoded, never a whole result.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Final

MAX_ARRAY_ITEMS: Final = 10_000  # elements of an array decoded; beyond that, None

_USECS_PER_DAY: Final = 86_400_000_000
_EPOCH_JDATE: Final = 2_451_545  # 2000-01-01, PostgreSQL's epoch, as a Julian day
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# The ranges the receive functions accept (datatype/timestamp.h).
_DATE_MIN, _DATE_END = -_EPOCH_JDATE, 2_147_483_494 - _EPOCH_JDATE
_TS_MIN, _TS_END = -211_813_488_000_000_000, 9_223_371_331_200_000_000
_TZ_LIMIT: Final = 16 * 3600  # timetz zones are within ±15:59:59

_I16, _I32, _I64 = struct.Struct("!h"), struct.Struct("!i"), struct.Struct("!q")
_U32, _U64 = struct.Struct("!I"), struct.Struct("!Q")
_F32, _F64 = struct.Struct("!f"), struct.Struct("!d")
_NUMERIC_HEAD = struct.Struct("!hhHh")
_INTERVAL = struct.Struct("!qii")
_TIMETZ = struct.Struct("!qi")
_ARRAY_HEAD = struct.Struct("!iiI")
_DIM = struct.Struct("!ii")

Decoder = Callable[[bytes], str | None]


def to_text(type_oid: int, value: bytes) -> str | None:
    """PostgreSQL's text output for `value`, a binary-format value of type `type_oid`; None
    when the type is not one read here or the bytes are not a valid value of it."""
    decode = _DECODERS.get(type_oid)
    if decode is None:
        return None
    try:
        return decode(value)
    except (ValueError, IndexError, struct.error, ArithmeticError, RecursionError):
        return None  # defensive: every decoder checks its input, this is the last net


# -- scalars ---------------------------------------------------------------------------------------


def _utf8(value: bytes) -> str | None:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text  # PostgreSQL text never holds NUL


def _jsonb(value: bytes) -> str | None:
    # jsonb_send: a version byte (1), then the same text as jsonb_out.
    return _utf8(value[1:]) if value[:1] == b"\x01" else None


def _integer(s: struct.Struct) -> Decoder:
    def decode(value: bytes) -> str | None:
        return str(s.unpack(value)[0]) if len(value) == s.size else None

    return decode


def _bool(value: bytes) -> str | None:
    if len(value) != 1:
        return None
    return "f" if value == b"\x00" else "t"  # boolrecv: any other byte is true


def _char(value: bytes) -> str | None:
    # "char": one byte; charout writes a high-bit byte as \ooo and NUL as the empty string.
    if len(value) != 1:
        return None
    byte = value[0]
    return f"\\{byte:03o}" if byte & 0x80 else ("" if byte == 0 else chr(byte))


def _bytea(value: bytes) -> str:
    return "\\x" + value.hex()


def _uuid(value: bytes) -> str | None:
    if len(value) != 16:
        return None
    h = value.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _mac(size: int) -> Decoder:
    def decode(value: bytes) -> str | None:
        return ":".join(f"{b:02x}" for b in value) if len(value) == size else None

    return decode


# -- floats and numeric ------------------------------------------------------------------------


def _float_text(x: float, digits: str, exp10: int, fixed_below: int) -> str:
    """PostgreSQL's layout of the shortest exact digits (float8out / float4out with
    extra_float_digits > 0): fixed point for exponents -4 .. fixed_below-1, like %g."""
    sign = "-" if x < 0 else ""
    if -4 <= exp10 < fixed_below:
        if exp10 < 0:
            return f"{sign}0.{'0' * (-exp10 - 1)}{digits}"
        whole = digits[: exp10 + 1].ljust(exp10 + 1, "0")
        frac = digits[exp10 + 1 :]
        return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"


def _special(x: float) -> str | None:
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if str(x).startswith("-") else "0"
    return None


def _digits(text: str) -> tuple[str, int]:
    """The significant digits of a decimal text, and the power of ten of the first."""
    _sign, digits, exponent = Decimal(text).as_tuple()
    shown = "".join(map(str, digits)).rstrip("0")
    assert isinstance(exponent, int)
    return shown, len(digits) - 1 + exponent


def _shortest(exact: Fraction, below: Fraction, above: Fraction, max_digits: int) -> Decimal:
    """The shortest decimal strictly between the halfway points to the neighbouring floats
    and, of several, the nearest: the digits PostgreSQL's Ryū prints. The interval is open
    (PostgreSQL prints 6.1544383651925216e+16, not the 6.154438365192522e+16 that reads back
    by rounding half to even), so Python's repr is not the answer."""
    low, high = (below + exact) / 2, (exact + above) / 2
    found: Decimal | None = None
    for precision in range(1, max_digits + 1):
        # The correctly rounded decimal can miss where the interval is lopsided (at a power
        # of two), so its neighbours in the last digit are tried too.
        rounded = Decimal(f"{float(exact):.{precision - 1}e}")
        step = Decimal(1).scaleb(rounded.adjusted() - precision + 1)
        # Below a power of ten the last digit is one place further right (1.00 -> 0.999).
        down = step / 10 if rounded == Decimal(1).scaleb(rounded.adjusted()) else step
        hits = [c for c in (rounded, rounded - down, rounded + step) if low < Fraction(c) < high]
        if hits:  # the nearest; of two as near, the correctly rounded one (half to even)
            found = min(hits, key=lambda c: abs(Fraction(c) - exact))
            break
    # Within max_digits some decimal always reads back; the exact value is the last resort.
    return found if found is not None else Decimal(float(exact))


def _repr_on_boundary(ax: float) -> bool:
    """Is repr(ax) (a positive finite double) exactly halfway to a neighbouring double?

    Below 2^52 it never is: a halfway point there has at least 18 significant digits and
    repr at most 17. Above, doubles are integers and so are the decimals repr gives."""
    if ax < 2.0**52:
        return False
    mantissa, exponent = math.frexp(ax)
    ulp = 2 ** (exponent - 53)
    x4, d4 = 4 * int(ax), 4 * int(Decimal(repr(ax)))
    # Below a power of two the neighbour is half as far.
    return d4 == x4 + 2 * ulp or d4 == x4 - (ulp if mantissa == 0.5 else 2 * ulp)


def _float(
    s: struct.Struct, bits: struct.Struct, top: int, max_digits: int, fixed_below: int
) -> Decoder:
    """float4out / float8out (extra_float_digits > 0): `top` is the bit pattern of infinity."""

    def decode(value: bytes) -> str | None:
        if len(value) != s.size:
            return None
        x = s.unpack(value)[0]
        special = _special(x)
        if special is not None:
            return special
        if s.size == 8 and not _repr_on_boundary(abs(x)):
            # The fast way: Python's repr is the same shortest, nearest decimal but for
            # one that lies on a halfway point, which repr allows and PostgreSQL does not.
            digits, exp10 = _digits(repr(abs(x)))
            return _float_text(x, digits, exp10, fixed_below)
        n = bits.unpack(value)[0] & (top | (top - 1))  # |x| as bits
        below = Fraction(s.unpack(bits.pack(n - 1))[0])
        up = n + 1
        # Past the largest float the next one would be 2^(max exponent + 1).
        above = (
            Fraction(2 ** (128 if s.size == 4 else 1024))
            if up == top
            else Fraction(s.unpack(bits.pack(up))[0])
        )
        digits, exp10 = _digits(str(_shortest(Fraction(abs(x)), below, above, max_digits)))
        return _float_text(x, digits, exp10, fixed_below)

    return decode


_NUMERIC_POS, _NUMERIC_NEG = 0x0000, 0x4000
_NUMERIC_SPECIAL = {0xC000: "NaN", 0xD000: "Infinity", 0xF000: "-Infinity"}


def _numeric(value: bytes) -> str | None:
    # numeric_send: ndigits, weight (of the first digit, in base 10000), sign, dscale
    # (decimal digits after the point), then the base-10000 digits.
    if len(value) < 8:
        return None
    ndigits, weight, sign, dscale = _NUMERIC_HEAD.unpack_from(value)
    if ndigits < 0 or len(value) != 8 + 2 * ndigits:
        return None
    if sign in _NUMERIC_SPECIAL:
        return _NUMERIC_SPECIAL[sign]
    if sign not in (_NUMERIC_POS, _NUMERIC_NEG) or not 0 <= dscale <= 0x3FFF:
        return None
    digits = struct.unpack_from(f"!{ndigits}h", value, 8)
    if any(not 0 <= d <= 9999 for d in digits):
        return None

    def digit(i: int) -> int:
        return digits[i] if 0 <= i < ndigits else 0

    # As get_str_from_var: the integer part without leading zeros, then dscale digits.
    if weight < 0:
        whole = "0"
    else:
        whole = str(digit(0)) + "".join(f"{digit(i):04d}" for i in range(1, weight + 1))
    out = ("-" if sign == _NUMERIC_NEG else "") + whole
    if dscale > 0:
        groups = (dscale + 3) // 4
        frac = "".join(f"{digit(i):04d}" for i in range(weight + 1, weight + 1 + groups))
        out += "." + frac[:dscale]
    return out


# -- dates and times ---------------------------------------------------------------------------


def _j2date(jd: int) -> tuple[int, int, int]:
    """A Julian day as (year, month, day): PostgreSQL's j2date, year 0 being 1 BC."""
    julian = jd + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    return y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad // 256


def _ymd(days: int) -> tuple[str, bool]:
    """Days since 2000-01-01 as the ISO date text, and whether it is BC."""
    year, month, day = _j2date(days + _EPOCH_JDATE)
    bc = year <= 0
    return f"{(1 - year) if bc else year:04d}-{month:02d}-{day:02d}", bc


def _seconds(usecs: int) -> str:
    """Seconds and microseconds as AppendSeconds writes them: SS, then .ffffff trimmed."""
    sec, frac = divmod(usecs, 1_000_000)
    return f"{sec:02d}.{frac:06d}".rstrip("0") if frac else f"{sec:02d}"


def _clock(usecs: int) -> str:
    hours, rest = divmod(usecs, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    return f"{hours:02d}:{minutes:02d}:{_seconds(rest)}"


def _date(value: bytes) -> str | None:
    if len(value) != 4:
        return None
    days = _I32.unpack(value)[0]
    if days == _INT32_MIN:
        return "-infinity"
    if days == _INT32_MAX:
        return "infinity"
    if not _DATE_MIN <= days < _DATE_END:
        return None
    text, bc = _ymd(days)
    return text + " BC" if bc else text


def _timestamp(zone: str) -> Decoder:
    def decode(value: bytes) -> str | None:
        if len(value) != 8:
            return None
        usecs = _I64.unpack(value)[0]
        if usecs == _INT64_MIN:
            return "-infinity"
        if usecs == _INT64_MAX:
            return "infinity"
        if not _TS_MIN <= usecs < _TS_END:
            return None
        days, clock = divmod(usecs, _USECS_PER_DAY)
        text, bc = _ymd(days)
        return f"{text} {_clock(clock)}{zone}{' BC' if bc else ''}"

    return decode


def _time(value: bytes) -> str | None:
    if len(value) != 8:
        return None
    usecs = _I64.unpack(value)[0]
    return _clock(usecs) if 0 <= usecs <= _USECS_PER_DAY else None


def _zone(seconds_west: int) -> str:
    """A zone offset as EncodeTimezone writes it in ISO style: +hh, +hh:mm or +hh:mm:ss."""
    minutes, sec = divmod(abs(seconds_west), 60)
    hours, minutes = divmod(minutes, 60)
    sign = "+" if seconds_west <= 0 else "-"  # stored west of Greenwich, shown east
    if sec:
        return f"{sign}{hours:02d}:{minutes:02d}:{sec:02d}"
    if minutes:
        return f"{sign}{hours:02d}:{minutes:02d}"
    return f"{sign}{hours:02d}"


def _timetz(value: bytes) -> str | None:
    if len(value) != 12:
        return None
    usecs, zone = _TIMETZ.unpack(value)
    if not 0 <= usecs <= _USECS_PER_DAY or not -_TZ_LIMIT < zone < _TZ_LIMIT:
        return None
    return _clock(usecs) + _zone(zone)


def _trunc_div(a: int, b: int) -> tuple[int, int]:
    """C's integer division (toward zero) and remainder, as interval2itm uses them."""
    q = abs(a) // b * (1 if a >= 0 else -1)
    return q, a - q * b


def _interval(value: bytes) -> str | None:
    if len(value) != 16:
        return None
    usecs, days, months = _INTERVAL.unpack(value)
    # PostgreSQL 17's infinite intervals: every field at its limit.
    if (usecs, days, months) == (_INT64_MAX, _INT32_MAX, _INT32_MAX):
        return "infinity"
    if (usecs, days, months) == (_INT64_MIN, _INT32_MIN, _INT32_MIN):
        return "-infinity"
    years, mons = _trunc_div(months, 12)
    hours, rest = _trunc_div(usecs, 3_600_000_000)
    minutes, rest = _trunc_div(rest, 60_000_000)
    sec, fsec = _trunc_div(rest, 1_000_000)
    # EncodeInterval, IntervalStyle postgres: "1 year 2 mons -3 days +04:05:06.5".
    parts: list[str] = []
    before = False  # the previous field was negative: a positive one then shows its +
    for amount, unit in ((years, "year"), (mons, "mon"), (days, "day")):
        if amount:
            plus = "+" if before and amount > 0 else ""
            parts.append(f"{plus}{amount} {unit}{'' if amount == 1 else 's'}")
            before = amount < 0
    if not parts or hours or minutes or sec or fsec:
        minus = hours < 0 or minutes < 0 or sec < 0 or fsec < 0
        sign = "-" if minus else ("+" if before else "")
        seconds = f"{abs(sec):02d}" + (f".{abs(fsec):06d}".rstrip("0") if fsec else "")
        parts.append(f"{sign}{abs(hours):02d}:{abs(minutes):02d}:{seconds}")
    return " ".join(parts)


# -- network addresses -------------------------------------------------------------------------

_AF_INET, _AF_INET6 = 2, 3  # PGSQL_AF_INET, PGSQL_AF_INET6


def _ipv6(addr: bytes) -> str:
    """PostgreSQL's inet_net_ntop_ipv6: the longest run (of two or more) of zero words as ::,
    the first of equal runs; an IPv4-compatible or -mapped tail in dotted decimal."""
    words = [int.from_bytes(addr[i : i + 2], "big") for i in range(0, 16, 2)]
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, word in enumerate([*words, 1]):  # a sentinel ends a trailing run
        if word == 0:
            cur_base, cur_len = (i, 1) if cur_base == -1 else (cur_base, cur_len + 1)
        elif cur_base != -1:
            if best_base == -1 or cur_len > best_len:
                best_base, best_len = cur_base, cur_len
            cur_base = -1
    if best_len < 2:
        best_base = -1
    out = ""
    for i, word in enumerate(words):
        if best_base != -1 and best_base <= i < best_base + best_len:
            if i == best_base:
                out += ":"
            continue
        if i:
            out += ":"
        if (
            i == 6
            and best_base == 0
            and (
                best_len == 6
                or (best_len == 7 and words[7] != 1)
                or (best_len == 5 and words[5] == 0xFFFF)
            )
        ):
            return out + ".".join(str(b) for b in addr[12:])
        out += f"{word:x}"
    if best_base != -1 and best_base + best_len == 8:
        out += ":"
    return out


def _network(cidr: bool) -> Decoder:
    def decode(value: bytes) -> str | None:
        # inet_send: family, mask bits, is_cidr, address length, address.
        if len(value) < 4:
            return None
        family, bits, _flag, size = value[:4]
        addr = value[4:]
        if family == _AF_INET and size == 4 and len(addr) == 4 and bits <= 32:
            text, full = ".".join(str(b) for b in addr), 32
        elif family == _AF_INET6 and size == 16 and len(addr) == 16 and bits <= 128:
            text, full = _ipv6(addr), 128
        else:
            return None
        return f"{text}/{bits}" if cidr or bits != full else text

    return decode


# -- arrays --------------------------------------------------------------------------------------

_ARRAY_SPECIAL = frozenset('{}",\\ \t\n\r\v\f')


def _array_item(text: str) -> str:
    """One element as array_out writes it: quoted when empty, NULL-like, or holding a brace,
    quote, comma, backslash or white space."""
    if text and text.upper() != "NULL" and not _ARRAY_SPECIAL.intersection(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array(element: int) -> Decoder:
    def decode(value: bytes) -> str | None:
        # array_send: ndim, has-nulls flag, element type, (size, lower bound) per dimension,
        # then each element as a length (-1: NULL) and its bytes.
        ndim, flags, elem_oid = _ARRAY_HEAD.unpack_from(value)
        if not 0 <= ndim <= 6 or flags not in (0, 1) or elem_oid != element:
            return None
        pos = _ARRAY_HEAD.size
        dims: list[tuple[int, int]] = []
        for _ in range(ndim):
            size, lower = _DIM.unpack_from(value, pos)
            pos += _DIM.size
            if size < 0 or lower + size - 1 > _INT32_MAX:
                return None
            dims.append((size, lower))
        count = 1
        for size, _lower in dims:
            count *= size
        if not ndim or count == 0:
            return "{}" if pos == len(value) else None
        if count > MAX_ARRAY_ITEMS:
            return None
        decode_item = _DECODERS[element]
        items: list[str] = []
        for _ in range(count):
            length = _I32.unpack_from(value, pos)[0]
            pos += 4
            if length == -1:
                items.append("NULL")
                continue
            if length < 0 or pos + length > len(value):
                return None
            text = decode_item(value[pos : pos + length])
            if text is None:
                return None
            items.append(_array_item(text))
            pos += length
        if pos != len(value):
            return None
        body = _nest(items, [size for size, _lower in dims])
        if all(lower == 1 for _size, lower in dims):
            return body
        bounds = "".join(f"[{lower}:{lower + size - 1}]" for size, lower in dims)
        return f"{bounds}={body}"

    return decode


def _nest(items: list[str], sizes: list[int]) -> str:
    if len(sizes) == 1:
        return "{" + ",".join(items) + "}"
    step = len(items) // sizes[0]
    inner = sizes[1:]
    return (
        "{" + ",".join(_nest(items[i : i + step], inner) for i in range(0, len(items), step)) + "}"
    )


# -- the table -----------------------------------------------------------------------------------

_DECODERS: dict[int, Decoder] = {
    16: _bool,
    17: _bytea,
    18: _char,
    19: _utf8,  # name
    20: _integer(_I64),  # int8
    21: _integer(_I16),  # int2
    23: _integer(_I32),  # int4
    25: _utf8,  # text
    26: _integer(_U32),  # oid
    28: _integer(_U32),  # xid
    29: _integer(_U32),  # cid
    114: _utf8,  # json: binary is the text
    650: _network(cidr=True),
    700: _float(_F32, _U32, 0x7F800000, 9, 6),  # float4
    701: _float(_F64, _U64, 0x7FF0000000000000, 17, 15),  # float8
    705: _utf8,  # unknown
    774: _mac(8),  # macaddr8
    829: _mac(6),  # macaddr
    869: _network(cidr=False),  # inet
    1042: _utf8,  # bpchar
    1043: _utf8,  # varchar
    1082: _date,
    1083: _time,
    1114: _timestamp(""),
    1184: _timestamp("+00"),  # timestamptz, shown in UTC
    1186: _interval,
    1266: _timetz,
    1700: _numeric,
    2950: _uuid,
    3802: _jsonb,
}
# Array types of the element types above (pg_type.typarray).
ARRAY_ELEMENTS: Final = {
    1000: 16,
    1001: 17,
    1002: 18,
    1003: 19,
    1016: 20,
    1005: 21,
    1007: 23,
    1009: 25,
    1028: 26,
    1011: 28,
    1012: 29,
    199: 114,
    651: 650,
    1021: 700,
    1022: 701,
    775: 774,
    1040: 829,
    1041: 869,
    1014: 1042,
    1015: 1043,
    1182: 1082,
    1183: 1083,
    1115: 1114,
    1185: 1184,
    1187: 1186,
    1270: 1266,
    1231: 1700,
    2951: 2950,
    3807: 3802,
}
_DECODERS.update({oid: _array(element) for oid, element in ARRAY_ELEMENTS.items()})
TYPES: Final = frozenset(_DECODERS)  # the type OIDs `to_text` reads
