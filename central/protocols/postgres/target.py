"""Opening the target PostgreSQL server with the credential that only central holds.

The client authenticated to central (OIDC), never to the database: central opens its own
connection to the target, as the resource's database user, and answers the target's
authentication challenge itself (cleartext password, md5, or SCRAM-SHA-256). What the client
gets back is a connection that is past authentication and start-up, ready for queries.

Trust runs one way. The target is a server we chose, but what it sends is still untrusted
input: error texts are cleaned before they reach logs and messages, sizes are bounded, and a
SCRAM server must prove that it knows the password (the server signature in SASLFinal) before
the connection is accepted - a server that skips the proof or gets it wrong is refused, so an
impostor cannot pass itself off as the target.

TLS to the target follows libpq's ``sslmode`` names: ``disable`` (plain TCP), ``require``
(encrypted, certificate not checked) and ``verify-full`` (chain checked against ``ca_file``, or
the system store, and the certificate must name the host).

This module does the I/O; the bytes on the wire are built and parsed by the sans-io codec
(`central.protocols.postgres.codec` and `.messages`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from scramp import ScramClient
from scramp.utils import ScramException

from central.logs import ContextLogger
from central.protocols.errors import MAX_ERROR_TEXT, clean_text, describe_os_error
from central.protocols.postgres import messages as m
from central.protocols.postgres.codec import (
    Frame,
    FrameReader,
    ProtocolError,
    decode_backend,
    encode,
    sasl_mechanisms,
)

log = ContextLogger(logging.getLogger(__name__))

TlsMode = Literal["disable", "require", "verify-full"]


SAFE_STARTUP_PARAMS: Mapping[str, str] = {
    name.lower(): name
    for name in (
        "application_name",
        "client_encoding",
        "DateStyle",
        "IntervalStyle",
        "TimeZone",
        "extra_float_digits",
    )
}
"""Client start-up parameters passed on to the target (lower-case name -> canonical spelling).

Only parameters that change how results are *formatted* pass. Everything else is dropped:

- ``user`` and ``database`` always come from the resource, never from the client;
- ``options`` can carry ``-c role=...``, ``-c session_authorization=...`` or any other setting,
  and ``replication`` turns the session into a walsender that speaks another protocol;
- ``search_path`` would change which tables unqualified names resolve to without a statement
  that policy can see (a client can still ``SET`` it, in the open);
- ``standard_conforming_strings`` and friends change how SQL text is tokenized, which the
  statement classifier relies on;
- ``_pq_.*`` protocol extensions are negotiated by central, not relayed.

``client_encoding`` passes only when it names UTF-8: client-only encodings such as SJIS, BIG5
or GBK can hide a quote or backslash inside a multi-byte character, so the classifier would read
a different statement than the server runs. `connect_target` pins it to UTF8 in any case, the
encoding the codec reads.
"""

_UTF8_NAMES = frozenset({"utf8", "utf-8", "unicode"})
_MAX_PARAM_VALUE = 1024
_MAX_FRAME = 1 << 20
"""Largest message accepted during start-up (errors, notices, parameter reports are small)."""
_MAX_STARTUP_MESSAGES = 10_000
_MAX_PARAMETERS = 1_000
_MAX_NOTICES_LOGGED = 20

_AUTH_FAILED_SQLSTATE = "28P01"  # invalid_password: the credential itself was refused

_UNSUPPORTED_AUTH = {
    m.Authentication.KERBEROS_V5: "Kerberos V5",
    6: "SCM credentials",
    m.Authentication.GSS: "GSSAPI",
    m.Authentication.GSS_CONTINUE: "GSSAPI",
    m.Authentication.SSPI: "SSPI",
}


@dataclass(frozen=True)
class TargetSpec:
    """Where and as whom central connects for one resource.

    `params` are the client's start-up parameters; `connect_target` passes only the ones in
    `SAFE_STARTUP_PARAMS`. The password never appears in the repr.
    """

    resource: str
    host: str
    port: int
    database: str
    user: str
    password: str | None = field(repr=False)
    tls: TlsMode = "disable"
    ca_file: str | None = None
    params: dict[str, str] = field(default_factory=dict)


class TargetError(Exception):
    """Central could not open the target: one line naming the resource and the cause.

    `cause` is the text after the resource name; `sqlstate` is set when the target answered
    with an ErrorResponse. Text that came from the target is cleaned (no control characters,
    bounded length, the held password redacted).
    """

    def __init__(self, resource: str, cause: str, *, sqlstate: str | None = None) -> None:
        super().__init__(f"{resource}: {cause}")
        self.resource = resource
        self.cause = cause
        self.sqlstate = sqlstate


@dataclass
class TargetConnection:
    """A target connection past authentication and start-up, ready for the first query.

    `parameters` holds every ParameterStatus the target reported, `pid`/`secret` its
    BackendKeyData (what `cancel_target` needs), `status` the ReadyForQuery transaction status
    (``"I"`` when idle). `buffered` holds bytes read from the target past ReadyForQuery, which
    the relay must handle before reading `reader`; start-up reads message by message, so it is
    empty, but it is part of the contract so that nothing is ever dropped. `auth_method` says
    how central authenticated: ``"none"`` (the target did not ask), ``"password"``, ``"md5"``
    or ``"SCRAM-SHA-256"``.
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    parameters: dict[str, str]
    pid: int
    secret: bytes
    status: str
    buffered: bytes = b""
    auth_method: str = "none"

    async def close(self) -> None:
        """Say goodbye (Terminate) and close the connection; errors on the way are ignored."""
        try:
            if not self.writer.is_closing():
                self.writer.write(encode(m.Terminate()))
            self.writer.close()
            await self.writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass


