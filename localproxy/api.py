"""A small async client for central's HTTP API, shared by the CLI and the desktop app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from localproxy.contract import (
    API_PREFIX,
    AccessRequestView,
    ApprovalItem,
    CastSummary,
    CommandReviewView,
    ContentPage,
    Event,
    LoginInfo,
    Me,
    ResourceView,
    ReviewPage,
    ReviewSession,
    SearchHit,
    SessionDetail,
    SessionSummary,
    TunnelInfo,
)

_RESOURCES = TypeAdapter(list[ResourceView])
_SESSIONS = TypeAdapter(list[SessionSummary])
_CASTS = TypeAdapter(list[CastSummary])
_HITS = TypeAdapter(list[SearchHit])
# A long export may pause while central reads the next rows: wait longer than for an answer.
_STREAM_TIMEOUT = httpx.Timeout(15.0, read=120.0)
_ITEM: TypeAdapter[AccessRequestView | CommandReviewView] = TypeAdapter(ApprovalItem)
_ITEMS: TypeAdapter[list[AccessRequestView | CommandReviewView]] = TypeAdapter(list[ApprovalItem])


class CentralError(Exception):
    """Central refused or could not be reached; `str()` is a sentence for the user."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class CentralClient:
    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> CentralClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self._call("GET", path, params=params)

    async def _call(
        self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = await self._http.request(method, f"{API_PREFIX}{path}", json=json, params=query)
        except httpx.HTTPError as e:
            raise CentralError(f"cannot reach central at {self.base_url}: {e}") from e
        if resp.status_code >= 400:
            raise _refusal(resp)
        return resp.json()

    async def login_info(self) -> LoginInfo:
        return LoginInfo.model_validate(await self._get("/login-info"))

    async def me(self) -> Me:
        return Me.model_validate(await self._get("/me"))

    async def resources(self) -> list[ResourceView]:
        return _RESOURCES.validate_python(await self._get("/resources"))

    async def tunnel_info(self) -> TunnelInfo:
        return TunnelInfo.model_validate(await self._get("/tunnel-info"))

    async def extend_session(self, session_id: str) -> None:
        """Carry a live tunnel session on with this client's (fresh) token."""
        await self._call("POST", f"/tunnel-sessions/{session_id}/extend")

    async def sessions(self) -> list[SessionSummary]:
        return _SESSIONS.validate_python(await self._get("/sessions"))

    async def session(self, session_id: str) -> SessionDetail:
        return SessionDetail.model_validate(await self._get(f"/sessions/{quote(session_id)}"))

    async def casts(self, session_id: str) -> list[CastSummary]:
        """The session's recorded terminal channels."""
        return _CASTS.validate_python(await self._get(f"/sessions/{quote(session_id)}/casts"))

    def cast(
        self, session_id: str, channel: int
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """One terminal channel's asciicast v3 recording, as its bytes arrive (a long shell
        recording is tens of MB: it is never held whole)."""
        path = f"/sessions/{quote(session_id)}/casts/{int(channel)}"
        return self._download(path, {}, "the recording")

    @contextlib.asynccontextmanager
    async def _download(
        self, path: str, params: dict[str, Any], what: str
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """A streamed answer, as its bytes arrive; a refusal raises before any byte."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            async with self._http.stream(
                "GET", f"{API_PREFIX}{path}", params=query, timeout=_STREAM_TIMEOUT
            ) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise _refusal(resp)
                yield resp.aiter_bytes()
        except httpx.HTTPError as e:
            raise CentralError(f"{what} from {self.base_url} broke: {e}") from e

    # -- session review (roles marked admin or auditor) ---------------------------------------

    async def review_sessions(
        self,
        *,
        user: str | None = None,
        resource: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
        flagged: bool | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> ReviewPage:
        """One page of recorded sessions, newest first; `since` and `until` are ISO 8601
        times or durations back from now ("24h"); pass the page's `next` as `before`."""
        params = {
            "user": user,
            "resource": resource,
            "kind": kind,
            "since": since,
            "until": until,
            "flagged": None if flagged is None else str(flagged).lower(),
            "limit": limit,
            "before": before,
        }
        return ReviewPage.model_validate(await self._get("/review/sessions", params))

    async def review_session(self, session_id: str) -> ReviewSession:
        return ReviewSession.model_validate(
            await self._get(f"/review/sessions/{quote(session_id, safe='')}")
        )

    async def review_content(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int | None = None,
        only: Literal["statement", "terminal"] | None = None,
    ) -> ContentPage:
        """The session's statements and terminal chunks after seq `after` (with `only`, those
        of one type); continue with the page's `next_after`."""
        path = f"/review/sessions/{quote(session_id, safe='')}/content"
        params = {"after": after, "limit": limit, "type": only}
        return ContentPage.model_validate(await self._get(path, params))

    async def search(
        self,
        q: str,
        *,
        user: str | None = None,
        resource: str | None = None,
        kind: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> list[SearchHit]:
        """Statements and terminal output lines containing `q`, newest sessions first."""
        params = {
            "q": q,
            "user": user,
            "resource": resource,
            "kind": kind,
            "since": since,
            "until": until,
            "limit": limit,
        }
        return _HITS.validate_python(await self._get("/review/search", params))

    def export(
        self, session_id: str, fmt: str, channel: int | None = None
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """One session as evidence JSON lines (`fmt` "jsonl") or one terminal channel as
        asciicast v3 ("asciicast", with `channel`), as the bytes arrive."""
        path = f"/review/sessions/{quote(session_id, safe='')}/export"
        return self._download(path, {"format": fmt, "channel": channel}, "the export")

    def bundle(
        self, since: str, until: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """The evidence bundle of a time range (JSON lines), as its bytes arrive."""
        return self._download("/review/bundle", {"since": since, "until": until}, "the bundle")

    # -- access requests and approvals --------------------------------------------------------

    async def request_access(
        self, resource: str, reason: str, duration: int | str | None = None
    ) -> AccessRequestView:
        """Ask for time-boxed access (`duration`: seconds or "30m"); the pending request."""
        body = {"resource": resource, "reason": reason, "duration": duration}
        return AccessRequestView.model_validate(await self._call("POST", "/requests", body))

    async def my_requests(self) -> list[AccessRequestView | CommandReviewView]:
        """Your own access requests and held statements, newest first."""
        return _ITEMS.validate_python(await self._get("/requests"))

    async def approvals(self) -> list[AccessRequestView | CommandReviewView]:
        """The reviewer's inbox: pending items you may decide, newest first."""
        return _ITEMS.validate_python(await self._get("/approvals"))

    async def approval(self, item_id: str) -> AccessRequestView | CommandReviewView:
        return _ITEM.validate_python(await self._get(f"/approvals/{quote(item_id, safe='')}"))

    async def approve(
        self, item_id: str, comment: str | None = None
    ) -> AccessRequestView | CommandReviewView:
        path = f"/approvals/{quote(item_id, safe='')}/approve"
        return _ITEM.validate_python(await self._call("POST", path, {"comment": comment}))

    async def deny(self, item_id: str, reason: str) -> AccessRequestView | CommandReviewView:
        path = f"/approvals/{quote(item_id, safe='')}/deny"
        return _ITEM.validate_python(await self._call("POST", path, {"reason": reason}))

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[AsyncIterator[Event]]:
        """The live event stream (server-sent events), open for the duration of the block."""
        try:
            async with self._http.stream(
                "GET", f"{API_PREFIX}/events", timeout=httpx.Timeout(15.0, read=None)
            ) as resp:
                if resp.status_code != 200:
                    await resp.aread()
                    raise CentralError(
                        f"central refused the event stream ({resp.status_code})", resp.status_code
                    )
                lines = resp.aiter_lines()
                # The first event says the subscription is in place.
                async for line in lines:
                    if line == "":
                        break
                yield _parse_events(lines)
        except httpx.HTTPError as e:
            raise CentralError(f"the event stream from {self.base_url} broke: {e}") from e


def _refusal(resp: httpx.Response) -> CentralError:
    """Central's refusal as an error: its `reason` (or FastAPI's `detail`) and code."""
    try:
        body = resp.json()
        reason = body.get("reason") or body.get("detail")
        code = body.get("code") or body.get("error")
    except (ValueError, AttributeError):
        reason, code = resp.text[:200], None
    status = resp.status_code
    return CentralError(f"central refused ({status}): {reason}", status, code)


async def _parse_events(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    data = ""
    async for line in lines:
        if line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            try:
                yield Event.model_validate_json(data)
            except ValueError:
                pass  # hello, keep-alive, token-expired: not events of ours
            data = ""
