"""Opening the target with the held credential (`central.protocols.postgres.target`).

Authentication is proven against the throw-away cluster of `auth_cluster`, which demands it
(SCRAM-SHA-256, md5 or cleartext password per role) and speaks TLS; the machine's own PostgreSQL
at 127.0.0.1:5432 trusts everyone and has TLS off, which the trust and "no TLS" cases use. What
a real PostgreSQL cannot be made to do - lie about knowing the password, hang, echo secrets - is
played by small fake servers defined below, each one documented as such.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import pytest

from central.protocols.errors import clean_text
from central.protocols.postgres import messages as m
from central.protocols.postgres.codec import (
    FrameReader,
    decode_backend,
    decode_frontend,
    encode,
    parse_sasl_initial_response,
)
from central.protocols.postgres.target import (
    SAFE_STARTUP_PARAMS,
    TargetConnection,
    TargetError,
    TargetSpec,
    cancel_target,
    connect_target,
    filter_startup_params,
)
from tests.support.pgcluster import AuthCluster, Role, free_port

RESOURCE = "shop-db"
LOCAL_PG = ("127.0.0.1", 5432)  # the machine's trusting PostgreSQL, TLS off
HELD_SECRET = "held-secret"  # the password fake targets are given


def spec_for(
    cluster: AuthCluster,
    role: Role,
    *,
    password: str | None = None,
    tls: str = "disable",
    ca_file: str | None = None,
    params: dict[str, str] | None = None,
) -> TargetSpec:
    return TargetSpec(
        resource=RESOURCE,
        host=cluster.host,
        port=cluster.port,
        database=cluster.database,
        user=role.name,
        password=role.password if password is None else password,
        tls=tls,  # type: ignore[arg-type]
        ca_file=ca_file,
        params=params or {},
    )


def local_spec(**changes: object) -> TargetSpec:
    values: dict[str, object] = {
        "resource": RESOURCE,
        "host": LOCAL_PG[0],
        "port": LOCAL_PG[1],
        "database": "postgres",
        "user": "postgres",
        "password": None,
        "tls": "disable",
        "ca_file": None,
        "params": {},
    }
    values.update(changes)
    return TargetSpec(**values)  # type: ignore[arg-type]


@dataclass
class QueryResult:
    rows: list[tuple[str | None, ...]]
    error: m.ErrorResponse | None


async def simple_query(conn: TargetConnection, sql: str, *, timeout: float = 10) -> QueryResult:
    """Run `sql` with the simple query protocol on a connection from `connect_target`, reading
    the reply with the codec until ReadyForQuery."""
    frames = FrameReader()
    if conn.buffered:
        frames.receive_data(conn.buffered)
    conn.writer.write(encode(m.Query(sql)))
    await conn.writer.drain()
    rows: list[tuple[str | None, ...]] = []
    error: m.ErrorResponse | None = None
    async with asyncio.timeout(timeout):
        while True:
            for frame in frames.frames():
                message = decode_backend(frame)
                if isinstance(message, m.DataRow):
                    rows.append(tuple(None if v is None else v.decode() for v in message.values))
                elif isinstance(message, m.ErrorResponse):
                    error = message
                elif isinstance(message, m.ReadyForQuery):
                    return QueryResult(rows, error)
            data = await conn.reader.read(65536)
            assert data, "the target closed the connection in the middle of a query"
            frames.receive_data(data)


async def scalar(conn: TargetConnection, sql: str) -> str | None:
    result = await simple_query(conn, sql)
    assert result.error is None, result.error
    assert len(result.rows) == 1 and len(result.rows[0]) == 1, result.rows
    return result.rows[0][0]


@asynccontextmanager
async def connected(spec: TargetSpec) -> AsyncIterator[TargetConnection]:
    conn = await connect_target(spec)
    try:
        yield conn
    finally:
        await conn.close()


# --- authentication against a server that demands it -------------------------------------------


@pytest.mark.parametrize(
    ("role_attr", "method"),
    [("scram", "SCRAM-SHA-256"), ("md5", "md5"), ("plain", "password")],
)
async def test_each_auth_method_connects(
    auth_cluster: AuthCluster, role_attr: str, method: str
) -> None:
    role: Role = getattr(auth_cluster, role_attr)
    async with connected(spec_for(auth_cluster, role)) as conn:
        assert conn.auth_method == method  # the server really asked for this method
        assert conn.parameters["server_version"].split()[0][:2].isdigit()
        assert conn.parameters["session_authorization"] == role.name
        assert conn.parameters["client_encoding"] == "UTF8"
        assert conn.pid > 0
        assert len(conn.secret) == 4
        assert conn.status == "I"
        assert conn.buffered == b""
        assert await scalar(conn, "SELECT current_user") == role.name
        assert await scalar(conn, "SELECT pg_backend_pid()") == str(conn.pid)


@pytest.mark.parametrize("role_attr", ["scram", "md5", "plain"])
async def test_wrong_password_is_refused(auth_cluster: AuthCluster, role_attr: str) -> None:
    role: Role = getattr(auth_cluster, role_attr)
    wrong = "not-the-password"
    with pytest.raises(TargetError) as caught:
        await connect_target(spec_for(auth_cluster, role, password=wrong))
    message = str(caught.value)
    assert message.startswith(f"{RESOURCE}: the target refused the held credential: ")
    assert f'password authentication failed for user "{role.name}"' in message
    assert caught.value.sqlstate == "28P01"
    assert wrong not in message and "\n" not in message


async def test_missing_credential_is_reported(auth_cluster: AuthCluster) -> None:
    spec = TargetSpec(
        RESOURCE, auth_cluster.host, auth_cluster.port, auth_cluster.database, "scram_user", None
    )
    with pytest.raises(TargetError, match=r"^shop-db: .*no credential held for this resource$"):
        await connect_target(spec)


async def test_target_errors_name_the_cause(auth_cluster: AuthCluster) -> None:
    missing_db = replace(spec_for(auth_cluster, auth_cluster.scram), database="no_such_db")
    with pytest.raises(TargetError) as caught:
        await connect_target(missing_db)
    assert str(caught.value) == (
        'shop-db: the target refused the connection: database "no_such_db" does not exist'
    )
    assert caught.value.sqlstate == "3D000"


async def test_trusting_server_needs_no_password() -> None:
    async with connected(local_spec()) as conn:
        assert conn.auth_method == "none"
        assert conn.status == "I"
        assert conn.pid > 0
        assert "server_version" in conn.parameters
        assert await scalar(conn, "SELECT 1") == "1"


async def test_target_down_is_connection_refused() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(TargetError) as caught:
        await connect_target(local_spec(port=port))
    assert str(caught.value) == f"shop-db: cannot connect to 127.0.0.1:{port}: connection refused"


async def test_unresolvable_host() -> None:
    with pytest.raises(TargetError, match=r"^shop-db: cannot resolve no-such-host\.invalid: "):
        await connect_target(local_spec(host="no-such-host.invalid"))


def test_password_is_not_in_repr() -> None:
    spec = local_spec(password="hunter2-secret")
    assert "hunter2-secret" not in repr(spec)
    assert "hunter2-secret" not in str(spec)


# --- TLS ----------------------------------------------------------------------------------------


async def test_tls_require_really_encrypts(auth_cluster: AuthCluster) -> None:
    # No CA given: `require` encrypts without checking the certificate, like libpq.
    async with connected(spec_for(auth_cluster, auth_cluster.scram, tls="require")) as conn:
        # A TLS server offers SCRAM-SHA-256-PLUS too; central picks plain SCRAM-SHA-256.
        assert conn.auth_method == "SCRAM-SHA-256"
        assert conn.writer.get_extra_info("ssl_object") is not None
        ssl_row = await simple_query(
            conn, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert ssl_row.error is None
        assert ssl_row.rows[0][0] == "t"
        assert ssl_row.rows[0][1] in ("TLSv1.2", "TLSv1.3")


async def test_tls_disable_is_plaintext(auth_cluster: AuthCluster) -> None:
    async with connected(spec_for(auth_cluster, auth_cluster.md5)) as conn:
        assert conn.writer.get_extra_info("ssl_object") is None
        assert await scalar(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "f"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_verify_full_with_the_right_ca(auth_cluster: AuthCluster, host: str) -> None:
    spec = spec_for(auth_cluster, auth_cluster.md5, tls="verify-full", ca_file=auth_cluster.ca_file)
    spec = replace(spec, host=host)
    async with connected(spec) as conn:
        assert await scalar(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == "t"


async def test_tls_verify_full_refuses_a_wrong_ca(auth_cluster: AuthCluster) -> None:
    spec = spec_for(
        auth_cluster, auth_cluster.scram, tls="verify-full", ca_file=auth_cluster.wrong_ca_file
    )
    with pytest.raises(TargetError) as caught:
        await connect_target(spec)
    message = str(caught.value)
    assert message.startswith(f"shop-db: TLS handshake with {auth_cluster.host}:")
    assert "certificate verification failed" in message


async def test_tls_verify_full_without_the_ca_uses_the_system_store(
    auth_cluster: AuthCluster,
) -> None:
    # The throw-away CA is in no system store: without ca_file the certificate is refused.
    spec = spec_for(auth_cluster, auth_cluster.scram, tls="verify-full")
    with pytest.raises(TargetError, match="certificate verification failed"):
        await connect_target(spec)


async def test_tls_verify_full_checks_the_host_name(auth_cluster: AuthCluster) -> None:
    # The certificate names 127.0.0.1 and localhost. The cluster listens on 127.0.0.1 only, so
    # a TCP relay on 127.0.0.2 makes it reachable under an address the certificate does not list.
    async with forwarder("127.0.0.2", auth_cluster.host, auth_cluster.port) as port:
        spec = spec_for(
            auth_cluster, auth_cluster.scram, tls="verify-full", ca_file=auth_cluster.ca_file
        )
        spec = replace(spec, host="127.0.0.2", port=port)
        with pytest.raises(TargetError, match=r"certificate verification failed: .*(IP|mismatch)"):
            await connect_target(spec)


async def test_tls_required_but_target_has_none() -> None:
    async with connected(local_spec()) as conn:
        ssl_setting = await scalar(conn, "SHOW ssl")
    if ssl_setting != "off":
        pytest.fail(
            f"this test needs the PostgreSQL at {LOCAL_PG[0]}:{LOCAL_PG[1]} to run without TLS "
            f"(SHOW ssl says {ssl_setting!r})",
            pytrace=False,
        )
    with pytest.raises(TargetError) as caught:
        await connect_target(local_spec(tls="require"))
    assert str(caught.value) == "shop-db: target does not support TLS (resource requires it)"


# --- cancel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["disable", "require"])
async def test_cancel_target_cancels_a_running_query(auth_cluster: AuthCluster, tls: str) -> None:
    spec = spec_for(auth_cluster, auth_cluster.scram, tls=tls)
    async with connected(spec) as conn, connected(spec) as watcher:
        running = asyncio.ensure_future(simple_query(conn, "SELECT pg_sleep(30)", timeout=15))
        try:
            async with asyncio.timeout(10):  # wait until the server is really running it
                while (
                    await scalar(
                        watcher,
                        "SELECT count(*) FROM pg_stat_activity WHERE pid = "  # noqa: S608 - an int
                        f"{conn.pid} AND state = 'active' AND query LIKE '%pg_sleep%'",
                    )
                    != "1"
                ):
                    await asyncio.sleep(0.05)
            started = asyncio.get_running_loop().time()
            await cancel_target(spec, conn.pid, conn.secret)
            result = await running
        finally:
            running.cancel()
        assert asyncio.get_running_loop().time() - started < 10
        assert result.error is not None
        assert result.error.code == "57014"  # query_canceled
        # The session survives a cancel.
        assert await scalar(conn, "SELECT 2") == "2"


async def test_cancel_with_a_wrong_key_does_nothing(auth_cluster: AuthCluster) -> None:
    spec = spec_for(auth_cluster, auth_cluster.plain)
    async with connected(spec) as conn:
        await cancel_target(spec, conn.pid, bytes(b ^ 0xFF for b in conn.secret))
        assert await scalar(conn, "SELECT 3") == "3"


async def test_cancel_target_down() -> None:
    port = free_port()
    with pytest.raises(TargetError, match="connection refused"):
        await cancel_target(local_spec(port=port), 1, b"\x00\x00\x00\x01")


# --- start-up parameters ------------------------------------------------------------------------


def test_filter_startup_params() -> None:
    client = {
        "user": "mallory",
        "database": "other",
        "options": "-c role=postgres",
        "replication": "database",
        "search_path": "evil, public",
        "standard_conforming_strings": "off",
        "_pq_.something": "x",
        "application_name": "psql",
        "datestyle": "ISO, DMY",
        "TIMEZONE": "Europe/Paris",
        "extra_float_digits": "3",
        "IntervalStyle": "iso_8601",
        "client_encoding": "utf-8",
    }
    assert filter_startup_params(client) == {
        "application_name": "psql",
        "DateStyle": "ISO, DMY",
        "TimeZone": "Europe/Paris",
        "extra_float_digits": "3",
        "IntervalStyle": "iso_8601",
        "client_encoding": "UTF8",
    }
    assert filter_startup_params({"client_encoding": "SJIS"}) == {}
    assert filter_startup_params({"application_name": "a\x00b"}) == {}
    assert filter_startup_params({"application_name": "x" * 5000}) == {}
    for name in ("options", "replication", "user", "database", "search_path"):
        assert name not in SAFE_STARTUP_PARAMS


async def test_startup_params_reach_the_target_only_when_safe(auth_cluster: AuthCluster) -> None:
    params = {
        "application_name": "wg-target-test",
        "options": "-c statement_timeout=4242 -c role=postgres",
        "replication": "database",  # would make this a walsender connection (and fail)
        "search_path": "evil",
        "client_encoding": "SJIS",  # client-only encoding: pinned to UTF8 instead
        "TimeZone": "Asia/Tokyo",
    }
    async with connected(spec_for(auth_cluster, auth_cluster.scram, params=params)) as conn:
        assert conn.parameters["application_name"] == "wg-target-test"
        assert await scalar(conn, "SHOW application_name") == "wg-target-test"
        assert await scalar(conn, "SHOW statement_timeout") == "0"
        assert await scalar(conn, "SELECT current_user") == "scram_user"
        assert await scalar(conn, "SHOW search_path") == '"$user", public'
        assert await scalar(conn, "SHOW client_encoding") == "UTF8"
        assert await scalar(conn, "SHOW TimeZone") == "Asia/Tokyo"
        assert (
            await scalar(
                conn, "SELECT backend_type FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
            == "client backend"
        )


# --- fake targets: what a real PostgreSQL cannot be made to do ---------------------------------

Handler = Callable[["FakeClient"], Awaitable[None]]


class FakeClient:
    """The server side of one connection to a fake target: read frontend messages, send
    backend ones (all through the codec)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(startup=True)

    async def receive(self) -> object | None:
        """The next frontend message, or None when the client closed the connection."""
        while True:
            frame = self.frames.next_frame()
            if frame is not None:
                return decode_frontend(frame)
            data = await self.reader.read(65536)
            if not data:
                return None
            self.frames.receive_data(data)

    async def send(self, *messages: object) -> None:
        for message in messages:
            self.writer.write(encode(message))  # type: ignore[arg-type]
        await self.writer.drain()

    async def startup(self) -> m.StartupMessage:
        message = await self.receive()
        assert isinstance(message, m.StartupMessage)
        return message


