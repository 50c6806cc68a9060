"""Admission through the tunnel, driven by the real local-proxy tunnel client.

A real central runs in this process (built-in issuer, SQLite store) with resources on a
throw-away database of the machine's PostgreSQL; `localproxy.tunnel.Tunnel` opens the TLS
tunnel with central's CA pinned and sends the hello, exactly as the local listener does. After
an `accept` the tunnel carries central's PostgreSQL conversation, which the tests speak with
the sans-io codec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import update

from central.protocols.postgres.codec import FrameReader, decode_backend, encode
from central.protocols.postgres.messages import (
    Authentication,
    BackendKeyData,
    BackendMessage,
    CommandComplete,
    DataRow,
    ErrorResponse,
    Query,
    ReadyForQuery,
    Terminate,
)
from central.runtime import Central
from central.store import AccessRequest, Store
from central.tls import TunnelTLS
from localproxy.api import CentralClient, CentralError
from localproxy.contract import (
    MAX_FRAME,
    TunnelAnswer,
    TunnelHello,
    TunnelInfo,
    encode_frame,
)
from localproxy.tunnel import Tunnel, TunnelError, ca_fingerprint
from tests.support.central import running_central
from tests.support.gateway import resource_for
from tests.support.pgtemp import temporary_database

# alice (group analysts): direct-db directly, request-db on request, hidden-db not at all.
# bob (group admins): direct-db and hidden-db directly.
ROLES = [
    {"name": "analyst", "groups": ["analysts"], "resources": ["direct-db"], "access": "direct"},
    {
        "name": "oncall",
        "groups": ["analysts"],
        "resources": ["request-db"],
        "access": "request",
        "reviewers": ["admins"],
    },
    {
        "name": "dba",
        "groups": ["admins"],
        "resources": ["direct-db", "hidden-db"],
        "access": "direct",
    },
]


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """A throw-away database with a `witness` table: what reached the target is in it."""
    async with temporary_database("wg_tunnel") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE witness (n int)")
        finally:
            await conn.close()
        yield url


@dataclass
class Env:
    central: Central
    url: str
    info: TunnelInfo
    target: str

    def token(
        self, user: str = "alice", *, ttl: int | None = None, now: float | None = None
    ) -> str:
        issuer = self.central.issuer
        assert issuer is not None
        found = issuer.users.get(user)
        assert found is not None
        return issuer.minter.mint_access_token(found, ttl=ttl, now=now)

    async def open(
        self, resource: str = "direct-db", token: str | None = None
    ) -> tuple[TunnelAnswer, TunnelConn | None]:
        """Open a tunnel as the local listener does; the connection only when accepted."""
        hello = TunnelHello(
            token=token or self.token(),
            resource=resource,
            params={"application_name": "tunnel-test"},
            client="127.0.0.1:5555",
        )
        answer, reader, writer = await Tunnel(self.info).open(hello)
        if answer.status != "accept":
            assert await reader.read() == b""  # central closes after a refusal
            writer.close()
            return answer, None
        return answer, TunnelConn(reader, writer)

    async def accept(self, resource: str = "direct-db", token: str | None = None) -> TunnelConn:
        answer, conn = await self.open(resource, token)
        assert answer.status == "accept", answer
        assert conn is not None
        conn.answer = answer
        return conn

    async def witnessed(self) -> list[int]:
        conn = await asyncpg.connect(self.target)
        try:
            return [r["n"] for r in await conn.fetch("SELECT n FROM witness ORDER BY n")]
        finally:
            await conn.close()


class TunnelConn:
    """The client end of an accepted tunnel: PostgreSQL messages from central."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.answer: TunnelAnswer | None = None

    async def until_ready(self, timeout: float = 10) -> list[BackendMessage]:
        """Messages up to and including ReadyForQuery, or up to the end of the connection."""
        seen: list[BackendMessage] = []
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.frames.frames():
                    seen.append(decode_backend(frame))
                    if isinstance(seen[-1], ReadyForQuery):
                        return seen
                data = await self.reader.read(65536)
                if not data:
                    return seen
                self.frames.receive_data(data)

    async def query(self, sql: str) -> list[BackendMessage]:
        self.writer.write(encode(Query(sql)))
        await self.writer.drain()
        return await self.until_ready()

    async def at_eof(self) -> bool:
        async with asyncio.timeout(5):
            return await self.reader.read() == b""

    def close(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            self.writer.write(encode(Terminate()))
        self.writer.close()


def values(messages: list[BackendMessage]) -> list[tuple[bytes | None, ...]]:
    return [m.values for m in messages if isinstance(m, DataRow)]


def errors(messages: list[BackendMessage]) -> list[ErrorResponse]:
    return [m for m in messages if isinstance(m, ErrorResponse)]


@contextlib.asynccontextmanager
async def central_env(tmp_path: Path, target: str) -> AsyncIterator[Env]:
    resources = [resource_for(target, name) for name in ("direct-db", "request-db", "hidden-db")]
    async with running_central(tmp_path, resources=resources, roles=ROLES) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            resp = await http.get("/api/tunnel-info")  # unauthenticated, as at first use
            resp.raise_for_status()
            info = TunnelInfo.model_validate(resp.json())
        yield Env(running.central, running.url, info, target)


@pytest.fixture
async def env(tmp_path: Path, target: str) -> AsyncIterator[Env]:
    async with central_env(tmp_path, target) as running:
        yield running


async def grant(
    env: Env, user: str, resource: str, until: datetime, status: str = "approved"
) -> AccessRequest:
    """An access request decided in the store, as an approval would leave it."""
    now = datetime.now(UTC)
    req = await env.central.store.create_access_request(user, resource, "on call", 3600, now)
    async with env.central.store.session() as s, s.begin():
        await s.execute(
            update(AccessRequest)
            .where(AccessRequest.id == req.id)
            .values(status=status, decided_at=now, expires_at=until)
        )
    return req


async def recorded_end(env: Env, session_id: str) -> str | None:
    await env.central.recorder.flush()
    found = await env.central.store.session_with_statements(session_id)
    assert found is not None
    return found[0].end_reason


# -- accept ------------------------------------------------------------------------------------


async def test_accept_for_a_direct_resource(env: Env) -> None:
    token = env.token("alice", ttl=600)
    expiry = (await env.central.validator.validate(token)).expires_at
    conn = await env.accept("direct-db", token)
    try:
        answer = conn.answer
        assert answer is not None and answer.code == "" and answer.reason == ""
        assert answer.expires_at == expiry  # no grant involved: the token's expiry
        assert answer.session_id is not None
        live = env.central.sessions.get(answer.session_id)
        assert live is not None and live.identity.user == "alice"
        assert live.resource == "direct-db" and live.grant_until is None
        # Central greets as the server, with its own cancel key, then relays to the target.
        greeting = await conn.until_ready()
        assert isinstance(greeting[0], Authentication) and greeting[0].code == Authentication.OK
        keys = [m for m in greeting if isinstance(m, BackendKeyData)]
        assert [(k.pid, k.secret) for k in keys] == [live.key]
        assert isinstance(greeting[-1], ReadyForQuery)
        replies = await conn.query("INSERT INTO witness VALUES (1); SELECT current_database()")
        assert values(replies) == [(env.target.rsplit("/", 1)[1].encode(),)]
        assert [m.tag for m in replies if isinstance(m, CommandComplete)] == [
            "INSERT 0 1",
            "SELECT 1",
        ]
    finally:
        conn.close()
    assert await env.witnessed() == [1]


# -- deny: the token ---------------------------------------------------------------------------


async def test_expired_token_is_denied_with_the_validators_reason(env: Env) -> None:
    old = time.time() - 3600
    token = env.token("alice", ttl=60, now=old)
    answer, conn = await env.open("direct-db", token)
    assert conn is None
    assert (answer.status, answer.code) == ("deny", "token")
    expired_at = datetime.fromtimestamp(int(old) + 60, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    assert answer.reason == f"sign-in refused: token expired at {expired_at}"
    assert answer.session_id is None and answer.expires_at is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("garbage", "token is not a signed JWT (expected three parts)"),
        ("a.b.c", "token header is not valid base64url JSON"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.", "unsigned token (alg 'none') refused"),
    ],
)
async def test_garbage_token_is_denied_with_the_validators_reason(
    env: Env, token: str, reason: str
) -> None:
    answer, conn = await env.open("direct-db", token)
    assert conn is None
    assert (answer.status, answer.code) == ("deny", "token")
    assert answer.reason == f"sign-in refused: {reason}"
    assert len(env.central.sessions) == 0


# -- deny: entitlement -------------------------------------------------------------------------


async def test_forbidden_and_nonexistent_resources_get_the_same_answer(env: Env) -> None:
    # hidden-db exists (bob reaches it) but no role of alice's grants it; no-such-db does not
    # exist. The answers differ only in the name the caller sent: no probing for names.
    bob = await env.accept("hidden-db", env.token("bob"))
    bob.close()
    answers = {}
    for name in ("hidden-db", "no-such-db"):
        answer, conn = await env.open(name, env.token("alice"))
        assert conn is None
        answers[name] = answer
    for name, answer in answers.items():
        assert (answer.status, answer.code) == ("deny", "forbidden")
        assert answer.reason == f"no resource named {name!r} is available to you"
    shapes = {
        a.model_copy(update={"reason": a.reason.replace(n, "NAME")}) for n, a in answers.items()
    }
    assert len(shapes) == 1


async def test_request_only_resource_without_a_request(env: Env) -> None:
    answer, conn = await env.open("request-db")
    assert conn is None
    assert (answer.status, answer.code) == ("request_needed", "request_needed")
    assert "request-db needs an approved access request" in answer.reason
    assert "watchgate request request-db --reason" in answer.reason
    assert answer.request_id is None


async def test_pending_request_answers_pending_with_its_id(env: Env) -> None:
    now = datetime.now(UTC)
    req = await env.central.store.create_access_request("alice", "request-db", "fix", 600, now)
    answer, conn = await env.open("request-db")
    assert conn is None
    assert (answer.status, answer.code) == ("pending", "pending")
    assert answer.request_id == req.id
    assert "waiting for approval" in answer.reason


async def test_denied_or_lapsed_requests_grant_nothing(env: Env) -> None:
    await grant(env, "alice", "request-db", datetime.now(UTC) + timedelta(hours=1), "denied")
    await grant(env, "alice", "request-db", datetime.now(UTC) - timedelta(seconds=1))
    await grant(env, "bob", "request-db", datetime.now(UTC) + timedelta(hours=1))
    answer, conn = await env.open("request-db")
    assert conn is None
    assert answer.status == "request_needed"


# -- accept: an approved grant -----------------------------------------------------------------


async def test_approved_grant_accepts_until_the_grant_ends(env: Env) -> None:
    until = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
    await grant(env, "alice", "request-db", until)
    token = env.token("alice", ttl=3600)  # outlives the grant
    conn = await env.accept("request-db", token)
    conn.close()
    assert conn.answer is not None
    assert conn.answer.expires_at == until  # min(token expiry, grant expiry) = the grant


async def test_approved_grant_accepts_until_the_token_ends(env: Env) -> None:
    await grant(env, "alice", "request-db", datetime.now(UTC) + timedelta(hours=2))
    token = env.token("alice", ttl=600)  # ends before the grant
    expiry = (await env.central.validator.validate(token)).expires_at
    conn = await env.accept("request-db", token)
    try:
        assert conn.answer is not None
        assert conn.answer.expires_at == expiry  # min(token expiry, grant expiry) = the token
        await conn.until_ready()
        assert values(await conn.query("SELECT 7")) == [(b"7",)]
    finally:
        conn.close()


async def test_session_ends_when_the_grant_expires(env: Env) -> None:
    until = datetime.now(UTC) + timedelta(seconds=3)
    await grant(env, "alice", "request-db", until)
    conn = await env.accept("request-db", env.token("alice", ttl=600))
    try:
        assert conn.answer is not None and conn.answer.session_id is not None
        await conn.until_ready()
        assert values(await conn.query("SELECT 1")) == [(b"1",)]
        ending = await conn.until_ready(timeout=10)  # nothing asked: central ends it
        ended_at = datetime.now(UTC)
        assert await conn.at_eof()
    finally:
        conn.close()
    fatal = errors(ending)
    assert len(fatal) == 1
    assert fatal[0].severity == "FATAL" and fatal[0].code == "57P01"
    assert fatal[0].message.startswith("Watchgate: session ended: access grant expired at ")
    assert until <= ended_at < until + timedelta(seconds=2)
    assert await recorded_end(env, conn.answer.session_id) == "access grant expired"


# -- malformed hellos ----------------------------------------------------------------------------


def tls_client(info: TunnelInfo) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=info.ca_pem)


