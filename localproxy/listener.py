"""The local listener: native clients connect on 127.0.0.1, each connection gets a tunnel.

For PostgreSQL the listener admits a client with the per-session local secret, opens one TLS
tunnel to central per client connection, and from then on copies bytes both ways. It never
sees the target's credential; what it relays after start-up is central's conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from localproxy import pgfront
from localproxy.contract import CancelKey, ResourceView, TunnelAnswer, TunnelHello
from localproxy.tunnel import Tunnel, TunnelError

CHUNK = 256 * 1024
HIGH_WATER = 1 << 20

TokenSource = Callable[[], Awaitable[str]]


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF; drain only when the peer falls behind (no await per chunk otherwise)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            if writer.transport.get_write_buffer_size() > HIGH_WATER:
                await writer.drain()
        await writer.drain()
    except (ConnectionError, OSError):
        pass


async def relay(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    t_reader: asyncio.StreamReader,
    t_writer: asyncio.StreamWriter,
) -> None:
    """Both directions until either side is done; then both connections are closed."""
    up = asyncio.ensure_future(pump(c_reader, t_writer))
    down = asyncio.ensure_future(pump(t_reader, c_writer))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        t_writer.close()


def _deny_message(answer: TunnelAnswer) -> tuple[str, str]:
    """The SQLSTATE and text a PostgreSQL client gets for central's refusal."""
    if answer.status == "pending":
        return "28000", f"{answer.reason} (request {answer.request_id})"
    sqlstate = {"token": "28000", "forbidden": "42501", "target": "08006"}.get(answer.code, "28000")
    return sqlstate, answer.reason


class PostgresListener:
    def __init__(
        self, resource: ResourceView, tunnel: Tunnel, token: TokenSource, secret: str
    ) -> None:
        self.resource = resource
        self.tunnel = tunnel
        self.token = token
        self.secret = secret
        self.live: set[str] = set()  # central's session ids, to extend when the token refreshes
        self.refused = 0
        self._server: asyncio.Server | None = None

    async def start(self, port: int) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", port, limit=1 << 20)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else "?"
        try:
            first = await asyncio.wait_for(pgfront.read_startup(reader, writer), 30)
            if isinstance(first, pgfront.Cancel):
                await self._cancel(first, client)
                return
            await asyncio.wait_for(pgfront.check_secret(reader, writer, self.secret), 30)
            hello = TunnelHello(
                token=await self.token(),
                resource=self.resource.name,
                params=first.params,
                client=client,
            )
            answer, t_reader, t_writer = await self.tunnel.open(hello)
            if answer.status != "accept":
                raise pgfront.StartupError(*_deny_message(answer))
            assert answer.session_id is not None
            self.live.add(answer.session_id)
            try:
                await relay(reader, writer, t_reader, t_writer)
            finally:
                self.live.discard(answer.session_id)
        except pgfront.StartupError as e:
            self.refused += 1
            writer.write(pgfront.error_response(e.sqlstate, str(e)))
        except TunnelError as e:
            writer.write(pgfront.error_response("08006", str(e)))
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()

    async def _cancel(self, cancel: pgfront.Cancel, client: str) -> None:
        # A CancelRequest carries no password: the key central handed out is the credential,
        # and central also checks that the caller's token belongs to the session's user.
        hello = TunnelHello(
            token=await self.token(),
            resource=self.resource.name,
            client=client,
            cancel=CancelKey(pid=cancel.pid, secret=cancel.secret.hex()),
        )
        with contextlib.suppress(TunnelError):
            _, _, t_writer = await self.tunnel.open(hello)
            t_writer.close()
