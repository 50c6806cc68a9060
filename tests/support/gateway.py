"""The whole PostgreSQL path in one process: central, the tunnel, and a local listener.

`gateway()` runs a real central (built-in issuer, SQLite store) whose `db` resource points at
a PostgreSQL database, and a real local listener in front of it, so that any client — asyncpg,
psycopg, psql, pgbench — can connect to `gw.dsn` exactly as a user would after
`watchgate connect`.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from central.runtime import Central
from localproxy.api import CentralClient
from localproxy.contract import ResourceView
from localproxy.listener import PostgresListener, TokenSource
from localproxy.tunnel import Tunnel
from tests.support.central import USERS, running_central


@dataclass
class Gateway:
    central: Central
    url: str
    listener: PostgresListener
    port: int
    secret: str
    user: str
    database: str

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.secret}@127.0.0.1:{self.port}/{self.database}"

    def token(self, user: str | None = None, **kw: Any) -> str:
        issuer = self.central.issuer
        assert issuer is not None
        found = issuer.users.get(user or self.user)
        assert found is not None
        return issuer.minter.mint_access_token(found, **kw)


def resource_for(target_url: str, name: str = "db", **extra: Any) -> dict[str, Any]:
    """A postgres resource entry for the database at `target_url` (postgresql://user[:pw]@h:p/db)."""
    parts = urlsplit(target_url)
    res: dict[str, Any] = {
        "name": name,
        "kind": "postgres",
        "address": f"{parts.hostname}:{parts.port or 5432}",
        "database": parts.path.lstrip("/"),
        "username": parts.username,
        "environment": "test",
    }
    if parts.password:
        res["password"] = parts.password
    return res | extra


@contextlib.asynccontextmanager
async def gateway(
    tmp: Path,
    target_url: str,
    *,
    user: str = "alice",
    resources: list[dict[str, Any]] | None = None,
    roles: list[dict[str, Any]] | None = None,
    token_ttl: int | None = None,
    **overrides: Any,
) -> AsyncIterator[Gateway]:
    resources = resources or [resource_for(target_url)]
    roles = roles or [
        {
            "name": "db-users",
            "groups": ["analysts", "admins", "dba-leads"],
            "resources": [r["name"] for r in resources],
            "access": "direct",
        }
    ]
    async with running_central(
        tmp, resources=resources, roles=roles, identity={"users": USERS}, **overrides
    ) as running:
        gw_token = _token_source(running.central, user, token_ttl)
        async with CentralClient(running.url, await gw_token()) as api:
            info = await api.tunnel_info()
            views = {r.name: r for r in await api.resources()}
        view: ResourceView = views[resources[0]["name"]]
        listener = PostgresListener(view, Tunnel(info), gw_token, secrets.token_urlsafe(12))
        port = await listener.start(0)
        try:
            yield Gateway(
                running.central,
                running.url,
                listener,
                port,
                listener.secret,
                user,
                view.database or "",
            )
        finally:
            await listener.close()


def _token_source(central: Central, user: str, ttl: int | None) -> TokenSource:
    async def token() -> str:
        issuer = central.issuer
        assert issuer is not None
        found = issuer.users.get(user)
        assert found is not None
        return issuer.minter.mint_access_token(found, ttl=ttl)

    return token
