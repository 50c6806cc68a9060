"""The local proxy's side of SSH: keys it hands to the client, and the one message it sends.

The SSH stream is encrypted end to end between the client (OpenSSH, asyncssh, ...) and
central, which terminates SSH with its own host key; the local proxy only copies bytes. What it
does know of SSH:

- central's host key, which `watchgate connect` pins and writes into a known_hosts file for
  ``[127.0.0.1]:PORT``, so the client verifies that it talks to central (`key_fingerprint`,
  `known_hosts_text`);
- an ephemeral client key pair made for one `connect` run: the client signs in with it (or with
  the local secret as its password); the public half goes to central in the tunnel hello
  (`new_client_key`);
- what to tell an SSH client when central refuses the tunnel. The client speaks SSH and
  expects SSH, so it gets a server identification line and an SSH_MSG_DISCONNECT carrying the
  reason, which OpenSSH prints as ``Received disconnect from 127.0.0.1 port P:CODE: TEXT``
  (`refuse`, `disconnect_packet`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import os
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SERVER_IDENTIFICATION = b"SSH-2.0-Watchgate\r\n"
MAX_IDENTIFICATION = 255  # RFC 4253 §4.2: the line, CR LF included
IDENTIFICATION_TIMEOUT = 10.0
LINGER_TIMEOUT = 5.0  # how long to wait for the client to hang up after the disconnect
LINGER_BYTES = 64 * 1024  # what we read (and drop) from it meanwhile: its KEXINIT, no more
MAX_DESCRIPTION = 200  # characters; OpenSSH prints at most 400 bytes of it
MSG_DISCONNECT = 1


class Reason(IntEnum):
    """The RFC 4253 §11.1 disconnect reason codes the local proxy sends.

    OpenSSH prints the number; asyncssh raises a class per code (14 -> PermissionDenied,
    7 -> ServiceNotAvailable), so the code says whether trying again as the same user can help.
    """

    SERVICE_NOT_AVAILABLE = 7  # central, the target or the recorder is not there: try later
    BY_APPLICATION = 11  # any other refusal
    NO_MORE_AUTH_METHODS_AVAILABLE = 14  # this user may not get in (sign-in, policy, approval)


# Central's refusal codes (TunnelAnswer.code); an unknown code is BY_APPLICATION.
REASONS = {
    "token": Reason.NO_MORE_AUTH_METHODS_AVAILABLE,
    "forbidden": Reason.NO_MORE_AUTH_METHODS_AVAILABLE,
    "pending": Reason.NO_MORE_AUTH_METHODS_AVAILABLE,
    "request_needed": Reason.NO_MORE_AUTH_METHODS_AVAILABLE,
    "target": Reason.SERVICE_NOT_AVAILABLE,
    "recording": Reason.SERVICE_NOT_AVAILABLE,
    "protocol": Reason.SERVICE_NOT_AVAILABLE,
}


def reason_for(code: str) -> Reason:
    return REASONS.get(code, Reason.BY_APPLICATION)


# -- the refusal --------------------------------------------------------------------------------


def describe(text: str) -> str:
    """The reason as the client shows it: one line of ASCII, at most MAX_DESCRIPTION long.

    The text comes from central (and through it from targets). Control, format and other
    non-character code points become spaces, so it cannot move the cursor, recolour or
    reorder the user's terminal, and whitespace collapses. The field is UTF-8, but OpenSSH
    prints every non-ASCII byte as an octal escape, so letters lose their accents (NFKD) and
    what has no ASCII form becomes "?".
    """
    cleaned = "".join(
        " " if unicodedata.category(ch)[0] == "C" else ch
        for ch in unicodedata.normalize("NFKD", text)
        if unicodedata.category(ch) != "Mn"
    )
    cleaned = " ".join(cleaned.split()).encode("ascii", "replace").decode()
    if len(cleaned) > MAX_DESCRIPTION:
        cleaned = cleaned[: MAX_DESCRIPTION - 3] + "..."
    return cleaned


def _string(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def disconnect_packet(
    reason: int, description: str, *, random: Callable[[int], bytes] = os.urandom
) -> bytes:
    """SSH_MSG_DISCONNECT as the first binary packet of a connection (RFC 4253 §6, §11.1).

    Before key exchange there is no encryption and no MAC: uint32 packet_length, byte
    padding_length, the payload, random padding. The packet, length field included, is a
    multiple of 8 bytes (the block size of the "none" cipher) with at least 4 bytes of padding.
    """
    payload = (
        bytes([MSG_DISCONNECT])
        + struct.pack("!I", reason)
        + _string(describe(description).encode())
        + _string(b"")  # language tag: none
    )
    padding = 8 - (4 + 1 + len(payload)) % 8
    if padding < 4:
        padding += 8
    return struct.pack("!IB", 1 + len(payload) + padding, padding) + payload + random(padding)


async def _client_identification(reader: asyncio.StreamReader) -> None:
    """Read (and drop) the client's identification line: up to LF or MAX_IDENTIFICATION."""
    seen = 0
    while seen < MAX_IDENTIFICATION:
        chunk = await reader.read(MAX_IDENTIFICATION - seen)
        if not chunk or b"\n" in chunk:
            return
        seen += len(chunk)


