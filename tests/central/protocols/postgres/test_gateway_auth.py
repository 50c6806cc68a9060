"""Central logs in to the target with the held credential, through the whole gateway.

client (asyncpg / psycopg) → local listener → TLS tunnel → central → the `auth_cluster`, a
throw-away PostgreSQL that demands SCRAM-SHA-256, md5 or a cleartext password per role and
speaks TLS with a private CA. The client logs in to the local listener as the Watchgate user
with the local secret; what it gets back is a session as the held role. A byte spy between
the client and the local listener sees everything the client sends and receives, so the tests
can say what the client never saw: the held password, in any form.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from central.config import ConfigError
from central.protocols.postgres import messages as m
from central.protocols.postgres.codec import FrameReader, decode_backend, decode_frontend
from tests.support.central import make_config
from tests.support.gateway import Gateway, gateway, resource_for
from tests.support.pgcluster import AuthCluster, Role, free_port

ROLES = ("scram", "md5", "plain")
# pg_hba.conf's method for each role, and how central reports having answered it.
HBA_METHOD = {"scram": "scram-sha-256", "md5": "md5", "plain": "password"}
CENTRAL_METHOD = {"scram": "SCRAM-SHA-256", "md5": "md5", "plain": "password"}


def role_of(cluster: AuthCluster, which: str) -> Role:
    role = getattr(cluster, which)
    assert isinstance(role, Role)
    return role


def resource(cluster: AuthCluster, role: Role, name: str, **extra: Any) -> dict[str, Any]:
    """A postgres resource on the auth cluster whose held credential is `role`'s."""
    url = f"postgresql://{role.name}@{cluster.host}:{cluster.port}/{cluster.database}"
    return resource_for(url, name, **({"password": role.password} | extra))


# -- a spy between the client and the local listener ------------------------------------------


@dataclass
class Spy:
    """Every byte the client sent (`sent`) and received (`received`) on its connections."""

    port: int
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)

    def frontend(self) -> list[object]:
        """The client's messages (it must not ask for TLS: one plain start-up)."""
        reader = FrameReader(startup=True)
        reader.receive_data(bytes(self.sent))
        return [decode_frontend(frame) for frame in reader.frames()]

    def backend(self) -> list[object]:
        reader = FrameReader()
        reader.receive_data(bytes(self.received))
        return [decode_backend(frame) for frame in reader.frames()]


@contextlib.asynccontextmanager
async def spy_on(port: int) -> AsyncIterator[Spy]:
    """A TCP relay to 127.0.0.1:`port` that keeps a copy of both directions."""
    spy = Spy(0)
    pipes: set[asyncio.Future[tuple[None, None]]] = set()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, copy: bytearray) -> None:
        try:
            while data := await src.read(65536):
                copy += data
                dst.write(data)
                await dst.drain()
        except ConnectionError:
            pass
        finally:
            dst.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        both = asyncio.gather(
            pipe(reader, up_writer, spy.sent), pipe(up_reader, writer, spy.received)
        )
        task = asyncio.ensure_future(both)
        pipes.add(task)
        await task

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    spy.port = server.sockets[0].getsockname()[1]
    try:
        yield spy
    finally:
        server.close()
        await server.wait_closed()
        if pipes:
            await asyncio.wait(pipes, timeout=5)


async def connect(gw: Gateway, port: int | None = None) -> asyncpg.Connection:
    """asyncpg to the local listener (or a spy in front of it), without TLS to the listener."""
    return await asyncpg.connect(
        host="127.0.0.1",
        port=port or gw.port,
        user=gw.user,
        password=gw.secret,
        database=gw.database,
        ssl=False,
    )


def held_forms(role: Role) -> list[bytes]:
    """The held password as it could leak: plain, and the md5 hash PostgreSQL's md5 uses."""
    inner = hashlib.md5((role.password + role.name).encode(), usedforsecurity=False).hexdigest()
    return [role.password.encode(), inner.encode()]


# -- each authentication method ---------------------------------------------------------------


