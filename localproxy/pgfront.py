"""The local proxy's side of PostgreSQL start-up: just enough protocol to admit a local client.

A native client (psql, DBeaver, a driver) connects to 127.0.0.1 and sends its start-up packet.
We decline TLS and GSS encryption (the bytes never leave this machine before the TLS tunnel),
ask for the password, and compare it with the per-session local secret, so that another user
or process on this machine cannot ride the tunnel. Everything after that is central's: it
answers the start-up itself and relays the session. Central has the full codec; this module
only needs the few start-up messages and must not import central.
"""

from __future__ import annotations

import asyncio
import hmac
import struct
from dataclasses import dataclass

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 196608
MAX_STARTUP = 10_000  # PostgreSQL's own limit for a start-up packet


class StartupError(Exception):
    """The client's start-up cannot proceed; `sqlstate` and the message go back to it."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True, slots=True)
class Startup:
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class Cancel:
    pid: int
    secret: bytes


async def _packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    (length,) = struct.unpack("!I", await reader.readexactly(4))
    if not 8 <= length <= MAX_STARTUP:
        raise StartupError("08P01", f"invalid start-up packet length {length}")
    body = await reader.readexactly(length - 4)
    return struct.unpack("!I", body[:4])[0], body[4:]


def _params(body: bytes) -> dict[str, str]:
    # key\0value\0 ... \0 — the final NUL ends the list.
    if not body.endswith(b"\0") or (len(body) > 1 and not body.endswith(b"\0\0")):
        raise StartupError("08P01", "start-up parameters are not NUL-terminated")
    if body == b"\0":
        return {}
    parts = body[:-2].split(b"\0")
    if len(parts) % 2 or not all(parts[::2]):
        raise StartupError("08P01", "malformed start-up parameters")
    try:
        return {k.decode(): v.decode() for k, v in zip(parts[::2], parts[1::2], strict=True)}
    except UnicodeDecodeError:
        raise StartupError("08P01", "start-up parameters are not UTF-8") from None


async def read_startup(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> Startup | Cancel:
    """Read until the real start-up packet (declining TLS/GSS) or a cancel request."""
    for _ in range(3):
        code, body = await _packet(reader)
        if code in (SSL_REQUEST, GSSENC_REQUEST):
            writer.write(b"N")  # not here: the tunnel to central is what is encrypted
            await writer.drain()
            continue
        if code == CANCEL_REQUEST:
            if len(body) < 8:
                raise StartupError("08P01", "malformed cancel request")
            (pid,) = struct.unpack("!I", body[:4])
            return Cancel(pid, bytes(body[4:]))
        if code >> 16 != 3:
            raise StartupError(
                "0A000", f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}"
            )
        return Startup(_params(body))
    raise StartupError("08P01", "too many encryption requests")


async def check_secret(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: str
) -> None:
    """Ask for the password (cleartext: loopback only) and compare it with the local secret."""
    writer.write(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
    await writer.drain()
    kind = await reader.readexactly(1)
    (length,) = struct.unpack("!I", await reader.readexactly(4))
    if kind != b"p" or not 5 <= length <= 1028:
        raise StartupError("08P01", "expected a password message")
    password = (await reader.readexactly(length - 4)).rstrip(b"\0")
    if not hmac.compare_digest(password, secret.encode()):
        raise StartupError(
            "28P01",
            "password authentication failed: use the secret printed by `watchgate connect`",
        )


def _fields(kind: bytes, sqlstate: str, message: str, severity: str) -> bytes:
    fields = ((b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", message))
    body = b"".join(t + v.encode("utf-8", "replace").replace(b"\0", b"") + b"\0" for t, v in fields)
    return kind + struct.pack("!I", len(body) + 5) + body + b"\0"


def error_response(sqlstate: str, message: str, severity: str = "FATAL") -> bytes:
    return _fields(b"E", sqlstate, message, severity)


def notice_response(message: str) -> bytes:
    return _fields(b"N", "00000", message, "NOTICE")
