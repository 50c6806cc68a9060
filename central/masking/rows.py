"""Rewriting result data with masked cells: DataRow payloads and COPY rows. Sans-io.

Masking works one cell at a time, through a *cell function* (`CellFn`): it gets a cell's bytes
exactly as the server sent them and returns the bytes to send instead, or None for NULL. SQL
NULL never reaches a cell function: NULL stays NULL. Two factories build them, once per result
column and statement:

- `mask_cell`: the whole value is sensitive (lineage traced the column to a masked source).
- `scan_cell`: the column's origin is unknown; the content detectors look for sensitive values
  inside each cell and only what they find is masked.

What goes back depends on the column's type, because a client must be able to read it as that
type. Text-like types get the masked text in place; json and jsonb a JSON string (a mask inside
JSON text is also valid JSON, since masks hold no quotes); a masked value of any other type
becomes NULL, as "****" is not an integer, a date or an array.

Two rewriters carry the cell functions over whole rows:

- `rewrite_data_rows` over a run of complete DataRow messages (the hot path: every row of a
  masked result goes through it, so it reads with precompiled structs and copies runs of
  unmasked fields as single slices);
- `CopyRows` over the rows of a COPY TO in text or CSV format, which it decodes field by field
  and re-encodes as PostgreSQL would.

Both are strict about framing and raise `RowError` for anything malformed, so the proxy never
relays a row it could not read as the client will.

Text is UTF-8 (the gateway starts sessions with client_encoding=UTF8, and the SQL policy keeps
it there); bytes that are not valid UTF-8 anyway are carried with "surrogateescape", so they
neither fail nor change.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, TypeAlias

from central.masking.detectors import Scanner
from central.masking.styles import (
    FULL_MASK,
    STYLES,
    Style,
    hash_token,
    mask,
    mask_spans,
    shape_kind,
)


@dataclass(frozen=True, slots=True)
class CopyFormat:
    """The data format of a COPY, from its options (PostgreSQL's defaults where not given)."""

    format: Literal["text", "csv", "binary"] = "text"
    delimiter: str = "\t"  # "," for csv
    null: str = "\\N"  # "" for csv
    quote: str = '"'  # csv only
    escape: str = '"'  # csv only; defaults to quote
    header: bool = False  # csv (and text since PostgreSQL 15): the first row holds names
    force_quote: bool = False  # csv FORCE_QUOTE *: only affects how we re-encode


class RowError(ValueError):
    """A DataRow or COPY row that is malformed or does not match the columns it should have."""


CellFn: TypeAlias = Callable[[bytes], bytes | None]
"""One cell's bytes as the server sent them -> the bytes to send instead, or None for NULL."""

TEXT_OIDS: Final = frozenset({25, 1043, 1042, 19, 705})  # text, varchar, bpchar, name, unknown
JSON_OID: Final = 114
JSONB_OID: Final = 3802
_BPCHAR_OID: Final = 1042

# Hash, partial and scan results are cached per cell function (so per statement and column),
# keyed by the raw cell: hashing and the detectors cost microseconds, and columns repeat values
# (the same customer on every order). Bounded twice: by entries, and by value size so a column
# of large documents cannot pin gigabytes (at most some 30 MB a column, typically far less).
_CACHE_ENTRIES: Final = 16384
_CACHE_MAX_VALUE: Final = 256


# --- cell functions ----------------------------------------------------------------------------


class _Constant:
    """A cell function whose result does not depend on the cell: "full", "null", and every
    masked value of a non-text type. The rewriters recognise it and write `value` without
    slicing out or decoding the cell, which keeps full masking near free."""

    __slots__ = ("value",)

    def __init__(self, value: bytes | None) -> None:
        self.value = value

    def __call__(self, raw: bytes) -> bytes | None:
        return self.value

    def __repr__(self) -> str:
        return f"_Constant({self.value!r})"


def _unchanged(raw: bytes) -> bytes:
    """The cell function of a column that cannot be scanned; the rewriters pass it through."""
    return raw


_NULL_CELL: Final = _Constant(None)


def _shape(type_oid: int) -> Literal["text", "json"] | None:
    """How a masked value is written back into a column of this type (None: as NULL)."""
    if type_oid in TEXT_OIDS:
        return "text"
    if type_oid == JSON_OID or type_oid == JSONB_OID:
        return "json"
    return None


def _check_style(style: str, key: bytes) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown masking style {style!r}")  # at config time, not per row
    if style == "hash":
        hash_token("", None, key=key)  # raises now for a key too weak to use


def _encode(masked: str, shape: Literal["text", "json"], jsonb_binary: bool) -> bytes:
    if shape == "json":
        masked = json.dumps(masked, ensure_ascii=False)
    out = masked.encode("utf-8", "surrogateescape")
    return b"\x01" + out if jsonb_binary else out  # binary jsonb: version byte, then the text


def mask_cell(style: Style, key: bytes, *, type_oid: int, binary: bool, direct: bool) -> CellFn:
    """The cell function for a column whose whole value is sensitive.

    `binary` is the column's result format; `direct` says the column passes a masked source
    through unchanged. Only then does "partial" keep the last digits (or an email's domain):
    a transformed value (`right(ssn, 4) || substr(ssn, 1, 5)`) could be shaped so that the
    shown tail is a hidden part, so elsewhere partial masks like "full". "hash" and "partial"
    take the value's kind from its shape (`styles.shape_kind`), for the normalisation of the
    token and what the mask keeps.

    In a json or jsonb column a JSON string is masked as its content (so a hashed email joins
    with the same email in a text column); any other JSON value as its text.
    """
    _check_style(style, key)
    shape = _shape(type_oid)
    if shape is None or style == "null":
        return _NULL_CELL
    jsonb_binary = binary and type_oid == JSONB_OID
    if style == "full" or (style == "partial" and not direct):
        return _Constant(_encode(FULL_MASK, shape, jsonb_binary))
    rstrip = type_oid == _BPCHAR_OID  # char(n) pads with spaces that are not part of the value
    hashing = style == "hash"

    def compute(raw: bytes) -> bytes | None:
        value = (raw[1:] if jsonb_binary else raw).decode("utf-8", "surrogateescape")
        if shape == "json":
            value = _json_content(value)
        kind = shape_kind(value)
        if hashing:
            masked = hash_token(value.rstrip(" ") if rstrip else value, kind, key=key)
        else:
            masked = mask(value, "partial", kind, key=key) or FULL_MASK  # (None only for "null")
        return _encode(masked, shape, jsonb_binary)

    return _cached(compute)


def _json_content(text: str) -> str:
    """The string a JSON text holds, when it is a JSON string; else the text itself."""
    if text.lstrip().startswith('"'):
        try:
            value = json.loads(text)
        except ValueError:
            return text
        if isinstance(value, str):
            return value
    return text


class _Same(Enum):
    """Cached for a cell the function returned unchanged: hand back the caller's own object,
    whose identity tells `CopyRows` to keep the server's bytes."""

    SAME = 0


def _cached(compute: CellFn) -> CellFn:
    cache: dict[bytes, bytes | _Same | None] = {}

    def cell(raw: bytes) -> bytes | None:
        try:
            out = cache[raw]
        except KeyError:
            computed = compute(raw)
            if len(raw) <= _CACHE_MAX_VALUE:
                if len(cache) >= _CACHE_ENTRIES:
                    cache.clear()  # crude, but O(1) amortised and no bookkeeping per hit
                cache[raw] = _Same.SAME if computed is raw else computed
            return computed
        return raw if out is _Same.SAME else out

    return cell


# In JSON text an escape glues a letter to what follows ("\n415-555-2671" reads as "n415..."),
# which hides the value from detectors that look for a word boundary. Detection therefore runs
# over a copy with every escape blanked to spaces of the same length, so spans still index the
# original text.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|.)", re.DOTALL)


def _blank_json_escapes(text: str) -> str:
    if "\\" not in text:
        return text
    return _JSON_ESCAPE.sub(lambda m: " " * len(m.group()), text)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def scan_cell(scanner: Scanner, style: Style, key: bytes, *, type_oid: int, binary: bool) -> CellFn:
    """The cell function for a column of unknown origin: mask what the detectors find.

    A cell in which nothing is found comes back as the very same object (no copy). Otherwise
    text-like and json cells get the masked text in place, and a cell of any other type
    becomes NULL (an int8 that holds a card number, an array that holds an email). Style
    "null" turns any cell with a finding into NULL.

    Binary-format cells of types other than text and json cannot be scanned (their bytes are
    not text) and are passed unchanged. Binary text, varchar, json are UTF-8 text like their
    text format, and binary jsonb is a version byte followed by the text.

    Should masking leave JSON that no longer parses (a finding outside a string, such as a card
    number stored as a JSON number, or one cut across a closing quote, as an unterminated PEM
    block is), the whole cell becomes the JSON string "****".
    """
    _check_style(style, key)
    shape = _shape(type_oid)
    if binary and shape is None:
        return _unchanged
    jsonb_binary = binary and type_oid == JSONB_OID
    find_all = scanner.find_all
    to_null = shape is None or style == "null"

    def compute(raw: bytes) -> bytes | None:
        text = (raw[1:] if jsonb_binary else raw).decode("utf-8", "surrogateescape")
        spans = find_all(_blank_json_escapes(text) if shape == "json" else text)
        if not spans:
            return raw
        if to_null:
            return None
        masked = mask_spans(text, spans, style, key)
        assert masked is not None  # only "null" gives None, handled above
        if shape == "json" and not _is_json(masked):
            masked = json.dumps(FULL_MASK)
        out = masked.encode("utf-8", "surrogateescape")
        return b"\x01" + out if jsonb_binary else out

    return _cached(compute)


# --- DataRow -----------------------------------------------------------------------------------

_ROW_HEADER = struct.Struct("!BIh")  # 'D', length (itself included), field count
_I32 = struct.Struct("!i").unpack_from
_PACK_I32 = struct.Struct("!i").pack
_NULL: Final = b"\xff\xff\xff\xff"  # field length -1: SQL NULL
_D: Final = 0x44


def _data_row_ops(cells: Sequence[CellFn | None]) -> list[CellFn | bytes | None]:
    """Per column: None to pass, the complete encoded field of a constant, or the function."""
    ops: list[CellFn | bytes | None] = []
    for fn in cells:
        if fn is None or fn is _unchanged:
            ops.append(None)
        elif isinstance(fn, _Constant):
            value = fn.value
            ops.append(_NULL if value is None else _PACK_I32(len(value)) + value)
        else:
            ops.append(fn)
    return ops


def rewrite_data_rows(
    buf: bytes | bytearray | memoryview, start: int, end: int, cells: Sequence[CellFn | None]
) -> bytes:
    """Rewrite the complete DataRow messages in `buf[start:end]` through `cells`.

    `cells[i]` is the cell function of column i, or None to pass that column unchanged.
    Returns the rewritten messages, lengths recomputed. Raises `RowError` for a message that
    is not a DataRow, has another number of fields than `cells`, or whose fields do not fill it
    exactly.

    The loop checks only what it must to stay in bounds: that each message fits the range and
    has the right field count, and that its fields end exactly where its length says (field
    offsets only grow, so a field that overran anywhere shows as an overrun at the end). A cell
    function may therefore see garbage of a malformed row before the error is raised; that is
    harmless, as cell functions are pure. `_diagnose` then re-reads the row to name the fault.
    """
    if not isinstance(buf, bytes):
        buf = bytes(buf[start:end])
        start, end = 0, len(buf)
    ops = _data_row_ops(cells)
    ncols = len(ops)
    out: list[bytes] = []
    append = out.append
    i32 = _I32
    pack_i32 = _PACK_I32
    row_header = _ROW_HEADER.unpack_from
    pack_row_header = _ROW_HEADER.pack
    pos = start
    try:
        while pos < end:
            typ, length, count = row_header(buf, pos)
            msg_end = pos + 1 + length
            if typ != _D or count != ncols or msg_end > end or length < 6:
                raise _diagnose(buf, pos, end, ncols)
            header_at = len(out)
            append(b"")  # the header, once the new length is known
            p = run = pos + 7  # `run`: where the pending stretch of unchanged bytes begins
            delta = 0  # new length - old length
            for op in ops:
                n = i32(buf, p)[0]
                if n < 0:
                    if n != -1:
                        raise _diagnose(buf, pos, end, ncols)
                    p += 4  # NULL stays NULL, whatever the op: part of the unchanged run
                    continue
                if op is None:
                    p += 4 + n
                    continue
                if p != run:  # adjacent masked columns leave no stretch between them
                    append(buf[run:p])
                if op.__class__ is bytes:
                    append(op)
                    delta += len(op) - 4 - n
                else:
                    value = op(buf[p + 4 : p + 4 + n])  # type: ignore[operator]
                    if value is None:
                        append(_NULL)
                        delta -= n
                    else:
                        append(pack_i32(len(value)) + value)
                        delta += len(value) - n
                p += 4 + n
                run = p
            if p != msg_end:
                raise _diagnose(buf, pos, end, ncols)
            append(buf[run:p])
            out[header_at] = pack_row_header(_D, length + delta, count)
            pos = p
    except struct.error:  # a length field read past the end of the buffer
        raise _diagnose(buf, pos, end, ncols) from None
    return b"".join(out)


def _diagnose(buf: bytes, pos: int, end: int, ncols: int) -> RowError:
    """The precise error for the malformed DataRow at `pos`, read again slowly."""
    if end - pos < 7:
        return RowError(f"truncated DataRow header at offset {pos}: {end - pos} bytes")
    typ, length, count = _ROW_HEADER.unpack_from(buf, pos)
    if typ != _D:
        return RowError(f"expected a DataRow ('D'), got {chr(typ)!r} at offset {pos}")
    if length < 6:
        return RowError(f"DataRow length {length} is too short for a field count")
    if pos + 1 + length > end:
        return RowError(f"DataRow length {length} does not fit the {end - pos - 1} bytes left")
    msg_end = pos + 1 + length
    if count != ncols:
        return RowError(f"DataRow has {count} fields, expected {ncols}")
    p = pos + 7
    for i in range(count):
        if p + 4 > msg_end:
            return RowError(f"DataRow field {i} length overruns the message")
        n = _I32(buf, p)[0]
        if n < -1:
            return RowError(f"DataRow field {i} has length {n}")
        p += 4 + max(n, 0)
        if p > msg_end:
            return RowError(f"DataRow field {i} ({n} bytes) overruns the message")
    if p != msg_end:
        return RowError(f"DataRow has {msg_end - p} bytes left after its {count} fields")
    return RowError(f"malformed DataRow at offset {pos}")  # unreachable if the loop is right


# --- COPY --------------------------------------------------------------------------------------

# Text format: the escapes PostgreSQL writes (CopyAttributeOutText) and the ones it reads.
_TEXT_OUT = {b"\\": b"\\\\", b"\b": b"\\b", b"\f": b"\\f", b"\n": b"\\n", b"\r": b"\\r",
             b"\t": b"\\t", b"\v": b"\\v"}  # fmt: skip
_TEXT_IN = {out[1]: raw for raw, out in _TEXT_OUT.items() if raw != b"\\"}
_TEXT_ESCAPE_IN = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.DOTALL)


