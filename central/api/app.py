"""Central's HTTP API: identity, resources, access requests and approvals, live events.

Every route but /api/health and /api/login-info needs a bearer token that the configured
issuer signed; refusals carry the validator's specific reason (RFC 6750 `error_description`).
Refused requests and decisions answer JSON `{"error": CODE, "reason": SENTENCE}` with 400
(malformed or incomplete), 403 (not yours to decide), 404 (unknown) or 409 (no longer
pending, already approved by you, nobody may review).
"""

# No `from __future__ import annotations` here: FastAPI resolves the dependency annotations of
# the routes defined inside create_app() at run time, and those names are local.

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse

from central import __version__
from central.approvals import ApprovalError
from central.durations import parse_duration, parse_time
from central.identity.tokens import Identity, IssuerUnavailable, TokenRejected
from central.policy.access import entitlements, is_auditor, may_review, roles_for
from central.recording import asciicast, evidence
from central.runtime import Central
from central.store import (
    SessionRecord,
    StatementRecord,
    StoreError,
    TerminalChannel,
    TerminalChunk,
    review,
)
from central.store.review import Cursor, SessionFilter
from localproxy.contract import (
    API_PREFIX,
    CAST_MEDIA_TYPE,
    JSONL_MEDIA_TYPE,
    AccessRequestCreate,
    AccessRequestView,
    AccessState,
    ApprovalItem,
    ApproveBody,
    CastSummary,
    ContentItem,
    ContentPage,
    DenyBody,
    LoginInfo,
    Me,
    ResourceView,
    ReviewPage,
    ReviewSession,
    ReviewSessionSummary,
    SearchHit,
    SessionDetail,
    SessionSummary,
    StatementView,
    TunnelInfo,
)

KEEPALIVE = 15.0  # seconds between SSE comments, so idle proxies do not cut the stream
# Bytes of a cast download's response piece: a recording is thousands of small chunks (one
# per recorder flush) and each piece costs a send, so chunks are joined up to this size.
CAST_PIECE = 256 * 1024


