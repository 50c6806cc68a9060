"""Playbook tests for the PostgreSQL codec: exact bytes in, exact messages out, and back.

The byte strings are written out field by field from the protocol documentation
(https://www.postgresql.org/docs/current/protocol-message-formats.html), not produced by the
encoder under test; `test_real_server_*` checks the same codec against a live PostgreSQL.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import unquote, urlsplit

import pytest

from central.protocols.postgres.codec import (
    MAX_STARTUP_SIZE,
    Frame,
    FrameReader,
    ProtocolError,
    decode_backend,
    decode_frontend,
    encode,
    parse_password,
    parse_sasl_initial_response,
    sasl_mechanisms,
)
from central.protocols.postgres.messages import (
    PROTOCOL_3_0,
    PROTOCOL_3_2,
    Authentication,
    BackendKeyData,
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
    authentication_sasl,
    error_response,
    notice_response,
    password,
    sasl_initial_response,
    sasl_response,
    startup_message,
)
from tests.support.pgtemp import admin_url


def be32(n: int) -> bytes:
    return n.to_bytes(4, "big", signed=n < 0)


def be16(n: int) -> bytes:
    return n.to_bytes(2, "big", signed=n < 0)


# --- Real byte sequences --------------------------------------------------------------------------

STARTUP_ALICE = (
    b"\x00\x00\x00\x22"  # length 34, itself included
    b"\x00\x03\x00\x00"  # protocol 3.0
    b"user\x00alice\x00"
    b"database\x00shop\x00"
    b"\x00"  # end of parameters
)
SSL_REQUEST = b"\x00\x00\x00\x08" + b"\x04\xd2\x16\x2f"  # 80877103
GSSENC_REQUEST = b"\x00\x00\x00\x08" + b"\x04\xd2\x16\x30"  # 80877104
CANCEL_REQUEST = b"\x00\x00\x00\x10" + b"\x04\xd2\x16\x2e" + be32(4242) + b"\x0b\xad\xca\xfe"

PGBENCH_SQL = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1;"
# What libpq sends for pgbench -M extended: unnamed statement and portal, one text parameter,
# one text result format, all pipelined before Sync.
EXTENDED_BATCH = [
    b"P" + be32(61) + b"\x00" + PGBENCH_SQL + b"\x00" + be16(0),
    b"B"
    + be32(23)
    + b"\x00"
    + b"\x00"
    + be16(0)
    + be16(1)
    + be32(5)
    + b"12345"
    + be16(1)
    + be16(0),
    b"D" + be32(6) + b"P\x00",
    b"E" + be32(9) + b"\x00" + be32(0),
    b"S" + be32(4),
]
EXTENDED_MESSAGES: list[Message] = [
    Parse("", PGBENCH_SQL.decode(), ()),
    Bind("", "", (), (b"12345",), (0,)),
    Describe("P", ""),
    Execute("", 0),
    Sync(),
]

# The server's answer to pgbench -S: one int4 column from table OID 16397, attribute 3.
SELECT_RESPONSE = [
    b"T"
    + be32(33)
    + be16(1)
    # name, table OID, column, type OID (int4), size, modifier, format
    + b"abalance\x00"
    + be32(16397)
    + be16(3)
    + be32(23)
    + be16(4)
    + be32(-1)
    + be16(0),
    b"D" + be32(15) + be16(1) + be32(5) + b"-2417",
    b"C" + be32(13) + b"SELECT 1\x00",
    b"Z" + be32(5) + b"I",
]
SELECT_MESSAGES: list[Message] = [
    RowDescription((FieldDescription("abalance", 16397, 3, 23, 4, -1, 0),)),
    DataRow((b"-2417",)),
    CommandComplete("SELECT 1"),
    ReadyForQuery("I"),
]


def raises(message: str) -> pytest.RaisesExc[ProtocolError]:
    """Expect a ProtocolError with exactly this text."""
    return pytest.raises(ProtocolError, match=f"^{re.escape(message)}$")


def msg(tag: bytes, body: bytes) -> bytes:
    """A typed message: type byte, length (itself included), body."""
    return tag + be32(len(body) + 4) + body


def read_all(data: bytes, *, startup: bool = False, max_size: int | None = None) -> list[Frame]:
    reader = FrameReader(startup=startup) if max_size is None else FrameReader(max_size=max_size)
    reader.receive_data(data)
    return list(reader.frames())


def frame_of(raw: bytes) -> Frame:
    """A frame as FrameReader would produce it, for a single complete message."""
    (frame,) = read_all(raw, startup=raw[0] == 0)
    return frame


# --- Startup phase --------------------------------------------------------------------------------


def test_startup_message_in_and_out() -> None:
    reader = FrameReader(startup=True)
    assert reader.in_startup
    reader.receive_data(STARTUP_ALICE + b"Q" + be32(13) + b"SELECT 1\x00")
    startup = reader.next_frame()
    assert startup == Frame(0, STARTUP_ALICE)
    message = decode_frontend(startup)
    assert message == StartupMessage(PROTOCOL_3_0, {"user": "alice", "database": "shop"})
    assert isinstance(message, StartupMessage)
    assert message.params["user"] == "alice"
    assert encode(message) == STARTUP_ALICE
    assert encode(startup_message({"user": "alice", "database": "shop"})) == STARTUP_ALICE
    # After a StartupMessage every frame is typed.
    assert not reader.in_startup
    query = reader.next_frame()
    assert query is not None and query.type == ord("Q")
    assert decode_frontend(query) == Query("SELECT 1")
    assert reader.next_frame() is None


def test_startup_message_for_protocol_3_2_is_accepted() -> None:
    raw = be32(17) + be32(PROTOCOL_3_2) + b"user\x00bo\x00\x00"
    assert decode_frontend(frame_of(raw)) == StartupMessage(PROTOCOL_3_2, {"user": "bo"})


def test_ssl_request_then_startup() -> None:
    reader = FrameReader(startup=True)
    reader.receive_data(SSL_REQUEST)
    frame = reader.next_frame()
    assert frame == Frame(0, SSL_REQUEST)
    assert decode_frontend(frame) == SSLRequest()
    assert encode(SSLRequest()) == SSL_REQUEST
    # Still untyped: the real startup comes once TLS is up (or refused).
    assert reader.in_startup
    reader.receive_data(STARTUP_ALICE)
    assert reader.next_frame() == Frame(0, STARTUP_ALICE)
    assert not reader.in_startup


def test_gssenc_request_then_ssl_request_then_startup() -> None:
    reader = FrameReader(startup=True)
    for raw, message in ((GSSENC_REQUEST, GSSENCRequest()), (SSL_REQUEST, SSLRequest())):
        reader.receive_data(raw)
        frame = reader.next_frame()
        assert frame is not None and decode_frontend(frame) == message
        assert encode(message) == raw
    reader.receive_data(STARTUP_ALICE)
    assert reader.next_frame() == Frame(0, STARTUP_ALICE)


@pytest.mark.parametrize(
    ("first", "second", "error"),
    [
        (SSL_REQUEST, SSL_REQUEST, "SSLRequest received twice"),
        (SSL_REQUEST, GSSENC_REQUEST, "GSSENCRequest received after encryption negotiation"),
        (GSSENC_REQUEST, GSSENC_REQUEST, "GSSENCRequest received after encryption negotiation"),
    ],
)
def test_repeated_encryption_requests_are_refused(first: bytes, second: bytes, error: str) -> None:
    reader = FrameReader(startup=True)
    reader.receive_data(first)
    assert reader.next_frame() is not None
    reader.receive_data(second)
    with raises(error):
        reader.next_frame()


@pytest.mark.parametrize(
    ("request_bytes", "name"), [(SSL_REQUEST, "SSLRequest"), (GSSENC_REQUEST, "GSSENCRequest")]
)
def test_plaintext_pipelined_after_encryption_request_is_refused(
    request_bytes: bytes, name: str
) -> None:
    # CVE-2021-23214: bytes sent before the TLS handshake must not be read as if encrypted.
    reader = FrameReader(startup=True)
    reader.receive_data(request_bytes + STARTUP_ALICE)
    with raises(f"received unencrypted data after {name}"):
        reader.next_frame()


def test_cancel_request() -> None:
    reader = FrameReader(startup=True)
    reader.receive_data(CANCEL_REQUEST)
    frame = reader.next_frame()
    assert frame == Frame(0, CANCEL_REQUEST)
    assert decode_frontend(frame) == CancelRequest(4242, b"\x0b\xad\xca\xfe")
    assert encode(CancelRequest(4242, b"\x0b\xad\xca\xfe")) == CANCEL_REQUEST
    assert reader.next_frame() is None
    # Nothing may follow a CancelRequest.
    reader.receive_data(b"X")
    with raises("data received after CancelRequest"):
        reader.next_frame()


def test_cancel_request_with_a_protocol_3_2_long_key() -> None:
    key = bytes(range(32))
    raw = be32(12 + 32) + be32(80877102) + be32(7) + key
    assert decode_frontend(frame_of(raw)) == CancelRequest(7, key)
    assert encode(CancelRequest(7, key)) == raw


@pytest.mark.parametrize("key_size", [3, 257])
def test_cancel_key_size_is_bounded(key_size: int) -> None:
    raw = be32(12 + key_size) + be32(80877102) + be32(7) + b"k" * key_size
    with raises(f"cancel key of {key_size} bytes in CancelRequest message"):
        decode_frontend(frame_of(raw))
    with raises(f"cannot encode CancelRequest: cancel key of {key_size} bytes"):
        encode(CancelRequest(7, b"k" * key_size))


def test_unsupported_protocol_version_is_refused_by_the_reader() -> None:
    reader = FrameReader(startup=True)
    reader.receive_data(be32(9) + be32(2 << 16) + b"\x00")
    with raises("unsupported frontend protocol 2.0"):
        reader.next_frame()


def test_startup_packet_size_limits() -> None:
    reader = FrameReader(startup=True)
    # Refused on the length field alone: an anonymous client cannot make us buffer the body.
    reader.receive_data(be32(MAX_STARTUP_SIZE + 1))
    with raises("startup packet of 10001 bytes exceeds the 10000-byte limit"):
        reader.next_frame()
    reader = FrameReader(startup=True)
    reader.receive_data(be32(7) + b"\x00\x03\x00")
    with raises("startup packet length 7 is below the minimum 8"):
        reader.next_frame()


def packet(body: bytes) -> bytes:
    """An untyped startup-phase packet: its length, then `body`."""
    return be32(len(body) + 4) + body


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (packet(be32(PROTOCOL_3_0) + b"\x00"), None),
        (
            packet(be32(PROTOCOL_3_0) + b"user\x00alice\x00"),
            "missing terminator in StartupMessage message",
        ),
        (
            packet(be32(PROTOCOL_3_0) + b"user\x00alice\x00\x00\x00"),
            "trailing bytes in StartupMessage message",
        ),
        (
            packet(be32(PROTOCOL_3_0) + b"user\x00alice"),
            "missing NUL terminator in StartupMessage message",
        ),
        (
            # PostgreSQL would log in the last "user"; refusing keeps gateway and server agreed.
            packet(be32(PROTOCOL_3_0) + b"user\x00a\x00user\x00b\x00\x00"),
            "duplicate parameter 'user' in StartupMessage message",
        ),
        (
            packet(be32(PROTOCOL_3_0) + b"user\x00\xffbc\x00\x00"),
            "invalid UTF-8 in StartupMessage",
        ),
        (packet(be32(80877103) + b"\x00" * 4), "length is not 8 in SSLRequest message"),
        (packet(be32(80877102)), "truncated CancelRequest message"),
        (packet(be32(2 << 16) + b"\x00"), "unsupported protocol 2.0 in StartupMessage message"),
    ],
)
def test_malformed_startup_packets(raw: bytes, error: str | None) -> None:
    if error is None:
        assert decode_frontend(Frame(0, raw)) == StartupMessage(PROTOCOL_3_0, {})
        return
    with raises(error):
        decode_frontend(Frame(0, raw))


# --- Framing --------------------------------------------------------------------------------------


def test_pipelined_extended_batch_split_at_every_byte_boundary() -> None:
    stream = b"".join(EXTENDED_BATCH)
    expected = [Frame(raw[0], raw) for raw in EXTENDED_BATCH]
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        frames: list[Frame] = []
        for part in (stream[:cut], stream[cut:]):
            if part:  # b"" would mean end of stream
                reader.receive_data(part)
            frames.extend(reader.frames())
        reader.receive_data(b"")
        assert frames == expected, cut
        assert reader.at_eof
    assert [decode_frontend(f) for f in expected] == EXTENDED_MESSAGES
    assert [encode(m) for m in EXTENDED_MESSAGES] == EXTENDED_BATCH


def test_every_two_way_split_of_a_startup_and_query_stream() -> None:
    query = b"Q" + be32(13) + b"SELECT 1\x00"
    stream = STARTUP_ALICE + query
    for cut in range(len(stream) + 1):
        reader = FrameReader(startup=True)
        frames: list[Frame] = []
        for part in (stream[:cut], stream[cut:]):
            if part:
                reader.receive_data(part)
            frames.extend(reader.frames())
        assert frames == [Frame(0, STARTUP_ALICE), Frame(ord("Q"), query)], cut


def test_byte_at_a_time() -> None:
    stream = b"".join(SELECT_RESPONSE)
    reader = FrameReader()
    frames: list[Frame] = []
    for i in range(len(stream)):
        reader.receive_data(stream[i : i + 1])
        frames.extend(reader.frames())
    assert [f.raw for f in frames] == SELECT_RESPONSE
    assert reader.buffered == 0


def test_reader_accepts_bytearray_and_memoryview_without_aliasing() -> None:
    stream = bytearray(b"".join(SELECT_RESPONSE))
    reader = FrameReader()
    reader.receive_data(memoryview(stream)[:10])
    reader.receive_data(stream[10:])
    stream[:] = b"\x00" * len(stream)  # the caller reuses its buffer
    assert [f.raw for f in reader.frames()] == SELECT_RESPONSE


def test_backend_select_response_in_and_out() -> None:
    frames = read_all(b"".join(SELECT_RESPONSE))
    assert [f.type for f in frames] == [ord("T"), ord("D"), ord("C"), ord("Z")]
    assert [decode_backend(f) for f in frames] == SELECT_MESSAGES
    assert [encode(m) for m in SELECT_MESSAGES] == SELECT_RESPONSE


def test_frame_payload_is_the_body_without_copying() -> None:
    frame = frame_of(SELECT_RESPONSE[2])
    assert isinstance(frame.payload, memoryview)
    assert frame.payload == b"SELECT 1\x00"
    assert frame.payload.readonly
    startup = frame_of(STARTUP_ALICE)
    assert bytes(startup.payload[:4]) == b"\x00\x03\x00\x00"


def test_eof_between_frames_is_clean() -> None:
    reader = FrameReader()
    reader.receive_data(SELECT_RESPONSE[3])
    reader.receive_data(b"")
    assert reader.next_frame() == Frame(ord("Z"), SELECT_RESPONSE[3])
    assert reader.next_frame() is None
    assert reader.at_eof
    reader.receive_data(b"")  # repeated EOF is harmless
    with raises("data received after end of stream"):
        reader.receive_data(b"Z")


@pytest.mark.parametrize("cut", [1, 4, 5, 12])
def test_eof_inside_a_frame_raises(cut: int) -> None:
    reader = FrameReader()
    reader.receive_data(SELECT_RESPONSE[2][:cut])
    assert reader.next_frame() is None
    assert not reader.at_eof
    reader.receive_data(b"")
    with raises(f"stream ended inside a message ({cut} bytes left unread)"):
        reader.next_frame()


def test_oversize_message_is_refused_before_its_body_arrives() -> None:
    reader = FrameReader()
    reader.receive_data(b"d" + be32(70_000_000))
    with raises("message of 70000000 bytes exceeds the 67108864-byte limit"):
        reader.next_frame()
    small = FrameReader(max_size=100)
    small.receive_data(b"d" + be32(100) + b"x" * 96 + b"d" + be32(101))
    frame = small.next_frame()
    assert frame is not None and len(frame.raw) == 101
    with raises("message of 101 bytes exceeds the 100-byte limit"):
        small.next_frame()


def test_large_message_in_many_pieces() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB of COPY data
    raw = b"d" + be32(len(body) + 4) + body
    reader = FrameReader()
    for i in range(0, len(raw), 1000):
        reader.receive_data(raw[i : i + 1000])
        if i + 1000 < len(raw):
            assert reader.next_frame() is None
    frame = reader.next_frame()
    assert frame is not None and frame.raw == raw
    assert decode_backend(frame) == CopyData(body)


@pytest.mark.parametrize("length", [0, 3])
def test_length_below_four_is_refused(length: int) -> None:
    reader = FrameReader()
    reader.receive_data(b"S" + be32(length))
    with raises(f"message length {length} is below the minimum 4"):
        reader.next_frame()


def test_type_byte_zero_is_refused_mid_session() -> None:
    # Frame.type 0 means "untyped startup frame": a typed stream must never produce one.
    reader = FrameReader()
    reader.receive_data(STARTUP_ALICE)
    with raises("message type 0x00 is not valid"):
        reader.next_frame()


def test_next_byte_reads_the_servers_answer_to_ssl_request() -> None:
    reader = FrameReader()
    reader.receive_data(b"N" + SELECT_RESPONSE[3])
    assert reader.next_byte() == ord("N")
    assert reader.next_frame() == Frame(ord("Z"), SELECT_RESPONSE[3])
    assert reader.next_byte() is None


# --- Frontend messages ----------------------------------------------------------------------------

FRONTEND_CASES: list[tuple[bytes, Message]] = [
    (msg(b"Q", b"SELECT 1\x00"), Query("SELECT 1")),
    (msg(b"Q", b"\x00"), Query("")),
    (msg(b"Q", "dépôt".encode() + b"\x00"), Query("dépôt")),
    (
        msg(b"P", b"s1\x00" + b"SELECT $1\x00" + be16(1) + be32(23)),
        Parse("s1", "SELECT $1", (23,)),
    ),
    (
        msg(
            b"B",
            b"p\x00s1\x00"
            + be16(1)
            + be16(1)
            + be16(2)
            + be32(4)
            + b"\x00\x00\x00\x2a"
            + be32(-1)
            + be16(1)
            + be16(1),
        ),
        Bind("p", "s1", (1,), (b"\x00\x00\x00\x2a", None), (1,)),
    ),
    (msg(b"D", b"Ss1\x00"), Describe("S", "s1")),
    (msg(b"E", b"p\x00" + be32(100)), Execute("p", 100)),
    (msg(b"S", b""), Sync()),
    (msg(b"H", b""), Flush()),
    (msg(b"C", b"Pp\x00"), Close("P", "p")),
    (msg(b"X", b""), Terminate()),
    (msg(b"d", b"1\t2\n\x00"), CopyData(b"1\t2\n\x00")),
    (msg(b"c", b""), CopyDone()),
    (msg(b"f", b"aborted\x00"), CopyFail("aborted")),
    (
        msg(b"F", be32(1598) + be16(0) + be16(0) + be16(0)),
        FunctionCall(b"\x00\x00\x06\x3e" + b"\x00" * 6),
    ),
    (msg(b"p", b"secret\x00"), PasswordMessage(b"secret\x00")),
]


@pytest.mark.parametrize(
    ("raw", "message"), FRONTEND_CASES, ids=lambda x: getattr(x, "__class__", type(x)).__name__
)
def test_frontend_message_in_and_out(raw: bytes, message: Message) -> None:
    assert decode_frontend(frame_of(raw)) == message
    assert encode(message) == raw


def test_password_message_helpers() -> None:
    assert password("hunter2") == PasswordMessage(b"hunter2\x00")
    assert PasswordMessage.password("hunter2") == password("hunter2")
    assert parse_password(password("hunter2")) == "hunter2"
    first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
    initial = sasl_initial_response("SCRAM-SHA-256", first)
    assert initial.data == b"SCRAM-SHA-256\x00" + be32(len(first)) + first
    assert parse_sasl_initial_response(initial) == ("SCRAM-SHA-256", first)
    no_data = sasl_initial_response("ANONYMOUS", None)
    assert no_data.data == b"ANONYMOUS\x00\xff\xff\xff\xff"
    assert parse_sasl_initial_response(no_data) == ("ANONYMOUS", None)
    assert sasl_response(b"c=biws,r=...") == PasswordMessage(b"c=biws,r=...")
    raw = b"p" + be32(4 + len(initial.data)) + initial.data
    assert encode(initial) == raw
    assert decode_frontend(frame_of(raw)) == initial


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"SCRAM-SHA-256", "missing NUL terminator in SASLInitialResponse"),
        (
            b"SCRAM-SHA-256\x00" + be32(5) + b"abc",
            "value overruns the message in SASLInitialResponse",
        ),
        (b"SCRAM-SHA-256\x00" + be32(1) + b"ab", "trailing bytes in SASLInitialResponse"),
        (b"SCRAM-SHA-256\x00\x00\x00", "truncated SASLInitialResponse"),
        (b"\xff\x00" + be32(-1), "invalid UTF-8 in SASLInitialResponse"),
    ],
)
def test_malformed_sasl_initial_response(data: bytes, error: str) -> None:
    with raises(error):
        parse_sasl_initial_response(PasswordMessage(data))


@pytest.mark.parametrize("data", [b"", b"abc", b"a\x00b\x00"])
def test_malformed_password(data: bytes) -> None:
    with raises("missing or misplaced NUL terminator in PasswordMessage"):
        parse_password(PasswordMessage(data))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (msg(b"z", b""), "client sent unknown message type 0x7a"),
        (msg(b"Q", b"SEL"), "missing NUL terminator in Query message"),
        (msg(b"Q", b"\xc3\x28\x00"), "invalid UTF-8 in Query"),
        (msg(b"Q", b"a\x00b\x00"), "trailing bytes in Query message"),
        (msg(b"S", b"\x00"), "trailing bytes in Sync message"),
        (msg(b"P", b"\x00x\x00" + be16(2)), "OID count does not match the length in Parse message"),
        (msg(b"B", b"\x00\x00" + be16(0)), "truncated Bind message"),
        (
            msg(b"B", b"\x00\x00" + be16(0) + be16(1) + be32(9)),
            "value overruns the message in Bind message",
        ),
        (
            msg(b"B", b"\x00\x00" + be16(0) + be16(1) + be32(-2) + be16(0)),
            "value length -2 in Bind message",
        ),
        (
            msg(b"B", b"\x00\x00" + be16(2) + be16(0) + be16(0) + be16(1) + be32(-1) + be16(0)),
            "2 parameter formats for 1 parameters in Bind message",
        ),
        (
            msg(b"B", b"\x00\x00" + be16(1) + be16(2) + be16(0) + be16(0)),
            "format code 2 in Bind message",
        ),
        (
            msg(b"B", b"\x00\x00" + be16(0) + be16(0) + be16(0) + b"!"),
            "trailing bytes in Bind message",
        ),
        (msg(b"D", b"X\x00"), "kind 'X' (expected 'S' or 'P') in Describe message"),
        (msg(b"C", b"S"), "missing NUL terminator in Close message"),
        (msg(b"E", b"\x00\x00\x00"), "truncated Execute message"),
    ],
)
def test_malformed_frontend_messages(raw: bytes, error: str) -> None:
    with raises(error):
        decode_frontend(frame_of(raw))


def test_inconsistent_hand_built_frames_are_refused() -> None:
    with raises("Sync frame does not match its type byte and length field"):
        decode_frontend(Frame(ord("S"), b"S" + be32(5)))  # says 5, is 4
    with raises("Query frame does not match its type byte and length field"):
        decode_frontend(Frame(ord("Q"), b"X" + be32(4)))  # says Query, is Terminate
    with raises("startup packet frame does not match its length field"):
        decode_frontend(Frame(0, STARTUP_ALICE + b"\x00"))
    with raises("server sent an untyped startup-phase frame"):
        decode_backend(Frame(0, STARTUP_ALICE))


# --- Backend messages -----------------------------------------------------------------------------

BACKEND_CASES: list[tuple[bytes, Message]] = [
    (msg(b"R", be32(0)), Authentication(Authentication.OK)),
    (msg(b"R", be32(3)), Authentication(Authentication.CLEARTEXT)),
    (
        msg(b"R", be32(5) + b"\x01\x02\x03\x04"),
        Authentication(Authentication.MD5, b"\x01\x02\x03\x04"),
    ),
    (
        msg(b"R", be32(10) + b"SCRAM-SHA-256\x00SCRAM-SHA-256-PLUS\x00\x00"),
        authentication_sasl(["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]),
    ),
    (msg(b"R", be32(11) + b"r=abc"), Authentication(Authentication.SASL_CONTINUE, b"r=abc")),
    (msg(b"R", be32(12) + b"v=xyz"), Authentication(Authentication.SASL_FINAL, b"v=xyz")),
    (msg(b"S", b"server_version\x0015.20\x00"), ParameterStatus("server_version", "15.20")),
    (msg(b"K", be32(4242) + b"\x0b\xad\xca\xfe"), BackendKeyData(4242, b"\x0b\xad\xca\xfe")),
    (msg(b"K", be32(1) + b"k" * 32), BackendKeyData(1, b"k" * 32)),
    (msg(b"Z", b"T"), ReadyForQuery("T")),
    (msg(b"Z", b"E"), ReadyForQuery("E")),
    (
        msg(
            b"T",
            be16(2)
            + b"id\x00"
            + be32(16400)
            + be16(1)
            + be32(20)
            + be16(8)
            + be32(-1)
            + be16(1)
            + b"nm\x00"
            + be32(0)
            + be16(0)
            + be32(1043)
            + be16(-1)
            + be32(68)
            + be16(0),
        ),
        RowDescription(
            (
                FieldDescription("id", 16400, 1, 20, 8, -1, 1),
                FieldDescription("nm", 0, 0, 1043, -1, 68, 0),
            )
        ),
    ),
    (msg(b"T", be16(0)), RowDescription(())),
    (msg(b"D", be16(0)), DataRow(())),
    (msg(b"D", be16(3) + be32(-1) + be32(0) + be32(-1)), DataRow((None, b"", None))),
    (msg(b"C", b"INSERT 0 1\x00"), CommandComplete("INSERT 0 1")),
    (
        msg(b"E", b"SERROR\x00VERROR\x00C42501\x00Mpermission denied for table salaries\x00\x00"),
        error_response("42501", "permission denied for table salaries"),
    ),
    (
        msg(b"N", b"SNOTICE\x00VNOTICE\x00C00000\x00Mheld: req 7\x00Hwait\x00\x00"),
        notice_response("00000", "held: req 7", hint="wait"),
    ),
    (msg(b"A", be32(99) + b"jobs\x00new id\x00"), NotificationResponse(99, "jobs", "new id")),
    (msg(b"1", b""), ParseComplete()),
    (msg(b"2", b""), BindComplete()),
    (msg(b"3", b""), CloseComplete()),
    (msg(b"n", b""), NoData()),
    (msg(b"s", b""), PortalSuspended()),
    (msg(b"I", b""), EmptyQueryResponse()),
    (msg(b"t", be16(2) + be32(23) + be32(25)), ParameterDescription((23, 25))),
    (msg(b"G", b"\x00" + be16(2) + be16(0) + be16(0)), CopyInResponse(0, (0, 0))),
    (msg(b"H", b"\x01" + be16(1) + be16(1)), CopyOutResponse(1, (1,))),
    (msg(b"W", b"\x00" + be16(0)), CopyBothResponse(0, ())),
    (msg(b"d", b"1\n\x00"), CopyData(b"1\n\x00")),
    (msg(b"c", b""), CopyDone()),
    (
        msg(b"v", be32(0) + be32(1) + b"_pq_.compression\x00"),
        NegotiateProtocolVersion(0, ("_pq_.compression",)),
    ),
    (msg(b"V", be32(2) + b"ok"), FunctionCallResponse(b"ok")),
    (msg(b"V", be32(-1)), FunctionCallResponse(None)),
]


@pytest.mark.parametrize(
    ("raw", "message"), BACKEND_CASES, ids=lambda x: getattr(x, "__class__", type(x)).__name__
)
def test_backend_message_in_and_out(raw: bytes, message: Message) -> None:
    assert decode_backend(frame_of(raw)) == message
    assert encode(message) == raw


def test_error_response_fields() -> None:
    error = error_response(
        "42501", "permission denied", severity="FATAL", detail="rule r1", hint="ask"
    )
    assert error.fields == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "42501",
        "M": "permission denied",
        "D": "rule r1",
        "H": "ask",
    }
    assert (error.severity, error.code, error.message) == ("FATAL", "42501", "permission denied")
    assert (error.detail, error.hint) == ("rule r1", "ask")
    # A localized "S" with the untranslated "V": the severity a program can match on.
    german = ErrorResponse({"S": "FEHLER", "V": "ERROR", "C": "22012", "M": "Division durch Null"})
    assert german.severity == "ERROR"
    bare = NoticeResponse({"M": "hi"})
    assert (bare.severity, bare.code, bare.detail, bare.hint) == ("", "", None, None)


def test_sasl_mechanisms() -> None:
    request = authentication_sasl(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"])
    assert sasl_mechanisms(request) == ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
    with raises("authentication request 0 is not SASL"):
        sasl_mechanisms(Authentication(Authentication.OK))
    with raises("missing terminator after the mechanism list in AuthenticationSASL"):
        sasl_mechanisms(Authentication(Authentication.SASL, b"SCRAM-SHA-256\x00"))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (msg(b"Y", b""), "server sent unknown message type 0x59"),
        (msg(b"R", be32(4)), "unknown request code 4 in Authentication message"),
        (msg(b"R", be32(0) + b"!"), "unexpected data for request 0 in Authentication message"),
        (msg(b"R", be32(5) + b"abc"), "MD5 salt of 3 bytes in Authentication message"),
        (
            msg(b"R", be32(10) + b"SCRAM\x00"),
            "missing terminator after the mechanism list in Authentication message",
        ),
        (msg(b"R", b"\x00\x00"), "truncated Authentication message"),
        (msg(b"K", be32(1) + b"abc"), "cancel key of 3 bytes in BackendKeyData message"),
        (msg(b"Z", b"X"), "transaction status 0x58 in ReadyForQuery message"),
        (msg(b"Z", b"II"), "length is not 5 in ReadyForQuery message"),
        (msg(b"D", be16(1) + be32(-2)), "value length -2 in DataRow message"),
        (msg(b"D", be16(1) + be32(3) + b"ab"), "value overruns the message in DataRow message"),
        (msg(b"D", be16(2) + be32(-1)), "truncated DataRow message"),
        (msg(b"D", be16(1) + be32(-1) + b"!"), "trailing bytes in DataRow message"),
        (
            msg(
                b"T",
                be16(1) + b"a\x00" + be32(0) + be16(0) + be32(23) + be16(4) + be32(-1) + be16(7),
            ),
            "format code 7 in RowDescription message",
        ),
        (msg(b"T", be16(1) + b"abc"), "missing NUL terminator in RowDescription message"),
        (msg(b"E", b"Mabc"), "missing NUL terminator in ErrorResponse message"),
        (msg(b"E", b"Mabc\x00"), "truncated ErrorResponse message"),
        (msg(b"E", b"Ma\x00Mb\x00\x00"), "duplicate field 'M' in ErrorResponse message"),
        (
            msg(b"G", b"\x00" + be16(1) + be16(1)),
            "binary column in a text-format COPY in CopyInResponse message",
        ),
        (msg(b"H", b"\x02" + be16(0)), "format code 2 in CopyOutResponse message"),
        (
            msg(b"t", be16(1) + b"\x00"),
            "OID count does not match the length in ParameterDescription message",
        ),
        (
            msg(b"v", be32(0) + be32(100)),
            "missing NUL terminator in NegotiateProtocolVersion message",
        ),
        (
            msg(b"V", be32(2) + b"a"),
            "value overruns the message in FunctionCallResponse message",
        ),
        (msg(b"C", b"\xff\xfe\xfd\x00"), "invalid UTF-8 in CommandComplete"),
    ],
)
def test_malformed_backend_messages(raw: bytes, error: str) -> None:
    with raises(error):
        decode_backend(frame_of(raw))


# --- Encoding errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Query("SELECT 1\x00; DROP TABLE t"), "cannot encode Query: a string contains NUL"),
        (
            StartupMessage(PROTOCOL_3_0, {"": "x"}),
            "cannot encode StartupMessage: empty parameter name",
        ),
        (StartupMessage(2 << 16, {}), "cannot encode StartupMessage: unsupported protocol 2.0"),
        (Describe("X", "s"), "cannot encode Describe: kind 'X' (expected 'S' or 'P')"),
        (Close("", "s"), "cannot encode Close: kind '' (expected 'S' or 'P')"),
        (
            Bind("", "", (0, 0), (b"1",), ()),
            "cannot encode Bind: 2 parameter formats for 1 parameters",
        ),
        (Bind("", "", (), (b"1",), (3,)), "cannot encode Bind: format code 3"),
        (DataRow((b"x",) * 70_000), "cannot encode DataRow: a number or count is out of range"),
        (Execute("", 2**31), "cannot encode Execute: a number or count is out of range"),
        (ReadyForQuery("Q"), "cannot encode ReadyForQuery: transaction status 'Q'"),
        (
            Authentication(Authentication.MD5, b"12"),
            "cannot encode Authentication: MD5 salt of 2 bytes",
        ),
        (ErrorResponse({"MM": "x"}), "cannot encode ErrorResponse: field code 'MM'"),
        (
            CopyOutResponse(0, (1,)),
            "cannot encode CopyOutResponse: binary column in a text-format COPY",
        ),
        (Query("\udcff"), "cannot encode Query: a string is not valid Unicode text"),
        (FieldDescription("x"), "FieldDescription is not a PostgreSQL message"),
    ],
)
def test_encode_refuses_what_cannot_go_on_the_wire(message: Message, error: str) -> None:
    with raises(error):
        encode(message)


# --- Against a real server ------------------------------------------------------------------------


class Peer:
    """A blocking client for one PostgreSQL connection, speaking through the codec only."""

    def __init__(self) -> None:
        url = urlsplit(admin_url())
        self.sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), 10)
        self.sock.settimeout(10)
        self.reader = FrameReader()
        self.user = unquote(url.username or "postgres")
        self.database = url.path.lstrip("/") or "postgres"

    def send(self, *messages: Message) -> None:
        self.sock.sendall(b"".join(encode(m) for m in messages))

    def until_ready(self) -> list[Message]:
        """Backend messages up to and including ReadyForQuery; each re-encodes byte for byte."""
        out: list[Message] = []
        while True:
            frame = self.reader.next_frame()
            if frame is None:
                self.reader.receive_data(self.sock.recv(65536))
                continue
            message = decode_backend(frame)
            assert encode(message) == frame.raw, message
            out.append(message)
            if isinstance(message, ReadyForQuery):
                return out

    def close(self) -> None:
        self.send(Terminate())
        self.sock.close()


def test_real_server_conversation() -> None:
    peer = Peer()
    try:
        peer.send(startup_message({"user": peer.user, "database": peer.database}))
        hello = peer.until_ready()
        if hello[0] != Authentication(Authentication.OK):
            pytest.fail(f"the test server must trust {peer.user}; it asked {hello[0]}")
        assert any(isinstance(m, BackendKeyData) for m in hello)
        assert ParameterStatus("client_encoding", "UTF8") in hello

        peer.send(Query("SELECT 1 AS one, NULL::text AS nothing, 'Grüße' AS text"))
        rows = peer.until_ready()
        assert isinstance(rows[0], RowDescription)
        assert [f.name for f in rows[0].fields] == ["one", "nothing", "text"]
        assert rows[1:] == [
            DataRow((b"1", None, "Grüße".encode())),
            CommandComplete("SELECT 1"),
            ReadyForQuery("I"),
        ]

        peer.send(
            Parse("", "SELECT $1::int4 + 1", (23,)),
            Bind("", "", (1,), (b"\x00\x00\x00\x29",), (1,)),
            Describe("P", ""),
            Execute("", 0),
            Sync(),
        )
        result = peer.until_ready()
        assert [type(m) for m in result] == [
            ParseComplete,
            BindComplete,
            RowDescription,
            DataRow,
            CommandComplete,
            ReadyForQuery,
        ]
        assert result[3] == DataRow((b"\x00\x00\x00\x2a",))

        peer.send(Query("SELECT 1/0"))
        error, ready = peer.until_ready()
        assert isinstance(error, ErrorResponse)
        assert (error.severity, error.code) == ("ERROR", "22012")
        assert ready == ReadyForQuery("I")

        peer.send(Query("DO $$BEGIN RAISE NOTICE 'held: %', 7; END$$"))
        notice, done, _ = peer.until_ready()
        assert isinstance(notice, NoticeResponse) and notice.message == "held: 7"
        assert done == CommandComplete("DO")

        peer.send(Query("COPY (SELECT 'a' UNION ALL SELECT 'b') TO STDOUT"))
        assert peer.until_ready() == [
            CopyOutResponse(0, (0,)),
            CopyData(b"a\n"),
            CopyData(b"b\n"),
            CopyDone(),
            CommandComplete("COPY 2"),
            ReadyForQuery("I"),
        ]

        peer.send(Query("LISTEN wg_codec; NOTIFY wg_codec, 'ping'"))
        messages = peer.until_ready()
        assert any(
            isinstance(m, NotificationResponse) and (m.channel, m.payload) == ("wg_codec", "ping")
            for m in messages
        )

        peer.send(Query(""))
        assert peer.until_ready() == [EmptyQueryResponse(), ReadyForQuery("I")]
    finally:
        peer.close()


def test_real_server_answers_ssl_request_with_one_byte() -> None:
    peer = Peer()
    try:
        peer.send(SSLRequest())
        answer = None
        while answer is None:
            peer.reader.receive_data(peer.sock.recv(1))
            answer = peer.reader.next_byte()
        assert answer in (ord("S"), ord("N"))
    finally:
        peer.sock.close()


def test_all_message_classes_have_a_playbook_case() -> None:
    covered = {type(m) for _, m in FRONTEND_CASES + BACKEND_CASES}
    covered |= {StartupMessage, SSLRequest, GSSENCRequest, CancelRequest}
    from typing import get_args

    from central.protocols.postgres import messages

    assert covered == set(get_args(messages.Message))