def filter_startup_params(params: Mapping[str, str]) -> dict[str, str]:
    """The client start-up parameters that may reach the target (see `SAFE_STARTUP_PARAMS`).

    Names match case-insensitively and come back in canonical spelling; values with NUL bytes
    or longer than 1 KiB are dropped, and ``client_encoding`` passes only as UTF-8.
    """
    safe: dict[str, str] = {}
    for name, value in params.items():
        canonical = SAFE_STARTUP_PARAMS.get(name.lower())
        if canonical is None or "\x00" in value or len(value) > _MAX_PARAM_VALUE:
            continue
        if canonical == "client_encoding":
            if value.strip().strip("'\"").lower() not in _UTF8_NAMES:
                continue
            value = "UTF8"
        safe[canonical] = value
    return safe


# --- connecting -----------------------------------------------------------------------------


async def _open_socket(host: str, port: int) -> socket.socket:
    """A connected, non-blocking TCP socket to the first address of `host` that answers."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    errors: list[OSError] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if not errors:
        raise OSError(f"no address for {host}")
    raise errors[0]


def _tls_context(spec: TargetSpec, fail: _Fail) -> ssl.SSLContext:
    """``verify-full``: the chain must lead to `ca_file` (or, without one, to the system store)
    and the certificate must name the host; ``require``: encrypted, nothing checked."""
    if spec.tls == "verify-full":
        try:
            context = ssl.create_default_context(cafile=spec.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise fail(
                f"cannot load the CA file {spec.ca_file}: {describe_os_error(exc)}"
            ) from None
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        # libpq's sslmode=require: encrypted, but the certificate is not checked.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _open_stream(
    spec: TargetSpec, fail: _Fail
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP connect, then (unless ``tls == "disable"``) SSLRequest and the TLS handshake."""
    where = f"{spec.host}:{spec.port}"
    try:
        sock = await _open_socket(spec.host, spec.port)
    except socket.gaierror as exc:
        raise fail(f"cannot resolve {spec.host}: {describe_os_error(exc)}") from None
    except OSError as exc:
        raise fail(f"cannot connect to {where}: {describe_os_error(exc)}") from None

    try:
        context: ssl.SSLContext | None = None
        if spec.tls != "disable":
            context = _tls_context(spec, fail)
            loop = asyncio.get_running_loop()
            try:
                await loop.sock_sendall(sock, encode(m.SSLRequest()))
                answer = await loop.sock_recv(sock, 1)
            except OSError as exc:
                raise fail(
                    f"TLS negotiation with {where} failed: {describe_os_error(exc)}"
                ) from None
            if answer == b"N":
                raise fail("target does not support TLS (resource requires it)")
            if answer != b"S":
                what = "closed the connection" if not answer else f"answered {answer!r}"
                raise fail(f"TLS negotiation with {where} failed: the target {what}")
            # Only the one answer byte was read: anything a man in the middle appended in
            # plaintext stays in the socket and breaks the handshake (CVE-2021-23222).
        try:
            return await asyncio.open_connection(
                sock=sock,
                ssl=context,
                server_hostname=spec.host if context is not None else None,
                limit=_MAX_FRAME,
            )
        except (OSError, ssl.SSLError) as exc:
            step = "TLS handshake with" if context is not None else "connection to"
            raise fail(f"{step} {where} failed: {describe_os_error(exc)}") from None
    except BaseException:
        sock.close()
        raise


