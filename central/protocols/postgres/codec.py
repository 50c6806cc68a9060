"""Sans-io codec for the PostgreSQL wire protocol (3.0, with the 3.2 additions of PostgreSQL 18).

Three layers, none of which touches a socket:

- `FrameReader` splits a byte stream into `Frame`s (type byte + the whole message as it
  arrived), so a proxy can look at the type and relay `frame.raw` untouched, decoding only the
  messages it has to inspect.
- `decode_frontend` / `decode_backend` turn a frame into a message from `messages.py`. They are
  strict: whatever PostgreSQL would reject, or could read differently from us, is a
  `ProtocolError`, because a gateway that parses leniently can be made to check one thing while
  the server executes another.
- `encode` turns any message back into bytes; `decode(encode(m)) == m` for every message that
  encodes.

`ProtocolError` is the only exception any of them raises for bad input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from central.protocols.postgres.messages import (
    Authentication,
    BackendKeyData,
    BackendMessage,
    Bind,
    BindComplete,
    CancelRequest,
    Close,
    CloseComplete,
    CommandComplete,
    CopyBothResponse,
    CopyData,
    CopyDone,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    Describe,
    EmptyQueryResponse,
    ErrorResponse,
    Execute,
    FieldDescription,
    Flush,
    FrontendMessage,
    FunctionCall,
    FunctionCallResponse,
    GSSENCRequest,
    Message,
    NegotiateProtocolVersion,
    NoData,
    NoticeResponse,
    NotificationResponse,
    ParameterDescription,
    ParameterStatus,
    Parse,
    ParseComplete,
    PasswordMessage,
    PortalSuspended,
    Query,
    ReadyForQuery,
    RowDescription,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)


class ProtocolError(Exception):
    """The peer (or a message handed to `encode`) broke the protocol; the text is one line."""


DEFAULT_MAX_SIZE: Final = 64 * 1024 * 1024

# PostgreSQL's own MAX_STARTUP_PACKET_LENGTH. The startup packet comes before authentication,
# so an anonymous peer must not be able to make us buffer more than this.
MAX_STARTUP_SIZE: Final = 10_000

# PostgreSQL 18 (protocol 3.2) lets the cancel key grow from 4 bytes up to 256.
_MIN_SECRET, _MAX_SECRET = 4, 256

_HEADER = struct.Struct("!BI").unpack_from
_PACK_HEADER = struct.Struct("!BI").pack
_U32 = struct.Struct("!I").unpack_from
_I32 = struct.Struct("!i").unpack_from
_U16 = struct.Struct("!H").unpack_from
_PACK_U32 = struct.Struct("!I").pack
_PACK_I32 = struct.Struct("!i").pack
_PACK_U16 = struct.Struct("!H").pack
_PACK_U32_INTO = struct.Struct("!I").pack_into
_FIELD = struct.Struct("!IhIhih")  # RowDescription field after its name
_NULL: Final = b"\xff\xff\xff\xff"  # length -1: SQL NULL

# Startup-phase states of a FrameReader.
_FIRST, _AFTER_GSS, _AFTER_SSL, _TYPED, _CANCELLED = range(5)


@dataclass(frozen=True, slots=True)
class Frame:
    """One message as it arrived.

    `type` is the type byte, or 0 for the untyped startup-phase messages (StartupMessage,
    SSLRequest, GSSENCRequest, CancelRequest). `raw` is the complete message, type byte and
    length included, ready to relay unchanged.
    """

    type: int
    raw: bytes

    @property
    def payload(self) -> memoryview:
        """The body after the length field, as a read-only memoryview (no copy).

        For untyped frames it starts with the 32-bit protocol or request code.
        """
        return memoryview(self.raw)[5 if self.type else 4 :]


_new_frame = object.__new__
_set_type = Frame.__dict__["type"].__set__
_set_raw = Frame.__dict__["raw"].__set__


class FrameReader:
    """Splits a byte stream into frames; h11-style `receive_data` / `next_frame`.

    With `startup=True` (the client side of a connection) the stream begins with untyped
    frames: SSLRequest or GSSENCRequest (each followed by another untyped frame, the real
    startup, once the encryption is negotiated), CancelRequest (after which nothing may follow),
    or StartupMessage, after which every frame is typed.

    Received chunks are kept as `bytes` and frames are sliced out of them (one copy per frame,
    which `Frame.raw` needs anyway); chunks are joined only when a frame straddles them and is
    complete, so a large message arriving in many pieces is copied once, not once per piece.
    """

    __slots__ = (
        "_buf",
        "_chunks",
        "_eof",
        "_extra",
        "_max_size",
        "_phase",
        "_pos",
        "_sample_left",
        "_typed",
    )

    def __init__(self, *, startup: bool = False, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._buf = b""  # current chunk; frames before _pos are consumed
        self._pos = 0
        self._chunks: list[bytes] = []  # data received after _buf, not yet joined
        self._extra = 0  # total length of _chunks
        self._eof = False
        self._max_size = max_size
        self._phase = _FIRST if startup else _TYPED
        self._typed = not startup
        self._sample_left = 0  # scan(): counted frames still to hand out as events

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned in a frame."""
        return len(self._buf) - self._pos + self._extra

    @property
    def at_eof(self) -> bool:
        """The peer closed the stream and every frame has been read."""
        return self._eof and not self.buffered

    @property
    def in_startup(self) -> bool:
        """The next frame is an untyped startup-phase frame."""
        return self._phase in (_FIRST, _AFTER_GSS, _AFTER_SSL)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer; `b""` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise ProtocolError("data received after end of stream")
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer; frames must not change
        if self._pos >= len(self._buf) and not self._chunks:
            self._buf = data
            self._pos = 0
        else:
            self._chunks.append(data)
            self._extra += len(data)

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more data arrives (or at a clean EOF)."""
        if self._typed:
            # Fast path: a whole typed frame inside the current chunk.
            buf = self._buf
            pos = self._pos
            n = len(buf)
            if n - pos >= 5:
                typ, length = _HEADER(buf, pos)
                end = pos + 1 + length
                if end <= n and typ and 4 <= length <= self._max_size:
                    self._pos = end
                    # Frame(typ, raw) without the frozen dataclass __init__, which assigns
                    # through object.__setattr__ and would double the cost of a small frame.
                    frame = _new_frame(Frame)
                    _set_type(frame, typ)
                    _set_raw(frame, buf[pos:end])
                    return frame
            elif pos == n and not self._extra:
                return None  # drained: how every read ends
        return self._next_frame_slow()

    def frames(self) -> Iterator[Frame]:
        """Every complete frame available now."""
        next_frame = self.next_frame
        while (frame := next_frame()) is not None:
            yield frame

    def scan(
        self, tracked: frozenset[int], counted: int, sample: int = 0
    ) -> tuple[bytes, list[tuple[int, int, Frame]], int]:
        """Consume every complete frame at once, for a relay that forwards them unchanged.

        Returns the bytes of those frames (to write on), the frames whose type is in `tracked`
        as `(end offset in those bytes, frames of type `counted` since the previous event,
        frame)`, and the number of `counted` frames after the last event. The first `sample`
        frames of type `counted` after each tracked frame are events too (counted in no
        count), also across calls. Only events are materialised: a result of a million
        DataRows is walked header by header and forwarded as slices of the chunks it arrived
        in.
        """
        events: list[tuple[int, int, Frame]] = []
        parts: list[bytes] = []
        size = 0
        count = 0
        left = self._sample_left
        max_size = self._max_size
        while self._typed:
            buf, start = self._buf, self._pos
            pos, n = start, len(buf)
            while n - pos >= 5:
                typ, length = _HEADER(buf, pos)
                end = pos + 1 + length
                if end > n or not typ or not 4 <= length <= max_size:
                    break
                if typ in tracked or (typ == counted and left):
                    frame = _new_frame(Frame)
                    _set_type(frame, typ)
                    _set_raw(frame, buf[pos:end])
                    events.append((size + end - start, count, frame))
                    count = 0
                    left = sample if typ != counted else left - 1
                elif typ == counted:
                    count += 1
                pos = end
            if pos > start:
                self._pos = pos
                parts.append(buf[start:pos] if start or pos != n else buf)
                size += pos - start
            # A frame straddling chunks, or one the fast loop will not judge: the careful path.
            slow = self._next_frame_slow()
            if slow is None:
                break
            if slow.type in tracked or (slow.type == counted and left):
                events.append((size + len(slow.raw), count, slow))
                count = 0
                left = sample if slow.type != counted else left - 1
            elif slow.type == counted:
                count += 1
            parts.append(slow.raw)
            size += len(slow.raw)
        else:
            raise ProtocolError("scan() is for typed frames, after start-up")
        self._sample_left = left
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return data, events, count

    def take_run(self, typ: int) -> tuple[bytes, int, int, int] | None:
        """Consume the complete frames of type `typ` that come next in the current chunk.

        Returns `(buffer, start, end, count)`: `buffer[start:end]` is `count` (one or more)
        whole frames of that type, consumed. None when the next frame is of another type,
        incomplete, or straddles chunks (`next_frame` then returns it). For rewriting a run of
        DataRows without a Frame object per row.
        """
        if not self._typed:
            return None
        buf, start = self._buf, self._pos
        pos, n, max_size = start, len(buf), self._max_size
        count = 0
        while n - pos >= 5:
            t, length = _HEADER(buf, pos)
            end = pos + 1 + length
            if t != typ or end > n or not 4 <= length <= max_size:
                break
            pos = end
            count += 1
        if not count:
            return None
        self._pos = pos
        return buf, start, pos, count

    def next_byte(self) -> int | None:
        """One unframed byte: the server's single-byte answer ('S', 'N') to SSLRequest or
        GSSENCRequest. None until it arrives."""
        if not self._contiguous(1):
            self._check_eof()
            return None
        byte = self._buf[self._pos]
        self._pos += 1
        return byte

    def _next_frame_slow(self) -> Frame | None:
        if self._phase == _CANCELLED:
            if self.buffered:
                raise ProtocolError("data received after CancelRequest")
            return None
        typed = self._typed
        if not self._contiguous(5 if typed else 4):
            self._check_eof()
            return None
        buf, pos = self._buf, self._pos
        if typed:
            typ, length = _HEADER(buf, pos)
            if typ == 0:
                # No message has type 0, and Frame.type 0 means "untyped startup frame":
                # letting it through would let a client replay a StartupMessage mid-session.
                raise ProtocolError("message type 0x00 is not valid")
            if length < 4:
                raise ProtocolError(f"message length {length} is below the minimum 4")
            # Checked before the body arrives, so an oversize message is never buffered.
            if length > self._max_size:
                raise ProtocolError(
                    f"message of {length} bytes exceeds the {self._max_size}-byte limit"
                )
            size = length + 1
        else:
            typ = 0
            (size,) = _U32(buf, pos)
            if size < 8:
                raise ProtocolError(f"startup packet length {size} is below the minimum 8")
            limit = min(MAX_STARTUP_SIZE, self._max_size)
            if size > limit:
                raise ProtocolError(
                    f"startup packet of {size} bytes exceeds the {limit}-byte limit"
                )
        if not self._contiguous(size):
            self._check_eof()
            return None
        buf, pos = self._buf, self._pos
        end = pos + size
        self._pos = end
        raw = buf[pos:end]
        if not typed:
            self._after_startup_frame(raw)
        return Frame(typ, raw)

    def _after_startup_frame(self, raw: bytes) -> None:
        (code,) = _U32(raw, 4)
        phase = self._phase
        if code == CancelRequest.CODE:
            self._phase = _CANCELLED
            return
        if code == SSLRequest.CODE:
            # After GSSENCRequest is declined a client may still try TLS; never twice.
            if phase == _AFTER_SSL:
                raise ProtocolError("SSLRequest received twice")
            self._phase = _AFTER_SSL
            request = "SSLRequest"
        elif code == GSSENCRequest.CODE:
            if phase != _FIRST:
                raise ProtocolError("GSSENCRequest received after encryption negotiation")
            self._phase = _AFTER_GSS
            request = "GSSENCRequest"
        elif code >> 16 == 3:
            self._phase = _TYPED
            self._typed = True
            return
        else:
            raise ProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
        # The client must wait for our one-byte answer before it sends anything else. Bytes
        # already here were sent in plaintext and would be taken as if they had arrived over
        # the encrypted channel (CVE-2021-23214): refuse, as PostgreSQL does.
        if self.buffered:
            raise ProtocolError(f"received unencrypted data after {request}")

    def _contiguous(self, size: int) -> bool:
        """Make `size` bytes at _pos contiguous in _buf, if that many have arrived."""
        have = len(self._buf) - self._pos
        if have >= size:
            return True
        if have + self._extra < size:
            return False
        chunks = self._chunks
        if have == 0 and len(chunks) == 1:
            self._buf = chunks[0]
        else:
            self._buf = b"".join([memoryview(self._buf)[self._pos :], *chunks])
        self._pos = 0
        chunks.clear()
        self._extra = 0
        return True

    def _check_eof(self) -> None:
        if self._eof and self.buffered:
            raise ProtocolError(
                f"stream ended inside a message ({self.buffered} bytes left unread)"
            )


# --- Decoding -------------------------------------------------------------------------------------


class _Malformed(Exception):
    """Raised by the body decoders; the caller adds the message name."""


def _cstr(raw: bytes, pos: int) -> tuple[str, int]:
    end = raw.find(0, pos)
    if end < 0:
        raise _Malformed("missing NUL terminator")
    return raw[pos:end].decode(), end + 1


def _only_cstr(raw: bytes) -> str:
    """A body that is exactly one string."""
    last = len(raw) - 1
    if last < 5 or raw[last] != 0:
        raise _Malformed("missing NUL terminator")
    if raw.find(0, 5) != last:
        raise _Malformed("trailing bytes")
    return raw[5:last].decode()


def _done(raw: bytes, pos: int) -> None:
    if pos != len(raw):
        raise _Malformed("trailing bytes" if pos < len(raw) else "truncated data")


def _empty(message: Any) -> Callable[[bytes], Any]:
    def decode(raw: bytes) -> Any:
        if len(raw) != 5:
            raise _Malformed("trailing bytes")
        return message

    return decode


def _formats(raw: bytes, pos: int) -> tuple[tuple[int, ...], int]:
    """An int16 count followed by that many int16 format codes."""
    (count,) = _U16(raw, pos)
    pos += 2
    end = pos + 2 * count
    if end > len(raw):
        raise _Malformed("format codes overrun the message")
    formats = struct.unpack_from(f"!{count}h", raw, pos)
    _check_formats(formats)
    return formats, end


def _check_formats(formats: tuple[int, ...]) -> None:
    for f in formats:
        if f != 0 and f != 1:
            raise _Malformed(f"format code {f}")


def _oids(raw: bytes, pos: int) -> tuple[int, ...]:
    """An int16 count followed by that many OIDs, ending the message."""
    (count,) = _U16(raw, pos)
    pos += 2
    if pos + 4 * count != len(raw):
        raise _Malformed("OID count does not match the length")
    return struct.unpack_from(f"!{count}I", raw, pos)


def _value(raw: bytes, pos: int) -> tuple[bytes | None, int]:
    """An int32 length (-1 for NULL) followed by that many bytes."""
    (size,) = _I32(raw, pos)
    pos += 4
    if size < 0:
        if size != -1:
            raise _Malformed(f"value length {size}")
        return None, pos
    end = pos + size
    if end > len(raw):
        raise _Malformed("value overruns the message")
    return raw[pos:end], end


def _check_secret(secret: bytes) -> None:
    if not _MIN_SECRET <= len(secret) <= _MAX_SECRET:
        raise _Malformed(f"cancel key of {len(secret)} bytes")


def _check_kind(kind: str | int) -> None:
    if kind not in ("S", "P", 0x53, 0x50):
        shown = chr(kind) if isinstance(kind, int) else kind
        raise _Malformed(f"kind {shown!r} (expected 'S' or 'P')")


def _decode_startup(raw: bytes) -> FrontendMessage:
    (code,) = _U32(raw, 4)
    if code == SSLRequest.CODE or code == GSSENCRequest.CODE:
        if len(raw) != 8:
            raise _Malformed("length is not 8")
        return _SSL_REQUEST if code == SSLRequest.CODE else _GSSENC_REQUEST
    if code == CancelRequest.CODE:
        (pid,) = _U32(raw, 8)
        secret = raw[12:]
        _check_secret(secret)
        return CancelRequest(pid, secret)
    if code >> 16 != 3:
        raise _Malformed(f"unsupported protocol {code >> 16}.{code & 0xFFFF}")
    params: dict[str, str] = {}
    pos = 8
    while True:
        if pos >= len(raw):
            raise _Malformed("missing terminator")
        if raw[pos] == 0:
            pos += 1
            break
        name, pos = _cstr(raw, pos)
        value, pos = _cstr(raw, pos)
        # PostgreSQL keeps the last "user" or "database" it sees; a checker that read the
        # first one would authorize a different identity than the server logs in.
        if name in params:
            raise _Malformed(f"duplicate parameter {name!r}")
        params[name] = value
    _done(raw, pos)
    return StartupMessage(code, params)


def _decode_parse(raw: bytes) -> Parse:
    name, pos = _cstr(raw, 5)
    sql, pos = _cstr(raw, pos)
    return Parse(name, sql, _oids(raw, pos))


def _decode_bind(raw: bytes) -> Bind:
    portal, pos = _cstr(raw, 5)
    statement, pos = _cstr(raw, pos)
    param_formats, pos = _formats(raw, pos)
    (count,) = _U16(raw, pos)
    pos += 2
    params: list[bytes | None] = []
    append = params.append
    for _ in range(count):
        value, pos = _value(raw, pos)
        append(value)
    # PostgreSQL refuses any other count; accepting one would leave the gateway guessing
    # whether a parameter is text or binary while it records or checks it.
    if len(param_formats) not in (0, 1, count):
        raise _Malformed(f"{len(param_formats)} parameter formats for {count} parameters")
    result_formats, pos = _formats(raw, pos)
    _done(raw, pos)
    return Bind(portal, statement, param_formats, tuple(params), result_formats)


def _decode_describe(raw: bytes) -> Describe:
    kind = raw[5]
    _check_kind(kind)
    name, pos = _cstr(raw, 6)
    _done(raw, pos)
    return Describe(chr(kind), name)


def _decode_close(raw: bytes) -> Close:
    kind = raw[5]
    _check_kind(kind)
    name, pos = _cstr(raw, 6)
    _done(raw, pos)
    return Close(chr(kind), name)


def _decode_execute(raw: bytes) -> Execute:
    portal, pos = _cstr(raw, 5)
    (max_rows,) = _I32(raw, pos)
    _done(raw, pos + 4)
    return Execute(portal, max_rows)


def _check_auth(code: int, data: bytes) -> None:
    if code in _AUTH_EMPTY:
        if data:
            raise _Malformed(f"unexpected data for request {code}")
    elif code == Authentication.MD5:
        if len(data) != 4:
            raise _Malformed(f"MD5 salt of {len(data)} bytes")
    elif code == Authentication.SASL:
        _parse_mechanisms(data)
    elif code not in _AUTH_OPAQUE:
        raise _Malformed(f"unknown request code {code}")


def _parse_mechanisms(data: bytes) -> tuple[str, ...]:
    names = []
    pos = 0
    while True:
        if pos >= len(data):
            raise _Malformed("missing terminator after the mechanism list")
        if data[pos] == 0:
            break
        name, pos = _cstr(data, pos)
        names.append(name)
    if pos + 1 != len(data):
        raise _Malformed("trailing bytes")
    return tuple(names)


_AUTH_EMPTY: Final = frozenset(
    {
        Authentication.OK,
        Authentication.KERBEROS_V5,
        Authentication.CLEARTEXT,
        Authentication.GSS,
        Authentication.SSPI,
    }
)
_AUTH_OPAQUE: Final = frozenset(
    {Authentication.GSS_CONTINUE, Authentication.SASL_CONTINUE, Authentication.SASL_FINAL}
)


def _decode_authentication(raw: bytes) -> Authentication:
    (code,) = _I32(raw, 5)
    data = raw[9:]
    _check_auth(code, data)
    return Authentication(code, data)


def _decode_parameter_status(raw: bytes) -> ParameterStatus:
    name, pos = _cstr(raw, 5)
    value, pos = _cstr(raw, pos)
    _done(raw, pos)
    return ParameterStatus(name, value)


def _decode_backend_key_data(raw: bytes) -> BackendKeyData:
    (pid,) = _U32(raw, 5)
    secret = raw[9:]
    _check_secret(secret)
    return BackendKeyData(pid, secret)


def _decode_ready_for_query(raw: bytes) -> ReadyForQuery:
    if len(raw) != 6:
        raise _Malformed("length is not 5")
    status = raw[5]
    if status not in b"ITE":
        raise _Malformed(f"transaction status 0x{status:02x}")
    return ReadyForQuery(chr(status))


def _decode_row_description(raw: bytes) -> RowDescription:
    (count,) = _U16(raw, 5)
    pos = 7
    fields = []
    unpack = _FIELD.unpack_from
    for _ in range(count):
        name, pos = _cstr(raw, pos)
        table_oid, column, type_oid, type_size, type_modifier, fmt = unpack(raw, pos)
        pos += 18
        if fmt != 0 and fmt != 1:
            raise _Malformed(f"format code {fmt}")
        fields.append(
            FieldDescription(name, table_oid, column, type_oid, type_size, type_modifier, fmt)
        )
    _done(raw, pos)
    return RowDescription(tuple(fields))


def _decode_data_row(raw: bytes) -> DataRow:
    # The hot path of every result set: inlined rather than calling _value per column.
    (count,) = _U16(raw, 5)
    pos = 7
    n = len(raw)
    values: list[bytes | None] = []
    append = values.append
    i32 = _I32
    for _ in range(count):
        (size,) = i32(raw, pos)
        pos += 4
        if size < 0:
            if size != -1:
                raise _Malformed(f"value length {size}")
            append(None)
        else:
            end = pos + size
            if end > n:
                raise _Malformed("value overruns the message")
            append(raw[pos:end])
            pos = end
    if pos != n:
        raise _Malformed("trailing bytes")
    row = _new_row(DataRow)  # DataRow(...) minus the frozen __init__, as for Frame
    _set_values(row, tuple(values))
    return row


_new_row = object.__new__
_set_values = DataRow.__dict__["values"].__set__


def _decode_fields(raw: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 5
    while True:
        code = raw[pos]
        pos += 1
        if code == 0:
            break
        value, pos = _cstr(raw, pos)
        key = chr(code)
        # The server never repeats a field; a message that does is not one we can show as-is.
        if key in fields:
            raise _Malformed(f"duplicate field {key!r}")
        fields[key] = value
    _done(raw, pos)
    return fields


def _decode_notification(raw: bytes) -> NotificationResponse:
    (pid,) = _U32(raw, 5)
    channel, pos = _cstr(raw, 9)
    payload, pos = _cstr(raw, pos)
    _done(raw, pos)
    return NotificationResponse(pid, channel, payload)


def _copy_response(raw: bytes) -> tuple[int, tuple[int, ...]]:
    fmt = raw[5]
    formats, pos = _formats(raw, 6)
    _done(raw, pos)
    _check_copy_formats(fmt, formats)
    return fmt, formats


def _check_copy_formats(fmt: int, formats: tuple[int, ...]) -> None:
    if fmt != 0 and fmt != 1:
        raise _Malformed(f"format code {fmt}")
    _check_formats(formats)
    # The documentation requires all-text columns under an overall text format.
    if fmt == 0 and any(formats):
        raise _Malformed("binary column in a text-format COPY")


def _decode_negotiate(raw: bytes) -> NegotiateProtocolVersion:
    minor, count = struct.unpack_from("!II", raw, 5)
    pos = 13
    options = []
    # Each name takes at least one byte, so a huge bogus count fails at the end of the body.
    for _ in range(count):
        option, pos = _cstr(raw, pos)
        options.append(option)
    _done(raw, pos)
    return NegotiateProtocolVersion(minor, tuple(options))


def _decode_function_call_response(raw: bytes) -> FunctionCallResponse:
    value, pos = _value(raw, 5)
    _done(raw, pos)
    return FunctionCallResponse(value)


_SSL_REQUEST: Final = SSLRequest()
_GSSENC_REQUEST: Final = GSSENCRequest()

_Decoder = Callable[[bytes], Any]

_STARTUP_NAMES: Final = {
    SSLRequest.CODE: "SSLRequest",
    GSSENCRequest.CODE: "GSSENCRequest",
    CancelRequest.CODE: "CancelRequest",
}

_FRONTEND: Final[dict[int, tuple[str, _Decoder]]] = {
    ord("Q"): ("Query", lambda raw: Query(_only_cstr(raw))),
    ord("P"): ("Parse", _decode_parse),
    ord("B"): ("Bind", _decode_bind),
    ord("D"): ("Describe", _decode_describe),
    ord("E"): ("Execute", _decode_execute),
    ord("S"): ("Sync", _empty(Sync())),
    ord("H"): ("Flush", _empty(Flush())),
    ord("C"): ("Close", _decode_close),
    ord("X"): ("Terminate", _empty(Terminate())),
    ord("d"): ("CopyData", lambda raw: CopyData(raw[5:])),
    ord("c"): ("CopyDone", _empty(CopyDone())),
    ord("f"): ("CopyFail", lambda raw: CopyFail(_only_cstr(raw))),
    ord("F"): ("FunctionCall", lambda raw: FunctionCall(raw[5:])),
    ord("p"): ("PasswordMessage", lambda raw: PasswordMessage(raw[5:])),
}

_BACKEND: Final[dict[int, tuple[str, _Decoder]]] = {
    ord("R"): ("Authentication", _decode_authentication),
    ord("S"): ("ParameterStatus", _decode_parameter_status),
    ord("K"): ("BackendKeyData", _decode_backend_key_data),
    ord("Z"): ("ReadyForQuery", _decode_ready_for_query),
    ord("T"): ("RowDescription", _decode_row_description),
    ord("D"): ("DataRow", _decode_data_row),
    ord("C"): ("CommandComplete", lambda raw: CommandComplete(_only_cstr(raw))),
    ord("E"): ("ErrorResponse", lambda raw: ErrorResponse(_decode_fields(raw))),
    ord("N"): ("NoticeResponse", lambda raw: NoticeResponse(_decode_fields(raw))),
    ord("A"): ("NotificationResponse", _decode_notification),
    ord("1"): ("ParseComplete", _empty(ParseComplete())),
    ord("2"): ("BindComplete", _empty(BindComplete())),
    ord("3"): ("CloseComplete", _empty(CloseComplete())),
    ord("n"): ("NoData", _empty(NoData())),
    ord("s"): ("PortalSuspended", _empty(PortalSuspended())),
    ord("I"): ("EmptyQueryResponse", _empty(EmptyQueryResponse())),
    ord("t"): ("ParameterDescription", lambda raw: ParameterDescription(_oids(raw, 5))),
    ord("G"): ("CopyInResponse", lambda raw: CopyInResponse(*_copy_response(raw))),
    ord("H"): ("CopyOutResponse", lambda raw: CopyOutResponse(*_copy_response(raw))),
    ord("W"): ("CopyBothResponse", lambda raw: CopyBothResponse(*_copy_response(raw))),
    ord("d"): ("CopyData", lambda raw: CopyData(raw[5:])),
    ord("c"): ("CopyDone", _empty(CopyDone())),
    ord("v"): ("NegotiateProtocolVersion", _decode_negotiate),
    ord("V"): ("FunctionCallResponse", _decode_function_call_response),
}


def _startup_entry(raw: bytes) -> tuple[str, _Decoder]:
    if len(raw) < 8 or _U32(raw, 0)[0] != len(raw):
        raise ProtocolError("startup packet frame does not match its length field")
    return _STARTUP_NAMES.get(_U32(raw, 4)[0], "StartupMessage"), _decode_startup


def _run(name: str, decoder: _Decoder, raw: bytes) -> Any:
    try:
        return decoder(raw)
    except _Malformed as exc:
        raise ProtocolError(f"{exc} in {name} message") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"invalid UTF-8 in {name}") from None
    except (struct.error, IndexError):
        raise ProtocolError(f"truncated {name} message") from None


def decode_frontend(frame: Frame) -> FrontendMessage:
    """The message a client sent; ProtocolError if it is not exactly a valid one."""
    raw = frame.raw
    typ = frame.type
    if typ == 0:
        name, decoder = _startup_entry(raw)
    else:
        entry = _FRONTEND.get(typ)
        if entry is None:
            raise ProtocolError(f"client sent unknown message type 0x{typ:02x}")
        name, decoder = entry
        # Frames from FrameReader always agree with themselves; hand-built ones might not.
        if len(raw) < 5 or raw[0] != typ or _U32(raw, 1)[0] != len(raw) - 1:
            raise ProtocolError(f"{name} frame does not match its type byte and length field")
    message: FrontendMessage = _run(name, decoder, raw)
    return message


def decode_backend(frame: Frame) -> BackendMessage:
    """The message a server sent; ProtocolError if it is not exactly a valid one."""
    raw = frame.raw
    typ = frame.type
    entry = _BACKEND.get(typ)
    if entry is None:
        if typ == 0:
            raise ProtocolError("server sent an untyped startup-phase frame")
        raise ProtocolError(f"server sent unknown message type 0x{typ:02x}")
    name, decoder = entry
    if len(raw) < 5 or raw[0] != typ or _U32(raw, 1)[0] != len(raw) - 1:
        raise ProtocolError(f"{name} frame does not match its type byte and length field")
    # Inlined _run: this is on the path of every row a masking rule looks at.
    try:
        message: BackendMessage = decoder(raw)
    except _Malformed as exc:
        raise ProtocolError(f"{exc} in {name} message") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"invalid UTF-8 in {name}") from None
    except (struct.error, IndexError):
        raise ProtocolError(f"truncated {name} message") from None
    return message


# --- Payload parsers ------------------------------------------------------------------------------


def _parse(name: str, parser: Callable[[], Any]) -> Any:
    try:
        return parser()
    except _Malformed as exc:
        raise ProtocolError(f"{exc} in {name}") from None
    except UnicodeDecodeError:
        raise ProtocolError(f"invalid UTF-8 in {name}") from None
    except (struct.error, IndexError):
        raise ProtocolError(f"truncated {name}") from None


def sasl_mechanisms(message: Authentication) -> tuple[str, ...]:
    """The mechanisms an AuthenticationSASL request offers, most preferred first."""
    if message.code != Authentication.SASL:
        raise ProtocolError(f"authentication request {message.code} is not SASL")
    names: tuple[str, ...] = _parse("AuthenticationSASL", lambda: _parse_mechanisms(message.data))
    return names


def parse_password(message: PasswordMessage) -> str:
    """The text of a cleartext (or "md5"-prefixed) PasswordMessage."""

    def parse() -> str:
        data = message.data
        if not data or data.find(0) != len(data) - 1:
            raise _Malformed("missing or misplaced NUL terminator")
        return data[:-1].decode()

    text: str = _parse("PasswordMessage", parse)
    return text


def parse_sasl_initial_response(message: PasswordMessage) -> tuple[str, bytes | None]:
    """(mechanism, initial response) of a SASLInitialResponse; None when it sent none."""

    def parse() -> tuple[str, bytes | None]:
        data = message.data
        mechanism, pos = _cstr(data, 0)
        response, pos = _value(data, pos)
        _done(data, pos)
        return mechanism, response

    result: tuple[str, bytes | None] = _parse("SASLInitialResponse", parse)
    return result


# --- Encoding -------------------------------------------------------------------------------------


def _c(text: str) -> bytes:
    data = text.encode()
    if 0 in data:
        raise _Malformed("a string contains NUL")
    return data + b"\0"


def _framed(typ: int, body: bytes) -> bytes:
    return _PACK_HEADER(typ, len(body) + 4) + body


def _pack_formats(formats: tuple[int, ...]) -> bytes:
    _check_formats(formats)
    return _PACK_U16(len(formats)) + struct.pack(f"!{len(formats)}h", *formats)


def _pack_oids(oids: tuple[int, ...]) -> bytes:
    return _PACK_U16(len(oids)) + struct.pack(f"!{len(oids)}I", *oids)


def _pack_value(value: bytes | None) -> bytes:
    return _NULL if value is None else _PACK_I32(len(value)) + value


def _encode_startup(m: StartupMessage) -> bytes:
    if m.version >> 16 != 3:
        raise _Malformed(f"unsupported protocol {m.version >> 16}.{m.version & 0xFFFF}")
    # An empty name would read back as the end of the list.
    if "" in m.params:
        raise _Malformed("empty parameter name")
    body = _PACK_U32(m.version) + b"".join(_c(k) + _c(v) for k, v in m.params.items()) + b"\0"
    return _PACK_U32(len(body) + 4) + body


def _encode_cancel(m: CancelRequest) -> bytes:
    _check_secret(m.secret)
    return struct.pack("!III", 12 + len(m.secret), CancelRequest.CODE, m.pid) + m.secret


def _encode_bind(m: Bind) -> bytes:
    if len(m.param_formats) not in (0, 1, len(m.params)):
        raise _Malformed(f"{len(m.param_formats)} parameter formats for {len(m.params)} parameters")
    body = b"".join(
        [
            _c(m.portal),
            _c(m.statement),
            _pack_formats(m.param_formats),
            _PACK_U16(len(m.params)),
            *map(_pack_value, m.params),
            _pack_formats(m.result_formats),
        ]
    )
    return _framed(Bind.TYPE, body)


def _encode_kind_name(m: Describe | Close) -> bytes:
    _check_kind(m.kind)
    return _framed(m.TYPE, m.kind.encode() + _c(m.name))


def _encode_authentication(m: Authentication) -> bytes:
    _check_auth(m.code, m.data)
    return _framed(Authentication.TYPE, _PACK_I32(m.code) + m.data)


def _encode_backend_key_data(m: BackendKeyData) -> bytes:
    _check_secret(m.secret)
    return _framed(BackendKeyData.TYPE, _PACK_U32(m.pid) + m.secret)


def _encode_ready_for_query(m: ReadyForQuery) -> bytes:
    if m.status not in ("I", "T", "E"):
        raise _Malformed(f"transaction status {m.status!r}")
    return _framed(ReadyForQuery.TYPE, m.status.encode())


def _encode_row_description(m: RowDescription) -> bytes:
    pack = _FIELD.pack
    parts = [_PACK_U16(len(m.fields))]
    for f in m.fields:
        if f.format != 0 and f.format != 1:
            raise _Malformed(f"format code {f.format}")
        parts.append(_c(f.name))
        parts.append(
            pack(f.table_oid, f.column, f.type_oid, f.type_size, f.type_modifier, f.format)
        )
    return _framed(RowDescription.TYPE, b"".join(parts))


def _encode_data_row(m: DataRow) -> bytes:
    # Built in place: masking re-encodes every row it changes.
    out = bytearray(b"D\0\0\0\0")
    out += _PACK_U16(len(m.values))
    pack = _PACK_I32
    for value in m.values:
        if value is None:
            out += _NULL
        else:
            out += pack(len(value))
            out += value
    _PACK_U32_INTO(out, 1, len(out) - 1)
    return bytes(out)


def _encode_fields(m: ErrorResponse | NoticeResponse) -> bytes:
    parts = []
    for code, value in m.fields.items():
        if len(code) != 1 or not 0 < ord(code) < 256:
            raise _Malformed(f"field code {code!r}")
        parts.append(bytes([ord(code)]))
        parts.append(_c(value))
    parts.append(b"\0")
    return _framed(m.TYPE, b"".join(parts))


def _encode_copy_response(m: CopyInResponse | CopyOutResponse | CopyBothResponse) -> bytes:
    _check_copy_formats(m.format, m.column_formats)
    return _framed(m.TYPE, bytes([m.format]) + _pack_formats(m.column_formats))


def _encode_negotiate(m: NegotiateProtocolVersion) -> bytes:
    body = struct.pack("!II", m.minor, len(m.unrecognized))
    return _framed(NegotiateProtocolVersion.TYPE, body + b"".join(map(_c, m.unrecognized)))


def _constant(message_type: Any) -> Callable[[Any], bytes]:
    encoded = _PACK_HEADER(message_type.TYPE, 4)
    return lambda _m: encoded


_ENCODERS: Final[dict[type, Callable[[Any], bytes]]] = {
    StartupMessage: _encode_startup,
    SSLRequest: lambda _m: _PACK_U32(8) + _PACK_U32(SSLRequest.CODE),
    GSSENCRequest: lambda _m: _PACK_U32(8) + _PACK_U32(GSSENCRequest.CODE),
    CancelRequest: _encode_cancel,
    Query: lambda m: _framed(Query.TYPE, _c(m.sql)),
    Parse: lambda m: _framed(Parse.TYPE, _c(m.name) + _c(m.sql) + _pack_oids(m.param_types)),
    Bind: _encode_bind,
    Describe: _encode_kind_name,
    Execute: lambda m: _framed(Execute.TYPE, _c(m.portal) + _PACK_I32(m.max_rows)),
    Sync: _constant(Sync),
    Flush: _constant(Flush),
    Close: _encode_kind_name,
    Terminate: _constant(Terminate),
    CopyData: lambda m: _framed(CopyData.TYPE, m.data),
    CopyDone: _constant(CopyDone),
    CopyFail: lambda m: _framed(CopyFail.TYPE, _c(m.message)),
    FunctionCall: lambda m: _framed(FunctionCall.TYPE, m.payload),
    PasswordMessage: lambda m: _framed(PasswordMessage.TYPE, m.data),
    Authentication: _encode_authentication,
    ParameterStatus: lambda m: _framed(ParameterStatus.TYPE, _c(m.name) + _c(m.value)),
    BackendKeyData: _encode_backend_key_data,
    ReadyForQuery: _encode_ready_for_query,
    RowDescription: _encode_row_description,
    DataRow: _encode_data_row,
    CommandComplete: lambda m: _framed(CommandComplete.TYPE, _c(m.tag)),
    ErrorResponse: _encode_fields,
    NoticeResponse: _encode_fields,
    NotificationResponse: lambda m: _framed(
        NotificationResponse.TYPE, _PACK_U32(m.pid) + _c(m.channel) + _c(m.payload)
    ),
    ParseComplete: _constant(ParseComplete),
    BindComplete: _constant(BindComplete),
    CloseComplete: _constant(CloseComplete),
    NoData: _constant(NoData),
    PortalSuspended: _constant(PortalSuspended),
    EmptyQueryResponse: _constant(EmptyQueryResponse),
    ParameterDescription: lambda m: _framed(ParameterDescription.TYPE, _pack_oids(m.types)),
    CopyInResponse: _encode_copy_response,
    CopyOutResponse: _encode_copy_response,
    CopyBothResponse: _encode_copy_response,
    NegotiateProtocolVersion: _encode_negotiate,
    FunctionCallResponse: lambda m: _framed(FunctionCallResponse.TYPE, _pack_value(m.value)),
}


def encode(message: Message) -> bytes:
    """The wire bytes of `message` (either direction).

    ProtocolError if it cannot be sent as is: a NUL inside a string, a number or count out of
    range, or a field that `decode_*` would refuse (so whatever encodes also decodes).
    """
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise ProtocolError(f"{type(message).__name__} is not a PostgreSQL message")
    try:
        return encoder(message)
    except _Malformed as exc:
        raise ProtocolError(f"cannot encode {type(message).__name__}: {exc}") from None
    except UnicodeEncodeError:
        raise ProtocolError(
            f"cannot encode {type(message).__name__}: a string is not valid Unicode text"
        ) from None
    except (struct.error, OverflowError):
        raise ProtocolError(
            f"cannot encode {type(message).__name__}: a number or count is out of range"
        ) from None
