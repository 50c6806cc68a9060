"""A small async client for central's HTTP API, shared by the CLI and the desktop app."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from localproxy.contract import (
    API_PREFIX,
    LoginInfo,
    Me,
    ResourceView,
    SessionDetail,
    SessionSummary,
    TunnelInfo,
)

_RESOURCES = TypeAdapter(list[ResourceView])
_SESSIONS = TypeAdapter(list[SessionSummary])


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

    async def _get(self, path: str) -> Any:
        return await self._call("GET", path)

    async def _call(self, method: str, path: str) -> Any:
        try:
            resp = await self._http.request(method, f"{API_PREFIX}{path}")
        except httpx.HTTPError as e:
            raise CentralError(f"cannot reach central at {self.base_url}: {e}") from e
        if resp.status_code >= 400:
            try:
                body = resp.json()
                reason, code = body.get("reason") or body.get("detail"), body.get("code")
            except ValueError:
                reason, code = resp.text[:200], None
            status = resp.status_code
            raise CentralError(f"central refused ({status}): {reason}", status, code)
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