class _Fail:
    """Builds `TargetError`s for one resource; server text is cleaned and the secret redacted."""

    def __init__(self, spec: TargetSpec) -> None:
        self.resource = spec.resource
        self.secret = spec.password

    def __call__(self, cause: str, *, sqlstate: str | None = None) -> TargetError:
        return TargetError(self.resource, cause, sqlstate=sqlstate)

    def clean(self, text: str, *, limit: int = MAX_ERROR_TEXT) -> str:
        return clean_text(text, secret=self.secret, limit=limit)

    def server_error(self, code: str, message: str) -> TargetError:
        """The target's ErrorResponse (SQLSTATE `code`, `message`) as a TargetError."""
        text = self.clean(message or "(no message)")
        sqlstate = self.clean(code, limit=5) or None
        if sqlstate == _AUTH_FAILED_SQLSTATE:
            return self(f"the target refused the held credential: {text}", sqlstate=sqlstate)
        return self(f"the target refused the connection: {text}", sqlstate=sqlstate)


class _Frames:
    """Reads backend messages one at a time: the header, then exactly the body.

    Nothing past the current message is read, so whatever follows ReadyForQuery stays in the
    StreamReader for the relay. The codec still frames and decodes every message.
    """

    def __init__(self, reader: asyncio.StreamReader, fail: _Fail) -> None:
        self.reader = reader
        self.fail = fail
        self.frames = FrameReader(max_size=_MAX_FRAME)

    async def next(self) -> m.BackendMessage:
        try:
            header = await self.reader.readexactly(5)
            kind, length = struct.unpack("!BI", header)
            if length < 4 or length > _MAX_FRAME:
                raise self.fail(
                    f"the target sent an invalid message (type 0x{kind:02x}, {length} bytes) "
                    "during start-up"
                )
            body = await self.reader.readexactly(length - 4)
        except asyncio.IncompleteReadError:
            raise self.fail("the target closed the connection during start-up") from None
        except (OSError, ssl.SSLError) as exc:
            raise self.fail(f"connection lost during start-up: {describe_os_error(exc)}") from None
        try:
            self.frames.receive_data(header + body)
            frame = self.frames.next_frame()
        except ProtocolError as exc:
            raise self.fail(
                f"the target sent an invalid message: {self.fail.clean(str(exc))}"
            ) from None
        if frame is None:  # cannot happen with a whole message fed in; never guess
            raise self.fail("the target sent an invalid message during start-up")
        return self._decode(frame)

    def _decode(self, frame: Frame) -> m.BackendMessage:
        try:
            return decode_backend(frame)
        except ProtocolError as exc:
            if frame.type == m.ErrorResponse.TYPE:
                # The reason matters more than strictness here: before start-up is over the
                # server may write its error in an encoding other than UTF-8.
                fields = _lenient_fields(frame.raw)
                raise self.fail.server_error(fields.get("C", ""), fields.get("M", "")) from None
            if frame.type == m.Authentication.TYPE and len(frame.raw) >= 9:
                code = int.from_bytes(frame.raw[5:9], "big", signed=True)
                if code in _UNSUPPORTED_AUTH:
                    return m.Authentication(code)
                raise self.fail(
                    f"the target asks for an unknown authentication method (code {code})"
                ) from None
            raise self.fail(
                f"the target sent an invalid message: {self.fail.clean(str(exc))}"
            ) from None


def _lenient_fields(raw: bytes) -> dict[str, str]:
    """ErrorResponse fields read forgivingly (bad UTF-8 replaced), for reporting only."""
    return {
        chr(part[0]): part[1:].decode("utf-8", "replace")
        for part in raw[5:].split(b"\x00")
        if len(part) >= 2
    }


# --- authentication -------------------------------------------------------------------------


def _md5_password(user: str, password: str, salt: bytes) -> str:
    """``"md5" + md5(md5(password + user) + salt)``, in hex, as PostgreSQL expects."""
    inner = hashlib.md5(password.encode() + user.encode(), usedforsecurity=False).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()


