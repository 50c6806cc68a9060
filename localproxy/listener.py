"""The local listener: native clients connect on 127.0.0.1, each connection gets a tunnel.

For PostgreSQL the listener admits a client with the per-session local secret, opens one TLS
tunnel to central per client connection, and from then on copies bytes both ways. It never
sees the target's credential; what it relays after start-up is central's conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import cast

from localproxy import pgfront
from localproxy.contract import CancelKey, ResourceView, TunnelAnswer, TunnelHello
from localproxy.tunnel import Tunnel, TunnelError

HIGH_WATER = 1 << 20

TokenSource = Callable[[], Awaitable[str]]


class _Pipe(asyncio.Protocol):
    """One end of a byte pipe: what arrives is written to the peer, with no await per chunk.

    (Central has the same shape in central/protocols/transport.py; localproxy may not import
    central, and this is all it needs.)
    """

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.peer: _Pipe | None = None

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


def _adopt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pipe: _Pipe) -> bytes:
    # StreamReader has no public way to hand over what it has buffered; see central's twin.
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    leftover = bytes(buffer)
    buffer.clear()
    # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
    transport = cast(asyncio.Transport, writer.transport)
    pipe.transport = transport
    transport.set_protocol(pipe)
    transport.set_write_buffer_limits(high=HIGH_WATER)
    if not transport.is_reading():
        transport.resume_reading()
    return leftover


async def relay(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    t_reader: asyncio.StreamReader,
    t_writer: asyncio.StreamWriter,
) -> None:
    """Both directions until either side is done; then both connections are closed."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client, tunnel = _Pipe(done), _Pipe(done)
    client.peer, tunnel.peer = tunnel, client
    from_client = _adopt(c_reader, c_writer, client)
    from_tunnel = _adopt(t_reader, t_writer, tunnel)
    if from_client:
        client.data_received(from_client)
    if from_tunnel:
        tunnel.data_received(from_tunnel)
    try:
        await done
    finally:
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
                token=await self._token(),
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

    async def _token(self) -> str:
        """The current access token; a sign-in that cannot give one (ended, central unreachable
        for the refresh) refuses the client with the reason instead of dropping it silently."""
        try:
            return await self.token()
        except Exception as e:
            raise pgfront.StartupError("28000", f"no Watchgate sign-in: {e}") from None

    async def _cancel(self, cancel: pgfront.Cancel, client: str) -> None:
        # A CancelRequest carries no password: the key central handed out is the credential,
        # and central also checks that the caller's token belongs to the session's user.
        # Like PostgreSQL, a cancel is never answered, not even when it cannot be passed on.
        with contextlib.suppress(TunnelError, pgfront.StartupError):
            hello = TunnelHello(
                token=await self._token(),
                resource=self.resource.name,
                client=client,
                cancel=CancelKey(pid=cancel.pid, secret=cancel.secret.hex()),
            )
            _, _, t_writer = await self.tunnel.open(hello)
            t_writer.close()