@asynccontextmanager
async def fake_target(handler: Handler) -> AsyncIterator[int]:
    """Serve `handler` on a free loopback port; yield the port. Handler errors fail the test."""
    failures: list[BaseException] = []
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(FakeClient(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client under test hung up on us, which is often the point
        except BaseException as exc:
            failures.append(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        if handlers:  # the client under test has hung up by now: let the handlers finish
            _, pending = await asyncio.wait(handlers, timeout=5)
            for task in pending:
                task.cancel()
    if failures:
        raise failures[0]


@asynccontextmanager
async def forwarder(listen_host: str, host: str, port: int) -> AsyncIterator[int]:
    """A plain TCP relay from `listen_host`:<free port> to `host`:`port`; yields the port."""

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    relays: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        up_reader, up_writer = await asyncio.open_connection(host, port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(serve, listen_host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        if relays:
            _, pending = await asyncio.wait(relays, timeout=5)
            for task in pending:
                task.cancel()


def fake_spec(port: int, *, password: str | None = HELD_SECRET, **changes: object) -> TargetSpec:
    return local_spec(port=port, user="app", database="app", password=password, **changes)


def _scram_attrs(message: bytes) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.decode().split(",") if "=" in part)


async def _scram_until_client_final(client: FakeClient, mechanisms: bytes) -> tuple[str, str]:
    """Run a SCRAM exchange up to the client's final message without knowing the password.

    Returns (client-first gs2 header + bare, client-final). The salt and nonce are made up: a
    server that does not know the password can still get this far.
    """
    await client.startup()
    await client.send(m.Authentication(m.Authentication.SASL, mechanisms))
    initial = await client.receive()
    assert isinstance(initial, m.PasswordMessage)
    mechanism, first = parse_sasl_initial_response(initial)
    assert mechanism == "SCRAM-SHA-256" and first is not None
    nonce = _scram_attrs(first)["r"] + base64.b64encode(os.urandom(18)).decode()
    salt = base64.b64encode(os.urandom(16)).decode()
    server_first = f"r={nonce},s={salt},i=4096".encode()
    await client.send(m.Authentication(m.Authentication.SASL_CONTINUE, server_first))
    final = await client.receive()
    assert isinstance(final, m.PasswordMessage)
    return first.decode(), final.data.decode()


async def _finish_startup(client: FakeClient) -> None:
    await client.send(
        m.Authentication(m.Authentication.OK),
        m.ParameterStatus("server_version", "99.0"),
        m.BackendKeyData(4242, b"\x01\x02\x03\x04"),
        m.ReadyForQuery("I"),
    )


async def test_scram_server_with_a_wrong_signature_is_refused() -> None:
    """Fake: stands in for a malicious target (or a man in the middle) that does not know the
    password, which a real PostgreSQL cannot be made into. It runs SCRAM without the password,
    sends a made-up server signature, and then says AuthenticationOk anyway."""
    seen: dict[str, str] = {}

    async def impostor(client: FakeClient) -> None:
        first, final = await _scram_until_client_final(client, b"SCRAM-SHA-256\x00\x00")
        seen["first"], seen["final"] = first, final
        signature = base64.b64encode(os.urandom(32)).decode()
        await client.send(m.Authentication(m.Authentication.SASL_FINAL, f"v={signature}".encode()))
        await _finish_startup(client)
        assert await client.receive() is None  # the client hangs up, sends nothing more

    async with fake_target(impostor) as port:
        with pytest.raises(TargetError) as caught:
            await connect_target(fake_spec(port))
    assert str(caught.value) == (
        "shop-db: the target could not prove that it knows the password "
        "(wrong SCRAM server signature)"
    )
    assert seen["first"].startswith("n,,")  # no channel binding, said honestly
    assert "p=" in seen["final"]


async def test_scram_server_that_skips_its_proof_is_refused() -> None:
    """Fake: a malicious target that runs SCRAM to the client's proof, then says
    AuthenticationOk without SASLFinal (so without proving it knows the password)."""

    async def impostor(client: FakeClient) -> None:
        await _scram_until_client_final(client, b"SCRAM-SHA-256\x00\x00")
        await _finish_startup(client)
        assert await client.receive() is None

    async with fake_target(impostor) as port:
        with pytest.raises(TargetError, match="without proving that it knows the password"):
            await connect_target(fake_spec(port))


async def test_scram_plus_only_is_refused_clearly() -> None:
    """Fake: a target that insists on channel binding (SCRAM-SHA-256-PLUS only)."""

    async def plus_only(client: FakeClient) -> None:
        await client.startup()
        await client.send(m.Authentication(m.Authentication.SASL, b"SCRAM-SHA-256-PLUS\x00\x00"))
        assert await client.receive() is None

    async with fake_target(plus_only) as port:
        with pytest.raises(TargetError, match="requires SCRAM with channel binding"):
            await connect_target(fake_spec(port))


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (m.Authentication.GSS, "GSSAPI"),
        (m.Authentication.SSPI, "SSPI"),
        (m.Authentication.KERBEROS_V5, "Kerberos V5"),
    ],
)
async def test_unsupported_auth_methods_are_refused(code: int, name: str) -> None:
    """Fake: a target configured for an authentication method central cannot answer."""

    async def asks(client: FakeClient) -> None:
        await client.startup()
        await client.send(m.Authentication(code))
        assert await client.receive() is None

    async with fake_target(asks) as port:
        with pytest.raises(TargetError) as caught:
            await connect_target(fake_spec(port))
    assert str(caught.value).startswith(f"shop-db: the target asks for {name} authentication")


async def test_server_error_text_is_cleaned_and_the_password_redacted() -> None:
    """Fake: a hostile target that asks for the cleartext password and sends it back inside an
    error message full of control characters, to get it into central's logs."""
    secret = HELD_SECRET

    async def echo(client: FakeClient) -> None:
        startup = await client.startup()
        assert startup.params["user"] == "app"
        await client.send(m.Authentication(m.Authentication.CLEARTEXT))
        answer = await client.receive()
        assert isinstance(answer, m.PasswordMessage)
        assert answer.data == secret.encode() + b"\x00"
        text = f"bad\r\nINFO fake log line\x1b[31m {secret} \u202e" + "x" * 1000
        await client.send(m.error_response("28P01", text, severity="FATAL"))

    async with fake_target(echo) as port:
        with pytest.raises(TargetError) as caught:
            await connect_target(fake_spec(port, password=secret))
    message = str(caught.value)
    assert secret not in message
    assert "***" in message
    assert not any(ch in message for ch in "\r\n\x1b\u202e")
    assert len(message) < 400
    assert message.startswith("shop-db: the target refused the held credential: bad INFO")


async def test_md5_answer_is_computed_from_the_held_password() -> None:
    """Fake: an md5 server that checks the answer itself (a real one is tested above); this
    pins the exact formula md5(md5(password + user) + salt)."""
    salt = b"\x01\x02\x03\x04"
    inner = hashlib.md5(HELD_SECRET.encode() + b"app", usedforsecurity=False).hexdigest()
    expected = "md5" + hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()

    async def md5_server(client: FakeClient) -> None:
        await client.startup()
        await client.send(m.Authentication(m.Authentication.MD5, salt))
        answer = await client.receive()
        assert isinstance(answer, m.PasswordMessage)
        assert answer.data == expected.encode() + b"\x00"
        await _finish_startup(client)

    async with fake_target(md5_server) as port:
        conn = await connect_target(fake_spec(port))
        try:
            assert conn.auth_method == "md5"
            assert (conn.pid, conn.secret) == (4242, b"\x01\x02\x03\x04")
            assert conn.parameters == {"server_version": "99.0"}
        finally:
            await conn.close()


async def test_bytes_after_ready_for_query_stay_readable() -> None:
    """Fake: a server that sends a notification right behind ReadyForQuery, in the same write;
    the relay must still be able to read it (nothing read past ReadyForQuery is dropped)."""
    extra = encode(m.NotificationResponse(4242, "chan", "payload"))

    async def chatty(client: FakeClient) -> None:
        await client.startup()
        client.writer.write(
            b"".join(
                encode(x)
                for x in (
                    m.Authentication(m.Authentication.OK),
                    m.BackendKeyData(4242, b"\x00\x00\x00\x01"),
                    m.ReadyForQuery("I"),
                )
            )
            + extra
        )
        await client.writer.drain()
        await client.receive()

    async with fake_target(chatty) as port:
        conn = await connect_target(fake_spec(port, password=None))
        try:
            pending = conn.buffered + await conn.reader.readexactly(len(extra) - len(conn.buffered))
            assert pending == extra
        finally:
            await conn.close()


async def test_a_silent_target_times_out() -> None:
    """Fake: a target that accepts the connection and then says nothing."""

    async def silent(client: FakeClient) -> None:
        await client.startup()
        await client.receive()

    async with fake_target(silent) as port:
        with pytest.raises(TargetError) as caught:
            await connect_target(fake_spec(port), timeout=0.3)
    assert str(caught.value) == "shop-db: target timed out"


async def test_a_target_that_hangs_up_during_startup() -> None:
    """Fake: a target that closes the connection right after the startup message."""

    async def rude(client: FakeClient) -> None:
        await client.startup()

    async with fake_target(rude) as port:
        with pytest.raises(TargetError, match="closed the connection during start-up"):
            await connect_target(fake_spec(port))


async def test_ssl_answer_other_than_s_or_n() -> None:
    """Fake: a target that answers SSLRequest with garbage."""

    async def odd(client: FakeClient) -> None:
        request = await client.receive()
        assert isinstance(request, m.SSLRequest)
        client.writer.write(b"X")
        await client.writer.drain()

    async with fake_target(odd) as port:
        with pytest.raises(TargetError, match=r"TLS negotiation .* answered b'X'"):
            await connect_target(fake_spec(port, tls="require"))


def test_clean_text() -> None:
    assert clean_text("a\x00b\tc\n\nd\u200fe") == "a b c d e"
    assert clean_text("x" * 50, limit=10) == "x" * 9 + "…"
    assert clean_text("pw=abc!", secret="abc!") == "pw=***"


def test_free_port_is_closed() -> None:
    port = free_port()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))