class _Authenticator:
    """Answers the target's Authentication requests with the held credential.

    One method per connection, asked for once. SCRAM must run to the end: the connection is
    refused when the server signature in SASLFinal is wrong (the server does not know the
    password) and when AuthenticationOk comes before that proof. SCRAM-SHA-256-PLUS (channel
    binding) is not spoken; when a server offers both, plain SCRAM-SHA-256 is chosen, and the
    gs2 header ``n`` tells the server so honestly.
    """

    def __init__(self, spec: TargetSpec, writer: asyncio.StreamWriter, fail: _Fail) -> None:
        self.spec = spec
        self.writer = writer
        self.fail = fail
        self.method = "none"
        self.done = False
        self.scram: ScramClient | None = None
        self.scram_verified = False

    def _password(self) -> str:
        if self.spec.password is None:
            raise self.fail("the target asks for a password: no credential held for this resource")
        return self.spec.password

    def _begin(self, method: str) -> None:
        if self.method != "none":
            raise self.fail(f"the target asked for {method} authentication after {self.method}")
        self.method = method

    async def _send(self, message: m.FrontendMessage) -> None:
        self.writer.write(encode(message))
        await self.writer.drain()

    async def handle(self, request: m.Authentication) -> None:
        """Answer one Authentication message, or accept AuthenticationOk."""
        code = request.code
        if self.done:
            raise self.fail("the target sent an authentication request after AuthenticationOk")
        if code == m.Authentication.OK:
            if self.scram is not None and not self.scram_verified:
                raise self.fail(
                    "the target ended SCRAM authentication without proving that it knows "
                    "the password"
                )
            self.done = True
        elif code == m.Authentication.CLEARTEXT:
            self._begin("password")
            await self._send(m.password(self._password()))
        elif code == m.Authentication.MD5:
            self._begin("md5")
            salt = request.data  # the codec checked that it is 4 bytes
            await self._send(m.password(_md5_password(self.spec.user, self._password(), salt)))
        elif code == m.Authentication.SASL:
            await self._sasl_start(request)
        elif code == m.Authentication.SASL_CONTINUE:
            await self._sasl_continue(request.data)
        elif code == m.Authentication.SASL_FINAL:
            self._sasl_final(request.data)
        elif code in _UNSUPPORTED_AUTH:
            raise self.fail(
                f"the target asks for {_UNSUPPORTED_AUTH[code]} authentication, which central "
                "does not support (use scram-sha-256, md5 or password for this user)"
            )
        else:
            raise self.fail(f"the target asks for an unknown authentication method (code {code})")

    async def _sasl_start(self, request: m.Authentication) -> None:
        self._begin("SCRAM-SHA-256")
        offered = sasl_mechanisms(request)
        if "SCRAM-SHA-256" not in offered:
            listed = self.fail.clean(", ".join(offered) or "none", limit=120)
            if any(name.endswith("-PLUS") for name in offered):
                raise self.fail(
                    "the target requires SCRAM with channel binding, which central does not "
                    f"support (offered: {listed})"
                )
            raise self.fail(f"the target offers no supported SASL mechanism (offered: {listed})")
        password = self._password()
        try:
            # PostgreSQL ignores the SCRAM user name (the start-up one counts).
            self.scram = ScramClient(["SCRAM-SHA-256"], self.spec.user or "*", password)
            first = self.scram.get_client_first()
        except ScramException as exc:
            raise self.fail(f"the held credential cannot be used with SCRAM: {exc}") from None
        await self._send(m.sasl_initial_response("SCRAM-SHA-256", first.encode()))

    async def _sasl_continue(self, data: bytes) -> None:
        if self.scram is None or self.scram.stage != 1:
            raise self.fail("the target sent SASLContinue out of turn")
        try:
            self.scram.set_server_first(data.decode("utf-8"))
            # PBKDF2 with the server's iteration count: kept off the event loop.
            final = await asyncio.to_thread(self.scram.get_client_final)
        except (ScramException, UnicodeDecodeError) as exc:
            cause = self.fail.clean(str(exc), limit=120)
            raise self.fail(f"the target sent an invalid SCRAM challenge: {cause}") from None
        await self._send(m.sasl_response(final.encode()))

    def _sasl_final(self, data: bytes) -> None:
        if self.scram is None or self.scram.stage != 3:
            raise self.fail("the target sent SASLFinal out of turn")
        try:
            self.scram.set_server_final(data.decode("utf-8"))
        except (ScramException, UnicodeDecodeError):
            raise self.fail(
                "the target could not prove that it knows the password (wrong SCRAM server "
                "signature)"
            ) from None
        self.scram_verified = True


# --- the public entry points ----------------------------------------------------------------