def create_app(central: Central) -> FastAPI:
    app = FastAPI(
        title="Watchgate central",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    if central.issuer is not None:
        app.include_router(central.issuer.router())

    @app.exception_handler(TokenRejected)
    async def _rejected(request: Request, exc: TokenRejected) -> JSONResponse:
        await central.audit.record("api.token_rejected", code=exc.code, reason=exc.reason)
        header = f'Bearer error="invalid_token", error_description="{_header_safe(exc.reason)}"'
        return JSONResponse(
            {"error": "invalid_token", "reason": exc.reason, "code": exc.code},
            401,
            headers={"WWW-Authenticate": header},
        )

    @app.exception_handler(IssuerUnavailable)
    async def _issuer_down(request: Request, exc: IssuerUnavailable) -> JSONResponse:
        return JSONResponse({"error": "issuer_unavailable", "reason": str(exc)}, 503)

    @app.exception_handler(ApprovalError)
    async def _approval_refused(request: Request, exc: ApprovalError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "reason": exc.reason}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def _malformed(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith(f"{API_PREFIX}/"):
            return await request_validation_exception_handler(request, exc)
        return JSONResponse({"error": "invalid", "reason": _validation_reason(exc)}, 400)

    @app.exception_handler(StoreError)
    async def _store_down(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"error": "store_unavailable", "reason": str(exc)}, 503)

    async def identity(request: Request) -> Identity:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("missing", "no bearer token: sign in with `watchgate login`")
        return await central.validator.validate(token.strip())

    User = Annotated[Identity, Depends(identity)]

    @app.get(f"{API_PREFIX}/health", tags=["meta"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get(f"{API_PREFIX}/login-info", tags=["meta"])
    async def login_info() -> LoginInfo:
        ident = central.config.identity
        return LoginInfo(
            issuer=central.config.issuer_url,
            client_id=ident.client_id,
            audience=ident.audience,
            scopes=["openid", "profile", "groups", "offline_access"],
        )

    @app.get(f"{API_PREFIX}/me", tags=["identity"])
    async def me(who: User) -> Me:
        cfg = central.config
        return Me(
            user=who.user,
            subject=who.subject,
            groups=list(who.groups),
            roles=[r.name for r in roles_for(cfg, who.groups)],
            auditor=is_auditor(cfg, who.groups),
            admin=any(r.admin for r in roles_for(cfg, who.groups)),
            issuer=who.issuer,
            token_expires_at=who.expires_at,
        )

    @app.get(f"{API_PREFIX}/resources", tags=["resources"])
    async def resources(who: User) -> list[ResourceView]:
        now = datetime.now(UTC)
        in_force = await central.store.requests_in_force(who.user, now)
        out = []
        for ent in entitlements(central.config, who.groups):
            res = ent.resource
            view = ResourceView(
                name=res.name,
                kind=res.kind,
                environment=res.environment,
                description=res.description,
                database=res.database,
                access=AccessState.DIRECT,
            )
            req = in_force.get(res.name)
            if ent.access == "request":
                if req is not None and req.status == "approved":
                    view = view.model_copy(
                        update={
                            "access": AccessState.GRANTED,
                            "granted_until": req.expires_at,
                            "request_id": req.id,
                        }
                    )
                elif req is not None and req.status == "pending":
                    view = view.model_copy(
                        update={"access": AccessState.PENDING, "request_id": req.id}
                    )
                else:
                    view = view.model_copy(update={"access": AccessState.REQUESTABLE})
            out.append(view)
        return out

    @app.get(f"{API_PREFIX}/tunnel-info", tags=["meta"])
    async def tunnel_info() -> TunnelInfo:
        """Where the tunnel listens, its CA and central's SSH host key, which local proxies
        pin at first use."""
        host_key = central.ssh_host_key
        return TunnelInfo(
            address=str(central.config.server.tunnel_listen),
            ca_pem=central.tls.ca_pem.decode(),
            ca_sha256=central.tls.ca_sha256,
            ssh_host_key=host_key.export_public_key("openssh").decode().strip(),
            ssh_host_key_sha256=host_key.get_fingerprint("sha256"),
        )

    @app.post(f"{API_PREFIX}/tunnel-sessions/{{session_id}}/extend", tags=["sessions"])
    async def extend_session(session_id: str, who: User) -> dict[str, str]:
        """Carry a live session past the old token's expiry with the caller's fresh token."""
        live = central.sessions.get(session_id)
        if live is None or live.identity.subject != who.subject:
            raise HTTPException(404, "no such live session of yours")
        return {"deadline": live.extend(who).isoformat()}

    @app.get(f"{API_PREFIX}/sessions", tags=["sessions"])
    async def sessions(who: User, limit: int = 100) -> list[SessionSummary]:
        """Recorded sessions: your own, or everyone's for reviewers (admin or auditor roles)."""
        user = None if may_review(central.config, who.groups) else who.user
        rows = await central.store.list_sessions(user=user, limit=min(max(limit, 1), 1000))
        return [SessionSummary.model_validate(r, from_attributes=True) for r in rows]

    @app.get(f"{API_PREFIX}/sessions/{{session_id}}", tags=["sessions"])
    async def session_detail(session_id: str, who: User) -> SessionDetail:
        found = await central.store.session_with_statements(session_id)
        auditor = may_review(central.config, who.groups)
        if found is None or (found[0].user != who.user and not auditor):
            raise HTTPException(404, "no such session")
        row, statements = found
        return SessionDetail(
            **SessionSummary.model_validate(row, from_attributes=True).model_dump(),
            statements=[StatementView.model_validate(s, from_attributes=True) for s in statements],
            casts=_cast_summaries(row, await central.store.terminal_channels(session_id)),
        )

    async def visible_session(session_id: str, who: Identity) -> SessionRecord:
        """The session if `who` may see it (their own, or anyone's for reviewers); else 404,
        the same answer as for a session that does not exist."""
        row = await central.store.session_record(session_id)
        auditor = may_review(central.config, who.groups)
        if row is None or (row.user != who.user and not auditor):
            raise HTTPException(404, "no such session")
        return row

    @app.get(f"{API_PREFIX}/sessions/{{session_id}}/casts", tags=["sessions"])
    async def session_casts(session_id: str, who: User) -> list[CastSummary]:
        """The session's recorded terminal channels (SSH shells and execs)."""
        row = await visible_session(session_id, who)
        return _cast_summaries(row, await central.store.terminal_channels(session_id))

    @app.get(
        f"{API_PREFIX}/sessions/{{session_id}}/casts/{{channel}}",
        tags=["sessions"],
        response_class=StreamingResponse,
        responses={200: {"content": {CAST_MEDIA_TYPE: {}}}},
    )
    async def session_cast(session_id: str, channel: int, who: User) -> StreamingResponse:
        """One terminal channel's recording as asciicast v3, streamed from the store (a long
        shell is tens of MB). A live channel gives what is recorded so far."""
        row = await visible_session(session_id, who)
        return await _cast_download(central, row.id, channel)

    @app.post(f"{API_PREFIX}/requests", tags=["approvals"])
    async def request_access(body: AccessRequestCreate, who: User) -> AccessRequestView:
        """Ask for time-boxed access to a resource your roles grant on request.

        `duration` is seconds or a text like "30m"; it is capped at the role's maximum (the
        answer shows requested and granted). While a request for the same resource is
        pending, that request is the answer.
        """
        return await central.approvals.request_access(
            who, body.resource, body.reason, _duration(body.duration)
        )

    @app.get(f"{API_PREFIX}/requests", tags=["approvals"], response_model=list[ApprovalItem])
    async def my_requests(who: User) -> list[ApprovalItem]:
        """Your own access requests and held statements, newest first."""
        return list(await central.approvals.mine(who))

    @app.get(f"{API_PREFIX}/approvals", tags=["approvals"], response_model=list[ApprovalItem])
    async def inbox(who: User) -> list[ApprovalItem]:
        """Pending access requests and held statements that you may decide, newest first."""
        return list(await central.approvals.inbox(who))

    @app.get(f"{API_PREFIX}/approvals/{{item_id}}", tags=["approvals"], response_model=ApprovalItem)
    async def approval(item_id: str, who: User) -> ApprovalItem:
        """One request or held statement: for its requester, its reviewers and auditors."""
        return await central.approvals.get(who, item_id)

    @app.post(
        f"{API_PREFIX}/approvals/{{item_id}}/approve",
        tags=["approvals"],
        response_model=ApprovalItem,
    )
    async def approve(item_id: str, who: User, body: ApproveBody | None = None) -> ApprovalItem:
        """Approve; the item is approved once enough distinct reviewers have."""
        comment = body.comment if body is not None else None
        return await central.approvals.decide(who, item_id, True, comment)

    @app.post(
        f"{API_PREFIX}/approvals/{{item_id}}/deny", tags=["approvals"], response_model=ApprovalItem
    )
    async def deny(item_id: str, body: DenyBody, who: User) -> ApprovalItem:
        """Deny, with a reason; one denial decides."""
        return await central.approvals.decide(who, item_id, False, body.reason)

    @app.get(
        f"{API_PREFIX}/events",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(who: User) -> StreamingResponse:
        """The caller's live events as server-sent events, until the token expires."""
        return StreamingResponse(
            _event_stream(central, who),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    _review_routes(app, central, identity)
    return app


# -- session review ---------------------------------------------------------------------------

REVIEWERS_ONLY = "reviewing sessions needs a role marked admin or auditor"
REVIEW = f"{API_PREFIX}/review"
_Text = Annotated[str | None, Query(max_length=200)]


class Refused(Exception):
    """A review request refused: answered as JSON {"error": code, "reason": reason}."""

    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


def _review_routes(
    app: FastAPI, central: Central, identity: Callable[..., Awaitable[Identity]]
) -> None:
    """/api/review/*: sessions by filter, a session's content, search, exports. Only for roles
    marked admin or auditor, and each use is itself an audit event ("review.*"): what an
    auditor looked at is evidence too."""

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.code, "reason": exc.reason}, exc.status)

    async def reviewer(who: Annotated[Identity, Depends(identity)]) -> Identity:
        if not may_review(central.config, who.groups):
            raise Refused(403, "forbidden", REVIEWERS_ONLY)
        return who

    Reviewer = Annotated[Identity, Depends(reviewer)]

    def filters(
        user: _Text = None,
        resource: _Text = None,
        kind: _Text = None,
        since: _Text = None,
        until: _Text = None,
    ) -> SessionFilter:
        now = datetime.now(UTC)
        start = _time("since", since, now)
        end = _time("until", until, now)
        if start is not None and end is not None and start >= end:
            raise Refused(400, "invalid", "since: must be before until")
        return SessionFilter(user, resource, kind, start, end)

    Filters = Annotated[SessionFilter, Depends(filters)]

    async def existing(session_id: str) -> SessionRecord:
        row = await central.store.session_record(session_id)
        if row is None:
            raise Refused(404, "not_found", f"no session {session_id[:64]}")
        return row

    @app.get(f"{REVIEW}/sessions", tags=["review"])
    async def review_list(
        who: Reviewer,
        where: Filters,
        flagged: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        before: Annotated[str | None, Query(max_length=200)] = None,
    ) -> ReviewPage:
        """Recorded sessions, newest first, active at some time in [since, until) and
        `flagged` (with a blocked or held statement) or not; `before` is a page's `next`."""
        try:
            cursor = None if before is None else Cursor.decode(before)
        except ValueError as e:
            raise Refused(400, "invalid", f"before: {e}") from None
        rows, nxt = await review.review_sessions(
            central.store, where, flagged=flagged, limit=limit, before=cursor
        )
        await central.audit.record(
            "review.viewed", by=who.user, what="sessions", **_described(where, flagged=flagged)
        )
        return ReviewPage(
            sessions=[_review_summary(r.session, r.counts) for r in rows],
            next=None if nxt is None else nxt.encode(),
        )

    @app.get(f"{REVIEW}/sessions/{{session_id}}", tags=["review"])
    async def review_session(session_id: str, who: Reviewer) -> ReviewSession:
        """The session, what it did, its terminal recordings and its seal."""
        row = await existing(session_id)
        counts = await review.session_counts(central.store, row.id)
        casts = _cast_summaries(row, await central.store.terminal_channels(row.id))
        await central.audit.record("review.viewed", by=who.user, what="session", session=row.id)
        return ReviewSession(
            **_review_summary(row, counts).model_dump(),
            casts=casts,
            last_seq=row.last_seq,
            last_hash=row.last_hash,
            chain_seq=row.chain_seq,
            chain_hash=row.chain_hash,
        )

    @app.get(f"{REVIEW}/sessions/{{session_id}}/content", tags=["review"])
    async def review_content(
        session_id: str,
        who: Reviewer,
        after: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=2000)] = 500,
        only: Annotated[Literal["statement", "terminal"] | None, Query(alias="type")] = None,
    ) -> ContentPage:
        """The session's statements and terminal chunks after seq `after`, in seq order (its
        hash chain), at most `limit` rows and about 4 MiB: continue with `next_after`. With
        `type`, only its statements or only its terminal chunks (the viewer pages through the
        statements and downloads a channel's cast whole)."""
        row = await existing(session_id)
        page = await review.content_page(central.store, row.id, after=after, limit=limit, only=only)
        await central.audit.record(
            "review.viewed", by=who.user, what="content", session=row.id, after=after, type=only
        )
        return ContentPage(items=[_content_item(r) for r in page.rows], next_after=page.next_after)

    @app.get(f"{REVIEW}/search", tags=["review"])
    async def review_search(
        who: Reviewer,
        where: Filters,
        q: Annotated[str, Query(min_length=1, max_length=review.MAX_QUERY)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[SearchHit]:
        """Statements and terminal output lines containing `q` (literally, any case), newest
        sessions first; a terminal hit says when its line appeared (`at`, on its cast's
        clock)."""
        try:
            review.check_query(q)
        except ValueError as e:
            raise Refused(400, "invalid", str(e)) from None
        hits = await review.search(central.store, q, where, limit=limit)
        await central.audit.record(
            "review.searched", by=who.user, q=q, hits=len(hits), **_described(where)
        )
        return [SearchHit(**dataclasses.asdict(h)) for h in hits]

    @app.get(
        f"{REVIEW}/sessions/{{session_id}}/export",
        tags=["review"],
        response_class=StreamingResponse,
        responses={200: {"content": {CAST_MEDIA_TYPE: {}, JSONL_MEDIA_TYPE: {}}}},
    )
    async def review_export(
        session_id: str,
        who: Reviewer,
        format: Literal["jsonl", "asciicast"],
        channel: Annotated[int | None, Query(ge=0)] = None,
    ) -> StreamingResponse:
        """One session as evidence lines (jsonl: the session, its seal, its chain's rows,
        the reviews held on it; `watchgate-central verify-audit --bundle` checks it), or one
        terminal channel as asciicast v3."""
        row = await existing(session_id)
        if format == "asciicast":
            if channel is None:
                channels = [c.channel for c in await central.store.terminal_channels(row.id)]
                have = ", ".join(map(str, channels)) or "none"
                raise Refused(400, "invalid", f"channel: which terminal channel (it has {have})")
            response = await _cast_download(central, row.id, channel)
        else:
            lines = evidence.session_jsonl(central.store, row.id)
            try:
                first = await anext(lines)
            except LookupError:
                raise Refused(404, "not_found", f"no session {row.id}") from None
            response = _download(_then(first, lines), JSONL_MEDIA_TYPE, f"{row.id}.jsonl")
        await central.audit.record(
            "review.exported", by=who.user, session=row.id, format=format, channel=channel
        )
        return response

    @app.get(
        f"{REVIEW}/bundle",
        tags=["review"],
        response_class=StreamingResponse,
        responses={200: {"content": {JSONL_MEDIA_TYPE: {}}}},
    )
    async def review_bundle(who: Reviewer, since: str, until: str) -> StreamingResponse:
        """The evidence of a time range as JSON lines: the audit events, the sessions started
        in it with their rows and seals, access requests, reviews and approvals; verifiable
        with `watchgate-central verify-audit --bundle FILE`."""
        where = filters(None, None, None, since, until)
        assert where.since is not None and where.until is not None  # required parameters
        # Recorded first: the export of a range that includes now carries its own record.
        await central.audit.record(
            "review.exported", by=who.user, what="bundle", **_described(where)
        )
        lines = evidence.bundle_lines(central.store, central.audit.path, where.since, where.until)
        try:
            head = [await anext(lines), await anext(lines)]
        except evidence.EvidenceError as e:
            raise Refused(503, "evidence_unavailable", str(e)) from None
        except StopAsyncIteration:
            raise Refused(503, "evidence_unavailable", "the bundle ended early") from None
        name = f"watchgate-evidence-{where.since:%Y%m%dT%H%M%S}-{where.until:%Y%m%dT%H%M%S}.jsonl"
        return _download(_then(head[0], _then(head[1], lines)), JSONL_MEDIA_TYPE, name)


def _time(name: str, text: str | None, now: datetime) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text, now)
    except ValueError as e:
        raise Refused(400, "invalid", f"{name}: {e}") from None


def _described(where: SessionFilter, **more: Any) -> dict[str, Any]:
    """The filters of a review request, for its audit event (unset ones left out)."""
    fields = dataclasses.asdict(where) | more
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in fields.items()
        if v is not None
    }


def _review_summary(row: SessionRecord, counts: review.Counts) -> ReviewSessionSummary:
    return ReviewSessionSummary(
        **SessionSummary.model_validate(row, from_attributes=True).model_dump(),
        statements=counts.statements,
        blocked=counts.blocked,
        held=counts.held,
        sealed=row.chain_hash is not None,
    )


def _content_item(row: StatementRecord | TerminalChunk) -> ContentItem:
    if isinstance(row, TerminalChunk):
        return ContentItem(seq=row.seq, type="terminal", channel=row.channel, data=row.data)
    view = StatementView.model_validate(row, from_attributes=True)
    return ContentItem(seq=row.seq, type="statement", statement=view)


async def _cast_download(central: Central, session_id: str, channel: int) -> StreamingResponse:
    """A terminal channel's asciicast v3 file, streamed from the store; 404 when the session
    has no such channel."""
    chunks = central.store.terminal_cast(session_id, channel)
    first = await anext(chunks, None)
    if first is None:
        raise HTTPException(404, "no such terminal recording")
    body = _pieces(_then(first, chunks), CAST_PIECE)
    return _download(body, CAST_MEDIA_TYPE, f"{session_id}-{channel}.cast")


async def _pieces(chunks: AsyncIterator[str], size: int) -> AsyncIterator[bytes]:
    """The chunks as UTF-8, joined into pieces of at most `size` bytes (a larger chunk goes
    alone): never more than that is held."""
    held: list[bytes] = []
    total = 0
    async for chunk in chunks:
        data = chunk.encode()
        if held and total + len(data) > size:
            yield b"".join(held)
            held, total = [], 0
        held.append(data)
        total += len(data)
    if held:
        yield b"".join(held)


def _download(
    body: AsyncIterator[str] | AsyncIterator[bytes], media_type: str, filename: str
) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


async def _event_stream(central: Central, who: Identity) -> AsyncIterator[str]:
    with central.events.subscribe(who.user, who.groups) as sub:
        yield "retry: 3000\nevent: hello\ndata: {}\n\n"
        while True:
            left = (who.expires_at - datetime.now(UTC)).total_seconds()
            if left <= 0:
                yield 'event: token-expired\ndata: {"reason": "access token expired"}\n\n'
                return
            try:
                event = await asyncio.wait_for(sub.queue.get(), min(KEEPALIVE, left))
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if event is None:
                yield 'event: overflow\ndata: {"reason": "too slow; reconnect"}\n\n'
                return
            yield f"id: {event.id}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


def _cast_summaries(session: SessionRecord, channels: list[TerminalChannel]) -> list[CastSummary]:
    """What a cast's header says of its channel; a header that does not parse (never one of
    ours) is still listed, so that its recording stays reachable."""
    found = []
    for item in channels:
        kind, command, started = "unknown", None, session.started_at
        try:
            head = asciicast.parse_header(item.header)
        except asciicast.CastError:
            head = {}
        meta = head.get("watchgate")
        if isinstance(meta, dict) and isinstance(meta.get("kind"), str):
            kind = meta["kind"]
        if isinstance(head.get("command"), str):
            command = head["command"]
        if isinstance(head.get("timestamp"), int):
            with contextlib.suppress(ValueError, OverflowError, OSError):
                started = datetime.fromtimestamp(head["timestamp"], UTC)
        found.append(
            CastSummary(
                channel=item.channel,
                kind=kind,
                command=command,
                started_at=started,
                bytes=item.size,
            )
        )
    return found


async def _then(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    yield first
    async for chunk in rest:
        yield chunk


def _duration(value: int | str | None) -> int | None:
    """Seconds from a request's `duration`: a number of seconds or a text like "1h30m"."""
    if value is None or isinstance(value, int):
        return value
    try:
        return parse_duration(value)
    except ValueError as e:
        raise ApprovalError("invalid", f"duration: {e}", 400) from None


def _validation_reason(exc: RequestValidationError) -> str:
    """The first problem of a malformed request body or parameter, as one sentence."""
    errors = exc.errors()
    if not errors:
        return "malformed request"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = str(first.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


def _header_safe(text: str) -> str:
    """Reasons may echo token claims (attacker-controlled): keep printable ASCII, bounded."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)[:200]
