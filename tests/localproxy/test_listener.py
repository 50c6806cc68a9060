"""localproxy.listener: admission of local clients, the tunnel hello, refusals, relay, cancels.

The first half drives a PostgresListener whose tunnel is a stand-in (it records each hello and
answers as told; after `accept` it connects the client to an echo server), so each path of the
listener is checked in isolation. The second half uses a real central (tests/support/gateway.py)
to check that central's own refusals and a raw CancelRequest take the listener's paths.
Client bytes are built and server bytes decoded with central's codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import asyncpg
import pytest

from central.protocols.postgres.codec import FrameReader, decode_backend, encode
from central.protocols.postgres.messages import (
    PROTOCOL_3_0,
    Authentication,
    BackendKeyData,
    CancelRequest,
    CommandComplete,
    ErrorResponse,
    GSSENCRequest,
    PasswordMessage,
    Query,
    ReadyForQuery,
    SSLRequest,
    startup_message,
)
from localproxy.contract import AccessState, CancelKey, ResourceView, TunnelAnswer, TunnelHello
from localproxy.listener import PostgresListener, SshListener, _deny_message
from localproxy.tunnel import Tunnel, TunnelError
from tests.support.central import USERS
from tests.support.clients import openssh
from tests.support.gateway import Gateway, gateway, resource_for
from tests.support.pgtemp import temporary_database

SECRET = "local-s3cret"
PARAMS = {"user": "alice", "database": "shop", "application_name": "test"}
VIEW = ResourceView(
    name="db",
    kind="postgres",
    environment="test",
    description="",
    database="shop",
    access=AccessState.DIRECT,
)
ACCEPT = TunnelAnswer(status="accept", session_id="session-1")


# -- a stand-in tunnel --------------------------------------------------------------------------


class FakeTunnel:
    """Stands in for central behind the tunnel: records every hello; answers `answer` (or
    raises `error`). After an accept the client is connected to an echo server playing
    central's side of the session."""

    def __init__(self, answer: TunnelAnswer = ACCEPT, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.hellos: list[TunnelHello] = []
        self.closed = asyncio.Event()  # the listener closed its end of a tunnel connection
        self._echo: asyncio.Server | None = None

    async def _serve_echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        self.closed.set()
        writer.close()

    async def open(
        self, hello: TunnelHello
    ) -> tuple[TunnelAnswer, asyncio.StreamReader, asyncio.StreamWriter]:
        self.hellos.append(hello)
        if self.error is not None:
            raise self.error
        if self._echo is None:
            self._echo = await asyncio.start_server(self._serve_echo, "127.0.0.1", 0)
        port = self._echo.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return self.answer, reader, writer

    async def close(self) -> None:
        if self._echo is not None:
            self._echo.close()
            await self._echo.wait_closed()


def fixed_token(value: str = "token-of-alice") -> Callable[[], Awaitable[str]]:
    async def token() -> str:
        return value

    return token


@contextlib.asynccontextmanager
async def listening(
    tunnel: FakeTunnel, token: Callable[[], Awaitable[str]] | None = None
) -> AsyncIterator[tuple[PostgresListener, int]]:
    listener = PostgresListener(VIEW, cast(Tunnel, tunnel), token or fixed_token(), SECRET)
    port = await listener.start(0)
    try:
        yield listener, port
    finally:
        await listener.close()
        await tunnel.close()


# -- a raw client -------------------------------------------------------------------------------


async def replies(reader: asyncio.StreamReader, *, until_ready: bool = False) -> list[object]:
    """Server messages until EOF (or, with until_ready, the first ReadyForQuery)."""
    frames = FrameReader()
    seen: list[object] = []
    while True:
        data = await asyncio.wait_for(reader.read(65536), 15)
        if not data:
            return seen
        frames.receive_data(data)
        for frame in frames.frames():
            seen.append(decode_backend(frame))
            if until_ready and isinstance(seen[-1], ReadyForQuery):
                return seen


async def refusal(port: int, *messages: bytes) -> ErrorResponse:
    """Send `messages`, read to the end: the one ErrorResponse the listener answers with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"".join(messages))
        got = await replies(reader)
    finally:
        writer.close()
    errors = [m for m in got if isinstance(m, ErrorResponse)]
    assert len(errors) == 1, got
    assert errors[0].severity == "FATAL"
    return errors[0]


async def admitted(
    port: int, *, before: tuple[bytes, ...] = ()
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Encryption requests (each must be answered 'N'), start-up, the local secret."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for request in before:
        writer.write(request)
        assert await asyncio.wait_for(reader.readexactly(1), 10) == b"N"
    writer.write(encode(startup_message(PARAMS)))
    request = await asyncio.wait_for(reader.readexactly(9), 10)
    assert request == encode(Authentication(Authentication.CLEARTEXT))
    writer.write(encode(PasswordMessage.password(SECRET)))
    await writer.drain()
    return reader, writer


def startup_with(version: int, body: bytes) -> bytes:
    return struct.pack("!II", 8 + len(body), version) + body


# -- start-up -----------------------------------------------------------------------------------

ENCRYPTION = {
    "none": (),
    "SSLRequest": (encode(SSLRequest()),),
    "GSSENCRequest": (encode(GSSENCRequest()),),
    "GSSENCRequest-then-SSLRequest": (encode(GSSENCRequest()), encode(SSLRequest())),
}


@pytest.mark.parametrize("before", ENCRYPTION.values(), ids=ENCRYPTION.keys())
async def test_encryption_requests_are_declined_and_the_real_startup_follows(
    before: tuple[bytes, ...],
) -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (listener, port):
        reader, writer = await admitted(port, before=before)
        try:
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
        finally:
            writer.close()
        local = writer.get_extra_info("sockname")
        (hello,) = tunnel.hellos
        assert hello.token == "token-of-alice" and hello.resource == "db"
        assert hello.params == PARAMS
        assert hello.client == f"{local[0]}:{local[1]}"
        assert hello.cancel is None
        assert listener.refused == 0


async def test_accepted_session_relays_both_ways_and_is_live_until_it_ends() -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (listener, port):
        reader, writer = await admitted(port)
        big = bytes(range(256)) * 8192  # 2 MiB: more than one read, past the high-water mark
        writer.write(big)
        assert await asyncio.wait_for(reader.readexactly(len(big)), 15) == big
        assert listener.live == {"session-1"}
        writer.close()
        await asyncio.wait_for(tunnel.closed.wait(), 10)  # the tunnel end is closed too
        for _ in range(100):
            if not listener.live:
                break
            await asyncio.sleep(0.02)
        assert listener.live == set()


MALFORMED = {
    "length-3": struct.pack("!I", 3),
    "length-20000": struct.pack("!II", 20_000, PROTOCOL_3_0),
    "missing-NULs": startup_with(PROTOCOL_3_0, b"user\0alice"),
    "odd-parameter-count": startup_with(PROTOCOL_3_0, b"user\0alice\0database\0\0"),
    "non-UTF-8": startup_with(PROTOCOL_3_0, b"user\0al\xffice\0\0"),
    "short-cancel": startup_with(CancelRequest.CODE, b"\0\0\0\1"),
}


async def test_malformed_startup_packets_get_08p01_and_the_listener_serves_others() -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (listener, port):
        for name, packet in MALFORMED.items():
            error = await refusal(port, packet)
            assert error.code == "08P01", (name, error)
        assert listener.refused == len(MALFORMED)
        assert tunnel.hellos == []  # none of them got as far as central
        reader, writer = await admitted(port)  # and a good client is still served
        writer.write(b"still here")
        assert await asyncio.wait_for(reader.readexactly(10), 10) == b"still here"
        writer.close()


async def test_unsupported_protocol_version_gets_0a000() -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (_, port):
        error = await refusal(port, startup_with(2 << 16, b"user\0alice\0\0"))
        assert error.code == "0A000" and error.message == "unsupported frontend protocol 2.0"
        assert tunnel.hellos == []


async def test_wrong_local_secret_gets_28p01_and_no_tunnel() -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (listener, port):
        error = await refusal(
            port, encode(startup_message(PARAMS)), encode(PasswordMessage.password("guess"))
        )
        assert error.code == "28P01"
        assert "use the secret printed by `watchgate connect`" in error.message
        assert tunnel.hellos == [] and listener.refused == 1


async def test_client_that_leaves_at_the_password_request_is_not_a_refusal() -> None:
    # psql does this when it has no password yet: it disconnects, prompts, and reconnects.
    tunnel = FakeTunnel()
    async with listening(tunnel) as (listener, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(startup_message(PARAMS)))
        assert await reader.readexactly(9) == encode(Authentication(Authentication.CLEARTEXT))
        writer.close()
        await asyncio.sleep(0.1)
        assert listener.refused == 0 and tunnel.hellos == []


# -- central's answers --------------------------------------------------------------------------

ANSWERS = {
    "token": TunnelAnswer(status="deny", code="token", reason="sign-in refused: expired"),
    "forbidden": TunnelAnswer(status="deny", code="forbidden", reason="no resource named"),
    "target": TunnelAnswer(status="deny", code="target", reason="db: cannot connect"),
    "recording": TunnelAnswer(status="deny", code="recording", reason="refused"),
    "protocol": TunnelAnswer(status="deny", code="protocol", reason="not served yet"),
    "request_needed": TunnelAnswer(
        status="request_needed", code="request_needed", reason="needs a request"
    ),
    "pending": TunnelAnswer(status="pending", code="pending", reason="waiting", request_id="R-7"),
}
SQLSTATES = {
    "token": ("28000", "sign-in refused: expired"),
    "forbidden": ("42501", "no resource named"),
    "target": ("08006", "db: cannot connect"),
    "recording": ("28000", "refused"),
    "protocol": ("28000", "not served yet"),
    "request_needed": ("28000", "needs a request"),
    "pending": ("28000", "waiting (request R-7)"),
}


@pytest.mark.parametrize("code", SQLSTATES)
def test_deny_message_maps_central_codes_to_sqlstates(code: str) -> None:
    assert _deny_message(ANSWERS[code]) == SQLSTATES[code]


@pytest.mark.parametrize("code", SQLSTATES)
async def test_central_refusal_reaches_the_client_with_its_sqlstate(code: str) -> None:
    tunnel = FakeTunnel(answer=ANSWERS[code])
    async with listening(tunnel) as (listener, port):
        error = await refusal(
            port, encode(startup_message(PARAMS)), encode(PasswordMessage.password(SECRET))
        )
        assert (error.code, error.message) == SQLSTATES[code]
        assert listener.live == set() and listener.refused == 1


async def test_unreachable_central_gets_08006_with_the_reason() -> None:
    tunnel = FakeTunnel(error=TunnelError("cannot open the tunnel to central at 127.0.0.1:1"))
    async with listening(tunnel) as (_, port):
        error = await refusal(
            port, encode(startup_message(PARAMS)), encode(PasswordMessage.password(SECRET))
        )
        assert error.code == "08006"
        assert error.message == "cannot open the tunnel to central at 127.0.0.1:1"


async def test_a_sign_in_that_cannot_give_a_token_is_refused_with_the_reason() -> None:
    async def no_token() -> str:
        raise RuntimeError("not signed in to http://central: run `watchgate login`")

    tunnel = FakeTunnel()
    async with listening(tunnel, no_token) as (_, port):
        error = await refusal(
            port, encode(startup_message(PARAMS)), encode(PasswordMessage.password(SECRET))
        )
        assert error.code == "28000"
        assert "not signed in to http://central: run `watchgate login`" in error.message
        assert tunnel.hellos == []


# -- cancel requests ----------------------------------------------------------------------------


async def test_cancel_request_is_forwarded_as_a_cancel_hello_without_a_password() -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (listener, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(CancelRequest(4242, b"\xaa\xbb\xcc\xdd")))
        assert await asyncio.wait_for(reader.read(), 10) == b""  # no answer: just closed
        writer.close()
        (hello,) = tunnel.hellos
        assert hello.cancel == CancelKey(pid=4242, secret="aabbccdd")
        assert hello.token == "token-of-alice" and hello.resource == "db"
        await asyncio.wait_for(tunnel.closed.wait(), 10)  # and the tunnel was closed at once
        assert listener.refused == 0 and listener.live == set()


async def test_cancel_request_after_ssl_request_is_forwarded() -> None:
    tunnel = FakeTunnel()
    async with listening(tunnel) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(SSLRequest()))
        assert await reader.readexactly(1) == b"N"
        writer.write(encode(CancelRequest(7, b"\x00\x01\x02\x03")))
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        assert [h.cancel for h in tunnel.hellos] == [CancelKey(pid=7, secret="00010203")]


async def test_cancel_request_with_central_unreachable_is_dropped_quietly() -> None:
    tunnel = FakeTunnel(error=TunnelError("down"))
    async with listening(tunnel) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(encode(CancelRequest(1, b"\0\0\0\1")))
        assert await asyncio.wait_for(reader.read(), 10) == b""  # as PostgreSQL: no answer
        writer.close()


# -- with a real central ------------------------------------------------------------------------


@pytest.fixture
async def target() -> AsyncIterator[str]:
    async with temporary_database("wg_listener") as url:
        yield url


LAB = {
    "name": "lab",
    "kind": "ssh",
    "address": "127.0.0.1:22",
    "username": "deploy",
    "password": "held-secret-ssh",
    "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
}


@pytest.fixture
async def gw(tmp_path: Path, target: str) -> AsyncIterator[Gateway]:
    resources = [
        resource_for(target),
        resource_for("postgresql://postgres@127.0.0.1:1/nothing", name="down"),
        resource_for(target, name="by-request"),
        resource_for(target, name="pending-db"),
        LAB,
    ]
    roles = [
        {"name": "direct", "groups": ["analysts"], "resources": ["db", "down", "lab"]},
        {
            "name": "jit",
            "groups": ["analysts"],
            "resources": ["by-request", "pending-db"],
            "access": "request",
            "reviewers": ["dba-leads"],
        },
    ]
    assert any(u["name"] == "dave" and u["groups"] == ["contractors"] for u in USERS)
    async with gateway(tmp_path, target, resources=resources, roles=roles) as running:
        yield running


async def real_refusal(
    gw: Gateway, resource: str, token: Callable[[], Awaitable[str]] | None = None
) -> ErrorResponse:
    """Connect through a listener for `resource` on the gateway's central; its refusal."""
    view = gw.listener.resource.model_copy(update={"name": resource})
    listener = PostgresListener(
        view, gw.listener.tunnel, token or fixed_token(gw.token()), "other-secret"
    )
    port = await listener.start(0)
    try:
        return await refusal(
            port,
            encode(startup_message({"user": "alice", "database": "x"})),
            encode(PasswordMessage.password("other-secret")),
        )
    finally:
        await listener.close()


async def test_centrals_refusals_get_the_mapped_sqlstates(gw: Gateway) -> None:
    central = gw.central

    error = await real_refusal(gw, "db", fixed_token("not-a-token"))
    assert error.code == "28000" and error.message.startswith("sign-in refused: ")

    error = await real_refusal(gw, "db", fixed_token(gw.token("dave")))
    assert error.code == "42501"
    assert error.message == "no resource named 'db' is available to you"

    error = await real_refusal(gw, "down")
    assert error.code == "08006" and error.message.startswith("down: cannot connect to 127.0.0.1:1")

    error = await real_refusal(gw, "by-request")
    assert error.code == "28000"
    assert "by-request needs an approved access request" in error.message

    request = await central.store.create_access_request(
        "alice", "pending-db", "month-end report", 3600, datetime.now(UTC)
    )
    error = await real_refusal(gw, "pending-db")
    assert error.code == "28000"
    assert error.message == (
        f"your access request for pending-db is waiting for approval (request {request.id})"
    )

    # An SSH resource asked for without SSH's sign-in material (a PostgreSQL listener's hello).
    error = await real_refusal(gw, "lab")
    assert error.code == "28000"
    assert error.message == "the local proxy sent no local secret for the SSH sign-in"

    central.recorder.healthy, central.recorder.problem = False, "the disk is full"
    try:
        error = await real_refusal(gw, "db")
    finally:
        central.recorder.healthy, central.recorder.problem = True, None
    assert error.code == "28000" and error.message == "db: sessions are refused: the disk is full"

    # None of the refusals harmed the listener in front of `db`.
    conn = await asyncpg.connect(gw.dsn)
    assert await conn.fetchval("SELECT 1") == 1
    await conn.close()


async def session_with_key(
    gw: Gateway,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, bytes]:
    """A raw session through the gateway; the cancel key central handed out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(encode(startup_message({"user": gw.user, "database": gw.database})))
    await reader.readexactly(9)
    writer.write(encode(PasswordMessage.password(gw.secret)))
    greeting = await replies(reader, until_ready=True)
    (key,) = [m for m in greeting if isinstance(m, BackendKeyData)]
    return reader, writer, key.pid, key.secret


async def send_cancel(port: int, pid: int, secret: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(CancelRequest(pid, secret)))
    assert await asyncio.wait_for(reader.read(), 15) == b""
    writer.close()


async def test_raw_cancel_request_cancels_the_running_query(gw: Gateway) -> None:
    reader, writer, pid, secret = await session_with_key(gw)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        writer.write(encode(Query("SELECT pg_sleep(30)")))
        await asyncio.sleep(0.5)  # let it start on the target
        await send_cancel(gw.port, pid, secret)
        answer = await replies(reader, until_ready=True)
        error = next(m for m in answer if isinstance(m, ErrorResponse))
        assert error.code == "57014" and "canceling statement due to user request" in error.message
        assert loop.time() - started < 10
        writer.write(encode(Query("SELECT 1")))  # the session carries on
        again = await replies(reader, until_ready=True)
        assert CommandComplete("SELECT 1") in again
    finally:
        writer.close()


async def test_raw_cancel_request_with_a_wrong_key_cancels_nothing(gw: Gateway) -> None:
    reader, writer, pid, secret = await session_with_key(gw)
    try:
        writer.write(encode(Query("SELECT pg_sleep(1.5)")))
        await asyncio.sleep(0.3)
        await send_cancel(gw.port, pid, bytes(b ^ 0xFF for b in secret))
        await send_cancel(gw.port, pid ^ 1, secret)
        answer = await replies(reader, until_ready=True)
        assert not any(isinstance(m, ErrorResponse) for m in answer), answer
        assert CommandComplete("SELECT 1") in answer
    finally:
        writer.close()


# -- SSH ----------------------------------------------------------------------------------------
#
# The SSH listener parses nothing: each connection's hello carries the local secret and the
# client key, and central's refusals reach the real OpenSSH client as SSH disconnects.

SSH_VIEW = VIEW.model_copy(update={"name": "lab", "kind": "ssh", "database": None})
CLIENT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMwIaKJgCNUzb2mapiX5HsNfjHWvc5/a4NjLEvsKgTKJ"


@contextlib.asynccontextmanager
async def ssh_listening(
    tunnel: FakeTunnel, token: Callable[[], Awaitable[str]] | None = None
) -> AsyncIterator[tuple[SshListener, int]]:
    listener = SshListener(
        SSH_VIEW, cast(Tunnel, tunnel), token or fixed_token(), SECRET, CLIENT_KEY
    )
    port = await listener.start(0)
    try:
        yield listener, port
    finally:
        await listener.close()
        await tunnel.close()


def disconnect_line(port: int, code: int, text: str) -> str:
    return f"Received disconnect from 127.0.0.1 port {port}:{code}: {text}"


async def test_ssh_hello_carries_the_secret_and_key_and_bytes_pass_untouched() -> None:
    tunnel = FakeTunnel()
    async with ssh_listening(tunnel) as (listener, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # Whatever the client sends first (its SSH identification) goes to central as is:
            # the listener sends nothing of its own before central accepts.
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
            assert await asyncio.wait_for(reader.readexactly(21), 10) == b"SSH-2.0-OpenSSH_9.2\r\n"
            big = bytes(range(256)) * 8192
            writer.write(big)
            assert await asyncio.wait_for(reader.readexactly(len(big)), 15) == big
            assert listener.live == {"session-1"}
        finally:
            writer.close()
        local = writer.get_extra_info("sockname")
        (hello,) = tunnel.hellos
        assert hello.token == "token-of-alice" and hello.resource == "lab"
        assert hello.local_secret == SECRET and hello.client_key == CLIENT_KEY
        assert hello.client == f"{local[0]}:{local[1]}"
        assert hello.params == {} and hello.cancel is None
        await asyncio.wait_for(tunnel.closed.wait(), 10)
        for _ in range(100):
            if not listener.live:
                break
            await asyncio.sleep(0.02)
        assert listener.live == set() and listener.refused == 0


# Central's answer -> (the disconnect reason code, the text OpenSSH prints).
SSH_REFUSALS = {
    "token": (14, "sign-in refused: expired"),
    "forbidden": (14, "no resource named"),
    "target": (7, "db: cannot connect"),
    "recording": (7, "refused"),
    "protocol": (7, "not served yet"),
    "request_needed": (14, "needs a request"),
    "pending": (14, "waiting (request R-7)"),
}


@pytest.mark.parametrize("code", SSH_REFUSALS)
async def test_centrals_refusal_is_printed_by_openssh(code: str, tmp_path: Path) -> None:
    tunnel = FakeTunnel(answer=ANSWERS[code])
    async with ssh_listening(tunnel) as (listener, port):
        result = await openssh(port, tmp_path)
        assert result.code == 255 and result.stdout == ""
        assert disconnect_line(port, *SSH_REFUSALS[code]) in result.stderr
        assert listener.refused == 1 and listener.live == set()
        await asyncio.wait_for(tunnel.closed.wait(), 10)  # the refused tunnel was closed


async def test_unreachable_central_is_printed_by_openssh(tmp_path: Path) -> None:
    reason = "cannot open the tunnel to central at 127.0.0.1:1: connection refused"
    tunnel = FakeTunnel(error=TunnelError(reason))
    async with ssh_listening(tunnel) as (listener, port):
        result = await openssh(port, tmp_path)
        assert result.code == 255
        assert disconnect_line(port, 7, reason) in result.stderr
        assert len(tunnel.hellos) == 1 and listener.refused == 0


async def test_ssh_client_without_a_sign_in_is_told_why(tmp_path: Path) -> None:
    async def no_token() -> str:
        raise RuntimeError("not signed in to http://central: run `watchgate login`")

    tunnel = FakeTunnel()
    async with ssh_listening(tunnel, no_token) as (listener, port):
        result = await openssh(port, tmp_path)
        assert result.code == 255
        text = "no Watchgate sign-in: not signed in to http://central: run `watchgate login`"
        assert disconnect_line(port, 14, text) in result.stderr
        assert tunnel.hellos == [] and listener.refused == 1


async def test_ssh_listener_serves_the_next_client_after_a_refusal(tmp_path: Path) -> None:
    tunnel = FakeTunnel(answer=ANSWERS["forbidden"])
    async with ssh_listening(tunnel) as (listener, port):
        await openssh(port, tmp_path)
        tunnel.answer = ACCEPT
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"again")
        assert await asyncio.wait_for(reader.readexactly(5), 10) == b"again"
        writer.close()
        assert listener.refused == 1 and len(tunnel.hellos) == 2
