"""The HTTP API: identity, resources per role with access state, refusals, OpenAPI."""

from __future__ import annotations

import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from central.idp.issuer import TokenMinter
from central.recording import asciicast
from central.recording.asciicast import read_cast
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


async def test_tunnel_info_carries_centrals_ssh_host_key(central: Running, tmp_path: Path) -> None:
    resp = await get(central, "/api/tunnel-info", None)  # unauthenticated, as at first use
    assert resp.status_code == 200
    info = resp.json()
    key = central.central.ssh_host_key
    line = info["ssh_host_key"]
    assert line == key.export_public_key("openssh").decode().strip()
    assert line.startswith("ssh-ed25519 ") and "\n" not in line
    # The fingerprint is the one OpenSSH computes for that line.
    pub = tmp_path / "central.pub"
    pub.write_text(line + "\n")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True)
    assert listed.stdout.split()[1] == info["ssh_host_key_sha256"] == key.get_fingerprint("sha256")
    assert "PRIVATE" not in resp.text


# -- recorded terminals -------------------------------------------------------------------------


async def record_ssh_session(central: Running, user: str = "alice") -> str:
    """A session of `user` with a shell on channel 0 (40 chunks) and an exec on channel 2."""
    recorder = central.central.recorder
    log = await recorder.open_session(user, "lab-host", "ssh", "127.0.0.1:5000")
    shell = log.terminal(
        0, asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={"kind": "shell"})
    )
    for i in range(40):
        shell.output(f"line {i} é\r\n".encode())
        await recorder.flush()  # a chunk each
    shell.exit(0)
    exec_ = log.terminal(
        2,
        asciicast.header(
            80, 24, timestamp=1_764_000_100, command="uname -a", watchgate={"kind": "exec"}
        ),
        limit=1024,
    )
    exec_.output(b"Linux lab-host\n")
    exec_.exit(0)
    log.close("client disconnected")
    await recorder.flush()
    return log.session_id


async def test_casts_lists_the_terminal_channels_of_a_session(central: Running) -> None:
    session_id = await record_ssh_session(central)

    resp = await get(central, f"/api/sessions/{session_id}/casts", token_for(central, "alice"))

    assert resp.status_code == 200
    listed = resp.json()
    assert [(c["channel"], c["kind"], c["command"]) for c in listed] == [
        (0, "shell", None),
        (2, "exec", "uname -a"),
    ]
    assert listed[0]["started_at"] == "2025-11-24T16:00:00Z"
    store = central.central.store
    cast = "".join([c async for c in store.terminal_cast(session_id, 0)])
    assert listed[0]["bytes"] == len(cast.encode())
    # The session detail carries the same list.
    detail = await get(central, f"/api/sessions/{session_id}", token_for(central, "alice"))
    assert detail.json()["casts"] == listed


async def test_cast_is_the_asciicast_v3_file_streamed_from_the_store(central: Running) -> None:
    session_id = await record_ssh_session(central)

    resp = await get(central, f"/api/sessions/{session_id}/casts/0", token_for(central, "alice"))

    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/x-asciicast"
    assert f'filename="{session_id}-0.cast"' in resp.headers["content-disposition"]
    cast = read_cast(resp.text)
    assert cast.header["watchgate"]["session"] == session_id
    assert cast.text() == "".join(f"line {i} é\r\n" for i in range(40))
    assert cast.events[-1].code == "x"
    exec_cast = await get(
        central, f"/api/sessions/{session_id}/casts/2", token_for(central, "alice")
    )
    assert read_cast(exec_cast.text).text() == "Linux lab-host\n"


async def test_casts_of_another_users_session_are_not_found(central: Running) -> None:
    session_id = await record_ssh_session(central)
    for path in (f"/api/sessions/{session_id}/casts", f"/api/sessions/{session_id}/casts/0"):
        carol = await get(central, path, token_for(central, "carol"))
        assert carol.status_code == 404, path
        assert "line 0" not in carol.text
        bob = await get(central, path, token_for(central, "bob"))  # an auditor
        assert bob.status_code == 200, path
        assert (await get(central, path, None)).status_code == 401


async def test_unknown_sessions_and_channels_are_not_found(central: Running) -> None:
    session_id = await record_ssh_session(central)
    alice = token_for(central, "alice")
    assert (await get(central, f"/api/sessions/{session_id}/casts/1", alice)).status_code == 404
    assert (await get(central, f"/api/sessions/{session_id}/casts/x", alice)).status_code == 400
    assert (await get(central, "/api/sessions/nope/casts", alice)).status_code == 404
    assert (await get(central, "/api/sessions/nope/casts/0", alice)).status_code == 404