@pytest.mark.parametrize("which", ROLES)
async def test_held_credential_logs_in_and_the_client_sees_only_the_local_secret(
    tmp_path: Path, auth_cluster: AuthCluster, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    role = role_of(auth_cluster, which)
    assert role.method == HBA_METHOD[which]
    res = resource(auth_cluster, role, f"{which}-db")
    async with gateway(tmp_path, "", resources=[res]) as gw, spy_on(gw.port) as spy:
        assert gw.secret != role.password
        conn = await connect(gw, spy.port)
        try:
            assert await conn.fetchval("SELECT current_user") == role.name
            assert await conn.fetchval("SELECT current_database()") == auth_cluster.database
        finally:
            await conn.close()
        await asyncio.sleep(0.1)  # let the spy copy the last bytes

    # What the client sent: a start-up as the Watchgate user, and the local secret.
    sent = spy.frontend()
    startup = sent[0]
    assert isinstance(startup, m.StartupMessage)
    assert startup.params["user"] == gw.user == "alice"
    passwords = [msg for msg in sent if isinstance(msg, m.PasswordMessage)]
    assert [p.data.rstrip(b"\0") for p in passwords] == [gw.secret.encode()]

    # What it got: one cleartext-password request (the local listener's), never the target's
    # SCRAM or md5 challenge; and the held password in no form, anywhere.
    received = spy.backend()
    auth = [msg.code for msg in received if isinstance(msg, m.Authentication)]
    assert auth == [m.Authentication.CLEARTEXT, m.Authentication.OK]
    params = {msg.name: msg.value for msg in received if isinstance(msg, m.ParameterStatus)}
    assert "server_version" in params  # the target's own parameters were relayed
    for form in held_forms(role):
        assert all(form.decode() not in v for v in params.values())
        assert form not in spy.received
        assert form not in spy.sent
    rows = [msg for msg in received if isinstance(msg, m.DataRow)]
    assert (role.name.encode(),) in [r.values for r in rows]

    # Central answered the target's own challenge with the held credential...
    connected = [r.getMessage() for r in caplog.records if "connected to" in r.getMessage()]
    assert connected == [
        f"[resource={which}-db] connected to {auth_cluster.host}:{auth_cluster.port} as "
        f"{role.name} (auth {CENTRAL_METHOD[which]}, tls disable)"
    ]
    # ...and wrote the held password into no log line.
    assert all(role.password not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("which", ROLES)
async def test_psycopg_gets_the_held_role(
    tmp_path: Path, auth_cluster: AuthCluster, which: str
) -> None:
    role = role_of(auth_cluster, which)
    res = resource(auth_cluster, role, f"{which}-db")
    async with (
        gateway(tmp_path, "", resources=[res]) as gw,
        await psycopg.AsyncConnection.connect(gw.dsn, sslmode="disable") as conn,
    ):
        cur = await conn.execute("SELECT current_user, session_user")
        assert await cur.fetchone() == (role.name, role.name)
        assert conn.info.password == gw.secret
        assert conn.info.user == "alice"
        names = ("server_version", "session_authorization", "application_name", "TimeZone")
        for name in names:
            assert role.password not in (conn.info.parameter_status(name) or "")


@pytest.mark.parametrize("which", ROLES)
async def test_wrong_held_password_names_the_resource_and_hides_the_password(
    tmp_path: Path, auth_cluster: AuthCluster, which: str
) -> None:
    role = role_of(auth_cluster, which)
    wrong = f"not-{role.password}-{which}"
    res = resource(auth_cluster, role, f"{which}-db", password=wrong)
    async with gateway(tmp_path, "", resources=[res]) as gw, spy_on(gw.port) as spy:
        with pytest.raises(asyncpg.PostgresError) as info:
            await connect(gw, spy.port)
        await asyncio.sleep(0.1)
    error = info.value
    text = str(error)
    assert isinstance(error, asyncpg.PostgresError)
    assert error.sqlstate == "08006"
    assert text.startswith(f"{which}-db: the target refused the held credential")
    assert "password authentication failed" in text
    # The client's view of the failure: one ErrorResponse, with neither password in it.
    errors = [msg for msg in spy.backend() if isinstance(msg, m.ErrorResponse)]
    assert len(errors) == 1 and errors[0].message == text
    for secret in (wrong, role.password):
        assert secret not in text
        assert secret.encode() not in spy.received


# -- TLS to the target ------------------------------------------------------------------------


async def backend_ssl(gw: Gateway) -> tuple[bool, str | None]:
    conn = await connect(gw)
    try:
        row = await conn.fetchrow(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert row is not None
        return bool(row["ssl"]), row["version"]
    finally:
        await conn.close()


async def test_tls_disable_is_plaintext_to_the_target(
    tmp_path: Path, auth_cluster: AuthCluster
) -> None:
    # The control for the two tests below: pg_stat_ssl really tells the modes apart.
    res = resource(auth_cluster, auth_cluster.scram, "plain-db", tls="disable")
    async with gateway(tmp_path, "", resources=[res]) as gw:
        assert await backend_ssl(gw) == (False, None)


async def test_tls_require_encrypts_to_the_target(
    tmp_path: Path, auth_cluster: AuthCluster
) -> None:
    res = resource(auth_cluster, auth_cluster.scram, "tls-db", tls="require")
    async with gateway(tmp_path, "", resources=[res]) as gw:
        ssl_on, version = await backend_ssl(gw)
    assert ssl_on is True
    assert version in ("TLSv1.2", "TLSv1.3")


async def test_tls_verify_full_with_tls_ca_file_relative_to_the_config(
    tmp_path: Path, auth_cluster: AuthCluster
) -> None:
    (tmp_path / "certs").mkdir()
    shutil.copy(auth_cluster.ca_file, tmp_path / "certs" / "target-ca.pem")
    res = resource(
        auth_cluster,
        auth_cluster.md5,
        "verified-db",
        tls="verify-full",
        tls_ca_file="certs/target-ca.pem",  # relative to the config file in tmp_path
    )
    async with gateway(tmp_path, "", resources=[res]) as gw:
        held = gw.central.config.resource("verified-db")
        assert held is not None
        assert held.tls_ca_file == (tmp_path / "certs" / "target-ca.pem").resolve()
        ssl_on, _ = await backend_ssl(gw)
    assert ssl_on is True


async def test_tls_verify_full_with_a_wrong_ca_names_the_resource(
    tmp_path: Path, auth_cluster: AuthCluster
) -> None:
    res = resource(
        auth_cluster,
        auth_cluster.scram,
        "verified-db",
        tls="verify-full",
        tls_ca_file=auth_cluster.wrong_ca_file,
    )
    async with gateway(tmp_path, "", resources=[res]) as gw:
        with pytest.raises(asyncpg.PostgresError) as info:
            await connect(gw)
    text = str(info.value)
    assert info.value.sqlstate == "08006"
    assert text.startswith("verified-db: TLS handshake with 127.0.0.1:")
    assert "certificate verification failed" in text
    assert auth_cluster.scram.password not in text


async def test_target_down_names_the_resource_and_connection_refused(
    tmp_path: Path, auth_cluster: AuthCluster
) -> None:
    port = free_port()  # nothing listens there
    res = resource(auth_cluster, auth_cluster.scram, "gone-db") | {"address": f"127.0.0.1:{port}"}
    async with gateway(tmp_path, "", resources=[res]) as gw:
        with pytest.raises(asyncpg.PostgresError) as info:
            await connect(gw)
    assert info.value.sqlstate == "08006"
    assert str(info.value) == f"gone-db: cannot connect to 127.0.0.1:{port}: connection refused"


# -- tls_ca_file in the config ----------------------------------------------------------------


def config_with(tmp_path: Path, **res: Any) -> None:
    base = {
        "name": "db",
        "kind": "postgres",
        "address": "127.0.0.1:5432",
        "database": "db",
        "username": "app",
        "password": "held",
    }
    make_config(tmp_path, 1, resources=[base | res], roles=[])


def test_tls_ca_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config_with(tmp_path, tls="verify-full", tls_ca_file="missing-ca.pem")
    missing = (tmp_path / "missing-ca.pem").resolve()
    assert str(info.value) == (
        f"{tmp_path / 'watchgate.toml'}: resources[0].tls_ca_file: "
        f"{missing} does not exist or is not a file"
    )


def test_tls_ca_file_must_hold_a_certificate(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"resources\[0\]\.tls_ca_file: cannot load CA"):
        config_with(tmp_path, tls="verify-full", tls_ca_file="ca.pem")


def test_tls_ca_file_needs_verify_full(tmp_path: Path, auth_cluster: AuthCluster) -> None:
    # With "require" the certificate is not checked at all: a CA there would be a false comfort.
    with pytest.raises(ConfigError, match=r"resources\[0\]: tls_ca_file is only used with tls"):
        config_with(tmp_path, tls="require", tls_ca_file=auth_cluster.ca_file)
