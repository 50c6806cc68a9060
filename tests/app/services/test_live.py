"""LiveEvents against a real central: events pushed by central's API arrive; a dropped
connection is opened again; signing out closes the stream.

bob (admins) is signed in through the browser and listens; carol (dba-leads) asks for access to
a resource whose reviewers are the admins, through the API as any client would, and central
pushes `request.created` to bob. To drop the connection the way a network does, the app talks
to central through a TCP relay that the test can cut.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.services.account import Account
from app.services.live import LiveEvents
from localproxy.api import CentralClient
from localproxy.contract import Event
from localproxy.tokens import TokenStore
from tests.app.services.conftest import MemoryKeyring, eventually, mint, person
from tests.support.central import Running


class Relay:
    """A TCP relay on loopback in front of `port`: `cut()` aborts every connection through
    it, as a dropped network (or a restarted central) would."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self.accepted = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers |= {writer, up_writer}
        pumps = {
            asyncio.ensure_future(_pump(reader, up_writer)),
            asyncio.ensure_future(_pump(up_reader, writer)),
        }
        self._tasks |= pumps
        await asyncio.wait(pumps)
        self._tasks -= pumps

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def aclose(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def listening(
    account: Account,
) -> AsyncIterator[tuple[LiveEvents, list[Event], list[int]]]:
    events: list[Event] = []
    connections: list[int] = []
    live = LiveEvents(
        account, events.append, on_connected=lambda: connections.append(len(connections) + 1)
    )
    live.start()
    try:
        yield live, events, connections
    finally:
        await live.aclose()


async def carol_requests(running: Running, resource: str) -> str:
    async with CentralClient(running.url, mint(running, "carol")) as api:
        request = await api.request_access(resource, "rotate the shop's keys", "30m")
    return request.id


def created(events: list[Event], request_id: str) -> bool:
    return any(e.type == "request.created" and e.data.get("id") == request_id for e in events)


async def test_an_event_pushed_by_central_reaches_on_event(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    bob = Account(running.url, TokenStore(keyring_backend), open_browser=person("bob"))
    await bob.sign_in()
    async with listening(bob) as (live, events, connections):
        await eventually(lambda: live.connected, "the stream is open")
        assert running.central.events.subscribers("bob") == 1

        request_id = await carol_requests(running, "shop-db-admin")

        await eventually(lambda: created(events, request_id), "bob sees carol's request")
        [event] = [e for e in events if e.data.get("id") == request_id]
        assert event.data["requester"] == "carol"
        assert event.data["resource"] == "shop-db-admin"
        assert connections == [1]
    await bob.aclose()


async def test_the_stream_is_opened_again_after_the_connection_drops(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    port = int(running.url.rsplit(":", 1)[1])
    relay = Relay(port)
    url = await relay.start()
    bob = Account(url, TokenStore(keyring_backend), open_browser=person("bob"))
    await bob.sign_in()
    try:
        async with listening(bob) as (live, events, connections):
            await eventually(lambda: connections == [1], "the first connection")
            first = await carol_requests(running, "shop-db-admin")
            await eventually(lambda: created(events, first), "the first event")

            relay.cut()

            await eventually(lambda: connections == [1, 2], "a second connection")
            await eventually(lambda: running.central.events.subscribers("bob") == 1, "1 stream")
            second = await carol_requests(running, "shop-db")
            await eventually(lambda: created(events, second), "an event on the new stream")
            assert live.connected
            assert [e.data.get("id") for e in events if e.type == "request.created"] == [
                first,
                second,
            ]
    finally:
        await bob.aclose()
        await relay.aclose()


async def test_signing_out_closes_the_stream_and_signing_in_opens_it(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    bob = Account(running.url, TokenStore(keyring_backend), open_browser=person("bob"))
    await bob.sign_in()
    async with listening(bob) as (live, events, connections):
        await eventually(lambda: running.central.events.subscribers("bob") == 1, "bob listens")

        await bob.sign_out()

        await eventually(lambda: running.central.events.subscribers("bob") == 0, "closed")
        assert not live.connected
        await asyncio.sleep(0.5)
        assert connections == [1]  # no attempt without a sign-in

        await bob.sign_in()

        await eventually(lambda: connections == [1, 2], "open again after the sign-in")
        request_id = await carol_requests(running, "shop-db-admin")
        await eventually(lambda: created(events, request_id), "the event after sign-in")
    await bob.aclose()
