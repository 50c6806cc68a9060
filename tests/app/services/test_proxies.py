"""ProxyController: real local-proxy children (`app.childproc`, `python -m app.main
--local-proxy`) in front of a real central and PostgreSQL, used by psql and asyncpg.

alice signs in through the browser; the child gets her access tokens on stdin from the
Account, and only from it: the refresh test lets the first token expire and connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from app.services.account import Account
from app.services.proxies import ProxyController, ProxyError
from localproxy.api import CentralClient, CentralError
from localproxy.contract import AccessState, ResourceView
from localproxy.tokens import TokenSet, TokenStore
from tests.app.services.conftest import (
    MemoryKeyring,
    claims,
    eventually,
    mint,
    person,
)
from tests.support.central import Running, running_central
from tests.support.clients import client_env, psql_binary, run
from tests.support.gateway import resource_for
from tests.support.pgtemp import temporary_database

ROLES = [{"name": "db-users", "groups": ["analysts"], "resources": ["db"], "access": "direct"}]
LEEWAY = 30  # seconds central accepts a token past its `exp`
URI = re.compile(r"postgresql://alice:[A-Za-z0-9_-]+@127\.0\.0\.1:(\d+)/(\w+)")


@dataclass
class Setup:
    running: Running
    account: Account
    keyring: MemoryKeyring
    home: Path

    async def resource(self, name: str = "db") -> ResourceView:
        async with self.account.client() as api:
            return {r.name: r for r in await api.resources()}[name]


@contextlib.asynccontextmanager
async def database_central(tmp_path: Path, **overrides: object) -> AsyncIterator[Running]:
    """A central whose `db` resource is a throw-away database with a table of 10 items."""
    async with temporary_database("wg_app") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g"
        )
        await conn.close()
        async with running_central(
            tmp_path / "central", resources=[resource_for(url)], roles=ROLES, **overrides
        ) as running:
            yield running


@pytest.fixture
async def setup(tmp_path: Path, profile: Path) -> AsyncIterator[Setup]:
    async with database_central(tmp_path) as running:
        keyring = MemoryKeyring()
        account = Account(running.url, TokenStore(keyring), open_browser=person("alice"))
        await account.sign_in()
        yield Setup(running, account, keyring, profile)
        await account.aclose()


@pytest.fixture
async def controller(setup: Setup) -> AsyncIterator[ProxyController]:
    found = ProxyController(setup.account)
    yield found
    await found.aclose()


def accepts_connections(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_connect_starts_a_child_that_psql_and_asyncpg_use(
    setup: Setup, controller: ProxyController
) -> None:
    changes: list[set[str]] = []
    controller.on_change(lambda: changes.append(set(controller.connections)))

    connection = await controller.connect(await setup.resource())

    assert connection.lines[0] == f"listening on 127.0.0.1:{connection.port}"
    assert connection.lines[1] == connection.uri
    found = URI.fullmatch(connection.uri)
    assert found and int(found.group(1)) == connection.port
    assert connection.command is None
    assert connection.pid != os.getpid()
    assert controller.connections == {"db": connection}
    assert changes == [{"db"}]
    # Again: the running proxy, not a second one.
    assert await controller.connect(await setup.resource()) is connection

    conn = await asyncpg.connect(connection.uri)
    try:
        assert await conn.fetchval("SELECT count(*) FROM items") == 10
    finally:
        await conn.close()
    result = await run(
        psql_binary(),
        "-X",
        "-At",
        "-d",
        connection.uri,
        "-c",
        "SELECT name FROM items WHERE id = 3",
        env=client_env(setup.home / "psql"),
    )
    assert result.check("psql").stdout == "item 3\n"

    await controller.disconnect("db")

    assert controller.connections == {}
    assert changes == [{"db"}, set()]
    assert not accepts_connections(connection.port)
    with pytest.raises(ProcessLookupError):
        os.kill(connection.pid, 0)  # gone, and reaped


async def test_connecting_twice_at_once_starts_one_child(
    setup: Setup, controller: ProxyController
) -> None:
    resource = await setup.resource()

    first, second = await asyncio.gather(controller.connect(resource), controller.connect(resource))

    assert first is second
    assert controller.connections == {"db": first}


async def test_a_child_that_stops_before_listening_raises_with_its_reason(
    setup: Setup, controller: ProxyController
) -> None:
    ghost = ResourceView(
        name="nope",
        kind="postgres",
        environment="test",
        description="",
        database="nope",
        access=AccessState.DIRECT,
    )

    with pytest.raises(ProxyError, match=r"stopped: .*no resource named 'nope'"):
        await controller.connect(ghost)

    assert controller.connections == {}


async def test_a_port_in_use_is_named_in_the_error(
    setup: Setup, controller: ProxyController
) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ProxyError, match=rf"cannot listen on 127\.0\.0\.1:{port}"):
            await controller.connect(await setup.resource(), port)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_child_that_dies_later_is_noticed(
    setup: Setup, controller: ProxyController
) -> None:
    connection = await controller.connect(await setup.resource())
    changes: list[set[str]] = []
    controller.on_change(lambda: changes.append(set(controller.connections)))

    os.kill(connection.pid, signal.SIGKILL)

    await eventually(lambda: changes == [set()], "the controller notices")
    assert controller.connections == {}
    assert "db" in controller.errors
    # And connecting again starts a new child.
    again = await controller.connect(await setup.resource())
    assert again.pid != connection.pid
    assert "db" not in controller.errors


async def test_signing_out_stops_the_proxies(setup: Setup, controller: ProxyController) -> None:
    connection = await controller.connect(await setup.resource())

    await setup.account.sign_out()

    await eventually(lambda: controller.connections == {}, "the proxies stop")
    await eventually(lambda: not accepts_connections(connection.port), "the port closes")


async def test_the_child_gets_the_refreshed_token_from_the_parent(
    tmp_path: Path, profile: Path
) -> None:
    """The child cannot refresh: when its first token has expired, new client connections
    still work only because the parent wrote it the refreshed one. (Slow: central accepts a
    token up to 30 s past its expiry, for clock skew, so the test waits that out.)"""
    async with database_central(tmp_path) as running:
        keyring = MemoryKeyring()
        first = Account(running.url, TokenStore(keyring), open_browser=person("alice"))
        await first.sign_in()
        await first.aclose()
        real = keyring.stored(running.url)
        assert real is not None and real.refresh_token is not None
        short = mint(running, "alice", ttl=6)
        TokenStore(keyring).save(running.url, TokenSet(short, real.refresh_token))
        account = Account(running.url, TokenStore(keyring), refresh_margin=3)
        assert await account.restore() is not None
        async with account.client() as api:
            resource = {r.name: r for r in await api.resources()}["db"]
        controller = ProxyController(account)
        try:
            connection = await controller.connect(resource)
            conn = await asyncpg.connect(connection.uri)
            await conn.close()

            # Past the first token's expiry and central's leeway (the parent refreshed 3 s
            # before the expiry).
            await asyncio.sleep(max(0.0, claims(short)["exp"] + LEEWAY + 1 - time.time()))

            assert account.access_token != short
            async with CentralClient(running.url, short) as api:
                with pytest.raises(CentralError) as refused:
                    await api.me()
            assert refused.value.status == 401  # the child could not be using this one
            conn = await asyncpg.connect(connection.uri)
            try:
                assert await conn.fetchval("SELECT count(*) FROM items") == 10
            finally:
                await conn.close()
        finally:
            await controller.aclose()
            await account.aclose()
