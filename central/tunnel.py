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
from datetime import UTC, datetime

from pydantic import SecretStr

from central.config import ResourceConfig
from central.identity.tokens import Identity, IssuerUnavailable, TokenRejected
from central.logs import get_logger
from central.policy.access import Entitlement, entitlement
from central.policy.enforce import SessionGate
from central.protocols.postgres.masking import SessionMasking
from central.protocols.postgres.session import PostgresSession
from central.protocols.postgres.target import (
    TargetError,
    TargetSpec,
    cancel_target,
    connect_target,
    filter_startup_params,
)
from central.recording import RecordingUnavailable
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
        central = self.central
        try:
            identity = await self._identity(hello)
            if hello.cancel is not None:
                await self._cancel(identity, hello)
                return
            ent, grant_until = await self._admit(identity, hello.resource)
            res = ent.resource
            if res.kind != "postgres":
                raise _deny("protocol", f"{res.name}: {res.kind} resources are not served yet")
            spec = target_spec(res, central.config.secrets.get(res.name), hello.params)
            try:
                target = await connect_target(spec)
            except TargetError as e:
                await central.audit.record(
                    "session.target_failed", user=identity.user, resource=res.name, reason=str(e)
                )
                raise _deny("target", str(e)) from None
            try:
                recording = await central.recorder.open_session(
                    identity.user, res.name, res.kind, hello.client
                )
            except RecordingUnavailable as e:
                target.writer.close()
                raise _deny("recording", f"{res.name}: sessions are refused: {e}") from None
        except Refused as refused:
            writer.write(encode_frame(refused.answer))
            await writer.drain()
            return
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
            target_key=(target.pid, target.secret),
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
        reason = "ended"
        masking = central.masking(res.name)
        try:
            session = PostgresSession(
                masking=None
                if masking is None
                else SessionMasking(masking, central.catalogs, spec),
                gate=SessionGate(central, identity, res.name, live.id),
                record_rows=central.config.server.record_rows,
                live=live,
                recording=recording,
                client=(reader, writer),
                target=target,
                log=log.child(session=live.id[:8], user=identity.user, resource=res.name),
            )
            reason = await session.run()
        except asyncio.CancelledError:
            reason = "central stopped"
            raise
        finally:
            central.sessions.remove(live)
            recording.close(reason)
            target.writer.close()
            await central.audit.record("session.ended", session=live.id, reason=reason)

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