async def raw_tunnel(env: Env, data: bytes, *, use_tls: bool = True) -> bytes:
    """Send `data` as the first bytes of a tunnel connection; what central answered before
    closing (or b"" when it answered nothing)."""
    host, _, port = env.info.address.rpartition(":")
    reader, writer = await asyncio.open_connection(
        host,
        int(port),
        ssl=tls_client(env.info) if use_tls else None,
        server_hostname=host if use_tls else None,
    )
    try:
        writer.write(data)
        await writer.drain()
        if not use_tls:
            writer.write_eof()
        async with asyncio.timeout(15):
            try:
                return await reader.read()
            except (ConnectionError, ssl.SSLError, OSError):
                return b""
    finally:
        writer.close()


async def test_malformed_hellos_are_dropped_and_the_next_good_one_is_served(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = TunnelHello(token=env.token(), resource="direct-db")
    body = good.model_dump_json().encode()
    # One that stalls mid-header stays open while everything below is served.
    host, _, port = env.info.address.rpartition(":")
    _, stalled_w = await asyncio.open_connection(
        host, int(port), ssl=tls_client(env.info), server_hostname=host
    )
    stalled_w.write(b"\x00\x00")
    await stalled_w.drain()
    bad = {
        "not JSON": len(b"not json at all").to_bytes(4, "big") + b"not json at all",
        "JSON, not a hello": len(b"[1, 2]").to_bytes(4, "big") + b"[1, 2]",
        "length cuts the JSON short": (len(body) - 5).to_bytes(4, "big") + body,
        "zero length": b"\x00\x00\x00\x00" + body,
        "oversize": (MAX_FRAME + 1).to_bytes(4, "big") + body,
        "length past the end": (len(body) + 100).to_bytes(4, "big") + body,
    }
    try:
        for what, data in bad.items():
            if what == "length past the end":
                # Central waits for the rest; the client gives up and closes.
                await _send_partial_and_close(env, data)
            else:
                assert await raw_tunnel(env, data) == b"", what  # dropped, no answer
            conn = await env.accept()  # and the next good hello is served
            conn.close()
        # Not TLS at all: the TLS handshake fails, the hello is never read.
        assert await raw_tunnel(env, encode_frame(good), use_tls=False) == b""
        conn = await env.accept()
        await conn.until_ready()
        assert values(await conn.query("SELECT 1")) == [(b"1",)]
        conn.close()
    finally:
        stalled_w.close()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    refused = [r.getMessage() for r in caplog.records if "tunnel hello refused" in r.getMessage()]
    assert len(refused) >= len(bad)


async def _send_partial_and_close(env: Env, data: bytes) -> None:
    """Send `data`, see that central answers nothing while it waits for the rest, then hang
    up (central reads the end of the stream and drops the hello)."""
    host, _, port = env.info.address.rpartition(":")
    reader, writer = await asyncio.open_connection(
        host, int(port), ssl=tls_client(env.info), server_hostname=host
    )
    writer.write(data)
    await writer.drain()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await reader.read(1)
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


# -- stopping central ----------------------------------------------------------------------------


async def test_stopping_central_ends_live_sessions_and_half_read_hellos_quietly(
    tmp_path: Path, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with central_env(tmp_path, target) as env:
        conn = await env.accept()
        await conn.until_ready()
        assert values(await conn.query("SELECT 1")) == [(b"1",)]
        host, _, port = env.info.address.rpartition(":")
        _, half_w = await asyncio.open_connection(
            host, int(port), ssl=tls_client(env.info), server_hostname=host
        )
        half_w.write(b"\x00\x00\x01")  # a hello that never finishes
        await half_w.drain()
        await asyncio.sleep(0.2)
        store_url = env.central.config.store_url
    # Central has stopped: the session's connection is closed, and the stop was clean.
    assert await conn.at_eof()
    conn.close()
    half_w.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert conn.answer is not None and conn.answer.session_id is not None
    async with await Store.open(store_url) as store:
        found = await store.session_with_statements(conn.answer.session_id)
    assert found is not None and found[0].end_reason == "central stopped"


# -- the pinned CA -------------------------------------------------------------------------------


async def test_a_client_pinning_another_ca_cannot_connect(env: Env, tmp_path: Path) -> None:
    other = TunnelTLS.load_or_create(tmp_path / "impostor", "127.0.0.1")
    pem = other.ca_pem.decode()
    pinned = TunnelInfo(address=env.info.address, ca_pem=pem, ca_sha256=ca_fingerprint(pem))
    with pytest.raises(TunnelError) as info:
        await Tunnel(pinned).open(TunnelHello(token=env.token(), resource="direct-db"))
    assert str(info.value).startswith(f"cannot open the tunnel to central at {env.info.address}")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert len(env.central.sessions) == 0
    # A CA that does not match its own fingerprint is refused before any connection.
    forged = env.info.model_copy(update={"ca_sha256": ca_fingerprint(pem)})
    with pytest.raises(TunnelError, match="does not match its own fingerprint"):
        Tunnel(forged)


# -- extending a session with a fresh token ------------------------------------------------------


async def test_fresh_token_extends_the_session_and_another_users_does_not(env: Env) -> None:
    first = env.token("alice", ttl=3)
    first_expiry = (await env.central.validator.validate(first)).expires_at
    kept = await env.accept("direct-db", first)
    other = await env.accept("direct-db", env.token("alice", ttl=3))
    try:
        assert kept.answer is not None and other.answer is not None
        kept_id, other_id = kept.answer.session_id, other.answer.session_id
        assert kept_id is not None and other_id is not None
        await kept.until_ready()
        await other.until_ready()

        fresh = env.token("alice", ttl=120)
        fresh_expiry = (await env.central.validator.validate(fresh)).expires_at
        async with CentralClient(env.url, fresh) as api:
            await api.extend_session(kept_id)
        live = env.central.sessions.get(kept_id)
        assert live is not None and live.deadline == fresh_expiry

        other_live = env.central.sessions.get(other_id)
        assert other_live is not None
        before = other_live.deadline
        async with CentralClient(env.url, env.token("bob", ttl=120)) as api:
            with pytest.raises(CentralError) as refused:
                await api.extend_session(other_id)
            assert refused.value.status == 404
            with pytest.raises(CentralError) as unknown:
                await api.extend_session("no-such-session")
            assert unknown.value.status == 404
        assert other_live.deadline == before

        await asyncio.sleep(max(0.0, (first_expiry - datetime.now(UTC)).total_seconds()) + 1)
        # Past the first token's expiry: the extended session still works...
        assert values(await kept.query("SELECT 42")) == [(b"42",)]
        # ...and the other one was ended at its token's expiry.
        ending = await other.until_ready()
        fatal = errors(ending)
        assert [(e.code, e.severity) for e in fatal] == [("57P01", "FATAL")]
        assert "access token expired" in fatal[0].message
        assert await other.at_eof()
    finally:
        kept.close()
        other.close()
    assert await recorded_end(env, other_id) == "access token expired"


# -- the recording fails closed -----------------------------------------------------------------

_REFUSE_WRITES = [
    f"CREATE TRIGGER refuse_{table}_{op} BEFORE {op.upper()} ON {table} "
    f"BEGIN SELECT RAISE(ABORT, 'recording store refuses writes'); END"
    for table in ("sessions", "statements")
    for op in ("insert", "update")
]


@contextlib.asynccontextmanager
async def store_refusing_writes(db_file: Path) -> AsyncIterator[None]:
    """Make every write to the recording tables fail inside SQLite itself.

    How: triggers on the real store file (another connection, as an operator's sqlite3 shell
    would) that abort every INSERT and UPDATE of `sessions` and `statements`. Central's
    recorder writes through its own engine exactly as always and gets the database's error
    back - the same failure path as a full disk or a read-only file (which root, running these
    tests, could still write). Dropping the triggers lets the store accept writes again. The
    sqlite3 calls run in a thread: they may wait for central's write lock, which central can
    only release while the event loop runs.
    """
    db = sqlite3.connect(db_file, timeout=10, isolation_level=None, check_same_thread=False)

    def run(statements: list[str]) -> None:
        for statement in statements:
            db.execute(statement)

    try:
        await asyncio.to_thread(run, _REFUSE_WRITES)
        yield
    finally:
        drops = [
            f"DROP TRIGGER IF EXISTS refuse_{table}_{op}"
            for table in ("sessions", "statements")
            for op in ("insert", "update")
        ]
        await asyncio.to_thread(run, drops)
        db.close()


async def test_recording_failure_refuses_new_sessions_and_ends_live_ones(env: Env) -> None:
    recorder = env.central.recorder
    db_file = env.central.config.data_dir / "watchgate.db"
    assert env.central.config.store_url == f"sqlite:///{db_file}"
    live = await env.accept()
    assert live.answer is not None and live.answer.session_id is not None
    await live.until_ready()
    assert values(await live.query("INSERT INTO witness VALUES (1) RETURNING n")) == [(b"1",)]
    await recorder.flush()
    assert recorder.healthy

    async with store_refusing_writes(db_file):
        # A new session: its record cannot be written, so it is refused.
        answer, conn = await env.open()
        assert conn is None
        assert (answer.status, answer.code) == ("deny", "recording")
        assert answer.reason.startswith("direct-db: sessions are refused: ")
        assert "the recording store cannot be written" in answer.reason
        assert "recording store refuses writes" in answer.reason
        assert not recorder.healthy

        # The live session ends at its next statement, which never reaches the target.
        replies = await live.query("INSERT INTO witness VALUES (2)")
        assert [(e.code, e.severity) for e in errors(replies)] == [("58030", "FATAL")]
        assert "the recording is unavailable" in errors(replies)[0].message
        assert await live.at_eof()
        live.close()

        # While the store refuses writes, every new session is refused the same way.
        answer, conn = await env.open()
        assert conn is None and answer.code == "recording"

    # The store accepts writes again: the queued end of the session is written, the recorder
    # is healthy again and sessions are admitted.
    async with asyncio.timeout(5):
        while not recorder.healthy:
            await asyncio.sleep(0.05)
    assert await env.witnessed() == [1]
    assert await recorded_end(env, live.answer.session_id) == "recording unavailable"
    found = await env.central.store.session_with_statements(live.answer.session_id)
    assert found is not None
    assert [s.sql for s in found[1]] == ["INSERT INTO witness VALUES (1) RETURNING n"]
    again = await env.accept()
    again.close()


async def test_recording_recovers_with_nothing_queued(env: Env) -> None:
    # No session is live, so nothing waits to be written: the recorder learns of the failure
    # from the refused session's own record, and must find out by itself that the store has
    # recovered - or central would refuse every session until it is restarted.
    recorder = env.central.recorder
    async with store_refusing_writes(env.central.config.data_dir / "watchgate.db"):
        answer, conn = await env.open()
        assert conn is None and answer.code == "recording"
        assert not recorder.healthy
        await asyncio.sleep(0.3)  # several flush intervals: still refusing
        assert not recorder.healthy
    async with asyncio.timeout(5):
        while not recorder.healthy:
            await asyncio.sleep(0.05)
    conn = await env.accept()
    await conn.until_ready()
    assert values(await conn.query("SELECT 1")) == [(b"1",)]
    conn.close()
