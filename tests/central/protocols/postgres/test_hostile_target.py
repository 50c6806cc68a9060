"""A hostile or broken target, through the whole gateway.

The target is the one party central trusts with nothing but bytes: what it sends during a
session is untrusted input like the client's. These tests put a fake target behind central -
a real PostgreSQL cannot be made to send malformed messages - and drive it with a real client
through the local listener and the tunnel. Each case checks what the client gets, that the
session ends and is recorded with its reason, that central logs a protocol error and nothing
worse, and that central goes on serving a real PostgreSQL session afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psycopg
import pytest

from central.protocols.postgres import messages as m
from central.protocols.postgres.codec import (
    FrameReader,
    decode_backend,
    decode_frontend,
    encode,
)
from localproxy.api import CentralClient
from localproxy.contract import SessionDetail
from localproxy.listener import PostgresListener
from localproxy.replay import render_session
from localproxy.tunnel import Tunnel
from tests.support.gateway import Gateway, gateway, resource_for

REAL_TARGET = "postgresql://postgres@127.0.0.1:5432/postgres"

# What the fake answers to a query, by message.
_ONE_COLUMN = m.RowDescription((m.FieldDescription("x"),))


def answer(*rows: bytes) -> bytes:
    """A well-formed reply to a simple Query: one text column, `rows`, done."""
    out = [encode(_ONE_COLUMN)]
    out += [encode(m.DataRow((r,))) for r in rows]
    out += [encode(m.CommandComplete(f"SELECT {len(rows)}")), encode(m.ReadyForQuery("I"))]
    return b"".join(out)


def raw_message(kind: bytes, body: bytes, *, length: int | None = None) -> bytes:
    """A backend message with `body`, and a length field that says `length` if given."""
    return kind + struct.pack("!I", len(body) + 4 if length is None else length) + body


# -- the fake target -------------------------------------------------------------------------


@dataclass
class FakeTarget:
    """A fake PostgreSQL server standing in for a compromised or broken target.

    A real PostgreSQL cannot be made to send malformed messages, so this one speaks just
    enough of the protocol to get a session going - a trust start-up (AuthenticationOk, the
    ParameterStatus messages in `parameters`, BackendKeyData, ReadyForQuery) - and then
    answers the first Query (or Sync) with `first_reply(sql)`; later queries get a well-formed
    one-row answer. With `close_after_first` it hangs up right after its first reply.
    """

    first_reply: Callable[[str], bytes]
    parameters: list[tuple[str, str]] = field(
        default_factory=lambda: [("server_version", "15.99 (fake)"), ("client_encoding", "UTF8")]
    )
    close_after_first: bool = False
    port: int = 0
    startups: list[dict[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)  # central closed on us
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        frames = FrameReader(startup=True)
        answered = False
        try:
            while data := await reader.read(65536):
                frames.receive_data(data)
                for frame in frames.frames():
                    msg = decode_frontend(frame)
                    if isinstance(msg, m.StartupMessage):
                        self.startups.append(msg.params)
                        out = [encode(m.Authentication(m.Authentication.OK))]
                        out += [encode(m.ParameterStatus(k, v)) for k, v in self.parameters]
                        out += [encode(m.BackendKeyData(77, b"\x01\x02\x03\x04"))]
                        out += [encode(m.ReadyForQuery("I"))]
                        writer.write(b"".join(out))
                    elif isinstance(msg, m.Query | m.Sync):
                        sql = msg.sql if isinstance(msg, m.Query) else "<extended>"
                        self.queries.append(sql)
                        if answered:
                            writer.write(answer(b"again"))
                            continue
                        answered = True
                        writer.write(self.first_reply(sql))
                        await writer.drain()
                        if self.close_after_first:
                            writer.transport.abort()
                            return
                    elif isinstance(msg, m.Terminate):
                        break
                await writer.drain()
            self.hung_up.set()
        except ConnectionError:
            self.hung_up.set()
        except asyncio.CancelledError:
            pass  # torn down; ending normally keeps Python 3.11's start_server from logging
        finally:
            self._tasks.discard(task)
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeTarget]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    @property
    def url(self) -> str:
        return f"postgresql://fake@127.0.0.1:{self.port}/fake"


@contextlib.asynccontextmanager
async def fake_gateway(tmp_path: Path, fake: FakeTarget) -> AsyncIterator[Gateway]:
    """Central with two resources: `fake-db` (the fake, served by gw's listener) and
    `real-db` (the machine's PostgreSQL)."""
    async with (
        fake.running(),
        gateway(
            tmp_path,
            fake.url,
            resources=[resource_for(fake.url, "fake-db"), resource_for(REAL_TARGET, "real-db")],
        ) as gw,
    ):
        yield gw


@contextlib.asynccontextmanager
async def listener_for(gw: Gateway, resource: str) -> AsyncIterator[str]:
    """A second local listener on the same central, for `resource`; yields its DSN."""

    async def token() -> str:
        return gw.token()

    async with CentralClient(gw.url, gw.token()) as api:
        info = await api.tunnel_info()
        view = {r.name: r for r in await api.resources()}[resource]
    listener = PostgresListener(view, Tunnel(info), token, secrets.token_urlsafe(12))
    port = await listener.start(0)
    try:
        yield f"postgresql://{gw.user}:{listener.secret}@127.0.0.1:{port}/{view.database}"
    finally:
        await listener.close()


async def connect(gw: Gateway) -> asyncpg.Connection:
    return await asyncpg.connect(gw.dsn, ssl=False, timeout=10)


async def newest_session(gw: Gateway) -> SessionDetail:
    await gw.central.recorder.flush()
    rows = await gw.central.store.list_sessions(user=None, limit=1)
    async with CentralClient(gw.url, gw.token()) as api:
        return await api.session(rows[0].id)


async def real_session_works(gw: Gateway) -> None:
    """Central still serves: a new session to the real PostgreSQL, on the same central."""
    async with listener_for(gw, "real-db") as dsn:
        conn = await asyncpg.connect(dsn, ssl=False)
        try:
            assert await conn.fetchval("SELECT current_database()") == "postgres"
            assert await conn.fetchval("SELECT 40 + 2") == 42
        finally:
            await conn.close()


def assert_only_protocol_errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Nothing at ERROR or above, no traceback anywhere, and every WARNING a protocol error
    from the target; returns those warnings."""
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.stack_info] == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w for w in warnings if "protocol error from target: " not in w] == []
    return warnings


def printable(text: str) -> bool:
    return all(ch.isprintable() for ch in text)


# -- malformed messages after the first Query ------------------------------------------------

CONTROL = "\x1b[2J\x1b[31mPWNED\x1b[0m\x07\x08\r\x1b]0;title\x07\x9b6n"

MALFORMED = {
    # The length field is below the minimum of 4 (it counts itself).
    "bad length": (b"C\x00\x00\x00\x02", "message length 2 is below the minimum 4"),
    # A row that says five columns and carries one.
    "DataRow column count overruns": (
        encode(_ONE_COLUMN) + raw_message(b"D", struct.pack("!H", 5) + struct.pack("!i", 1) + b"x"),
        "DataRow",
    ),
    # A value whose length runs past the end of its row.
    "DataRow value overruns": (
        encode(_ONE_COLUMN)
        + raw_message(b"D", struct.pack("!H", 1) + struct.pack("!i", 1000) + b"short"),
        "DataRow",
    ),
    "CommandComplete without NUL": (
        encode(_ONE_COLUMN) + raw_message(b"C", b"SELECT 0"),
        "CommandComplete",
    ),
    # Control characters and ANSI escapes in every field, and the field list never ends.
    "ErrorResponse of control characters, unterminated": (
        raw_message(
            b"E",
            b"SERROR\x00C\x1b[31m\x00M" + CONTROL.encode() + b"\x00D" + CONTROL.encode(),
        ),
        "ErrorResponse",
    ),
    "ErrorResponse with invalid UTF-8": (
        raw_message(b"E", b"SERROR\x00C42000\x00M\xff\xfe\x1b[31m\x00\x00"),
        "invalid UTF-8 in ErrorResponse",
    ),
    # 4 GiB announced: refused on the header, never buffered.
    "huge declared length": (b"D\xff\xff\xff\xf0" + b"\x00" * 64, "exceeds the"),
}


async def raw_query(gw: Gateway, sql: str) -> list[m.BackendMessage]:
    """A hand-driven client through the local listener: start-up, the local secret, one
    Query; every message it got after the greeting, until the connection ended. Each one
    must decode: nothing malformed reaches the client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    frames = FrameReader()
    seen: list[m.BackendMessage] = []
    try:
        writer.write(encode(m.startup_message({"user": gw.user, "database": gw.database})))
        await reader.readexactly(9)  # AuthenticationCleartextPassword, from the listener
        writer.write(encode(m.PasswordMessage(gw.secret.encode() + b"\0")))
        greeted = False
        async with asyncio.timeout(15):
            while data := await reader.read(65536):
                frames.receive_data(data)
                for frame in frames.frames():
                    msg = decode_backend(frame)
                    if greeted:
                        seen.append(msg)
                    elif isinstance(msg, m.ReadyForQuery):
                        greeted = True
                        writer.write(encode(m.Query(sql)))
        frames.receive_data(b"")
        assert frames.at_eof  # the stream ended between messages
    finally:
        writer.close()
    return seen


# The relay reads the bodies of the first rows of every result (server.record_rows, kept in the
# recording) and of every row of a masked result; past those it walks message headers only
# (FrameReader.scan), which keeps large results cheap. The malformed rows here come first in
# their result, so they are read and end the session; the same row at position 1000 of an
# unmasked result would reach the client as sent.
@pytest.mark.parametrize("case", list(MALFORMED))
async def test_malformed_reply_ends_the_session_cleanly(
    tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    payload, cause = MALFORMED[case]
    fake = FakeTarget(lambda sql: payload)
    async with fake_gateway(tmp_path, fake) as gw:
        # What the client gets: whole messages, then one FATAL 08P01, then the end.
        seen = await raw_query(gw, "SELECT x FROM hostile")
        fatal = seen[-1]
        assert isinstance(fatal, m.ErrorResponse), seen
        assert (fatal.severity, fatal.code) == ("FATAL", "08P01")
        assert fatal.message.startswith("Watchgate: the target sent malformed data: ")
        assert cause in fatal.message
        assert printable(fatal.message) and "PWNED" not in fatal.message
        assert all(isinstance(msg, m.RowDescription) for msg in seen[:-1])
        assert fake.queries == ["SELECT x FROM hostile"]
        # Central logged in to the fake as the resource's user, not as the client.
        assert [(s["user"], s["database"]) for s in fake.startups] == [("fake", "fake")]
        async with asyncio.timeout(5):
            await fake.hung_up.wait()  # central closed the target connection too

        recorded = await newest_session(gw)
        assert recorded.resource == "fake-db"
        assert recorded.end_reason is not None
        assert recorded.end_reason.startswith("protocol error from target: ")
        assert cause in recorded.end_reason

        # A real driver sees the same: the 08P01 error, and a closed connection.
        async with await psycopg.AsyncConnection.connect(
            gw.dsn, sslmode="disable", autocommit=True, connect_timeout=10
        ) as conn:
            with pytest.raises(psycopg.errors.ProtocolViolation) as info:
                await conn.execute("SELECT x FROM hostile")
            assert "the target sent malformed data" in str(info.value)
            assert conn.closed or conn.broken

        await real_session_works(gw)
    warnings = assert_only_protocol_errors_logged(caplog)
    assert any("protocol error from target" in w and cause in w for w in warnings)


# -- hostile but well-formed text ------------------------------------------------------------


async def test_error_response_full_of_escapes_is_relayed_as_the_targets_own_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision: a well-formed ErrorResponse is the target's own answer, and the client gets
    it as the target sent it, control characters and all - exactly what a direct connection
    would show; newlines and tabs are legitimate in PostgreSQL messages, so central does not
    rewrite them. The session stays usable. The recording keeps the text too, and
    `watchgate replay` shows it with the control characters escaped, so an auditor's terminal
    never executes a target's escape sequences."""
    caplog.set_level(logging.INFO)
    hostile = m.error_response("XX000", f"boom {CONTROL}", detail=f"line\n{CONTROL}")
    fake = FakeTarget(lambda sql: encode(hostile) + encode(m.ReadyForQuery("I")))
    async with fake_gateway(tmp_path, fake) as gw:
        conn = await connect(gw)
        try:
            with pytest.raises(asyncpg.PostgresError) as info:
                await conn.execute("SELECT x FROM hostile", timeout=10)
            assert info.value.sqlstate == "XX000"
            assert info.value.args[0] == f"boom {CONTROL}", info.value.args
            assert info.value.detail == f"line\n{CONTROL}"
            # The session goes on (the fake answers later queries with one row).
            assert await conn.execute("SELECT x", timeout=10) == "SELECT 1"
            assert fake.queries == ["SELECT x FROM hostile", "SELECT x"]
        finally:
            await conn.close()
        recorded = await newest_session(gw)
    assert recorded.statements[0].error == f"XX000 boom {CONTROL}"
    shown = render_session(recorded, "text")
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "boom \\x1b[2J\\x1b[31mPWNED" in shown
    assert_only_protocol_errors_logged(caplog)


async def test_hostile_parameter_status_is_passed_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Decision: ParameterStatus names and values are the target's own text and reach the
    client unchanged, control characters included (the codec carries any text without NUL;
    PostgreSQL's own reports are the client's business to display). Central neither crashes
    nor logs them."""
    caplog.set_level(logging.DEBUG)
    name, value = "x_wg\x1b[31m\x07name", f"value {CONTROL}\ttab"
    fake = FakeTarget(
        lambda sql: answer(b"1"),
        parameters=[("server_version", "15.99 (fake)"), (name, value)],
    )
    async with fake_gateway(tmp_path, fake) as gw:
        async with await psycopg.AsyncConnection.connect(
            gw.dsn, sslmode="disable", autocommit=True
        ) as conn:
            assert conn.info.parameter_status(name) == value
            assert conn.info.parameter_status("server_version") == "15.99 (fake)"
            cur = await conn.execute("SELECT x", prepare=False)
            assert await cur.fetchall() == [("1",)]
        assert fake.queries == ["SELECT x"]
        await real_session_works(gw)
    assert_only_protocol_errors_logged(caplog)
    assert all(value not in r.getMessage() for r in caplog.records)


# -- a target that goes away -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "reply"),
    [
        ("between messages", encode(_ONE_COLUMN)),
        ("inside a message", encode(_ONE_COLUMN) + b"D\x00\x00\x00\x20\x00\x01"),
    ],
)
async def test_target_that_hangs_up_mid_session(
    tmp_path: Path, when: str, reply: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fake = FakeTarget(lambda sql: reply, close_after_first=True)
    async with fake_gateway(tmp_path, fake) as gw:
        conn = await connect(gw)
        try:
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
                await conn.execute("SELECT x FROM hostile", timeout=10)
            assert conn.is_closed()
        finally:
            await conn.close()
        assert fake.queries == ["SELECT x FROM hostile"]
        recorded = await newest_session(gw)
        assert recorded.resource == "fake-db"
        assert recorded.end_reason == "target closed the connection"
        assert recorded.ended_at is not None
        await real_session_works(gw)
    assert_only_protocol_errors_logged(caplog)
