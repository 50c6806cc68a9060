"""The HTTP API: identity, resources per role with access state, refusals, OpenAPI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from central.idp.issuer import TokenMinter
from tests.support.central import Running, running_central


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_central(tmp_path) as running:
        yield running


def token_for(central: Running, user: str, **kw: int) -> str:
    issuer = central.central.issuer
    assert issuer is not None
    found = issuer.users.get(user)
    assert found is not None
    return issuer.minter.mint_access_token(found, **kw)


async def get(central: Running, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        return await http.get(f"{central.url}{path}", headers=headers)


async def names(central: Running, user: str) -> dict[str, str]:
    resp = await get(central, "/api/resources", token_for(central, user))
    assert resp.status_code == 200
    return {r["name"]: r["access"] for r in resp.json()}


async def test_each_user_sees_exactly_the_resources_of_their_roles(central: Running) -> None:
    assert await names(central, "alice") == {"shop-db": "direct", "reports-db": "direct"}
    assert await names(central, "carol") == {
        "shop-db": "requestable",
        "shop-db-admin": "requestable",
    }
    assert await names(central, "bob") == {
        "shop-db": "requestable",
        "shop-db-admin": "requestable",
        "reports-db": "requestable",
        "lab-host": "requestable",
    }
    assert await names(central, "dave") == {}


async def test_direct_wins_when_two_roles_grant_the_same_resource(tmp_path: Path) -> None:
    users = [{"name": "erin", "password": "x", "groups": ["analysts", "dba-leads"]}]
    async with running_central(tmp_path, identity={"users": users}) as central:
        assert await names(central, "erin") == {
            "shop-db": "direct",
            "shop-db-admin": "requestable",
            "reports-db": "direct",
        }


async def test_resources_never_carry_credentials_or_target_accounts(central: Running) -> None:
    resp = await get(central, "/api/resources", token_for(central, "bob"))
    for secret in ("held-secret", "shop_reader", "shop_admin", "reporter", "deploy", "5432"):
        assert secret not in resp.text
    assert set(resp.json()[0]) == {
        "name",
        "kind",
        "environment",
        "description",
        "database",
        "access",
        "granted_until",
        "request_id",
    }


async def test_access_state_follows_requests(central: Running) -> None:
    store = central.central.store
    now = datetime.now(UTC)
    pending = await store.create_access_request("carol", "shop-db-admin", "fix", 3600, now)
    granted = await store.create_access_request("carol", "shop-db", "audit", 1800, now)
    async with store.session() as s, s.begin():
        row = await s.get(type(granted), granted.id)
        assert row is not None
        row.status = "approved"
        row.expires_at = now + timedelta(minutes=30)
    resp = await get(central, "/api/resources", token_for(central, "carol"))
    by_name = {r["name"]: r for r in resp.json()}
    assert by_name["shop-db-admin"]["access"] == "pending"
    assert by_name["shop-db-admin"]["request_id"] == pending.id
    assert by_name["shop-db"]["access"] == "granted"
    until = datetime.fromisoformat(by_name["shop-db"]["granted_until"])
    assert abs((until - (now + timedelta(minutes=30))).total_seconds()) < 1
    # Another user's requests do not change what bob sees.
    assert (await names(central, "bob"))["shop-db-admin"] == "requestable"


async def test_me(central: Running) -> None:
    resp = await get(central, "/api/me", token_for(central, "bob"))
    body = resp.json()
    assert (body["user"], body["groups"], body["roles"], body["auditor"]) == (
        "bob",
        ["admins"],
        ["auditors"],
        True,
    )
    alice = (await get(central, "/api/me", token_for(central, "alice"))).json()
    assert alice["auditor"] is False and alice["roles"] == ["analyst"]


async def test_no_token_and_bad_tokens_get_specific_reasons(central: Running) -> None:
    resp = await get(central, "/api/resources", None)
    assert resp.status_code == 401
    assert resp.json()["reason"] == "no bearer token: sign in with `watchgate login`"
    assert resp.headers["www-authenticate"].startswith('Bearer error="invalid_token"')

    expired = token_for(central, "alice", ttl=60, now=int(time.time()) - 3600)
    resp = await get(central, "/api/me", expired)
    assert resp.status_code == 401 and resp.json()["code"] == "expired"

    resp = await get(central, "/api/me", "not-a-token")
    assert resp.json()["code"] == "malformed"


async def test_token_rejections_are_audited(central: Running) -> None:
    await get(central, "/api/me", "not-a-token")
    log = (central.config.data_dir / "audit.jsonl").read_text()
    assert '"action": "api.token_rejected"' in log and '"code": "malformed"' in log


async def test_tokens_of_a_previous_data_dir_are_refused(central: Running, tmp_path: Path) -> None:
    from central.idp.keys import SigningKeys

    other = TokenMinter(central.config, SigningKeys.load_or_create(tmp_path / "elsewhere"))
    issuer = central.central.issuer
    assert issuer is not None
    alice = issuer.users.get("alice")
    assert alice is not None
    resp = await get(central, "/api/me", other.mint_access_token(alice))
    assert resp.json()["code"] == "unknown_kid"


async def test_health_login_info_and_openapi(central: Running) -> None:
    assert (await get(central, "/api/health", None)).json()["status"] == "ok"
    info = (await get(central, "/api/login-info", None)).json()
    assert info == {
        "issuer": central.url,
        "client_id": "watchgate-cli",
        "audience": "watchgate",
        "scopes": ["openid", "profile", "groups", "offline_access"],
    }
    spec = (await get(central, "/api/openapi.json", None)).json()
    assert {"/api/me", "/api/resources", "/api/events"} <= set(spec["paths"])
    assert "ResourceView" in spec["components"]["schemas"]
