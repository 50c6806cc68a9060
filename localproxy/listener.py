"""The local listeners: native clients connect on 127.0.0.1, each connection gets a tunnel.

Every listener opens one TLS tunnel to central per client connection and, once central
accepts, copies bytes both ways. It never sees the target's credential; what it relays is
central's conversation. The per-session local secret keeps other users and processes of this
machine off the tunnel:

- PostgreSQL: the listener itself asks the client for the secret as its password before it
  opens the tunnel (pgfront), and answers refusals with PostgreSQL errors.
- SSH: the stream is encrypted end to end between the client and central, so the listener
  parses nothing; it hands the secret and this run's client key to central in the hello, and
  central checks what the client presents. Refusals become SSH disconnects (sshfront).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import cast

from localproxy import pgfront, sshfront
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


class NoSignIn(Exception):
    """The sign-in cannot give an access token now; `str()` says why."""


class Listener(abc.ABC):
    """What every local listener shares: the loopback socket, one task per client connection
    (`_serve`), the tunnel session and its relay, live session ids and the refusal count."""

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
            await self._serve(reader, writer, client)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()

    @abc.abstractmethod
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        """One client connection, from its first byte: the protocol's own start-up."""

    async def _session(
        self,
        hello: TunnelHello,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> TunnelAnswer | None:
        """Open the tunnel with `hello`; after `accept`, relay until either side is done and
        return None. Central's refusal is returned (its connection closed): the caller tells
        the client in the client's protocol. TunnelError when central cannot be reached."""
        answer, t_reader, t_writer = await self.tunnel.open(hello)
        if answer.status != "accept":
            t_writer.close()
            return answer
        assert answer.session_id is not None
        self.live.add(answer.session_id)
        try:
            await relay(reader, writer, t_reader, t_writer)
        finally:
            self.live.discard(answer.session_id)
        return None

    async def _token(self) -> str:
        """The current access token; NoSignIn when the sign-in cannot give one (ended, central
        unreachable for the refresh), so the client gets the reason instead of a dropped
        connection."""
        try:
            return await self.token()
        except Exception as e:
            raise NoSignIn(f"no Watchgate sign-in: {e}") from None


class PostgresListener(Listener):
    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        try:
            first = await asyncio.wait_for(pgfront.read_startup(reader, writer), 30)
            if isinstance(first, pgfront.Cancel):
                await self._cancel(first, client)
                return
            await asyncio.wait_for(pgfront.check_secret(reader, writer, self.secret), 30)
            try:
                token = await self._token()
            except NoSignIn as e:
                raise pgfront.StartupError("28000", str(e)) from None
            hello = TunnelHello(
                token=token, resource=self.resource.name, params=first.params, client=client
            )
            refusal = await self._session(hello, reader, writer)
            if refusal is not None:
                raise pgfront.StartupError(*_deny_message(refusal))
        except pgfront.StartupError as e:
            self.refused += 1
            writer.write(pgfront.error_response(e.sqlstate, str(e)))
        except TunnelError as e:
            writer.write(pgfront.error_response("08006", str(e)))

    async def _cancel(self, cancel: pgfront.Cancel, client: str) -> None:
        # A CancelRequest carries no password: the key central handed out is the credential,
        # and central also checks that the caller's token belongs to the session's user.
        # Like PostgreSQL, a cancel is never answered, not even when it cannot be passed on.
        with contextlib.suppress(TunnelError, NoSignIn):
            hello = TunnelHello(
                token=await self._token(),
                resource=self.resource.name,
                client=client,
                cancel=CancelKey(pid=cancel.pid, secret=cancel.secret.hex()),
            )
            _, _, t_writer = await self.tunnel.open(hello)
            t_writer.close()


def _disconnect_reason(answer: TunnelAnswer) -> tuple[sshfront.Reason, str]:
    """The disconnect reason code and text an SSH client gets for central's refusal."""
    if answer.status == "pending":
        return sshfront.reason_for("pending"), f"{answer.reason} (request {answer.request_id})"
    return sshfront.reason_for(answer.code), answer.reason


class SshListener(Listener):
    """SSH clients: no start-up to parse. Each connection's hello carries the local secret and
    this run's client public key, the two things central lets the client sign in with."""

    def __init__(
        self,
        resource: ResourceView,
        tunnel: Tunnel,
        token: TokenSource,
        secret: str,
        client_key: str,
    ) -> None:
        super().__init__(resource, tunnel, token, secret)
        self.client_key = client_key

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str
    ) -> None:
        try:
            hello = TunnelHello(
                token=await self._token(),
                resource=self.resource.name,
                client=client,
                local_secret=self.secret,
                client_key=self.client_key,
            )
            refusal = await self._session(hello, reader, writer)
            if refusal is None:
                return
            self.refused += 1
            reason, text = _disconnect_reason(refusal)
        except NoSignIn as e:
            self.refused += 1
            reason, text = sshfront.Reason.NO_MORE_AUTH_METHODS_AVAILABLE, str(e)
        except TunnelError as e:
            reason, text = sshfront.Reason.SERVICE_NOT_AVAILABLE, str(e)
        await sshfront.refuse(reader, writer, reason, text)