def _text_unescape_one(m: re.Match[bytes]) -> bytes:
    octal, hexa, char = m.groups()
    if octal is not None:
        return bytes((int(octal, 8) & 0xFF,))  # as PostgreSQL: the low byte of "\777"
    if hexa is not None:
        return bytes((int(hexa, 16),))
    return _TEXT_IN.get(char[0], char)  # "\n" is a newline; "\\", "\N", "\<delim>" the char


class CopyRows:
    """Rewrites the rows of one COPY TO in text or CSV format, one CopyData payload at a time.

    Fields are decoded to their values before a cell function sees them (cells in COPY are
    always in text representation: build the functions with `binary=False`), and what it
    returns is encoded back as PostgreSQL encodes it. Fields whose cell function is None,
    NULL fields, and fields the function returns unchanged keep the server's bytes exactly.

    PostgreSQL sends one row per CopyData; a payload of several complete rows is accepted too.
    With `header`, the first row is the column names and passes unchanged; so does an
    end-of-data line (`\\.`), which protocol 3 does not send. Binary COPY cannot be rewritten
    here: the constructor refuses it, and the caller refuses the statement. `type_oids` are the
    columns' types (CopyOutResponse does not carry them), one per cell function.
    """

    __slots__ = (
        "_csv_field",
        "_csv_pair",
        "_csv_quoted",
        "_delim",
        "_escape",
        "_escape_one",
        "_force_quote",
        "_header_pending",
        "_masked",
        "_ncols",
        "_needs_quote",
        "_null",
        "_quote",
        "_text",
        "_text_field",
        "type_oids",
    )

    def __init__(
        self, fmt: CopyFormat, cells: Sequence[CellFn | None], *, type_oids: Sequence[int]
    ) -> None:
        if fmt.format not in ("text", "csv"):
            raise ValueError(f"COPY format {fmt.format!r} cannot be masked row by row")
        if len(type_oids) != len(cells):
            raise ValueError(f"{len(cells)} cell functions for {len(type_oids)} columns")
        self.type_oids = tuple(type_oids)
        self._text = fmt.format == "text"
        self._ncols = len(cells)
        self._header_pending = fmt.header
        self._force_quote = fmt.force_quote
        self._null = fmt.null.encode()
        self._delim = delim = _one_byte("delimiter", fmt.delimiter)
        self._quote = quote = _one_byte("quote", fmt.quote)
        escape = _one_byte("escape", fmt.escape)
        d, q, e = re.escape(delim), re.escape(quote), re.escape(escape)
        # Text format: a field runs to the next delimiter that no backslash escapes.
        self._text_field = re.compile(rb"(?:[^\\" + d + rb"]++|\\.)*+", re.DOTALL).match
        # CSV: unquoted runs and quoted stretches, as CopyReadAttributesCSV reads a field (a
        # quote may open anywhere; inside, escape + quote and escape + escape are literals).
        # Possessive quantifiers: one reading of the bytes, no backtracking into another.
        inner = rb"(?:" + e + rb"[" + q + e + rb"]|[^" + q + rb"])*+"
        self._csv_field = re.compile(rb"(?:[^" + d + q + rb"\n]++|" + q + inner + q + rb")*+").match
        self._csv_quoted = re.compile(q + rb"(" + inner + rb")" + q)
        self._csv_pair = re.compile(e + rb"([" + q + e + rb"])")
        self._needs_quote = re.compile(rb"[" + d + q + rb"\n\r]").search
        if self._text:
            table = dict(_TEXT_OUT)
            table.setdefault(delim, b"\\" + delim)  # a tab delimiter is already written "\t"
            self._escape = re.compile(b"[" + b"".join(map(re.escape, table)) + b"]").sub
            self._escape_one: Callable[[re.Match[bytes]], bytes] = lambda m: table[m.group()]
        else:  # inside quotes, the quote and the escape character are preceded by the escape
            self._escape = re.compile(rb"[" + q + e + rb"]").sub
            self._escape_one = lambda m: escape + m.group()
        # Per masked column: (index, the encoded field of a constant or None, the function).
        self._masked: list[tuple[int, bytes | None, CellFn]] = []
        for i, fn in enumerate(cells):
            if fn is None or fn is _unchanged:
                continue
            if isinstance(fn, _Constant):
                value = fn.value
                self._masked.append((i, self._null if value is None else self._encode(value), fn))
            else:
                self._masked.append((i, None, fn))

    def rewrite(self, data: bytes) -> bytes:
        """The CopyData payload `data` (complete rows) with its masked fields rewritten."""
        if not self._masked and not self._header_pending:
            return data  # nothing to mask: not even parsed
        tail = b""
        if data.endswith(b"\\.") and (len(data) == 2 or data[-3] == 0x0A):
            data, tail = data[:-2], b"\\."  # an end-of-data marker without its newline
        if data and data[-1] != 0x0A:
            raise RowError("COPY data does not end with a newline")
        lines = []
        for fields in self._split_rows(data):
            if self._header_pending:
                self._header_pending = False
            elif fields != [b"\\."]:
                self._rewrite_fields(fields)
            lines.append(self._delim.join(fields))
        lines.append(tail)
        return b"\n".join(lines)

    def _split_rows(self, data: bytes) -> list[list[bytes]]:
        """The rows of `data` (which ends with a newline), each as its fields' raw bytes."""
        if not data:
            return []
        delim = self._delim
        if self._text:  # newlines in values are escaped: every newline ends a row
            return [
                line.split(delim) if b"\\" not in line else self._split_escaped(line)
                for line in data[:-1].split(b"\n")
            ]
        if self._quote not in data:  # no quotes: no delimiter or newline inside a field
            return [line.split(delim) for line in data[:-1].split(b"\n")]
        return self._split_csv(data)

    def _split_escaped(self, line: bytes) -> list[bytes]:
        fields: list[bytes] = []
        pos, n = 0, len(line)
        while True:
            m = self._text_field(line, pos)
            assert m is not None  # the pattern matches the empty string
            fields.append(m.group())
            pos = m.end()
            if pos == n:
                return fields
            if line[pos] != self._delim[0]:
                raise RowError("COPY text row ends with a lone backslash")
            pos += 1

    def _split_csv(self, data: bytes) -> list[list[bytes]]:
        rows: list[list[bytes]] = []
        fields: list[bytes] = []
        delim = self._delim[0]
        pos, n = 0, len(data)
        while pos < n:
            m = self._csv_field(data, pos)
            assert m is not None  # the pattern matches the empty string
            fields.append(m.group())
            pos = m.end()
            if pos == n:  # (a newline ends `data`, so only an open quote gets here)
                raise RowError("unterminated quoted field in CSV COPY data")
            char = data[pos]
            pos += 1
            if char == 0x0A:
                rows.append(fields)
                fields = []
            elif char != delim:  # the field stopped at a quote it could not close
                raise RowError("unterminated quoted field in CSV COPY data")
        return rows

    def _rewrite_fields(self, fields: list[bytes]) -> None:
        if len(fields) != self._ncols:
            raise RowError(f"COPY row has {len(fields)} fields, expected {self._ncols}")
        null = self._null
        for i, constant, fn in self._masked:
            raw = fields[i]
            if raw == null:  # NULL stays NULL (in CSV a quoted field is never the null string)
                continue
            if constant is not None:
                fields[i] = constant
                continue
            value = self._decode(raw)
            out = fn(value)
            if out is not value:  # returned unchanged: keep the server's bytes
                fields[i] = null if out is None else self._encode(out)

    def _decode(self, raw: bytes) -> bytes:
        """A field's value from its bytes in the COPY data."""
        if self._text:
            return _TEXT_ESCAPE_IN.sub(_text_unescape_one, raw) if b"\\" in raw else raw
        if self._quote not in raw:
            return raw
        pair = self._csv_pair
        return self._csv_quoted.sub(lambda m: pair.sub(rb"\1", m.group(1)), raw)

    def _encode(self, value: bytes) -> bytes:
        """A value in the bytes PostgreSQL writes for it (CopyAttributeOutText / OutCSV)."""
        if self._text:
            return self._escape(self._escape_one, value)
        if (
            self._force_quote
            or value == self._null  # quoted, or it would read as NULL
            or self._needs_quote(value)
            or (self._ncols == 1 and value == b"\\.")  # or as the end-of-data marker
        ):
            return self._quote + self._escape(self._escape_one, value) + self._quote
        return value


def _one_byte(what: str, char: str) -> bytes:
    encoded = char.encode()
    if len(encoded) != 1:
        raise ValueError(f"COPY {what} must be a single one-byte character, not {char!r}")
    return encoded
