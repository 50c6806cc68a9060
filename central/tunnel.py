"""The tunnel listener: TLS from local proxies, one connection per client connection.

A connection starts with the local proxy's hello (token, resource, start-up parameters).
Admission runs the same checks as the API — the token, the user's entitlement, an access
grant where the role needs one, a writable recording — then central opens the target with
the held credential and only then answers `accept`. From there the connection belongs to the
resource's protocol session.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import SecretStr

from central.config import ResourceConfig
from central.identity.tokens import Identity, IssuerUnavailable, TokenRejected
from central.logs import get_logger
from central.policy.access import Entitlement, entitlement
from central.policy.enforce import SessionGate
from central.policy.rules import SshPolicy
from central.protocols.postgres.masking import SessionMasking
from central.protocols.postgres.session import PostgresSession
from central.protocols.postgres.target import (
    TargetError,
    TargetSpec,
    cancel_target,
    connect_target,
    filter_startup_params,
)
from central.protocols.ssh.server import SshContext, serve_ssh
from central.protocols.ssh.target import SshTargetError
from central.protocols.ssh.target import connect_target as connect_ssh_target
from central.protocols.ssh.target import spec_for as ssh_spec_for
from central.recording import RecordingUnavailable, SessionLog
from central.runtime import Central
from central.sessions import LiveSession
from localproxy.contract import (
    TunnelAnswer,
    TunnelHello,
    encode_frame,
    frame_length,
)

HELLO_TIMEOUT = 10.0
log = get_logger(__name__)


class Refused(Exception):
    def __init__(self, answer: TunnelAnswer) -> None:
        super().__init__(answer.reason)
        self.answer = answer


def _deny(code: str, reason: str) -> Refused:
    return Refused(TunnelAnswer(status="deny", code=code, reason=reason))


@dataclass
class _Accepted:
    live: LiveSession
    recording: SessionLog
    reason: str = "ended"


class TunnelServer:
    def __init__(self, central: Central) -> None:
        self.central = central
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._ids = 0

    async def start(self, sock: socket.socket) -> None:
        ctx = self.central.tls.server_context()
        self._server = await asyncio.start_server(self._handle, sock=sock, ssl=ctx, limit=1 << 20)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._ids += 1
        peer = writer.get_extra_info("peername")
        clog = log.child(conn=self._ids, peer=f"{peer[0]}:{peer[1]}" if peer else "?")
        try:
            try:
                hello = await asyncio.wait_for(_read_hello(reader), HELLO_TIMEOUT)
            except (ValueError, TimeoutError, asyncio.IncompleteReadError, OSError) as e:
                clog.info("tunnel hello refused: %s", e or type(e).__name__)
                return
            await self._serve(hello, reader, writer, clog)
        except (ConnectionError, OSError) as e:
            clog.info("tunnel connection lost: %s", e)
        except asyncio.CancelledError:
            # close() cancels the handlers when central stops. The task must not end
            # cancelled: Python 3.11's start_server calls task.exception() on it, which
            # raises and logs a traceback at ERROR for every connection still open.
            clog.info("tunnel connection closed: central is stopping")
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve(
        self,
        hello: TunnelHello,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        clog: object,
    ) -> None:
        try:
            identity = await self._identity(hello)
            if hello.cancel is not None:
                await self._cancel(identity, hello)
                return
            ent, grant_until = await self._admit(identity, hello.resource)
            res = ent.resource
            if res.kind == "ssh":
                await self._serve_ssh(hello, identity, res, grant_until, reader, writer)
            elif res.kind == "postgres":
                await self._serve_postgres(hello, identity, res, grant_until, reader, writer)
            else:
                raise _deny("protocol", f"{res.name}: {res.kind} resources are not served yet")
        except Refused as refused:
            # Refusals come before `accept`: the client is still waiting for the answer.
            writer.write(encode_frame(refused.answer))
            await writer.drain()

    async def _serve_postgres(
        self,
        hello: TunnelHello,
        identity: Identity,
        res: ResourceConfig,
        grant_until: datetime | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        central = self.central
        spec = target_spec(res, central.config.secrets.get(res.name), hello.params)
        try:
            target = await connect_target(spec)
        except TargetError as e:
            raise await self._target_failed(identity, res, e) from None
        masking = central.masking(res.name)
        try:
            key = (target.pid, target.secret)
            async with self._accepted(hello, identity, res, grant_until, spec, key, writer) as on:
                session = PostgresSession(
                    masking=None
                    if masking is None
                    else SessionMasking(masking, central.catalogs, spec),
                    gate=SessionGate(central, identity, res.name, on.live.id),
                    record_rows=central.config.server.record_rows,
                    live=on.live,
                    recording=on.recording,
                    client=(reader, writer),
                    target=target,
                    log=log.child(session=on.live.id[:8], user=identity.user, resource=res.name),
                )
                on.reason = await session.run()
        finally:
            target.writer.close()

    async def _serve_ssh(
        self,
        hello: TunnelHello,
        identity: Identity,
        res: ResourceConfig,
        grant_until: datetime | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """An SSH session: central logs into the target first (a target that is down or
        presents another host key is refused before the client's SSH starts), then speaks
        SSH with the client on the tunnel (`protocols/ssh/server.py`)."""
        central = self.central
        if not hello.local_secret and not hello.client_key:
            raise _deny("protocol", "the local proxy sent no local secret for the SSH sign-in")
        secret = central.config.secrets.get(res.name)
        spec = ssh_spec_for(res, secret.get_secret_value() if secret is not None else None)
        try:
            target = await connect_ssh_target(spec)
        except SshTargetError as e:
            raise await self._target_failed(identity, res, e) from None
        try:
            async with self._accepted(hello, identity, res, grant_until, spec, None, writer) as on:
                ctx = SshContext(
                    central=central,
                    identity=identity,
                    resource=res,
                    live=on.live,
                    recording=on.recording,
                    target=target,
                    policy=SshPolicy(central.policy, res.name),
                    gate=SessionGate(central, identity, res.name, on.live.id),
                    log=log.child(session=on.live.id[:8], user=identity.user, resource=res.name),
                    exec_record_limit=central.config.server.record_exec_output,
                )
                on.reason = await serve_ssh(
                    ctx, reader, writer, secret=hello.local_secret, client_key=hello.client_key
                )
        finally:
            target.close()

    async def _target_failed(
        self, identity: Identity, res: ResourceConfig, error: Exception
    ) -> Refused:
        await self.central.audit.record(
            "session.target_failed", user=identity.user, resource=res.name, reason=str(error)
        )
        return _deny("target", str(error))

    @contextlib.asynccontextmanager
    async def _accepted(
        self,
        hello: TunnelHello,
        identity: Identity,
        res: ResourceConfig,
        grant_until: datetime | None,
        spec: object,
        target_key: tuple[int, bytes] | None,
        writer: asyncio.StreamWriter,
    ) -> AsyncIterator[_Accepted]:
        """A session from `accept` to its end: its recording (Refused when the store cannot
        take it), its place among the live sessions, and the audit events around it."""
        central = self.central
        try:
            recording = await central.recorder.open_session(
                identity.user, res.name, res.kind, hello.client
            )
        except RecordingUnavailable as e:
            raise _deny("recording", f"{res.name}: sessions are refused: {e}") from None
        deadline = (
            identity.expires_at if grant_until is None else min(identity.expires_at, grant_until)
        )
        live = LiveSession(
            id=recording.session_id,
            identity=identity,
            resource=res.name,
            grant_until=grant_until,
            deadline=deadline,
            target=spec,
            target_key=target_key or (0, b""),
        )
        central.sessions.add(live)
        await central.audit.record(
            "session.started",
            session=live.id,
            user=identity.user,
            resource=res.name,
            client=hello.client,
        )
        writer.write(
            encode_frame(TunnelAnswer(status="accept", session_id=live.id, expires_at=deadline))
        )
        on = _Accepted(live, recording)
        try:
            yield on
        except asyncio.CancelledError:
            on.reason = "central stopped"
            raise
        finally:
            central.sessions.remove(live)
            end = recording.close(on.reason)
            # The seal is written before the audit line that names it, so that no verifier
            # (or crash) sees an ended session that the store has not sealed; if the store
            # fails meanwhile, the line is written anyway (verify-audit will name the gap).
            await central.recorder.until_sealed(end)
            # The last row ties this line to the session's seal in the store.
            await central.audit.record(
                "session.ended",
                session=live.id,
                reason=on.reason,
                last_seq=end.last_seq,
                last_hash=end.last_hash,
            )

    async def _identity(self, hello: TunnelHello) -> Identity:
        try:
            return await self.central.validator.validate(hello.token)
        except TokenRejected as e:
            await self.central.audit.record("tunnel.token_rejected", code=e.code, reason=e.reason)
            raise _deny("token", f"sign-in refused: {e.reason}") from None
        except IssuerUnavailable as e:
            raise _deny("token", str(e)) from None

    async def _admit(
        self, identity: Identity, resource: str
    ) -> tuple[Entitlement, datetime | None]:
        central = self.central
        ent = entitlement(central.config, identity.groups, resource)
        if ent is None:
            # Same answer whether the resource exists or not: no probing for names.
            raise _deny("forbidden", f"no resource named {resource!r} is available to you")
        grant_until = None
        if ent.access == "request":
            req = (await central.store.requests_in_force(identity.user, datetime.now(UTC))).get(
                resource
            )
            if req is not None and req.status == "approved":
                grant_until = req.expires_at
            elif req is not None:
                raise Refused(
                    TunnelAnswer(
                        status="pending",
                        code="pending",
                        request_id=req.id,
                        reason=f"your access request for {resource} is waiting for approval",
                    )
                )
            else:
                raise Refused(
                    TunnelAnswer(
                        status="request_needed",
                        code="request_needed",
                        reason=f"{resource} needs an approved access request: run "
                        f"`watchgate request {resource} --reason TEXT`",
                    )
                )
        if not central.recorder.healthy:
            raise _deny(
                "recording", f"{resource}: sessions are refused: {central.recorder.problem}"
            )
        return ent, grant_until

    async def _cancel(self, identity: Identity, hello: TunnelHello) -> None:
        assert hello.cancel is not None
        try:
            key = (hello.cancel.pid, bytes.fromhex(hello.cancel.secret))
        except ValueError:
            return
        live = self.central.sessions.by_key(key)
        # Only the session's own user may cancel its query; anything else is silently
        # dropped, as PostgreSQL itself does with a wrong key.
        if live is None or live.identity.user != identity.user:
            return
        with contextlib.suppress(TargetError):
            await cancel_target(live.target, *live.target_key)


def target_spec(
    res: ResourceConfig, secret: SecretStr | None, client_params: dict[str, str]
) -> TargetSpec:
    return TargetSpec(
        resource=res.name,
        host=res.address.host,
        port=res.address.port,
        database=res.database or res.username or "",
        user=res.username or "",
        password=secret.get_secret_value() if secret is not None else None,
        tls=res.tls,
        ca_file=str(res.tls_ca_file) if res.tls_ca_file is not None else None,
        params=filter_startup_params(client_params),
    )


async def _read_hello(reader: asyncio.StreamReader) -> TunnelHello:
    n = frame_length(await reader.readexactly(4))
    return TunnelHello.model_validate_json(await reader.readexactly(n))
