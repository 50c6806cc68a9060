"""Central's end of an SSH session: it terminates the user's SSH and speaks for them to the target.

The local proxy carries the user's SSH client over the TLS tunnel unchanged; central runs an
asyncssh server on that stream, with its own host key (which `watchgate connect` pins), and
lets the client in with the per-session local secret (the password in the connection string,
or the ephemeral key the local proxy generated). The user's identity is the tunnel's: the
OIDC token was checked before this module runs, and the SSH user name the client presents
means nothing here.

Every channel the client opens is judged and recorded, then re-opened on the target
connection that central logged into with the held credential (`target.py`):

- session channels (shell, exec, the sftp subsystem) by `channels.SessionChannel`;
- `direct-tcpip` (ssh -L / -D) by `ForwardedConnection` below, only where an allow rule names
  the destination;
- `ssh -R` (tcpip-forward) is refused and recorded by `server_requested`;
- everything else asyncssh refuses for us: X11, agent forwarding, UNIX sockets and tun/tap,
  because the server is started with those off.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import asyncssh
from asyncssh.forward import SSHForwarder

from central.config import ResourceConfig
from central.identity.tokens import Identity
from central.logs import ContextLogger
from central.policy.enforce import SessionGate
from central.policy.rules import SshPolicy
from central.protocols.ssh.agent import AgentRelay, route_target_agent
from central.recording import RecordingUnavailable, SessionLog, StatementRecordDraft
from central.sessions import LiveSession, until_expired

if TYPE_CHECKING:
    from central.runtime import Central

LOGIN_TIMEOUT = 30.0
# The client's preference decides the cipher, and OpenSSH's puts chacha20-poly1305 first,
# which asyncssh runs at about a third of AES-GCM's speed (AES-NI, one pass in OpenSSL).
# Offering only AES-GCM makes every OpenSSH since 6.2 choose it.
CLIENT_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
# Bigger than asyncssh's 2 MiB default: with two SSH legs and TLS on the path, a larger window
# keeps bulk transfers from stalling on window adjusts.
WINDOW = 8 * 1024 * 1024


@dataclass
class SshContext:
    """What every channel of one SSH connection shares: who, where, the rules, the record."""

    central: Central
    identity: Identity
    resource: ResourceConfig
    live: LiveSession
    recording: SessionLog
    target: asyncssh.SSHClientConnection
    policy: SshPolicy
    gate: SessionGate
    log: ContextLogger
    exec_record_limit: int
    conn: asyncssh.SSHServerConnection | None = None
    agent: AgentRelay | None = None  # once the client's agent is forwarded (allow rules)
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_channel(self) -> int:
        return next(self._numbers)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def record(
        self,
        protocol: str,
        text: str,
        *,
        started: datetime,
        outcome: str = "ok",
        error: str | None = None,
        decision: str = "forward",
        rule: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        """One event of the session (a command, a file operation, a forwarded channel).

        A recording that cannot be written ends the connection: no unrecorded traffic."""
        now = datetime.now(UTC)
        try:
            self.recording.statement(
                StatementRecordDraft(
                    started_at=started,
                    duration_us=int((now - started).total_seconds() * 1e6),
                    protocol=protocol,
                    sql=text,
                    params=None,
                    outcome=outcome,
                    rows=None,
                    error=error,
                    decision=decision,
                    rule=rule,
                    result=result,
                )
            )
        except RecordingUnavailable as e:
            self.end(f"Watchgate: session ended: the recording is unavailable ({e})")

    async def forward_agent(self, agent_path: str) -> None:
        """The client's agent, forwarded to central, becomes usable on the target: through
        a relay that records each use."""
        if self.agent is not None:
            return
        rule = self.policy.agent_rule

        def used(started: datetime, sent: int, received: int) -> None:
            self.record(
                "agent",
                "agent forwarding",
                started=started,
                rule=rule,
                result={"sent": sent, "received": received},
            )

        self.agent = AgentRelay(agent_path, used)
        await self.agent.start()
        route_target_agent(self.target, self.agent.path)

    def end(self, reason: str) -> None:
        if self.conn is not None:
            self.conn.disconnect(asyncssh.DISC_BY_APPLICATION, reason)


class _Adopt:
    """asyncssh's hook for running SSH over a connection it did not open (its `tunnel`
    option): hands it the tunnel's transport, and the bytes already read with the hello."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def create_connection(
        self, factory: Any, host: str, port: int
    ) -> tuple[asyncio.BaseTransport, Any]:
        conn = factory()
        transport = self.writer.transport
        # StreamReader has no public way to hand over its buffer (see protocols/transport.py).
        buffer: bytearray = self.reader._buffer  # type: ignore[attr-defined]
        leftover = bytes(buffer)
        buffer.clear()
        transport.set_protocol(conn)
        conn.connection_made(transport)
        if leftover:
            conn.data_received(leftover)
        if not cast(asyncio.ReadTransport, transport).is_reading():
            cast(asyncio.ReadTransport, transport).resume_reading()
        return transport, conn