async def connect_target(
    spec: TargetSpec,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for connect, TLS, auth and start-up
) -> TargetConnection:
    """Open `spec`'s target, authenticate with the held credential, and run start-up.

    Sends the client's safe start-up parameters (`filter_startup_params`) with the resource's
    user and database, and ``client_encoding=UTF8``. Returns once the target says
    ReadyForQuery. Every failure - connect, TLS, authentication, an ErrorResponse, a malformed
    message, the whole thing taking longer than `timeout` seconds - closes the connection and
    raises `TargetError`.
    """
    fail = _Fail(spec)
    conn_log = log.child(resource=spec.resource)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _open_stream(spec, fail)
            startup = {
                "user": spec.user,
                "database": spec.database,
                **filter_startup_params(spec.params),
                "client_encoding": "UTF8",  # what the codec reads; see SAFE_STARTUP_PARAMS
            }
            try:
                writer.write(encode(m.startup_message(startup)))
            except ProtocolError as exc:
                raise fail(f"cannot send the start-up message: {exc}") from None
            await writer.drain()
            result = await _startup(spec, reader, writer, fail, conn_log)
    except BaseException as exc:
        if writer is not None:
            writer.transport.abort()
        if isinstance(exc, TargetError):
            raise
        if isinstance(exc, TimeoutError):
            raise fail("target timed out") from None
        if isinstance(exc, OSError):
            raise fail(f"connection lost during start-up: {describe_os_error(exc)}") from None
        raise
    conn_log.debug(
        "connected to %s:%s as %s (auth %s, tls %s)",
        spec.host,
        spec.port,
        spec.user,
        result.auth_method,
        spec.tls,
    )
    return result


async def _startup(
    spec: TargetSpec,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    fail: _Fail,
    conn_log: ContextLogger,
) -> TargetConnection:
    """Authentication, then ParameterStatus / BackendKeyData / notices until ReadyForQuery."""
    frames = _Frames(reader, fail)
    auth = _Authenticator(spec, writer, fail)
    parameters: dict[str, str] = {}
    key: m.BackendKeyData | None = None
    notices = 0
    for _ in range(_MAX_STARTUP_MESSAGES):
        message = await frames.next()
        if isinstance(message, m.ErrorResponse):
            raise fail.server_error(message.code, message.message)
        if isinstance(message, m.NoticeResponse):
            notices += 1
            if notices <= _MAX_NOTICES_LOGGED:
                conn_log.info("target notice: %s", fail.clean(message.message))
        elif isinstance(message, m.NegotiateProtocolVersion):
            # Central asks for 3.0, the floor, and sends no `_pq_.` options: nothing to refuse.
            conn_log.info(
                "target negotiated protocol 3.%s; options it did not recognize: %s",
                message.minor,
                fail.clean(", ".join(message.unrecognized) or "none", limit=200),
            )
        elif isinstance(message, m.Authentication):
            await auth.handle(message)
        elif not auth.done:
            raise fail(f"the target sent {type(message).__name__} before authentication finished")
        elif isinstance(message, m.ParameterStatus):
            if message.name not in parameters and len(parameters) >= _MAX_PARAMETERS:
                raise fail("the target reported too many parameters")
            parameters[message.name] = message.value
        elif isinstance(message, m.BackendKeyData):
            key = message
        elif isinstance(message, m.ReadyForQuery):
            if key is None:
                conn_log.warning("the target sent no BackendKeyData: queries cannot be cancelled")
            return TargetConnection(
                reader=reader,
                writer=writer,
                parameters=parameters,
                pid=key.pid if key else 0,
                secret=key.secret if key else b"",
                status=message.status,
                buffered=b"",
                auth_method=auth.method,
            )
        else:
            raise fail(f"the target sent an unexpected {type(message).__name__} during start-up")
    raise fail("the target sent too many messages during start-up")


async def cancel_target(
    spec: TargetSpec,
    pid: int,
    secret: bytes,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for the whole cancel request
) -> None:
    """Ask the target to cancel the query running in backend `pid` with cancel key `secret`.

    Sends a CancelRequest on a new connection with the same TLS mode. The target answers
    nothing (not even when the key is wrong); this returns once it has closed the connection.
    Connect and TLS failures, or taking longer than `timeout`, raise `TargetError`.
    """
    fail = _Fail(spec)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await _open_stream(spec, fail)
            try:
                writer.write(encode(m.CancelRequest(pid, secret)))
            except ProtocolError as exc:
                raise fail(f"cannot send the cancel request: {exc}") from None
            await writer.drain()
            try:
                await reader.read(1)  # the server closes the connection once it has acted
            except (OSError, ssl.SSLError):
                pass
    except TimeoutError:
        raise fail("target timed out (cancel request)") from None
    except OSError as exc:
        raise fail(f"cancel request failed: {describe_os_error(exc)}") from None
    finally:
        if writer is not None:
            writer.transport.abort()