async def _linger(reader: asyncio.StreamReader) -> None:
    seen = 0
    while seen < LINGER_BYTES and (chunk := await reader.read(LINGER_BYTES - seen)):
        seen += len(chunk)


async def refuse(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reason: int, description: str
) -> None:
    """Tell an SSH client no, in SSH: our identification, a disconnect with the reason.

    The client's identification is read before the disconnect, and after it we half-close and
    read until the client hangs up: closing with its bytes unread would make the kernel send
    a reset, which can reach the client before it has read the reason. Every wait is bounded;
    the caller closes the connection.
    """
    writer.write(SERVER_IDENTIFICATION)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_client_identification(reader), IDENTIFICATION_TIMEOUT)
    writer.write(disconnect_packet(reason, description))
    await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_linger(reader), LINGER_TIMEOUT)


# -- keys ---------------------------------------------------------------------------------------


def _key_blob(line: str) -> tuple[str, bytes]:
    """The key type and the public key blob of an OpenSSH public key line; ValueError if the
    line is not one (the blob must decode and name the same type as the line)."""
    parts = line.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key line")
    kind, encoded = parts[0], parts[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the public key is not valid base64") from None
    if len(blob) < 4:
        raise ValueError("the public key is truncated")
    (n,) = struct.unpack("!I", blob[:4])
    if blob[4 : 4 + n] != kind.encode():
        raise ValueError(f"the public key does not hold a {kind[:40]!r} key")
    return kind, blob


def key_fingerprint(line: str) -> str:
    """OpenSSH's fingerprint of a public key line: ``SHA256:`` and unpadded base64."""
    _, blob = _key_blob(line)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    return "SHA256:" + digest.rstrip("=")


def known_hosts_host(port: int) -> str:
    """How OpenSSH names 127.0.0.1:PORT in known_hosts (a bare address for port 22)."""
    return "127.0.0.1" if port == 22 else f"[127.0.0.1]:{port}"


def known_hosts_text(existing: str, port: int, key_line: str) -> str:
    """`existing` known_hosts text with the line for 127.0.0.1:PORT set to `key_line`.

    The host leaves any line that names it (alone, or in a comma list, which keeps its other
    hosts); comments, markers and hashed names stay as they are. The new line holds the key
    type and blob only: a comment from central cannot add lines or options.
    """
    kind, blob = _key_blob(key_line)
    host = known_hosts_host(port)
    kept = []
    for line in existing.splitlines():
        fields = line.split(maxsplit=1)
        names = fields[0].split(",") if fields else []
        if host in names:
            names = [n for n in names if n != host]
            if not names or len(fields) < 2:
                continue
            line = ",".join(names) + " " + fields[1]
        kept.append(line)
    kept.append(f"{host} {kind} {base64.b64encode(blob).decode()}")
    return "\n".join(kept) + "\n"


@dataclass(frozen=True)
class ClientKey:
    """An ed25519 key pair for one `watchgate connect` run: the private key as an OpenSSH
    key file's bytes (for ``ssh -i``), the public key as one OpenSSH line (for central)."""

    private_openssh: bytes = field(repr=False)
    public_line: str


def new_client_key() -> ClientKey:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return ClientKey(private, public.decode())