class GatewayServer(asyncssh.SSHServer):
    """The SSH server side of one tunnel connection: sign-in by local secret, and the
    decisions on channels that are not sessions."""

    def __init__(self, ctx: SshContext, secret: str | None, client_key: str | None) -> None:
        self.ctx = ctx
        self._secret = secret
        self._client_key: asyncssh.SSHKey | None = None
        if client_key:
            try:
                self._client_key = asyncssh.import_public_key(client_key)
            except (asyncssh.KeyImportError, ValueError):
                ctx.log.info("the local proxy's client key cannot be read; password only")

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.ctx.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True  # the identity is the tunnel's; a secret is still required

    def password_auth_supported(self) -> bool:
        return self._secret is not None

    def validate_password(self, username: str, password: str) -> bool:
        assert self._secret is not None
        return hmac.compare_digest(password.encode(), self._secret.encode())

    def public_key_auth_supported(self) -> bool:
        return self._client_key is not None

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        assert self._client_key is not None
        return key.public_data == self._client_key.public_data

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        from central.protocols.ssh.channels import SessionChannel

        return SessionChannel(self.ctx, self.ctx.next_channel())

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Awaitable[asyncssh.SSHTCPSession[bytes]]:
        """ssh -L / -D: allowed only to destinations an allow rule names, then opened through
        the target (as the target would for its own user) and counted."""
        ctx = self.ctx
        started = datetime.now(UTC)
        where = f"{dest_host}:{dest_port}"
        decision = ctx.policy.decide_forward(dest_host, dest_port)
        if decision.action != "allow":
            ctx.record(
                "forward",
                f"direct-tcpip {where}",
                started=started,
                outcome="refused",
                error=decision.reason,
                decision="block",
                rule=decision.rule,
            )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, f"Watchgate: {decision.reason}"
            )
        return self._forward(dest_host, dest_port, started, decision.rule)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        """ssh -R: the target would listen for connections back to the client. Refused (no
        rule can allow it yet), and recorded."""
        self.ctx.record(
            "forward",
            f"tcpip-forward {listen_host}:{listen_port}",
            started=datetime.now(UTC),
            outcome="refused",
            error=f"remote port forwarding (ssh -R) is not allowed on {self.ctx.resource.name}",
            decision="block",
        )
        return False

    async def _forward(
        self, host: str, port: int, started: datetime, rule: str | None
    ) -> asyncssh.SSHTCPSession[bytes]:
        ctx = self.ctx
        where = f"{host}:{port}"
        try:
            # asyncssh's own forwarders are typed as plain protocols, not SSHTCPSessions.
            _, peer = await ctx.target.create_connection(cast(Any, CountingForwarder), host, port)
        except asyncssh.ChannelOpenError as e:
            ctx.record(
                "forward",
                f"direct-tcpip {where}",
                started=started,
                outcome="error",
                error=f"the target could not open {where}: {e.reason}",
                rule=rule,
            )
            raise
        target_side = cast(CountingForwarder, peer)
        client_side = CountingForwarder(target_side)

        def closed() -> None:
            ctx.record(
                "forward",
                f"direct-tcpip {where}",
                started=started,
                rule=rule,
                result={"sent": client_side.count, "received": target_side.count},
            )

        client_side.on_close = closed
        return cast(asyncssh.SSHTCPSession[bytes], client_side)


class CountingForwarder(SSHForwarder):
    """asyncssh's forwarder (flow control included), counting the bytes it receives."""

    def __init__(self, peer: SSHForwarder | None = None) -> None:
        super().__init__(peer)
        self.count = 0
        self.on_close: Any = None

    def data_received(self, data: bytes, datatype: Any = None) -> None:
        self.count += len(data)
        super().data_received(data, datatype)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.on_close is not None:
            callback, self.on_close = self.on_close, None
            callback()


async def serve_ssh(
    ctx: SshContext,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    secret: str | None,
    client_key: str | None,
) -> str:
    """Run the SSH server on the tunnel until the client or the target is done; returns why
    the session ended, for the record."""
    server = GatewayServer(ctx, secret, client_key)
    # SFTP clients pick the order of SYMLINK's arguments by the server's software name
    # (OpenSSH swapped them): name the target's, since its SFTP server is what they talk to.
    software = str(ctx.target.get_extra_info("server_version") or "").removeprefix("SSH-2.0-")
    software = "".join(c for c in software.split(" ")[0] if "!" <= c <= "~")[:64]
    try:
        conn = await asyncssh.run_server(
            None,  # the connection comes from the tunnel option
            tunnel=_Adopt(reader, writer),
            server_factory=lambda: server,
            server_host_keys=[ctx.central.ssh_host_key],
            server_version=f"Watchgate ({software or 'unknown'})",
            encoding=None,
            login_timeout=LOGIN_TIMEOUT,
            keepalive_interval=0,
            allow_pty=True,
            agent_forwarding=ctx.policy.agent_rule is not None,
            x11_forwarding=False,
            window=WINDOW,
            encryption_algs=CLIENT_CIPHERS,
            config=None,
        )
    except (asyncssh.Error, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", "") or str(e) or type(e).__name__
        ctx.log.info("ssh sign-in failed: %s", reason)
        return f"ssh sign-in failed: {reason}"
    ctx.conn = conn
    deadline = asyncio.ensure_future(_watch_deadline(ctx))
    target_gone = asyncio.ensure_future(ctx.target.wait_closed())
    closed = asyncio.ensure_future(conn.wait_closed())
    try:
        await asyncio.wait({closed, target_gone}, return_when=asyncio.FIRST_COMPLETED)
        if target_gone.done() and not closed.done():
            conn.disconnect(asyncssh.DISC_BY_APPLICATION, "Watchgate: the target closed")
            await closed
            return "target closed"
        return "ended"
    finally:
        for task in (deadline, target_gone, closed, *ctx.tasks):
            task.cancel()
        await asyncio.gather(deadline, target_gone, closed, *ctx.tasks, return_exceptions=True)
        conn.abort()
        if ctx.agent is not None:
            await ctx.agent.close()


async def _watch_deadline(ctx: SshContext) -> None:
    """End the connection when the access token or the access grant runs out."""
    why = await until_expired(ctx.live)
    ctx.end(f"Watchgate: session ended: {why} at {ctx.live.deadline:%Y-%m-%d %H:%M:%S} UTC")
