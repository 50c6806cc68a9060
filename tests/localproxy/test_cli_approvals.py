"""`watchgate request / approvals / approve / deny` as real subprocesses against central.

Carol (dba-leads) may use shop-db-admin on request; bob (admins) reviews for that role.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.localproxy.test_cli import Watchgate, mint
from tests.support.central import Running


def as_user(running: Running, user: str) -> dict[str, str]:
    return {"WATCHGATE_CENTRAL": running.url, "WATCHGATE_TOKEN": mint(running, user)}


async def test_request_wait_is_released_by_an_approval(
    central: Running,
    watchgate: Watchgate,
) -> None:
    waiting = asyncio.ensure_future(
        watchgate(
            "request",
            "shop-db-admin",
            "--reason",
            "INC-42 hotfix",
            "--duration",
            "20m",
            "--wait",
            env=as_user(central, "carol"),
        )
    )
    inbox: list[dict[str, object]] = []
    for _ in range(100):
        listed = await watchgate("approvals", "--json", env=as_user(central, "bob"))
        assert listed.code == 0, listed.stderr
        inbox = json.loads(listed.stdout)
        if inbox:
            break
        await asyncio.sleep(0.1)
    assert [(i["requester"], i["resource"], i["reason"]) for i in inbox] == [
        ("carol", "shop-db-admin", "INC-42 hotfix")
    ]
    # Carol cannot approve her own request.
    own = await watchgate("approve", str(inbox[0]["id"]), env=as_user(central, "carol"))
    assert own.code == 1 and "own" in own.stderr
    ok = await watchgate(
        "approve", str(inbox[0]["id"]), "--comment", "go", env=as_user(central, "bob")
    )
    assert ok.code == 0, ok.stderr
    result = await asyncio.wait_for(waiting, 30)
    assert result.code == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{inbox[0]['id']}: approved by bob: go"
    resources = await watchgate("resources", "--json", env=as_user(central, "carol"))
    state = {r["name"]: r["access"] for r in json.loads(resources.stdout)}
    assert state["shop-db-admin"] == "granted"


async def test_request_wait_exits_3_when_denied(
    central: Running,
    watchgate: Watchgate,
) -> None:
    waiting = asyncio.ensure_future(
        watchgate(
            "request",
            "shop-db-admin",
            "--reason",
            "curious",
            "--wait",
            env=as_user(central, "carol"),
        )
    )
    for _ in range(100):
        listed = json.loads(
            (await watchgate("approvals", "--json", env=as_user(central, "bob"))).stdout
        )
        if listed:
            break
        await asyncio.sleep(0.1)
    no = await watchgate(
        "deny", listed[0]["id"], "--reason", "not without a ticket", env=as_user(central, "bob")
    )
    assert no.code == 0, no.stderr
    result = await asyncio.wait_for(waiting, 30)
    assert result.code == 3
    assert result.stdout.strip().endswith("denied by bob: not without a ticket")


async def test_request_for_a_direct_resource_is_refused(
    central: Running,
    watchgate: Watchgate,
    tmp_path: Path,
) -> None:
    result = await watchgate("request", "shop-db", "--reason", "x", env=as_user(central, "alice"))
    assert result.code == 1
    assert "shop-db" in result.stderr and len(result.stderr.strip().splitlines()) == 1
