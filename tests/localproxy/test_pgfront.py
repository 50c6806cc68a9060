"""localproxy.pgfront, byte for byte: the few start-up messages the local proxy handles itself.

Client bytes are built with central's full codec (an independent implementation of the same
protocol), fed to pgfront through an in-memory StreamReader; what pgfront writes back is
decoded with the same codec.
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

import pytest

from central.protocols.postgres.codec import FrameReader, decode_backend, encode
from central.protocols.postgres.messages import (
    PROTOCOL_3_0,
    PROTOCOL_3_2,
    Authentication,
    CancelRequest,
    ErrorResponse,
    GSSENCRequest,
    NoticeResponse,
    PasswordMessage,
    SSLRequest,
    startup_message,
)
from localproxy import pgfront


class Written:
    """Stands in for the StreamWriter: keeps what pgfront writes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def streams(*chunks: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Written]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    written = Written()
    return reader, cast(asyncio.StreamWriter, written), written


def untyped(code: int, body: bytes = b"") -> bytes:
    """A start-up-phase packet: length, 32-bit code, body."""
    return struct.pack("!II", 8 + len(body), code) + body


async def startup_error(*chunks: bytes) -> pgfront.StartupError:
    reader, writer, _ = streams(*chunks)
    with pytest.raises(pgfront.StartupError) as info:
        await pgfront.read_startup(reader, writer)
    return info.value


PARAMS = {"user": "alice", "database": "shop", "application_name": "psql"}


# -- read_startup -------------------------------------------------------------------------------


async def test_plain_startup_message_gives_its_parameters() -> None:
    reader, writer, written = streams(encode(startup_message(PARAMS)))
    assert await pgfront.read_startup(reader, writer) == pgfront.Startup(PARAMS)
    assert written.data == b""  # nothing to answer before the password request


async def test_ssl_request_is_answered_n_and_followed_by_the_real_startup() -> None:
    reader, writer, written = streams(encode(SSLRequest()), encode(startup_message(PARAMS)))
    assert await pgfront.read_startup(reader, writer) == pgfront.Startup(PARAMS)
    assert written.data == b"N"


async def test_gssenc_request_is_answered_n_and_followed_by_the_real_startup() -> None:
    reader, writer, written = streams(encode(GSSENCRequest()), encode(startup_message(PARAMS)))
    assert await pgfront.read_startup(reader, writer) == pgfront.Startup(PARAMS)
    assert written.data == b"N"


async def test_gssenc_then_ssl_then_startup_as_libpq_does() -> None:
    reader, writer, written = streams(
        encode(GSSENCRequest()), encode(SSLRequest()), encode(startup_message(PARAMS))
    )
    assert await pgfront.read_startup(reader, writer) == pgfront.Startup(PARAMS)
    assert written.data == b"NN"


async def test_endless_encryption_requests_are_cut_off() -> None:
    error = await startup_error(*[encode(SSLRequest())] * 4, encode(startup_message(PARAMS)))
    assert error.sqlstate == "08P01" and "too many encryption requests" in str(error)


async def test_empty_parameter_values_and_protocol_minor_versions_are_accepted() -> None:
    params = {"user": "alice", "options": ""}
    reader, writer, _ = streams(encode(startup_message(params, version=PROTOCOL_3_2)))
    assert await pgfront.read_startup(reader, writer) == pgfront.Startup(params)
    reader, writer, _ = streams(untyped(PROTOCOL_3_0, b"\0"))  # no parameters at all
    assert await pgfront.read_startup(reader, writer) == pgfront.Startup({})


@pytest.mark.parametrize("length", [0, 3, 7, 10_001, 20_000])
async def test_startup_packet_of_impossible_length_is_a_protocol_violation(length: int) -> None:
    error = await startup_error(struct.pack("!II", length, PROTOCOL_3_0) + b"user\0a\0\0")
    assert error.sqlstate == "08P01"
    assert str(error) == f"invalid start-up packet length {length}"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"user\0alice", "not NUL-terminated"),  # no NUL after the last value
        (b"user\0alice\0", "not NUL-terminated"),  # no terminator after the list
        (b"", "not NUL-terminated"),
        (b"user\0alice\0database\0\0", "malformed start-up parameters"),  # odd count
        (b"user\0\0", "malformed start-up parameters"),  # a key without a value
        (b"\0alice\0\0", "malformed start-up parameters"),  # an empty key
        (b"\0\0", "malformed start-up parameters"),
        (b"user\0al\xffice\0\0", "not UTF-8"),
        (b"us\xc3er\0alice\0\0", "not UTF-8"),
    ],
)
async def test_malformed_startup_parameters_are_a_protocol_violation(
    body: bytes, reason: str
) -> None:
    error = await startup_error(untyped(PROTOCOL_3_0, body))
    assert error.sqlstate == "08P01" and reason in str(error)


@pytest.mark.parametrize(
    ("version", "shown"), [(2 << 16, "2.0"), (4 << 16, "4.0"), (1234 << 16 | 9, "1234.9")]
)
async def test_unsupported_protocol_version_is_feature_not_supported(
    version: int, shown: str
) -> None:
    error = await startup_error(untyped(version, b"user\0alice\0\0"))
    assert error.sqlstate == "0A000"
    assert str(error) == f"unsupported frontend protocol {shown}"


async def test_cancel_request_gives_the_key() -> None:
    reader, writer, written = streams(encode(CancelRequest(4242, b"\x01\x02\x03\x04")))
    assert await pgfront.read_startup(reader, writer) == pgfront.Cancel(4242, b"\x01\x02\x03\x04")
    assert written.data == b""  # a cancel request is never answered


async def test_cancel_request_with_a_long_protocol_3_2_key() -> None:
    key = bytes(range(32))
    reader, writer, _ = streams(encode(CancelRequest(7, key)))
    assert await pgfront.read_startup(reader, writer) == pgfront.Cancel(7, key)


async def test_cancel_request_without_a_key_is_a_protocol_violation() -> None:
    error = await startup_error(untyped(CancelRequest.CODE, struct.pack("!I", 1)))
    assert error.sqlstate == "08P01" and "malformed cancel request" in str(error)


async def test_truncated_packet_is_an_incomplete_read() -> None:
    reader, writer, _ = streams(encode(startup_message(PARAMS))[:-3])
    with pytest.raises(asyncio.IncompleteReadError):
        await pgfront.read_startup(reader, writer)


# -- check_secret -------------------------------------------------------------------------------


def auth_requests(data: bytes) -> list[object]:
    frames = FrameReader()
    frames.receive_data(data)
    return [decode_backend(f) for f in frames.frames()]


async def test_check_secret_asks_for_a_cleartext_password_and_accepts_the_secret() -> None:
    reader, writer, written = streams(encode(PasswordMessage.password("s3cret")))
    await pgfront.check_secret(reader, writer, "s3cret")
    assert auth_requests(written.data) == [Authentication(Authentication.CLEARTEXT)]


async def test_check_secret_refuses_a_wrong_password() -> None:
    for wrong in ("s3cre", "s3cret!", "", "S3CRET"):
        reader, writer, _ = streams(encode(PasswordMessage.password(wrong)))
        with pytest.raises(pgfront.StartupError) as info:
            await pgfront.check_secret(reader, writer, "s3cret")
        assert info.value.sqlstate == "28P01"
        assert "use the secret printed by `watchgate connect`" in str(info.value)


@pytest.mark.parametrize(
    "message",
    [
        b"Q\0\0\0\x0bs3cret\0",  # not a password message
        b"p\0\0\0\x03",  # length below the minimum
        b"p" + struct.pack("!I", 5000) + b"x" * 4996,  # far too long for a secret
    ],
)
async def test_check_secret_refuses_anything_but_a_password_message(message: bytes) -> None:
    reader, writer, _ = streams(message)
    with pytest.raises(pgfront.StartupError) as info:
        await pgfront.check_secret(reader, writer, "s3cret")
    assert info.value.sqlstate == "08P01" and "expected a password message" in str(info.value)


# -- what pgfront writes ------------------------------------------------------------------------


def test_error_response_decodes_as_a_fatal_error_with_the_sqlstate() -> None:
    (decoded,) = auth_requests(pgfront.error_response("28P01", "nope: naïve ✓"))
    assert isinstance(decoded, ErrorResponse)
    assert decoded.fields == {"S": "FATAL", "V": "FATAL", "C": "28P01", "M": "nope: naïve ✓"}


def test_error_response_drops_nul_bytes_from_the_message() -> None:
    (decoded,) = auth_requests(pgfront.error_response("08P01", "a\0b", severity="ERROR"))
    assert isinstance(decoded, ErrorResponse)
    assert decoded.message == "ab" and decoded.severity == "ERROR"


def test_notice_response_decodes() -> None:
    (decoded,) = auth_requests(pgfront.notice_response("waiting for approval"))
    assert isinstance(decoded, NoticeResponse)
    assert decoded.fields["C"] == "00000" and decoded.fields["M"] == "waiting for approval"
